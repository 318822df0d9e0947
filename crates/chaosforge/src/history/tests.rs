use super::*;

fn row(outcome: &str, started_ms: i64, ttr_ms: Option<i64>, degraded: bool) -> RunRow {
    RunRow {
        run_id: format!("r{started_ms}"),
        experiment: "e".into(),
        file: "e.yaml".into(),
        file_hash: None,
        seed: u64::MAX,
        started_ms,
        ended_ms: started_ms + 10,
        outcome: outcome.into(),
        degraded,
        reverted: true,
        ttr_ms,
        recover_within_ms: 1000,
        ttd_ms: None,
        services: vec![],
        expectations: vec![],
    }
}

fn measured(expect: &str, during: Option<f64>) -> Measured {
    Measured {
        monitor: "m".into(),
        expect: expect.into(),
        during,
    }
}

#[test]
fn figures_follow_the_documented_definitions() {
    let runs = [
        row("confirmed", 0, Some(100), false),
        row("refuted", 1000, Some(400), true),
        row("refuted", 4000, None, true),
        row("confirmed", 5000, Some(200), true),
    ];
    let refs: Vec<&RunRow> = runs.iter().collect();
    let f = figures(&refs);
    // MTTR: degraded runs that recovered: 400 and 200.
    assert_eq!(f.mttr_ms, Some(300.0));
    assert_eq!((f.recovered, f.not_recovered), (2, 1));
    // MTBF: one gap between the two refuted starts.
    assert_eq!(f.mtbf_ms, Some(3000.0));
    assert_eq!(f.score.held, Some(0.5));
    // (0.9 + 0.6 + 0 + 0.8) / 4
    let r = f.score.recovery.unwrap();
    assert!((r - 0.575).abs() < 1e-12, "{r}");
    // No trend term (no expectations): held and recovery share its weight, 0.45:0.30 being
    // the 0.6:0.4 of a score without one.
    assert_eq!(f.score.trend, None);
    let t = f.score.total.unwrap();
    assert!((t - 100.0 * (0.6 * 0.5 + 0.4 * 0.575)).abs() < 1e-9, "{t}");
    assert_eq!((f.mttd_ms, f.detected), (None, 0));
}

#[test]
fn trends_mttd_and_the_three_term_score() {
    // Availability under the fault falls 1.0, 0.9, 0.8, 0.7, 0.6 (worsening for `>=`);
    // p99 latency falls too (improving for `<`), but is missing in the third run, so its
    // series has four values; error rate is measured in two runs only (no verdict).
    let avail = [1.0, 0.9, 0.8, 0.7, 0.6];
    let lat = [Some(0.5), Some(0.4), None, Some(0.2), Some(0.1)];
    let runs: Vec<RunRow> = (0..5)
        .map(|i| {
            let mut r = row("confirmed", i * 1000, Some(500), true);
            r.ttd_ms = [Some(100), None, Some(300), None, None][i as usize];
            r.expectations = vec![
                measured("availability >= 50%", Some(avail[i as usize])),
                measured("latency.p99 < 1s", lat[i as usize]),
            ];
            if i < 2 {
                r.expectations.push(measured("error_rate < 5%", Some(0.01)));
            }
            r
        })
        .collect();
    let refs: Vec<&RunRow> = runs.iter().collect();
    let f = figures(&refs);
    // MTTD: the two runs with a detection, (100 + 300) / 2.
    assert_eq!((f.mttd_ms, f.detected), (Some(200.0), 2));
    let by = |e: &str| f.trends.iter().find(|t| t.expect == e).unwrap();
    let a = by("availability >= 50%");
    assert_eq!(a.values, avail);
    // Five falling values: S = −10, p = 0.0275 (trend::tests), slope −0.1 per run.
    assert_eq!(a.mann_kendall.unwrap().s, -10);
    assert!((a.slope_per_run.unwrap() + 0.1).abs() < 1e-12);
    assert_eq!(a.verdict, trend::Verdict::Worsening);
    let l = by("latency.p99 < 1s");
    assert_eq!(l.values, [0.5, 0.4, 0.2, 0.1]);
    // Four values, S = −6, p = 0.089: not significant, so no trend (not "improving").
    assert_eq!(l.mann_kendall.unwrap().s, -6);
    assert_eq!(l.verdict, trend::Verdict::NoTrend);
    let e = by("error_rate < 5%");
    assert_eq!((e.values.len(), e.verdict), (2, trend::Verdict::NoTrend));
    // The trend term counts the two expectations with ≥ 4 values: one of them worsens.
    assert_eq!(f.score.trend, Some(0.5));
    assert_eq!(f.score.held, Some(1.0));
    // Every run recovered in 500ms of 1000ms.
    assert_eq!(f.score.recovery, Some(0.5));
    let t = f.score.total.unwrap();
    assert!(
        (t - 100.0 * (0.45 + 0.30 * 0.5 + 0.25 * 0.5)).abs() < 1e-9,
        "{t}"
    );
}

#[test]
fn recorded_runs_keep_their_values_under_the_fault_and_time_to_detect() {
    let dir = tempfile::tempdir().unwrap();
    let h = History::open(dir.path()).unwrap();
    let conn = &h.conn;
    conn.execute(
        "INSERT INTO runs VALUES ('a', 'e', 'e.yaml', NULL, '1', 5, 6, 'refuted', 1, 1, 40, 1000)",
        [],
    )
    .unwrap();
    conn.execute(
        "INSERT INTO runs VALUES ('b', 'other', 'o.yaml', NULL, '1', 7, 8, 'refuted', 1, 1, 40, 1000)",
        [],
    )
    .unwrap();
    for (run, expect, during, detected) in [
        ("a", "availability >= 90%", Some(0.25), Some(120)),
        ("a", "latency.p99 < 1s", None, Some(80)),
        ("b", "availability >= 90%", Some(0.5), None),
    ] {
        conn.execute(
            "INSERT INTO expectations (run_id, monitor, expect, during, detected_ms)
             VALUES (?1, 'm', ?2, ?3, ?4)",
            params![run, expect, during, detected],
        )
        .unwrap();
    }
    let runs = h.runs(Some("e"), None, None).unwrap();
    assert_eq!(runs.len(), 1);
    // The earliest detection of the run's expectations.
    assert_eq!(runs[0].ttd_ms, Some(80));
    assert_eq!(
        runs[0].expectations,
        [
            measured("availability >= 90%", Some(0.25)),
            measured("latency.p99 < 1s", None)
        ]
    );
    let runs = h.runs(None, None, None).unwrap();
    assert_eq!(runs[1].ttd_ms, None);
    assert_eq!(runs[1].expectations.len(), 1);
}

#[test]
fn a_version_1_database_is_migrated_and_keeps_its_runs() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(FILE);
    {
        let mut h = History::open_path(&path, BUSY_TIMEOUT).unwrap();
        // Make it an old database: rebuild with only step 1.
        drop(h);
        std::fs::remove_file(&path).unwrap();
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(MIGRATIONS[0]).unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
        conn.execute(
            "INSERT INTO runs VALUES ('old', 'e', 'e.yaml', NULL, '7', 5, 6, 'refuted', 1, 1, NULL, 1000)",
            [],
        )
        .unwrap();
        h = History::open_path(&path, BUSY_TIMEOUT).unwrap();
        assert_eq!(h.version().unwrap(), MIGRATIONS.len() as i64);
        let runs = h.runs(None, None, None).unwrap();
        assert_eq!(runs.len(), 1);
        assert_eq!(runs[0].run_id, "old");
        assert_eq!(runs[0].seed, 7);
        assert!(runs[0].services.is_empty());
    }
}

#[test]
fn a_newer_schema_is_refused_not_damaged() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(FILE);
    drop(History::open_path(&path, BUSY_TIMEOUT).unwrap());
    Connection::open(&path)
        .unwrap()
        .pragma_update(None, "user_version", 99)
        .unwrap();
    let e = History::open_path(&path, BUSY_TIMEOUT).err().unwrap();
    assert!(matches!(e, HistoryError::TooNew { found: 99, .. }), "{e}");
}

#[test]
fn a_locked_database_is_an_error_after_the_busy_timeout_then_works() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(FILE);
    drop(History::open_path(&path, BUSY_TIMEOUT).unwrap());
    let holder = Connection::open(&path).unwrap();
    holder.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let e = History::open_path(&path, Duration::from_millis(50)).err();
    assert!(
        matches!(e, Some(HistoryError::Sqlite { .. })),
        "a held lock must fail the open after the timeout"
    );
    holder.execute_batch("COMMIT").unwrap();
    assert!(History::open_path(&path, Duration::from_millis(50)).is_ok());
}

#[test]
fn garbage_is_reported_and_rebuild_moves_it_aside() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(FILE), vec![0xA5u8; 8192]).unwrap();
    assert!(History::open(dir.path()).is_err());
    let r = rebuild(dir.path()).unwrap();
    assert!(r.moved_aside.as_ref().is_some_and(|p| p.exists()));
    assert_eq!(r.imported, 0);
    assert!(History::open(dir.path()).is_ok());
}
