//! `disk-fill`: a writer on the filled filesystem gets ENOSPC until the revert; `/` and fills
//! that would break the safety margin are refused before anything is journaled.

use std::io::Write;
use std::path::Path;

use chaosforge::fault::stress::DiskFill;
use chaosforge::fault::{Fault, FaultError};
use chaosforge::testkit::assert_fault_compliance;

use crate::{Run, Tmpfs};

/// Tries to write 1 MiB into a new file in `dir`; the error, if any.
fn write_mib(dir: &Path) -> std::io::Result<()> {
    let path = dir.join("writer");
    let r = std::fs::File::create(&path).and_then(|mut f| {
        f.write_all(&vec![1u8; 1 << 20])?;
        f.sync_all()
    });
    let _ = std::fs::remove_file(&path);
    r
}

fn fill(dir: &Path, percent: u32, margin_bytes: u64) -> DiskFill {
    DiskFill {
        target: "host".into(),
        dir: dir.to_path_buf(),
        percent,
        margin_bytes,
    }
}

#[tokio::test]
async fn a_full_tmpfs_refuses_writes_until_reverted() {
    let fs = Tmpfs::mount("64m");
    let run = Run::new();
    write_mib(fs.path()).expect("the empty tmpfs takes a write");
    let guard = fill(fs.path(), 100, 0)
        .inject(&run.cx(0, "fill"))
        .await
        .unwrap();
    assert_eq!(fs.ballast().len(), 1);
    let err = write_mib(fs.path()).expect_err("the full tmpfs must refuse a write");
    eprintln!("disk-fill 100 % on a 64 MiB tmpfs: writer got `{err}`");
    assert_eq!(err.raw_os_error(), Some(28), "ENOSPC expected, got {err}");

    guard.revert().await.unwrap();
    assert!(fs.ballast().is_empty(), "revert must delete the ballast");
    write_mib(fs.path()).expect("space is back after revert");
}

#[tokio::test]
async fn half_fill_uses_half_the_filesystem() {
    let fs = Tmpfs::mount("64m");
    let run = Run::new();
    let guard = fill(fs.path(), 50, 0)
        .inject(&run.cx(0, "half"))
        .await
        .unwrap();
    let st = rustix::fs::statvfs(fs.path()).unwrap();
    let used = (st.f_blocks - st.f_bfree) * 100 / st.f_blocks;
    assert!((49..=51).contains(&used), "{used} % used");
    write_mib(fs.path()).expect("half full still takes writes");
    guard.revert().await.unwrap();
}

#[tokio::test]
async fn the_root_filesystem_is_refused() {
    let run = Run::new();
    for dir in ["/", "/etc"] {
        let err = fill(Path::new(dir), 10, 0)
            .inject(&run.cx(0, "root"))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, FaultError::Target { message, .. } if message.contains("root filesystem")),
            "{dir}: {err}"
        );
    }
    // Refused before the journal: nothing to recover.
    assert!(
        chaosforge::journal::read(run.journal.path())
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn a_fill_that_breaks_the_margin_is_refused() {
    let fs = Tmpfs::mount("64m");
    let run = Run::new();
    let err = fill(fs.path(), 100, 1 << 20)
        .inject(&run.cx(0, "margin"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("safety margin"), "{err}");
    assert!(fs.ballast().is_empty());
    // 90 % of 64 MiB leaves ~6.4 MiB, more than a 1 MiB margin.
    let guard = fill(fs.path(), 90, 1 << 20)
        .inject(&run.cx(1, "margin-ok"))
        .await
        .unwrap();
    guard.revert().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_fill_is_compliant() {
    let fs = Tmpfs::mount("32m");
    let state = tempfile::tempdir().unwrap();
    let fault = fill(fs.path(), 100, 0);
    // In effect while a ballast file is there (and, from a writer's side, ENOSPC).
    assert_fault_compliance(&fault, state.path(), || async {
        !fs.ballast().is_empty() && write_mib(fs.path()).is_err()
    })
    .await;
    assert!(fs.ballast().is_empty());
}
