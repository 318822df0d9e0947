//! The run history: every finished run recorded in an embedded SQLite database,
//! `<state-dir>/history.sqlite3`, and the resilience figures computed over it (MTTR, MTBF, a
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
    /// Services the run's faults targeted.
    pub services: Vec<String>,
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
                         WHERE s.run_id = runs.run_id)
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
                    services,
                })
            })
            .map_err(|e| self.error(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.error(e))
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
            services,
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
    /// Mean gap (ms) between the start times of consecutive refuted runs; needs two.
    pub mtbf_ms: Option<f64>,
    /// The score's terms.
    pub score: Score,
}

/// The resilience score, 0–100, term by term (docs/resilience-score.md).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Score {
    /// Share of runs with a verdict whose hypothesis held: `confirmed / (confirmed + refuted +
    /// halted)`.
    pub held: Option<f64>,
    /// Mean over reverted runs of `1 - ttr / recover_within` (0 when not recovered).
    pub recovery: Option<f64>,
    /// `100 × (0.6·held + 0.4·recovery)`, a missing term's weight given to the other.
    pub total: Option<f64>,
}

/// Weight of the hypothesis term in the score.
pub const W_HELD: f64 = 0.6;
/// Weight of the recovery term.
pub const W_RECOVERY: f64 = 0.4;

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
    let total = match (held, recovery) {
        (Some(h), Some(r)) => Some(100.0 * (W_HELD * h + W_RECOVERY * r)),
        (Some(x), None) | (None, Some(x)) => Some(100.0 * x),
        (None, None) => None,
    };
    Figures {
        runs: runs.len(),
        confirmed,
        refuted,
        halted,
        no_verdict: runs.len() - verdicts,
        mttr_ms: (!ttrs.is_empty()).then(|| ttrs.iter().sum::<f64>() / ttrs.len() as f64),
        recovered: ttrs.len(),
        not_recovered,
        mtbf_ms,
        score: Score {
            held,
            recovery,
            total,
        },
    }
}

#[cfg(test)]
mod tests;
