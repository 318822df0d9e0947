//! What this machine's kernel and tools can do for kernel-level network faults, found by
//! trying each mechanism in a throwaway network namespace (`unshare --net`), so that probing
//! never touches the host's own configuration. Probed once per process.
//!
//! `CHAOSFORGE_WITHOUT=netem,nfqueue,nft-dup,htb,ifb` hides capabilities the machine has: to
//! see the plan another machine would get, and to test the fallbacks.

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// The mechanisms available for kernel-level network faults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetCapabilities {
    /// `tc qdisc … netem`.
    pub netem: bool,
    /// `htb` with `u32` filters.
    pub htb_u32: bool,
    /// `ifb` devices, the ingress qdisc and `mirred` redirection.
    pub ifb: bool,
    /// NFQUEUE: nfnetlink_queue bindable here and iptables' `NFQUEUE --queue-bypass` target.
    /// `Err` says what is missing.
    pub nfqueue: Result<(), String>,
    /// nftables `dup` in the `ip`/`ip6` families.
    pub nft_dup: bool,
}

/// The capabilities of this machine, probed on first use.
pub fn probe() -> &'static NetCapabilities {
    static CAPS: OnceLock<NetCapabilities> = OnceLock::new();
    CAPS.get_or_init(|| {
        let hidden = std::env::var("CHAOSFORGE_WITHOUT").unwrap_or_default();
        without(probe_uncached(), &hidden)
    })
}

/// `caps` with the capabilities named in `hidden` (comma-separated) turned off.
pub fn without(mut caps: NetCapabilities, hidden: &str) -> NetCapabilities {
    for name in hidden.split(',').map(str::trim) {
        match name {
            "netem" => caps.netem = false,
            "htb" => caps.htb_u32 = false,
            "ifb" => caps.ifb = false,
            "nfqueue" => caps.nfqueue = Err("hidden by CHAOSFORGE_WITHOUT".into()),
            "nft-dup" => caps.nft_dup = false,
            _ => {}
        }
    }
    caps
}

/// Probes every mechanism now (about ten short commands).
pub fn probe_uncached() -> NetCapabilities {
    let tc = super::tc::probe();
    NetCapabilities {
        netem: tc.netem,
        htb_u32: tc.htb_u32,
        ifb: tc.ifb,
        nfqueue: nfqueue(),
        nft_dup: in_scratch_netns(
            "nft",
            &["-f", "-"],
            Some(
                "table ip chaosforge_probe {\n\tchain o {\n\t\ttype filter hook output priority filter;\n\t\tudp dport 9 dup to 127.0.0.1 device \"lo\"\n\t}\n}\n",
            ),
        )
        .is_ok(),
    }
}

fn nfqueue() -> Result<(), String> {
    super::nfqueue::probe().map_err(|e| format!("nfnetlink_queue: {e}"))?;
    in_scratch_netns(
        "iptables",
        &[
            "-t",
            "mangle",
            "-A",
            "OUTPUT",
            "-j",
            "NFQUEUE",
            "--queue-num",
            "7",
            "--queue-bypass",
        ],
        None,
    )
    .map_err(|e| format!("iptables' NFQUEUE target: {e}"))
}

/// Runs `program args…` in a fresh network namespace that vanishes with it.
fn in_scratch_netns(program: &str, args: &[&str], stdin: Option<&str>) -> Result<(), String> {
    let mut child = Command::new("unshare")
        .arg("--net")
        .arg(program)
        .args(args)
        .env("LC_ALL", "C")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run `unshare --net {program}`: {e}"))?;
    if let (Some(mut pipe), Some(text)) = (child.stdin.take(), stdin) {
        // A failed write shows up as the program's failure below.
        let _ = pipe.write_all(text.as_bytes());
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("`unshare --net {program}`: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        let err = String::from_utf8_lossy(&out.stderr);
        Err(err.lines().next().unwrap_or("failed").trim().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hidden_capabilities_are_turned_off() {
        let all = NetCapabilities {
            netem: true,
            htb_u32: true,
            ifb: true,
            nfqueue: Ok(()),
            nft_dup: true,
        };
        let some = without(all.clone(), "netem, nfqueue");
        assert!(!some.netem && some.nfqueue.is_err());
        assert!(some.htb_u32 && some.ifb && some.nft_dup);
        assert_eq!(without(all.clone(), ""), all);
    }
}
