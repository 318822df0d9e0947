//! What `/proc` says about processes: identity (pid plus start time), parents, groups, states,
//! and finding the one process a selector names. A leaf below every process fault and the
//! cgroup helpers, so neither has to import the other for it.

use std::fs;

use super::params::ProcessSelector;

/// A process found by a selector: pid plus start time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessId {
    /// Process id.
    pub pid: i32,
    /// Start time, clock ticks since boot.
    pub start_time: u64,
}

/// `Ok` while `p` is still the process it was (same pid, same start time).
pub(crate) fn check_same(p: ProcessId) -> Result<(), String> {
    match start_time_of(p.pid) {
        Some(t) if t == p.start_time => Ok(()),
        Some(_) => Err(format!("pid {} was replaced by another process", p.pid)),
        None => Err(format!("process {} is gone", p.pid)),
    }
}

/// `/proc/PID/stat` split after the command name (which may hold spaces and parentheses).
fn stat_fields(pid: i32) -> Option<Vec<String>> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    Some(after.split_whitespace().map(str::to_string).collect())
}

/// Every pid in `/proc`.
pub(crate) fn all_pids() -> Vec<i32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect()
}

/// The process's parent.
pub(crate) fn parent_of(pid: i32) -> Option<i32> {
    stat_fields(pid)?.get(1)?.parse().ok()
}

/// The process's process group.
pub(crate) fn pgid_of(pid: i32) -> Option<i32> {
    stat_fields(pid)?.get(2)?.parse().ok()
}

/// This process and its ancestors up to (not including) init.
pub(crate) fn self_and_ancestors() -> Vec<i32> {
    let mut out = Vec::new();
    let mut next = Some(std::process::id() as i32);
    while let Some(p) = next.filter(|p| *p > 1 && out.len() < 4096) {
        out.push(p);
        next = parent_of(p);
    }
    out
}

/// The process's live descendants (children, their children, …), found through `/proc`.
pub(crate) fn descendants_of(pid: i32) -> Vec<i32> {
    let parents: Vec<(i32, i32)> = all_pids()
        .into_iter()
        .filter(|p| state_of(*p) != Some('Z'))
        .filter_map(|p| Some((p, parent_of(p)?)))
        .collect();
    let mut out = Vec::new();
    let mut frontier = vec![pid];
    while let Some(p) = frontier.pop() {
        for (child, _) in parents.iter().filter(|(_, parent)| *parent == p) {
            if !out.contains(child) && *child != pid {
                out.push(*child);
                frontier.push(*child);
            }
        }
    }
    out.sort_unstable();
    out
}

/// The process's start time in clock ticks since boot, or `None` if it does not exist.
pub fn start_time_of(pid: i32) -> Option<u64> {
    // Field 22 overall; after the command name field 3 is index 0, so 22 is index 19.
    stat_fields(pid)?.get(19)?.parse().ok()
}

/// What one read of `/proc/PID/stat` says about a process's use of the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProcStat {
    /// The state letter.
    pub state: char,
    /// User plus system CPU time of all its threads, in clock ticks.
    pub cpu_ticks: u64,
    /// Threads.
    pub threads: u64,
    /// Start time, clock ticks since boot: tells a reused pid apart.
    pub start_time: u64,
}

/// The process's state, CPU time and threads from one read of `/proc/PID/stat`.
pub(crate) fn stat_of(pid: i32) -> Option<ProcStat> {
    let f = stat_fields(pid)?;
    let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok());
    // Fields 14 (utime), 15 (stime), 20 (num_threads), 22 (starttime), counted from 1 with the
    // pid as field 1; `stat_fields` starts at field 3.
    Some(ProcStat {
        state: f.first()?.chars().next()?,
        cpu_ticks: num(11)?.saturating_add(num(12)?),
        threads: num(17)?,
        start_time: num(19)?,
    })
}

/// The process's command line, arguments joined by spaces (`/proc/PID/cmdline`); `None` when it
/// is gone or has none (a kernel thread).
pub fn cmdline_of(pid: i32) -> Option<String> {
    let raw = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let line = String::from_utf8_lossy(&raw).replace('\0', " ");
    let line = line.trim_end();
    (!line.is_empty()).then(|| line.to_string())
}

/// The process's state letter (`R`, `S`, `T` for stopped, `Z`, …).
pub fn state_of(pid: i32) -> Option<char> {
    stat_fields(pid)?.first()?.chars().next()
}

/// Finds the process a selector names, now.
pub fn resolve(sel: &ProcessSelector) -> Result<ProcessId, String> {
    let pid = match sel {
        ProcessSelector::Pid(pid) => *pid,
        ProcessSelector::Pidfile(path) => {
            let text =
                fs::read_to_string(path).map_err(|e| format!("cannot read pidfile {path}: {e}"))?;
            text.trim()
                .parse::<i32>()
                .ok()
                .filter(|p| *p > 1)
                .ok_or_else(|| {
                    format!(
                        "pidfile {path} does not hold a process id (found `{}`)",
                        text.trim()
                    )
                })?
        }
        ProcessSelector::Command(pattern) => {
            let re = regex::Regex::new(pattern).map_err(|e| format!("invalid regex: {e}"))?;
            let me = std::process::id() as i32;
            let mut found = Vec::new();
            let entries = fs::read_dir("/proc").map_err(|e| format!("cannot list /proc: {e}"))?;
            for e in entries.filter_map(Result::ok) {
                let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
                    continue;
                };
                if pid == me {
                    continue;
                }
                let Ok(raw) = fs::read(format!("/proc/{pid}/cmdline")) else {
                    continue;
                };
                let cmdline = String::from_utf8_lossy(&raw).replace('\0', " ");
                if !cmdline.trim().is_empty() && re.is_match(cmdline.trim_end()) {
                    found.push((pid, cmdline.trim_end().to_string()));
                }
            }
            match found.as_slice() {
                [(pid, _)] => *pid,
                [] => return Err(format!("no process's command line matches `{pattern}`")),
                many => {
                    let list: Vec<String> = many
                        .iter()
                        .take(5)
                        .map(|(p, c)| format!("{p} ({c})"))
                        .collect();
                    return Err(format!(
                        "{} processes match `{pattern}`, it must be exactly one: {}",
                        many.len(),
                        list.join(", ")
                    ));
                }
            }
        }
    };
    let start_time = start_time_of(pid).ok_or_else(|| format!("process {pid} does not exist"))?;
    // Stopping the runner (or a process it runs under) would freeze the very thing that must
    // revert the fault, and `recover` would keep seeing a live run.
    if self_and_ancestors().contains(&pid) {
        return Err(format!(
            "pid {pid} is chaosforge itself or one of its parents; refusing to act on it"
        ));
    }
    Ok(ProcessId { pid, start_time })
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn other_processes_are_found_but_never_chaosforge_itself() {
        let me = std::process::id() as i32;
        assert!(start_time_of(me).is_some());
        assert!(matches!(state_of(me), Some('R' | 'S')));
        let err = resolve(&ProcessSelector::Pid(me)).unwrap_err();
        assert!(err.contains("chaosforge itself"), "{err}");
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        assert_eq!(resolve(&ProcessSelector::Pid(pid)).map(|p| p.pid), Ok(pid));
        let _ = child.kill();
        let _ = child.wait();
        assert!(resolve(&ProcessSelector::Pid(i32::MAX)).is_err());
    }
}
