//! `disk-fill`: a ballast file that fills a directory's filesystem to a target percentage.
//!
//! The root filesystem is never filled (a full `/` takes the host down with the experiment),
//! and neither is any filesystem where the fill would leave less than the safety margin free.

use std::io::{self, Write as _};
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use async_trait::async_trait;
use rustix::fs::{FallocateFlags, StatVfs};

use crate::fault::{BoxError, Fault, FaultError, Guard, InjectCx, Revert, RevertSpec};

/// Every ballast file's name starts with this, and only such files are ever deleted.
pub(crate) const BALLAST_PREFIX: &str = ".chaosforge-ballast-";

/// `disk-fill`: fill the filesystem holding `dir` until `percent` % of it is used (as `df`
/// counts: used / (used + available to unprivileged users)).
#[derive(Debug, Clone)]
pub struct DiskFill {
    /// Target name.
    pub target: String,
    /// A directory on the filesystem to fill; the ballast file is created in it.
    pub dir: PathBuf,
    /// Fill the filesystem to this share used, 1..=100.
    pub percent: u32,
    /// Refuse when less than this many bytes would remain available.
    pub margin_bytes: u64,
}

struct DeleteBallast(PathBuf);

static NEXT: AtomicU32 = AtomicU32::new(0);

// === impl DiskFill ===

#[async_trait]
impl Fault for DiskFill {
    fn kind(&self) -> &'static str {
        "disk-fill"
    }

    fn target(&self) -> &str {
        &self.target
    }

    async fn inject(&self, cx: &InjectCx<'_>) -> Result<Guard, FaultError> {
        let refuse = |message: String| FaultError::Target {
            target: self.target.clone(),
            message,
        };
        let dir = std::fs::canonicalize(&self.dir)
            .map_err(|e| refuse(format!("directory {}: {e}", self.dir.display())))?;
        check_not_root(&dir).map_err(refuse)?;
        let st = rustix::fs::statvfs(&dir)
            .map_err(|e| refuse(format!("statvfs {}: {e}", dir.display())))?;
        let bytes = fill_size(&st, self.percent, self.margin_bytes)
            .map_err(|e| refuse(format!("{}: {e}", dir.display())))?;
        let path = ballast_path(&dir, cx.name);

        cx.announce(
            &self.target,
            self.kind(),
            RevertSpec::Ballast { path: path.clone() },
        )?;
        let full_is_fine = self.percent >= 100;
        let written = {
            let path = path.clone();
            tokio::task::spawn_blocking(move || write_ballast(&path, bytes, full_is_fine)).await
        };
        match written {
            Ok(Ok(())) => Ok(cx.guard(Box::new(DeleteBallast(path)))),
            failed => {
                let why = match failed {
                    Ok(Err(e)) => e.to_string(),
                    Err(e) => e.to_string(),
                    Ok(Ok(())) => String::new(),
                };
                let undone = remove_ballast(&path).is_ok();
                Err(FaultError::Apply {
                    message: format!("writing ballast {} ({bytes} bytes): {why}", path.display()),
                    undone,
                })
            }
        }
    }
}

#[async_trait]
impl Revert for DeleteBallast {
    async fn revert(self: Box<Self>) -> Result<String, BoxError> {
        revert(&self.0)
    }
}

/// Deletes a ballast file; idempotent. Refuses any file not named like a ballast.
pub(crate) fn revert(path: &Path) -> Result<String, BoxError> {
    let is_ballast = path
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with(BALLAST_PREFIX));
    if !is_ballast {
        return Err(format!(
            "{} is not a chaosforge ballast file (`{BALLAST_PREFIX}…`); not deleted",
            path.display()
        )
        .into());
    }
    match remove_ballast(path)? {
        Some(len) => Ok(format!(
            "ballast {} deleted ({len} bytes freed)",
            path.display()
        )),
        None => Ok(format!("ballast {} already gone", path.display())),
    }
}

/// Removes the file; `None` when it was not there.
fn remove_ballast(path: &Path) -> io::Result<Option<u64>> {
    let len = match std::fs::symlink_metadata(path) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    match std::fs::remove_file(path) {
        Ok(()) => Ok(Some(len)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Refuses the root filesystem: `/` itself and every directory on the same device.
fn check_not_root(dir: &Path) -> Result<(), String> {
    let here = std::fs::metadata(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    if !here.is_dir() {
        return Err(format!("{} is not a directory", dir.display()));
    }
    let root = std::fs::metadata("/").map_err(|e| format!("/: {e}"))?;
    if dir == Path::new("/") || here.dev() == root.dev() {
        return Err(format!(
            "{} is on the root filesystem; refusing to fill it (choose a directory on another filesystem)",
            dir.display()
        ));
    }
    Ok(())
}

/// How many bytes to write so that `percent` % is used, or why not.
fn fill_size(st: &StatVfs, percent: u32, margin: u64) -> Result<u64, String> {
    if !(1..=100).contains(&percent) {
        return Err(format!("fill percentage {percent} is not within 1..=100"));
    }
    let block = st.f_frsize.max(1);
    let used = st.f_blocks.saturating_sub(st.f_bfree).saturating_mul(block);
    let avail = st.f_bavail.saturating_mul(block);
    let size = used + avail;
    if size == 0 {
        return Err("the filesystem has no space at all".into());
    }
    let target = (u128::from(size) * u128::from(percent)).div_ceil(100);
    let target = u64::try_from(target).unwrap_or(u64::MAX).min(size);
    if target <= used {
        return Err(format!(
            "already {}% used ({used} of {size} bytes), at or above the target {percent}%",
            used * 100 / size
        ));
    }
    let bytes = target - used;
    let left = avail - bytes;
    if left < margin {
        return Err(format!(
            "filling to {percent}% would leave {left} bytes free, less than the safety margin of {margin} bytes"
        ));
    }
    Ok(bytes)
}

fn ballast_path(dir: &Path, name: &str) -> PathBuf {
    let label: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .take(64)
        .collect();
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = dir.join(format!(
            "{BALLAST_PREFIX}{}-{label}-{n}",
            std::process::id()
        ));
        if !path.exists() {
            return path;
        }
    }
}

/// Writes `bytes` of ballast: `fallocate` where the filesystem supports it, zeros otherwise.
/// With `full_is_fine`, running out of space part way is the goal, not an error.
fn write_ballast(path: &Path, bytes: u64, full_is_fine: bool) -> io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    match rustix::fs::fallocate(&file, FallocateFlags::empty(), 0, bytes) {
        Ok(()) => return Ok(()),
        // Not supported here, or slightly too big for a full fill (metadata blocks): write.
        Err(rustix::io::Errno::OPNOTSUPP | rustix::io::Errno::NOSPC) => {}
        Err(e) => return Err(e.into()),
    }
    let chunk = vec![0u8; 1 << 20];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        match file.write_all(&chunk[..n]) {
            Ok(()) => left -= n as u64,
            Err(e)
                if full_is_fine
                    && e.raw_os_error() == Some(rustix::io::Errno::NOSPC.raw_os_error()) =>
            {
                break;
            }
            Err(e) => return Err(e),
        }
    }
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn statvfs(blocks: u64, free: u64, avail: u64) -> StatVfs {
        let mut st = rustix::fs::statvfs("/").unwrap();
        st.f_frsize = 4096;
        st.f_blocks = blocks;
        st.f_bfree = free;
        st.f_bavail = avail;
        st
    }

    #[test]
    fn fill_sizes_follow_df() {
        // 1000 blocks, 400 used, 600 available: 100 % means writing every available block.
        let st = statvfs(1000, 600, 600);
        assert_eq!(fill_size(&st, 100, 0), Ok(600 * 4096));
        assert_eq!(fill_size(&st, 50, 0), Ok(100 * 4096));
        let err = fill_size(&st, 40, 0).unwrap_err();
        assert!(err.contains("already 40% used"), "{err}");
        // Reserved blocks (free but not available) count neither as used nor as size.
        let st = statvfs(1000, 650, 600);
        assert_eq!(fill_size(&st, 100, 0), Ok(600 * 4096));
    }

    #[test]
    fn the_margin_is_kept() {
        let st = statvfs(1000, 600, 600);
        assert_eq!(fill_size(&st, 90, 100 * 4096), Ok(500 * 4096));
        let err = fill_size(&st, 100, 1).unwrap_err();
        assert!(err.contains("less than the safety margin"), "{err}");
        assert!(fill_size(&st, 0, 0).is_err());
        assert!(fill_size(&st, 101, 0).is_err());
    }

    #[test]
    fn the_root_filesystem_is_refused() {
        let err = check_not_root(Path::new("/")).unwrap_err();
        assert!(err.contains("root filesystem"), "{err}");
        let err = check_not_root(Path::new("/etc")).unwrap_err();
        assert!(err.contains("root filesystem"), "{err}");
    }

    #[test]
    fn only_ballast_files_are_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let other = dir.path().join("precious");
        std::fs::write(&other, "keep").unwrap();
        assert!(revert(&other).is_err());
        assert!(other.exists());
        let ballast = ballast_path(dir.path(), "fill /x");
        assert!(
            ballast
                .file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with(BALLAST_PREFIX)
        );
        write_ballast(&ballast, 10_000, false).unwrap();
        assert_eq!(std::fs::metadata(&ballast).unwrap().len(), 10_000);
        assert!(revert(&ballast).unwrap().contains("10000 bytes freed"));
        assert!(revert(&ballast).unwrap().contains("already gone"));
    }
}
