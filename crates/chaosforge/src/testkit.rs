//! The fault compliance harness: every fault kind must pass [`assert_fault_compliance`].
//!
//! It checks the contract of `docs/fault-contract.md` from the outside: injecting changes what
//! `observe` sees; `Injecting` is journaled before the change; `revert` restores and journals
//! `Reverted`; a second revert (from the journal record) is a no-op; dropping the guard reverts;
//! and `recover` undoes a fault whose guard was forgotten, as after a crash.

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use crate::fault::{Fault, InjectCx};
use crate::journal::{self, Event, FaultId, Journal};

/// Runs the whole contract against `fault`. `observe` returns `true` while the fault is in
/// effect, measured from outside (a client's round trip, `/proc/PID/stat`, …). `state_dir` must
/// be an empty scratch directory. Panics with a message naming the broken clause.
pub async fn assert_fault_compliance<F, Fut>(fault: &dyn Fault, state_dir: &Path, observe: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = bool>,
{
    assert!(
        eventually(&observe, false).await,
        "{}: the target already looks faulted before injection",
        fault.kind()
    );

    // 1. inject → journaled first, observable; revert → restored and journaled.
    let run = journal::new_run_id();
    let j = Journal::create(state_dir, &run).expect("journal");
    let cx = InjectCx {
        journal: &j,
        id: FaultId(0),
        name: "compliance",
    };
    let guard = fault.inject(&cx).await.expect("inject");
    let events = journal::read(j.path()).expect("read journal");
    assert!(
        matches!(events.first(), Some(Event::Injecting { .. })),
        "{}: `Injecting` must be journaled by inject (found {events:?})",
        fault.kind()
    );
    assert!(
        eventually(&observe, true).await,
        "{}: injecting changed nothing observable",
        fault.kind()
    );
    guard.revert().await.expect("revert");
    assert!(
        eventually(&observe, false).await,
        "{}: revert did not restore behaviour",
        fault.kind()
    );
    let events = journal::read(j.path()).expect("read journal");
    assert!(
        events.iter().any(|e| matches!(
            e,
            Event::Reverted {
                fault: FaultId(0),
                ..
            }
        )),
        "{}: revert must journal `Reverted`",
        fault.kind()
    );
    // 2. a second revert, from the record alone, is a no-op.
    for (_, _, _, spec) in open_or_all(&events) {
        spec.revert_detached().await.expect("second revert");
    }
    assert!(
        eventually(&observe, false).await,
        "{}: a second revert changed the target",
        fault.kind()
    );

    // 3. dropping the guard reverts.
    let cx = InjectCx {
        journal: &j,
        id: FaultId(1),
        name: "compliance-drop",
    };
    let guard = fault.inject(&cx).await.expect("inject again");
    assert!(
        eventually(&observe, true).await,
        "{}: second injection changed nothing",
        fault.kind()
    );
    drop(guard);
    assert!(
        eventually(&observe, false).await,
        "{}: dropping the guard did not revert",
        fault.kind()
    );
    // The drop's revert runs in the background; its `Reverted` line must be in before the
    // journal is released, or step 4's recover would find run 1 still open, and a revert still
    // running would undo step 4's injection (same fault, same name). On a loaded machine it can
    // take seconds; a revert that never lands is a failure of its own.
    let mut reverted = false;
    for _ in 0..500 {
        let events = journal::read(j.path()).expect("read journal");
        if events.iter().any(|e| {
            matches!(
                e,
                Event::Reverted {
                    fault: FaultId(1),
                    ..
                }
            )
        }) {
            // Let the task that wrote it finish and release its copy of the journal (and lock).
            tokio::time::sleep(Duration::from_millis(100)).await;
            reverted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        reverted,
        "{}: dropping the guard never journaled its revert",
        fault.kind()
    );
    drop(j);

    // 4. a forgotten guard (as after a crash) is undone by `recover` from the journal alone.
    let run = journal::new_run_id();
    let j = Journal::create(state_dir, &run).expect("journal");
    let cx = InjectCx {
        journal: &j,
        id: FaultId(0),
        name: "compliance-crash",
    };
    let guard = fault.inject(&cx).await.expect("inject for recover");
    assert!(
        eventually(&observe, true).await,
        "{}: third injection changed nothing",
        fault.kind()
    );
    let _ = guard.forget();
    drop(j);
    let summary = crate::recover::recover(state_dir).await.expect("recover");
    assert!(
        summary.faults.iter().all(|f| f.result.is_ok()),
        "{}: recover failed: {summary:?}",
        fault.kind()
    );
    if fault_survives_its_process(fault) {
        assert!(
            eventually(&observe, false).await,
            "{}: recover did not revert",
            fault.kind()
        );
    }
    let again = crate::recover::recover(state_dir)
        .await
        .expect("recover again");
    assert!(
        again.is_empty(),
        "{}: a second recover found work: {again:?}",
        fault.kind()
    );
}

/// Faults of an in-process proxy end with the process that holds them, so after a `forget` in
/// a still-living test process they are legitimately still active; `recover` can only say so.
fn fault_survives_its_process(fault: &dyn Fault) -> bool {
    !matches!(
        fault.kind(),
        "latency"
            | "bandwidth"
            | "timeout"
            | "reset"
            | "down"
            | "corrupt"
            | "http-abort"
            | "http-delay"
            | "http-hang"
            | "http-corrupt"
            | "http-header"
            | "auth-strip"
            | "auth-forge"
            | "replay"
            | "tls-mitm"
    )
}

fn open_or_all(events: &[Event]) -> Vec<(FaultId, String, String, crate::fault::RevertSpec)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Injecting {
                fault,
                name,
                target,
                revert,
                ..
            } => Some((*fault, name.clone(), target.clone(), revert.clone())),
            _ => None,
        })
        .collect()
}

/// Polls `observe` for up to 2 s until it returns `want`.
async fn eventually<F, Fut>(observe: &F, want: bool) -> bool
where
    F: Fn() -> Fut,
    Fut: Future<Output = bool>,
{
    // Up to 10 s: on a loaded 2-core machine running the whole suite, a victim that reports
    // every 10 ms can go unscheduled for seconds; a healthy fault shows well within that.
    for _ in 0..200 {
        if observe().await == want {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// Panics unless this process's network namespace has no default route (IPv4 or IPv6).
///
/// Every test that opens a socket calls it first: test traffic goes only to loopback, and it is
/// sent from a namespace where nothing else is reachable, so a wrong address can never reach the
/// outside world. `scripts/test` runs the suite in such a namespace (`unshare --net`).
pub fn assert_isolated() {
    static CHECKED: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    let verdict = CHECKED.get_or_init(|| match default_routes() {
        Ok(routes) if routes.is_empty() => Ok(()),
        Ok(routes) => Err(format!(
            "refusing to generate network traffic: this network namespace has a default route ({}). \
             Run the tests with `scripts/test`, which runs them in a network namespace with only loopback.",
            routes.join("; ")
        )),
        Err(e) => Err(format!("refusing to generate network traffic: cannot read the routing table: {e}")),
    });
    if let Err(why) = verdict {
        panic!("{why}");
    }
}

/// Default routes of this namespace, read from `/proc/net/route` and `/proc/net/ipv6_route`
/// (what `ip route show default` prints, without needing `ip`).
fn default_routes() -> std::io::Result<Vec<String>> {
    let mut out = Vec::new();
    for line in std::fs::read_to_string("/proc/net/route")?.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        // Destination 0 with mask 0 is the default route.
        if f.len() > 7 && f[1] == "00000000" && f[7] == "00000000" {
            out.push(format!("IPv4 via {}", f[0]));
        }
    }
    if let Ok(v6) = std::fs::read_to_string("/proc/net/ipv6_route") {
        for line in v6.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            // Destination ::/0 on a real device (the kernel lists `lo` unreachable entries too).
            if f.len() > 9 && f[0].chars().all(|c| c == '0') && f[1] == "00" && f[9] != "lo" {
                out.push(format!("IPv6 via {}", f[9]));
            }
        }
    }
    Ok(out)
}
