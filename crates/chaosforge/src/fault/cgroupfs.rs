//! Finding a process's cgroups: the hierarchies mounted here (`/proc/self/mounts`), the cgroup
//! a process is in on each (`/proc/PID/cgroup`), and whether a cgroup holds chaosforge itself.
//!
//! Used by `freeze` and `kill: { cgroup: true }`. Both act on cgroups chaosforge did not make,
//! so everything here only reads; the faults check every path they write to against
//! [`is_cgroup_path`].

use std::io;
use std::path::{Component, Path, PathBuf};

/// Where cgroup hierarchies are mounted; nothing outside it is ever written to.
pub(crate) const CGROUP_FS: &str = "/sys/fs/cgroup";

/// A mounted cgroup hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Mount {
    /// Its mount point.
    pub root: PathBuf,
    /// The unified (v2) hierarchy.
    pub v2: bool,
    /// Its mount options (for v1: the controllers, `name=systemd`, …).
    pub options: Vec<String>,
}

/// One line of `/proc/PID/cgroup`: a hierarchy and the process's cgroup in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Membership {
    /// `true` for the `0::/path` line of the unified hierarchy.
    pub v2: bool,
    /// v1: the hierarchy's controllers (`cpu`, `cpuacct`) or its name (`name=systemd`).
    pub controllers: Vec<String>,
    /// The cgroup, relative to the hierarchy's root (`/` is the root).
    pub path: String,
}

/// The cgroup hierarchies mounted here.
pub(crate) fn mounts() -> io::Result<Vec<Mount>> {
    Ok(parse_mounts(&std::fs::read_to_string("/proc/self/mounts")?))
}

fn parse_mounts(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() < 4 || !matches!(f[2], "cgroup" | "cgroup2") {
                return None;
            }
            Some(Mount {
                root: PathBuf::from(f[1]),
                v2: f[2] == "cgroup2",
                options: f[3].split(',').map(str::to_string).collect(),
            })
        })
        .collect()
}

/// The cgroups `pid` is in, one per hierarchy.
pub(crate) fn memberships(pid: i32) -> io::Result<Vec<Membership>> {
    Ok(parse_memberships(&std::fs::read_to_string(format!(
        "/proc/{pid}/cgroup"
    ))?))
}

fn parse_memberships(text: &str) -> Vec<Membership> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.splitn(3, ':');
            let (id, controllers, path) = (f.next()?, f.next()?, f.next()?);
            Some(Membership {
                v2: id == "0" && controllers.is_empty(),
                controllers: controllers
                    .split(',')
                    .filter(|c| !c.is_empty())
                    .map(str::to_string)
                    .collect(),
                path: path.to_string(),
            })
        })
        .collect()
}

// === impl Mount ===

impl Mount {
    /// Whether `m` is this hierarchy's line in `/proc/PID/cgroup`.
    fn holds(&self, m: &Membership) -> bool {
        if self.v2 || m.v2 {
            return self.v2 && m.v2;
        }
        !m.controllers.is_empty() && m.controllers.iter().all(|c| self.options.contains(c))
    }

    /// Whether this is a v1 hierarchy with `controller` (`freezer`, `pids`, `name=systemd`).
    pub fn has(&self, controller: &str) -> bool {
        !self.v2 && self.options.iter().any(|o| o == controller)
    }

    /// The directory of `pid`'s cgroup in this hierarchy. A cgroup outside this namespace's
    /// view (`/../…`) is an error: it cannot be reached through this mount.
    pub fn cgroup_of(&self, pid: i32) -> Result<PathBuf, String> {
        let ms = memberships(pid).map_err(|e| format!("cannot read /proc/{pid}/cgroup: {e}"))?;
        let m = ms.iter().find(|m| self.holds(m)).ok_or_else(|| {
            format!(
                "process {pid} is in no cgroup of the hierarchy at {}",
                self.root.display()
            )
        })?;
        self.dir_of(&m.path).ok_or_else(|| {
            format!(
                "process {pid}'s cgroup `{}` is outside this cgroup namespace",
                m.path
            )
        })
    }

    fn dir_of(&self, rel: &str) -> Option<PathBuf> {
        let rel = Path::new(rel);
        if !rel
            .components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)))
        {
            return None;
        }
        Some(self.root.join(rel.strip_prefix("/").unwrap_or(rel)))
    }
}

/// The hierarchy whose root holds `dir`, among `mounts`.
pub(crate) fn mount_of<'m>(mounts: &'m [Mount], dir: &Path) -> Option<&'m Mount> {
    mounts
        .iter()
        .filter(|m| dir.starts_with(&m.root))
        .max_by_key(|m| m.root.components().count())
}

/// Whether `path` is a plain absolute path under `/sys/fs/cgroup` (no `..`), so that a damaged
/// journal cannot point a revert anywhere else.
pub(crate) fn is_cgroup_path(path: &Path) -> bool {
    path.starts_with(CGROUP_FS)
        && path
            .components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)))
}

/// The processes directly in a cgroup (an empty list once it is gone).
pub(crate) fn procs(dir: &Path) -> io::Result<Vec<i32>> {
    match std::fs::read_to_string(dir.join("cgroup.procs")) {
        Ok(text) => Ok(text.lines().filter_map(|l| l.trim().parse().ok()).collect()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// The processes in a cgroup and every cgroup below it.
pub(crate) fn procs_below(dir: &Path) -> io::Result<Vec<i32>> {
    let mut out = procs(dir)?;
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for e in entries.filter_map(Result::ok) {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            out.extend(procs_below(&e.path())?);
        }
    }
    Ok(out)
}

/// Moves process `pid` into the cgroup at `dir`. A process that exited meanwhile is not an
/// error (`Ok(false)`).
pub(crate) fn move_into(dir: &Path, pid: i32) -> io::Result<bool> {
    match std::fs::write(dir.join("cgroup.procs"), pid.to_string()) {
        Ok(()) => Ok(true),
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::SRCH.raw_os_error()) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Refuses `dir` when it is a hierarchy's root, or when chaosforge or one of its parents is in
/// it or below it: acting on it would hit the runner (or the shell that started it), and
/// nobody would be left to revert or report.
pub(crate) fn refuse_ours(mount: &Mount, dir: &Path, what: &str) -> Result<(), String> {
    if dir == mount.root {
        return Err(format!(
            "{what} is the root cgroup {} (every process on the machine); refusing",
            dir.display()
        ));
    }
    let ours: Vec<(i32, PathBuf)> = super::procfs::self_and_ancestors()
        .into_iter()
        .filter_map(|p| mount.cgroup_of(p).ok().map(|d| (p, d)))
        .collect();
    check_not_ours(dir, &ours, what)
}

fn check_not_ours(dir: &Path, ours: &[(i32, PathBuf)], what: &str) -> Result<(), String> {
    match ours.iter().find(|(_, d)| d.starts_with(dir)) {
        Some((pid, d)) => Err(format!(
            "{what} {} holds chaosforge itself or one of its parents (pid {pid} in {}); refusing",
            dir.display(),
            d.display()
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
tmpfs /sys/fs/cgroup tmpfs rw,relatime,mode=755 0 0
cgroup /sys/fs/cgroup/cpu cgroup rw,relatime,cpu 0 0
cgroup /sys/fs/cgroup/cpuacct cgroup rw,relatime,cpuacct 0 0
cgroup /sys/fs/cgroup/freezer cgroup rw,relatime,freezer 0 0
cgroup /sys/fs/cgroup/pids cgroup rw,relatime,pids 0 0
cgroup /sys/fs/cgroup/systemd cgroup rw,relatime,xattr,name=systemd 0 0
cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0
proc /proc proc rw 0 0
";

    const MEMBER: &str = "\
9:name=systemd:/user.slice/session-1.scope
8:pids:/
6:freezer:/job
1:cpu:/a/b
0::/user.slice/session-1.scope
";

    #[test]
    fn each_hierarchy_finds_its_line() {
        let mounts = parse_mounts(HYBRID);
        assert_eq!(mounts.len(), 6, "tmpfs and proc are no hierarchies");
        let ms = parse_memberships(MEMBER);
        let line = |root: &str| {
            let m = mounts.iter().find(|m| m.root == Path::new(root)).unwrap();
            ms.iter().find(|x| m.holds(x)).map(|x| x.path.clone())
        };
        assert_eq!(
            line("/sys/fs/cgroup/unified").unwrap(),
            "/user.slice/session-1.scope"
        );
        assert_eq!(
            line("/sys/fs/cgroup/systemd").unwrap(),
            "/user.slice/session-1.scope"
        );
        assert_eq!(line("/sys/fs/cgroup/freezer").unwrap(), "/job");
        assert_eq!(line("/sys/fs/cgroup/cpu").unwrap(), "/a/b");
        assert_eq!(
            line("/sys/fs/cgroup/cpuacct"),
            None,
            "`cpuacct` is not `cpu`"
        );
        assert!(mounts[2].has("freezer") && !mounts[5].has("freezer"));
    }

    #[test]
    fn a_joint_v1_hierarchy_matches_all_its_controllers() {
        let mounts = parse_mounts("cgroup /sys/fs/cgroup/cpu,cpuacct cgroup rw,cpu,cpuacct 0 0\n");
        let ms = parse_memberships("3:cpu,cpuacct:/x\n");
        assert!(mounts[0].holds(&ms[0]));
        assert_eq!(
            mounts[0].dir_of(&ms[0].path).unwrap(),
            Path::new("/sys/fs/cgroup/cpu,cpuacct/x")
        );
    }

    #[test]
    fn cgroups_outside_the_namespace_are_unreachable() {
        let m = &parse_mounts(HYBRID)[5];
        assert_eq!(m.dir_of("/"), Some(PathBuf::from("/sys/fs/cgroup/unified")));
        assert_eq!(m.dir_of("/../../x"), None);
    }

    #[test]
    fn paths_outside_the_cgroup_filesystem_are_never_written() {
        assert!(is_cgroup_path(Path::new("/sys/fs/cgroup/freezer/x")));
        for bad in ["/sys/fs/cgroup/../../etc", "/tmp/x", "sys/fs/cgroup/x"] {
            assert!(!is_cgroup_path(Path::new(bad)), "{bad}");
        }
    }

    #[test]
    fn a_cgroup_holding_the_runner_or_its_parents_is_refused() {
        let ours = vec![
            (
                100,
                PathBuf::from("/sys/fs/cgroup/unified/user.slice/s1/run"),
            ),
            (1, PathBuf::from("/sys/fs/cgroup/unified")),
        ];
        let root = Path::new("/sys/fs/cgroup/unified");
        let err = check_not_ours(&root.join("user.slice/s1"), &ours, "cgroup").unwrap_err();
        assert!(err.contains("pid 100"), "{err}");
        assert!(check_not_ours(&root.join("user.slice/s1/run"), &ours, "cgroup").is_err());
        assert!(check_not_ours(&root.join("system.slice/db"), &ours, "cgroup").is_ok());
        assert!(
            check_not_ours(&root.join("user.slice/s1/runner"), &ours, "cgroup").is_ok(),
            "a sibling whose name merely starts the same is not ours"
        );
    }

    #[test]
    fn the_mount_of_a_directory_is_the_deepest_root_holding_it() {
        let mounts = parse_mounts(
            "cgroup2 /sys/fs/cgroup cgroup2 rw 0 0\ncgroup /sys/fs/cgroup/freezer cgroup rw,freezer 0 0\n",
        );
        assert!(
            !mount_of(&mounts, Path::new("/sys/fs/cgroup/freezer/x"))
                .unwrap()
                .v2
        );
        assert!(mount_of(&mounts, Path::new("/sys/fs/cgroup/x")).unwrap().v2);
        assert!(mount_of(&mounts, Path::new("/tmp")).is_none());
    }
}
