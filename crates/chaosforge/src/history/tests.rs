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
        services: vec![],
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
    let t = f.score.total.unwrap();
    assert!((t - 100.0 * (0.6 * 0.5 + 0.4 * 0.575)).abs() < 1e-9, "{t}");
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
