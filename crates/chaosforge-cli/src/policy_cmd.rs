//! The policies checked when a run starts — time window, approval, forbidden targets — and
//! `chaosforge approve`, which records an approval bound to the experiment file's content.
//!
//! An approval file is `<state>/approvals/<sha256 of the file>.json`: the approver, the file's
//! hash and an HMAC-SHA256 over both with a key kept in `<state>/approval.key` (created 0600 on
//! first use). A changed file has another hash and needs a new approval; a hand-written approval
//! lacks the MAC. It keeps honest people honest on one machine; it is not a signature a remote
//! party could verify.

use std::path::{Path, PathBuf};

use anyhow::Context;
use aws_lc_rs::{digest, hmac, rand::SecureRandom};
use chaosforge::plan::{Plan, PolicyVerdict, RunContext, check_run};
use serde_json::json;

/// Options of `run` and `plan` that policies read.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct PolicyArgs {
    /// Approve this run as NAME (one of the experiment's `policies.approval.approvers`)
    #[arg(long, value_name = "NAME")]
    pub approve: Option<String>,
    /// Fault targets whose labels `policies.compliance.forbid` names (journaled)
    #[arg(long)]
    pub allow_forbidden: bool,
}

/// The run's context: now (or `CHAOSFORGE_NOW`, an RFC 3339 time, to rehearse a window), the
/// approver, the override.
pub(crate) fn context(
    file: &Path,
    args: &PolicyArgs,
    state: Option<&Path>,
) -> anyhow::Result<RunContext> {
    let now = match std::env::var("CHAOSFORGE_NOW") {
        Ok(t) => t
            .parse::<jiff::Timestamp>()
            .with_context(|| format!("CHAOSFORGE_NOW=`{t}` is not an RFC 3339 time"))?,
        Err(_) => jiff::Timestamp::now(),
    };
    let approved_by = match (&args.approve, state) {
        (Some(name), _) => Some(name.clone()),
        (None, Some(state)) => approval_of(file, state)?,
        (None, None) => None,
    };
    Ok(RunContext {
        now,
        approved_by,
        allow_forbidden: args.allow_forbidden,
    })
}

/// Checks the run's policies; prints refusals. `Some(verdicts)` when the run may start, with
/// `plan.deadline` set from the time window.
pub(crate) fn admit(plan: &mut Plan, rc: &RunContext) -> Option<Vec<PolicyVerdict>> {
    let verdicts = check_run(plan, rc);
    let refused: Vec<&PolicyVerdict> = verdicts.iter().filter(|v| !v.ok).collect();
    if !refused.is_empty() {
        for v in &refused {
            eprintln!("error: policy {}: {}", v.rule, v.detail);
        }
        eprintln!("error: refused by policy; nothing was injected");
        return None;
    }
    // The engine compares the deadline with the real clock; a rehearsed one (`CHAOSFORGE_NOW`)
    // keeps the time left it was admitted with, so a rehearsal does not hit the real hour.
    let offset = jiff::Timestamp::now().duration_since(rc.now);
    plan.deadline = plan
        .policy
        .window
        .iter()
        .chain(plan.policy.org_window.iter())
        .filter_map(|w| w.end_of_range(rc.now))
        .filter_map(|end| end.checked_add(offset).ok())
        .min();
    plan.verdicts = verdicts
        .iter()
        .map(|v| format!("{}: {}", v.rule, v.detail))
        .collect();
    Some(verdicts)
}

/// Prints each verdict for `plan`.
pub(crate) fn print(verdicts: &[PolicyVerdict]) {
    for v in verdicts {
        println!(
            "policy     {}: {} — {}",
            v.rule,
            if v.ok { "ok" } else { "REFUSED" },
            v.detail
        );
    }
}

/// `chaosforge approve FILE --as NAME`.
pub(crate) fn approve(file: &Path, name: &str, state: &Path) -> anyhow::Result<u8> {
    let text = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let hash = hex(digest::digest(&digest::SHA256, &text).as_ref());
    let key = key(state, true)?.context("no approval key")?;
    let mac = hex(hmac::sign(&key, format!("{name}\n{hash}").as_bytes()).as_ref());
    let dir = state.join("approvals");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(format!("{hash}.json"));
    let record = json!({
        "approver": name,
        "file": file.display().to_string(),
        "sha256": hash,
        "at": jiff::Timestamp::now().to_string(),
        "mac": mac,
    });
    std::fs::write(&path, format!("{record:#}\n"))
        .with_context(|| format!("writing {}", path.display()))?;
    println!(
        "approved {} as {name} (sha256 {}…); a changed file needs a new approval",
        file.display(),
        &hash[..12]
    );
    Ok(0)
}

/// The approver of `file`'s current content, from a valid approval file.
fn approval_of(file: &Path, state: &Path) -> anyhow::Result<Option<String>> {
    let text = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let hash = hex(digest::digest(&digest::SHA256, &text).as_ref());
    let path = state.join("approvals").join(format!("{hash}.json"));
    let Ok(record) = std::fs::read_to_string(&path) else {
        return Ok(None);
    };
    let Some(key) = key(state, false)? else {
        return Ok(None);
    };
    let v: serde_json::Value = serde_json::from_str(&record)
        .with_context(|| format!("reading approval {}", path.display()))?;
    let (Some(name), Some(mac)) = (v["approver"].as_str(), v["mac"].as_str()) else {
        anyhow::bail!("approval {} lacks its approver or MAC", path.display());
    };
    let Some(mac) = unhex(mac) else {
        anyhow::bail!("approval {} has a malformed MAC", path.display());
    };
    if v["sha256"].as_str() != Some(hash.as_str())
        || hmac::verify(&key, format!("{name}\n{hash}").as_bytes(), &mac).is_err()
    {
        anyhow::bail!(
            "approval {} does not verify: it was not made by `chaosforge approve` here",
            path.display()
        );
    }
    Ok(Some(name.to_string()))
}

/// The machine's approval key; created (0600) when `create`.
fn key(state: &Path, create: bool) -> anyhow::Result<Option<hmac::Key>> {
    let path: PathBuf = state.join("approval.key");
    match std::fs::read(&path) {
        Ok(bytes) if bytes.len() == 32 => Ok(Some(hmac::Key::new(hmac::HMAC_SHA256, &bytes))),
        Ok(_) => anyhow::bail!("{} is not a 32-byte key", path.display()),
        Err(_) if !create => Ok(None),
        Err(_) => {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            let mut bytes = [0u8; 32];
            aws_lc_rs::rand::SystemRandom::new()
                .fill(&mut bytes)
                .map_err(|_| anyhow::anyhow!("no randomness for the approval key"))?;
            std::fs::create_dir_all(state)
                .with_context(|| format!("creating {}", state.display()))?;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .with_context(|| format!("creating {}", path.display()))?;
            f.write_all(&bytes)
                .with_context(|| format!("writing {}", path.display()))?;
            Ok(Some(hmac::Key::new(hmac::HMAC_SHA256, &bytes)))
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect()
}
