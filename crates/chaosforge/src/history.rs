//! The run history: every finished run recorded in an embedded SQLite database,
//! `<state-dir>/history.sqlite3`, and the resilience figures computed over it (MTTR, MTBF, a
//! mean time to detect, the trend of each expectation's value under the fault ([`trend`]), a
//! resilience score; see docs/resilience-score.md).
//!
//! Everything stored is computed from a run's [`Report`], itself a pure function of the
//! journal, so the database is a cache: [`rebuild`] re-imports every journal under
//! `<state-dir>/runs/*/journal.jsonl`, keyed by run id (importing twice changes nothing). The
//! journal stays the source of truth; a corrupt, locked or unwritable database must never fail a
//! run, so callers warn on [`HistoryError`] and go on.
//!
//! The schema is versioned by `PRAGMA user_version`; [`MIGRATIONS`] are applied in order, each
//! in its own transaction, so a database written by an older chaosforge is brought forward.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, TransactionBehavior, params};
use serde::Serialize;

use crate::report::Report;
use crate::vocab::Outcome;

pub mod trend;

/// The database's file name in the state directory.
pub const FILE: &str = "history.sqlite3";

/// How long a writer waits for another (a concurrent run) to finish its insert.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The schema steps; step `i` takes the database from `user_version` `i` to `i + 1`.
pub const MIGRATIONS: &[&str] = &[
    // 1: runs, their per-expectation values and their faults.
    "CREATE TABLE runs (
        run_id TEXT PRIMARY KEY, experiment TEXT NOT NULL, file TEXT NOT NULL,
        file_hash TEXT, seed TEXT NOT NULL, started_ms INTEGER NOT NULL,
        ended_ms INTEGER NOT NULL, outcome TEXT NOT NULL, degraded INTEGER NOT NULL,
        reverted INTEGER NOT NULL, ttr_ms INTEGER, recover_within_ms INTEGER NOT NULL);
     CREATE INDEX runs_by_experiment ON runs (experiment, started_ms);
     CREATE TABLE expectations (
        run_id TEXT NOT NULL REFERENCES runs ON DELETE CASCADE, monitor TEXT NOT NULL,
        expect TEXT NOT NULL, baseline REAL, baseline_held INTEGER, during REAL,
        during_held INTEGER, after REAL, after_held INTEGER, detected_ms INTEGER,
        recovered_ms INTEGER);
     CREATE TABLE faults (
        run_id TEXT NOT NULL REFERENCES runs ON DELETE CASCADE, name TEXT NOT NULL,
        kind TEXT NOT NULL, target TEXT NOT NULL, injected_ms INTEGER, reverted_ms INTEGER);",
    // 2: the services (target label `service`) each run's faults were aimed at, for the
    // per-service figures.
    "CREATE TABLE services (
        run_id TEXT NOT NULL REFERENCES runs ON DELETE CASCADE, service TEXT NOT NULL,
        PRIMARY KEY (run_id, service));",
];

/// Why the history could not be opened, read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HistoryError {
    /// SQLite refused (corrupt file, locked past the busy timeout, unwritable).
    #[error("{}: {source}", path.display())]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// What SQLite said.
        source: rusqlite::Error,
    },
    /// The database was written by a newer chaosforge.
    #[error("{}: schema version {found}, newer than the {known} this chaosforge knows", path.display())]
    TooNew {
        /// The database file.
        path: PathBuf,
        /// Its `user_version`.
        found: i64,
        /// The newest this build knows.
        known: usize,
    },
}

/// An open history database.
pub struct History {
    conn: Connection,
    path: PathBuf,
}

/// One run as the history stores it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunRow {
    /// The run.
    pub run_id: String,
    /// Experiment name.
    pub experiment: String,
    /// The experiment file as named.
    pub file: String,
    /// SHA-256 of the file's content when the run started (from the audit log), if known.
    pub file_hash: Option<String>,
    /// The seed.
    pub seed: u64,
    /// Start, Unix milliseconds.
    pub started_ms: i64,
    /// End, Unix milliseconds.
    pub ended_ms: i64,
    /// `confirmed`, `refuted`, `not_steady`, `halted`, `errored` or `unfinished`.
    pub outcome: String,
    /// Whether something degraded under the fault (an expectation failed during it, or a
    /// change was detected), as the report decides it.
    pub degraded: bool,
    /// Whether faults were reverted and recovery measured.
    pub reverted: bool,
    /// Time to recover, ms; `None` when it did not recover within `recover_within`.
    pub ttr_ms: Option<i64>,
    /// The limit, ms.
    pub recover_within_ms: i64,
    /// Time to detect, ms: from the injection to the earliest change any expectation's CUSUM
    /// detected; `None` when none was.
    pub ttd_ms: Option<i64>,
    /// Services the run's faults targeted.
    pub services: Vec<String>,
    /// Each expectation's value under the fault, in the report's order. Not in the JSON: the
    /// trends show these series per experiment and service.
    #[serde(skip)]
    pub expectations: Vec<Measured>,
}

/// One expectation's value under the fault in one run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Measured {
    /// The monitor.
    pub monitor: String,
    /// The expectation as written (`latency.p99 < 300ms`).
    pub expect: String,
    /// The value during the fault, canonical unit (fraction, seconds, per second); `None`
    /// without data.
    pub during: Option<f64>,
}

// === impl History ===

impl History {
    /// Opens (creating) `<state_dir>/history.sqlite3` and brings its schema up to date.
    pub fn open(state_dir: &Path) -> Result<History, HistoryError> {
        Self::open_path(&state_dir.join(FILE), BUSY_TIMEOUT)
    }

    /// Opens the database at `path`, waiting up to `busy` for other writers.
    pub fn open_path(path: &Path, busy: Duration) -> Result<History, HistoryError> {
        let err = |source| HistoryError::Sqlite {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let conn = Connection::open(path).map_err(err)?;
        conn.busy_timeout(busy).map_err(err)?;
        conn.pragma_update(None, "foreign_keys", true)
            .map_err(err)?;
        let mut h = History {
            conn,
            path: path.to_path_buf(),
        };
        h.migrate(MIGRATIONS.len())?;
        Ok(h)
    }

    /// Applies the migrations up to version `to` (tests stop early to make an old database).
    pub fn migrate(&mut self, to: usize) -> Result<(), HistoryError> {
        let path = self.path.clone();
        let err = |source| HistoryError::Sqlite {
            path: path.clone(),
            source,
        };
        loop {
            // IMMEDIATE: the version is read under the write lock, so two processes opening
            // an old database at once do not both apply the same step.
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(err)?;
            let v: i64 = tx
                .pragma_query_value(None, "user_version", |r| r.get(0))
                .map_err(err)?;
            if v > MIGRATIONS.len() as i64 {
                return Err(HistoryError::TooNew {
                    path: path.clone(),
                    found: v,
                    known: MIGRATIONS.len(),
                });
            }
            let v = v as usize;
            if v >= to {
                return Ok(());
            }
            tx.execute_batch(MIGRATIONS[v]).map_err(err)?;
            tx.pragma_update(None, "user_version", (v + 1) as i64)
                .map_err(err)?;
            tx.commit().map_err(err)?;
        }
    }

    /// The schema version.
    pub fn version(&self) -> Result<i64, HistoryError> {
        self.conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(|source| self.error(source))
    }

    fn error(&self, source: rusqlite::Error) -> HistoryError {
        HistoryError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    /// Records a run's report (replacing an earlier record of the same run).
    pub fn record(
        &mut self,
        report: &Report,
        file_hash: Option<String>,
    ) -> Result<(), HistoryError> {
        let row = RunRow::of(report, file_hash);
        let path = self.path.clone();
        let err = |source| HistoryError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(err)?;
        tx.execute("DELETE FROM runs WHERE run_id = ?1", [&row.run_id])
            .map_err(err)?;
        tx.execute(
            "INSERT INTO runs VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            params![
                row.run_id,
                row.experiment,
                row.file,
                row.file_hash,
                row.seed.to_string(),
                row.started_ms,
                row.ended_ms,
                row.outcome,
                row.degraded,
                row.reverted,
                row.ttr_ms,
                row.recover_within_ms
            ],
        )
        .map_err(err)?;
        for m in &report.monitors {
            for e in &m.expectations {
                tx.execute(
                    "INSERT INTO expectations VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                    params![
                        row.run_id,
                        m.name,
                        e.expect,
                        e.baseline.value,
                        e.baseline.held,
                        e.during.value,
                        e.during.held,
                        e.after.value,
                        e.after.held,
                        e.timing.detected_after.map(ms),
                        e.timing.recovered_after.map(ms)
                    ],
                )
                .map_err(err)?;
            }
        }
        for f in &report.faults {
            tx.execute(
                "INSERT INTO faults VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    row.run_id,
                    f.name,
                    f.kind,
                    f.target,
                    f.injected_at.map(ms),
                    f.reverted_at.map(ms)
                ],
            )
            .map_err(err)?;
        }
        for s in &row.services {
            tx.execute(
                "INSERT INTO services VALUES (?1, ?2)",
                params![row.run_id, s],
            )
            .map_err(err)?;
        }
        tx.commit().map_err(err)
    }

    /// The runs started at or after `since_ms` (Unix ms), of `experiment` and aimed at
    /// `service` when given, oldest first.
    pub fn runs(
        &self,
        experiment: Option<&str>,
        service: Option<&str>,
        since_ms: Option<i64>,
    ) -> Result<Vec<RunRow>, HistoryError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT run_id, experiment, file, file_hash, seed, started_ms, ended_ms, outcome,
                        degraded, reverted, ttr_ms, recover_within_ms,
                        (SELECT group_concat(service, char(10)) FROM services s
                         WHERE s.run_id = runs.run_id),
                        (SELECT MIN(detected_ms) FROM expectations e
                         WHERE e.run_id = runs.run_id)
                 FROM runs
                 WHERE (?1 IS NULL OR experiment = ?1) AND (?2 IS NULL OR started_ms >= ?2)
                   AND (?3 IS NULL OR run_id IN (SELECT run_id FROM services WHERE service = ?3))
                 ORDER BY started_ms, run_id",
            )
            .map_err(|e| self.error(e))?;
        let rows = stmt
            .query_map(params![experiment, since_ms, service], |r| {
                let seed: String = r.get(4)?;
                let services: Option<String> = r.get(12)?;
                let mut services: Vec<String> = services
                    .unwrap_or_default()
                    .lines()
                    .map(str::to_string)
                    .collect();
                services.sort();
                Ok(RunRow {
                    run_id: r.get(0)?,
                    experiment: r.get(1)?,
                    file: r.get(2)?,
                    file_hash: r.get(3)?,
                    seed: seed.parse().unwrap_or_default(),
                    started_ms: r.get(5)?,
                    ended_ms: r.get(6)?,
                    outcome: r.get(7)?,
                    degraded: r.get(8)?,
                    reverted: r.get(9)?,
                    ttr_ms: r.get(10)?,
                    recover_within_ms: r.get(11)?,
                    ttd_ms: r.get(13)?,
                    services,
                    expectations: Vec::new(),
                })
            })
            .map_err(|e| self.error(e))?;
        let mut runs: Vec<RunRow> = rows.collect::<Result<_, _>>().map_err(|e| self.error(e))?;
        let mut by_run: std::collections::HashMap<String, Vec<Measured>> =
            std::collections::HashMap::new();
        // rowid order is insertion order: the report's order of monitors and expectations.
        let mut stmt = self
            .conn
            .prepare(
                "SELECT e.run_id, e.monitor, e.expect, e.during FROM expectations e
                 JOIN runs USING (run_id)
                 WHERE (?1 IS NULL OR experiment = ?1) AND (?2 IS NULL OR started_ms >= ?2)
                   AND (?3 IS NULL OR run_id IN (SELECT run_id FROM services WHERE service = ?3))
                 ORDER BY e.rowid",
            )
            .map_err(|e| self.error(e))?;
        let measured = stmt
            .query_map(params![experiment, since_ms, service], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    Measured {
                        monitor: r.get(1)?,
                        expect: r.get(2)?,
                        during: r.get(3)?,
                    },
                ))
            })
            .map_err(|e| self.error(e))?;
        for m in measured {
            let (run, m) = m.map_err(|e| self.error(e))?;
            by_run.entry(run).or_default().push(m);
        }
        for r in &mut runs {
            r.expectations = by_run.remove(&r.run_id).unwrap_or_default();
        }
        Ok(runs)
    }
}

fn ms(d: Duration) -> i64 {
    d.as_millis() as i64
}

// === impl RunRow ===

impl RunRow {
    /// The row of a run, from its report.
    pub fn of(report: &Report, file_hash: Option<String>) -> RunRow {
        let p = &report.plan;
        let outcome = match &report.outcome {
            None => "unfinished",
            Some(Outcome::Confirmed) => "confirmed",
            Some(Outcome::Refuted { .. }) => "refuted",
            Some(Outcome::NotSteady { .. }) => "not_steady",
            Some(Outcome::Halted { .. }) => "halted",
            Some(Outcome::Errored { .. }) => "errored",
        };
        // The report's own test for "something to recover from" (render_text).
        let degraded = report.monitors.iter().any(|m| {
            m.expectations
                .iter()
                .any(|e| e.during.held == Some(false) || e.timing.detected_after.is_some())
        });
        let mut services: Vec<String> = p
            .faults
            .iter()
            .flat_map(|f| f.targets.iter())
            .filter_map(|t| p.targets.iter().find(|x| &x.name == t))
            .filter_map(|t| t.labels.get("service").cloned())
            .collect();
        services.sort();
        services.dedup();
        let started_ms = report.started_at.as_millisecond();
        RunRow {
            run_id: report.run_id.0.clone(),
            experiment: p.name.clone(),
            file: p.file.clone(),
            file_hash,
            seed: p.seed,
            started_ms,
            ended_ms: started_ms + ms(report.duration),
            outcome: outcome.into(),
            degraded,
            reverted: report.recovery.is_some(),
            ttr_ms: report.recovery.as_ref().and_then(|r| r.ttr).map(ms),
            recover_within_ms: ms(p.phases.recover_within),
            ttd_ms: report
                .monitors
                .iter()
                .flat_map(|m| &m.expectations)
                .filter_map(|e| e.timing.detected_after.map(ms))
                .min(),
            services,
            expectations: report
                .monitors
                .iter()
                .flat_map(|m| {
                    m.expectations.iter().map(|e| Measured {
                        monitor: m.name.clone(),
                        expect: e.expect.clone(),
                        during: e.during.value,
                    })
                })
                .collect(),
        }
    }
}

/// The SHA-256 of each run's experiment file when it started, from the audit log's
/// `run_start` lines, by run id.
pub fn file_hashes(state_dir: &Path) -> std::collections::HashMap<String, String> {
    let text = std::fs::read_to_string(state_dir.join(crate::audit::FILE)).unwrap_or_default();
    text.lines()
        .filter(|l| l.contains("\"run_start\""))
        .filter_map(|l| serde_json::from_str::<crate::audit::AuditRecord>(l).ok())
        .filter(|r| r.action == "run_start")
        .filter_map(|r| Some((r.run, r.sha256?)))
        .collect()
}

/// What [`rebuild`] did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rebuilt {
    /// Journals imported.
    pub imported: usize,
    /// Journals that could not be read, with why.
    pub skipped: Vec<String>,
    /// Where an unreadable database was moved aside, if it was.
    pub moved_aside: Option<PathBuf>,
}

/// Re-imports every journal under `<state_dir>/runs`. A database SQLite cannot read is moved
/// aside (`history.sqlite3.corrupt-<unix ms>`) and a fresh one built.
pub fn rebuild(state_dir: &Path) -> Result<Rebuilt, HistoryError> {
    let path = state_dir.join(FILE);
    let mut moved_aside = None;
    let healthy = History::open(state_dir).and_then(|h| {
        h.conn
            .query_row("PRAGMA quick_check", [], |r| r.get::<_, String>(0))
            .map_err(|e| h.error(e))
            .map(|ok| (h, ok == "ok"))
    });
    let mut history = match healthy {
        Ok((h, true)) => h,
        Ok((h, false)) => {
            drop(h);
            moved_aside = Some(move_aside(&path));
            History::open(state_dir)?
        }
        Err(HistoryError::Sqlite { .. }) if path.exists() => {
            moved_aside = Some(move_aside(&path));
            History::open(state_dir)?
        }
        Err(e) => return Err(e),
    };
    let hashes = file_hashes(state_dir);
    let mut imported = 0;
    let mut skipped = Vec::new();
    for run in crate::journal::runs(state_dir).unwrap_or_default() {
        let journal = run.dir.join("journal.jsonl");
        let report = crate::journal::read(&journal)
            .map_err(|e| e.to_string())
            .and_then(|ev| Report::from_events(&ev).map_err(|e| e.to_string()));
        match report {
            Ok(r) => {
                history.record(&r, hashes.get(&r.run_id.0).cloned())?;
                imported += 1;
            }
            Err(e) => skipped.push(format!("{}: {e}", journal.display())),
        }
    }
    Ok(Rebuilt {
        imported,
        skipped,
        moved_aside,
    })
}

fn move_aside(path: &Path) -> PathBuf {
    let to = PathBuf::from(format!(
        "{}.corrupt-{}",
        path.display(),
        jiff::Timestamp::now().as_millisecond()
    ));
    let _ = std::fs::rename(path, &to);
    for ext in ["-journal", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{ext}", path.display()));
    }
    to
}

/// The resilience figures of a set of runs (one experiment, or one service).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Figures {
    /// Runs in the set.
    pub runs: usize,
    /// Confirmed runs.
    pub confirmed: usize,
    /// Refuted runs.
    pub refuted: usize,
    /// Halted runs.
    pub halted: usize,
    /// Runs with no verdict (not steady, errored, unfinished).
    pub no_verdict: usize,
    /// Mean time to recover (ms) over the runs that degraded and recovered in time.
    pub mttr_ms: Option<f64>,
    /// Runs that degraded and recovered in time.
    pub recovered: usize,
    /// Runs whose faults were reverted but that did not recover within `recover_within`.
    pub not_recovered: usize,
    /// Mean time to detect (ms) over the runs in which a change was detected.
    pub mttd_ms: Option<f64>,
    /// Runs in which a change was detected.
    pub detected: usize,
    /// Mean gap (ms) between the start times of consecutive refuted runs; needs two.
    pub mtbf_ms: Option<f64>,
    /// Per expectation, the trend of its value under the fault over the runs.
    pub trends: Vec<ExpectationTrend>,
    /// The score's terms.
    pub score: Score,
}

/// The trend of one expectation's value under the fault, over the runs that measured it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExpectationTrend {
    /// The monitor.
    pub monitor: String,
    /// The expectation as written.
    pub expect: String,
    /// The values under the fault, oldest run first (runs without a value are left out).
    pub values: Vec<f64>,
    /// Mann–Kendall over `values`; `None` with fewer than two.
    pub mann_kendall: Option<trend::MannKendall>,
    /// Theil–Sen slope, change per run, in the value's unit.
    pub slope_per_run: Option<f64>,
    /// Worsening, improving or no trend, by the expectation's direction.
    pub verdict: trend::Verdict,
}

/// The resilience score, 0–100, term by term (docs/resilience-score.md).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Score {
    /// Share of runs with a verdict whose hypothesis held: `confirmed / (confirmed + refuted +
    /// halted)`.
    pub held: Option<f64>,
    /// Mean over reverted runs of `1 - ttr / recover_within` (0 when not recovered).
    pub recovery: Option<f64>,
    /// Share of the expectations with at least [`trend::MIN_RUNS`] values under the fault
    /// whose trend is not worsening.
    pub trend: Option<f64>,
    /// `100 × (0.45·held + 0.30·recovery + 0.25·trend)`, the weights of missing terms shared
    /// among the others in proportion.
    pub total: Option<f64>,
}

/// Weight of the hypothesis term in the score.
pub const W_HELD: f64 = 0.45;
/// Weight of the recovery term.
pub const W_RECOVERY: f64 = 0.30;
/// Weight of the trend term. Held and recovery keep their earlier 3:2 ratio, so a score
/// without enough runs for a trend is the one chaosforge gave before the trend term.
pub const W_TREND: f64 = 0.25;

/// Computes the figures of `runs` (oldest first).
pub fn figures(runs: &[&RunRow]) -> Figures {
    let count = |o: &str| runs.iter().filter(|r| r.outcome == o).count();
    let (confirmed, refuted, halted) = (count("confirmed"), count("refuted"), count("halted"));
    let ttrs: Vec<f64> = runs
        .iter()
        .filter(|r| r.reverted && r.degraded)
        .filter_map(|r| r.ttr_ms)
        .map(|t| t as f64)
        .collect();
    let ttds: Vec<f64> = runs
        .iter()
        .filter_map(|r| r.ttd_ms)
        .map(|t| t as f64)
        .collect();
    let not_recovered = runs
        .iter()
        .filter(|r| r.reverted && r.ttr_ms.is_none())
        .count();
    let refuted_starts: Vec<i64> = runs
        .iter()
        .filter(|r| r.outcome == "refuted")
        .map(|r| r.started_ms)
        .collect();
    let mtbf_ms = (refuted_starts.len() >= 2).then(|| {
        let gaps: Vec<f64> = refuted_starts
            .windows(2)
            .map(|w| (w[1] - w[0]) as f64)
            .collect();
        gaps.iter().sum::<f64>() / gaps.len() as f64
    });
    let verdicts = confirmed + refuted + halted;
    let held = (verdicts > 0).then(|| confirmed as f64 / verdicts as f64);
    let rec: Vec<f64> = runs
        .iter()
        .filter(|r| r.reverted)
        .map(|r| match r.ttr_ms {
            Some(t) if r.recover_within_ms > 0 => {
                (1.0 - t as f64 / r.recover_within_ms as f64).clamp(0.0, 1.0)
            }
            Some(_) => 1.0,
            None => 0.0,
        })
        .collect();
    let recovery = (!rec.is_empty()).then(|| rec.iter().sum::<f64>() / rec.len() as f64);
    let trends = trends(runs);
    let judged: Vec<&ExpectationTrend> = trends
        .iter()
        .filter(|t| t.values.len() >= trend::MIN_RUNS)
        .collect();
    let trend_term = (!judged.is_empty()).then(|| {
        judged
            .iter()
            .filter(|t| t.verdict != trend::Verdict::Worsening)
            .count() as f64
            / judged.len() as f64
    });
    let terms = [
        (held, W_HELD),
        (recovery, W_RECOVERY),
        (trend_term, W_TREND),
    ];
    let weight: f64 = terms
        .iter()
        .filter(|(v, _)| v.is_some())
        .map(|(_, w)| w)
        .sum();
    let total = (weight > 0.0).then(|| {
        100.0
            * terms
                .iter()
                .filter_map(|(v, w)| Some(v.as_ref()? * w))
                .sum::<f64>()
            / weight
    });
    Figures {
        runs: runs.len(),
        confirmed,
        refuted,
        halted,
        no_verdict: runs.len() - verdicts,
        mttr_ms: (!ttrs.is_empty()).then(|| ttrs.iter().sum::<f64>() / ttrs.len() as f64),
        recovered: ttrs.len(),
        not_recovered,
        mttd_ms: (!ttds.is_empty()).then(|| ttds.iter().sum::<f64>() / ttds.len() as f64),
        detected: ttds.len(),
        mtbf_ms,
        trends,
        score: Score {
            held,
            recovery,
            trend: trend_term,
            total,
        },
    }
}

/// The trend of every expectation measured in `runs` (oldest first), by monitor and
/// expectation text.
fn trends(runs: &[&RunRow]) -> Vec<ExpectationTrend> {
    let mut series: std::collections::BTreeMap<(&str, &str), Vec<f64>> = Default::default();
    for r in runs {
        for m in &r.expectations {
            let values = series.entry((&m.monitor, &m.expect)).or_default();
            values.extend(m.during.filter(|v| v.is_finite()));
        }
    }
    series
        .into_iter()
        .map(|((monitor, expect), values)| {
            let mann_kendall = trend::mann_kendall(&values);
            // An expectation this build cannot parse (written by another version) has no
            // known direction, so no verdict.
            let worse = crate::hypothesis::Expectation::parse(expect)
                .ok()
                .map(|e| crate::analysis::worse(&e));
            let verdict = match (&mann_kendall, worse) {
                (Some(mk), Some(w)) => trend::verdict(mk, w),
                _ => trend::Verdict::NoTrend,
            };
            ExpectationTrend {
                monitor: monitor.to_string(),
                expect: expect.to_string(),
                slope_per_run: trend::theil_sen(&values),
                values,
                mann_kendall,
                verdict,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests;
