//! iptables chains that feed packets to chaosforge's NFQUEUE handler.
//!
//! nftables has no `queue` statement on kernels without `nft_queue`, while iptables' `NFQUEUE`
//! target (through the nft compat layer) is there, so the queue rules are iptables rules. Each
//! fault owns its chains in the `mangle` table (`CF-<unique>-O` hooked into `OUTPUT`,
//! `CF-<unique>-I` into `INPUT`): applying is one `iptables-restore --noflush` transaction,
//! undoing deletes the jump rules and the chains, and a chain left by a crash is found by its
//! prefix. Every rule carries `--queue-bypass`: with no handler bound (the runner died) the
//! kernel lets packets through instead of dropping them.

use std::fmt::Write as _;
use std::net::IpAddr;

use super::exec::{ExecError, Executor};

pub use crate::vocab::{Family, Hook, QueueChain};

/// The prefix of every chain chaosforge creates.
pub const CHAIN_PREFIX: &str = "CF-";

/// What packets go to the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueRules {
    /// The chains (one per hook).
    pub chains: Vec<QueueChain>,
    /// The interface; `None`: every interface but loopback.
    pub interface: Option<String>,
    /// Peers; empty: everyone.
    pub peers: Vec<IpAddr>,
    /// Ports at either end (TCP and UDP); empty: every packet.
    pub ports: Vec<u16>,
    /// The queue number.
    pub queue: u16,
}

// === impl Hook ===

impl Hook {
    fn name(self) -> &'static str {
        match self {
            Hook::Output => "OUTPUT",
            Hook::Input => "INPUT",
        }
    }
}

// === impl Family ===

impl Family {
    /// The program.
    pub fn program(self) -> &'static str {
        match self {
            Family::V4 => "iptables",
            Family::V6 => "ip6tables",
        }
    }

    fn restore(self) -> &'static str {
        match self {
            Family::V4 => "iptables-restore",
            Family::V6 => "ip6tables-restore",
        }
    }
}

/// A chain name from anything unique per fault: [`CHAIN_PREFIX`], `unique` reduced to
/// `a-z0-9`, and `-O`/`-I`; at most 28 characters, iptables' limit.
pub fn chain_name(unique: &str, hook: Hook) -> String {
    let tail: String = unique
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect();
    let keep = 28 - CHAIN_PREFIX.len() - 2;
    let tail = &tail[tail.len().saturating_sub(keep)..];
    let end = match hook {
        Hook::Output => "O",
        Hook::Input => "I",
    };
    format!("{CHAIN_PREFIX}{tail}-{end}")
}

/// `true` for a name [`chain_name`] could have made; anything else is never touched.
pub fn is_chaosforge_chain(name: &str) -> bool {
    name.len() <= 28
        && name.strip_prefix(CHAIN_PREFIX).is_some_and(|rest| {
            rest.strip_suffix("-O")
                .or_else(|| rest.strip_suffix("-I"))
                .is_some_and(|t| {
                    !t.is_empty()
                        && t.chars()
                            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
                })
        })
}

/// The families a fault's rules need: the peers' families, or both without peers (`v6`:
/// whether ip6tables exists here).
pub fn families(peers: &[IpAddr], v6: bool) -> Vec<Family> {
    if peers.is_empty() {
        if v6 {
            vec![Family::V4, Family::V6]
        } else {
            vec![Family::V4]
        }
    } else {
        let mut out = Vec::new();
        if peers.iter().any(IpAddr::is_ipv4) {
            out.push(Family::V4);
        }
        if peers.iter().any(IpAddr::is_ipv6) {
            out.push(Family::V6);
        }
        out
    }
}

/// The `iptables-restore --noflush` input that creates the chains of `rules` for `family`.
/// Pure.
pub fn restore_script(rules: &QueueRules, family: Family) -> String {
    let peers: Vec<String> = rules
        .peers
        .iter()
        .filter(|p| p.is_ipv4() == (family == Family::V4))
        .map(IpAddr::to_string)
        .collect();
    let ports: Vec<String> = rules.ports.iter().map(u16::to_string).collect();
    let mut out = String::from("*mangle\n");
    for c in &rules.chains {
        let _ = writeln!(out, ":{} - [0:0]", c.chain);
    }
    for c in &rules.chains {
        let (addr, dev) = match c.hook {
            Hook::Output => ("-d", "-o"),
            Hook::Input => ("-s", "-i"),
        };
        let who = if peers.is_empty() {
            String::new()
        } else {
            format!(" {addr} {}", peers.join(","))
        };
        let target = format!(" -j NFQUEUE --queue-num {} --queue-bypass", rules.queue);
        if ports.is_empty() {
            let _ = writeln!(out, "-A {}{who}{target}", c.chain);
        } else {
            for proto in ["tcp", "udp"] {
                let _ = writeln!(
                    out,
                    "-A {}{who} -p {proto} -m multiport --ports {}{target}",
                    c.chain,
                    ports.join(",")
                );
            }
        }
        let on = match &rules.interface {
            Some(i) => format!("{dev} {i}"),
            None => format!("! {dev} lo"),
        };
        let _ = writeln!(out, "-I {} 1 {on} -j {}", c.hook.name(), c.chain);
    }
    out.push_str("COMMIT\n");
    out
}

/// Creates the chains of `rules` for each family, all or nothing per family; on a failure the
/// families already done are removed again.
pub async fn apply(
    exec: &dyn Executor,
    netns: Option<&str>,
    rules: &QueueRules,
    families: &[Family],
) -> Result<(), ExecError> {
    for c in &rules.chains {
        check_chain(&c.chain)?;
    }
    for (i, f) in families.iter().enumerate() {
        let script = restore_script(rules, *f);
        if let Err(e) = exec
            .run(netns, f.restore(), &["--noflush"], Some(&script))
            .await
        {
            for done in &families[..i] {
                let _ = remove(exec, netns, &rules.chains, &[*done]).await;
            }
            return Err(e);
        }
    }
    Ok(())
}

/// Deletes the jump rules and the chains; idempotent (chains, rules or the whole namespace
/// already gone are success). Returns how many chains were deleted.
pub async fn remove(
    exec: &dyn Executor,
    netns: Option<&str>,
    chains: &[QueueChain],
    families: &[Family],
) -> Result<usize, ExecError> {
    let mut deleted = 0;
    for c in chains {
        check_chain(&c.chain)?;
    }
    for f in families {
        let prog = f.program();
        for c in chains {
            let listing = match exec
                .run(netns, prog, &["-t", "mangle", "-S", c.hook.name()], None)
                .await
            {
                Ok(out) => out.stdout,
                Err(e) if gone(&e) => return Ok(deleted),
                Err(e) => return Err(e),
            };
            // Rules print as `-A OUTPUT -o veth0 -j CF-…-O`; deleting takes the same spec.
            for line in listing.lines() {
                let words: Vec<&str> = line.split_whitespace().collect();
                if words.first() != Some(&"-A") || !words.ends_with(&["-j", c.chain.as_str()]) {
                    continue;
                }
                let mut args = vec!["-t", "mangle", "-D"];
                args.extend_from_slice(&words[1..]);
                match exec.run(netns, prog, &args, None).await {
                    Ok(_) => {}
                    Err(e) if gone(&e) => {}
                    Err(e) => return Err(e),
                }
            }
            let mut existed = true;
            for op in ["-F", "-X"] {
                match exec
                    .run(netns, prog, &["-t", "mangle", op, &c.chain], None)
                    .await
                {
                    Ok(_) => {}
                    Err(e) if gone(&e) => existed = false,
                    Err(e) => return Err(e),
                }
            }
            if existed {
                deleted += 1;
            }
        }
    }
    Ok(deleted)
}

/// Chaosforge chains and NFQUEUE rules present in `netns` (for residue checks).
pub async fn residue(exec: &dyn Executor, netns: Option<&str>) -> Result<Vec<String>, ExecError> {
    let mut found = Vec::new();
    for f in [Family::V4, Family::V6] {
        let out = match exec
            .run(netns, f.program(), &["-t", "mangle", "-S"], None)
            .await
        {
            Ok(o) => o.stdout,
            Err(ExecError::Spawn { .. }) if f == Family::V6 => continue,
            Err(e) => return Err(e),
        };
        for line in out.lines() {
            if line.contains(CHAIN_PREFIX) || line.contains("NFQUEUE") {
                found.push(format!("{}: {line}", f.program()));
            }
        }
    }
    Ok(found)
}

/// The rule, chain or namespace is not there.
fn gone(e: &ExecError) -> bool {
    match e {
        ExecError::Failed { stderr, .. } => {
            stderr.contains("No chain/target/match by that name")
                || stderr.contains("does a matching rule exist")
                || stderr.contains("Cannot open network namespace")
                || stderr.contains("No such file or directory")
        }
        _ => false,
    }
}

fn check_chain(chain: &str) -> Result<(), ExecError> {
    if is_chaosforge_chain(chain) {
        Ok(())
    } else {
        Err(ExecError::Refused {
            value: chain.to_string(),
            reason: "not a chaosforge iptables chain".into(),
        })
    }
}

#[cfg(test)]
mod tests;
