//! What the HTTP proxy counts and records while it runs ([`ProxyStats`]), and the security
//! findings a report lists separately ([`Finding`]).
//!
//! Counters are atomics updated on the request path; the few lists (replays, upstream
//! statuses, TLS rejections) sit behind short `std` mutexes that are never held across an
//! `.await`. [`HttpProxy::stats`](super::HttpProxy::stats) copies everything into plain data.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::fault::{Credential, Forgery, HttpAction};
use super::mitm::MitmCert;

/// A copy of a proxy's counters and records at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct ProxyStats {
    /// Client connections accepted (TCP: plain HTTP, passed-through TLS and terminated TLS
    /// alike, counted before anything is read).
    pub connections: u64,
    /// Client connections open now.
    pub open_connections: u64,
    /// Requests received from clients.
    pub requests: u64,
    /// Requests answered `502` because the upstream could not be reached or failed.
    pub upstream_errors: u64,
    /// Per fault name, including faults removed since (their counters stay for the report).
    pub faults: BTreeMap<String, FaultStats>,
    /// One record per captured `replay` request, in capture order.
    pub replays: Vec<ReplayRecord>,
    /// TLS handshakes with clients under `tls-mitm`, per certificate presented (kept after
    /// the fault is removed; empty while no `tls-mitm` fault ever applied).
    pub tls: BTreeMap<MitmCert, TlsStats>,
    /// TLS connections passed through to the https upstream at the TCP level, because no
    /// `tls-mitm` fault applied to them: the client saw the upstream's real certificate.
    pub tls_passed_through: u64,
    /// TLS connections closed unserved because no `tls-mitm` fault applied and they could not
    /// be passed through: the upstream is plain http (no TLS to pass to) or unreachable.
    pub tls_refused: u64,
}

/// Counters of one fault (by name).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct FaultStats {
    /// The fault kind (`http-abort`, `auth-forge`, …) of the latest fault with this name.
    pub kind: &'static str,
    /// Whether a fault with this name is set now.
    pub active: bool,
    /// Requests its matcher accepted (and that reached it: an earlier aborting fault ends
    /// evaluation). For `tls-mitm`: new TLS connections it was asked about.
    pub matched: u64,
    /// Matched requests it acted on (its probability draw succeeded; for `replay`, the one
    /// request captured; for `tls-mitm`, TLS connections it terminated).
    pub faulted: u64,
    /// Upstream statuses of the faulted requests that were sent upstream, by status code: for
    /// `auth-strip`/`auth-forge` this is what the upstream made of the tampered credential.
    pub upstream_statuses: BTreeMap<u16, u64>,
    /// Faulted requests the upstream did not answer (answered `502` by the proxy).
    pub upstream_errors: u64,
    /// The credential tampering, for `auth-strip` and `auth-forge`.
    pub tamper: Option<Tamper>,
}

/// How `auth-strip` or `auth-forge` changed the credential.
#[derive(Debug, Clone, PartialEq)]
pub enum Tamper {
    /// Removed.
    Stripped(Credential),
    /// Replaced by a forgery.
    Forged {
        /// Where the credential was.
        credential: Credential,
        /// What replaced it.
        forgery: Forgery,
    },
}

/// A captured request sent again by `replay`, and what the upstream answered.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReplayRecord {
    /// The fault that captured it.
    pub fault: String,
    /// The request's method.
    pub method: String,
    /// The request's path and query.
    pub uri: String,
    /// The upstream's status for the original request (`None` if it failed).
    pub original: Option<u16>,
    /// How many copies are sent; [`replays`](ReplayRecord::replays) is complete at this
    /// length.
    pub times: u32,
    /// The outcome of each copy sent so far, in order.
    pub replays: Vec<ReplayOutcome>,
}

/// What the upstream answered one replayed copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplayOutcome {
    /// An answer with this status.
    Status(u16),
    /// No answer: why.
    Failed(String),
}

/// TLS handshakes of the proxy with its clients under `tls-mitm`, for one certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TlsStats {
    /// The certificate the proxy presented.
    pub variant: MitmCert,
    /// Handshakes that completed: each is a client that accepted the bad certificate.
    pub accepted: u64,
    /// Handshakes that failed, which is what a validating client does.
    pub rejected: u64,
    /// Failed handshakes by reason (the alert the client sent, e.g.
    /// `received fatal alert: CertificateExpired`).
    pub rejections: BTreeMap<String, u64>,
}

/// A security finding: the system under test accepted something it should have refused.
/// [`ProxyStats::findings`] derives them; a report lists them apart from the hypothesis.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Finding {
    /// A client completed TLS handshakes with a bad `tls-mitm` certificate.
    ClientAcceptedCertificate {
        /// Which bad certificate.
        variant: MitmCert,
        /// How many handshakes completed.
        handshakes: u64,
    },
    /// The upstream answered 2xx to requests whose credential was stripped or forged.
    UpstreamAcceptedCredential {
        /// The fault.
        fault: String,
        /// What was done to the credential.
        tamper: Tamper,
        /// How many such requests got a 2xx.
        accepted: u64,
    },
    /// The upstream answered 2xx to replayed copies of a request.
    UpstreamAcceptedReplay {
        /// The fault.
        fault: String,
        /// Copies answered 2xx.
        accepted: u32,
        /// Copies sent.
        replays: u32,
    },
}

/// The live counters behind [`ProxyStats`].
#[derive(Debug, Default)]
pub(crate) struct Recorder {
    pub(crate) connections: AtomicU64,
    pub(crate) open_connections: AtomicU64,
    pub(crate) requests: AtomicU64,
    pub(crate) upstream_errors: AtomicU64,
    pub(crate) tls_passed_through: AtomicU64,
    pub(crate) tls_refused: AtomicU64,
    /// Per fault name; entries outlive their fault so the report can read them after revert.
    faults: Mutex<BTreeMap<String, Arc<FaultRecord>>>,
    replays: Mutex<Vec<ReplayRecord>>,
    tls: Mutex<BTreeMap<MitmCert, TlsStats>>,
}

/// The live counters of one fault name.
#[derive(Debug)]
pub(crate) struct FaultRecord {
    pub(crate) matched: AtomicU64,
    pub(crate) faulted: AtomicU64,
    upstream_errors: AtomicU64,
    inner: Mutex<FaultInfo>,
}

#[derive(Debug)]
struct FaultInfo {
    kind: &'static str,
    active: bool,
    tamper: Option<Tamper>,
    statuses: BTreeMap<u16, u64>,
}

// === impl ProxyStats ===

impl ProxyStats {
    /// The security findings in these stats, in a stable order: accepted TLS certificates
    /// (in [`MitmCert`] order), then accepted credentials and replays by fault name.
    pub fn findings(&self) -> Vec<Finding> {
        let mut out: Vec<Finding> = self
            .tls
            .values()
            .filter(|tls| tls.accepted > 0)
            .map(|tls| Finding::ClientAcceptedCertificate {
                variant: tls.variant,
                handshakes: tls.accepted,
            })
            .collect();
        for (name, fault) in &self.faults {
            let Some(tamper) = &fault.tamper else {
                continue;
            };
            let accepted: u64 = fault
                .upstream_statuses
                .range(200..300)
                .map(|(_, n)| n)
                .sum();
            if accepted > 0 {
                out.push(Finding::UpstreamAcceptedCredential {
                    fault: name.clone(),
                    tamper: tamper.clone(),
                    accepted,
                });
            }
        }
        for replay in &self.replays {
            let accepted = replay
                .replays
                .iter()
                .filter(|r| matches!(r, ReplayOutcome::Status(s) if (200..300).contains(s)))
                .count();
            if accepted > 0 {
                out.push(Finding::UpstreamAcceptedReplay {
                    fault: replay.fault.clone(),
                    accepted: u32::try_from(accepted).unwrap_or(u32::MAX),
                    replays: u32::try_from(replay.replays.len()).unwrap_or(u32::MAX),
                });
            }
        }
        out
    }
}

// === impl Tamper ===

impl Tamper {
    /// The tampering an action does, if it is `auth-strip` or `auth-forge`.
    pub(crate) fn of(action: &HttpAction) -> Option<Tamper> {
        match action {
            HttpAction::AuthStrip(credential) => Some(Tamper::Stripped(credential.clone())),
            HttpAction::AuthForge {
                credential,
                forgery,
            } => Some(Tamper::Forged {
                credential: credential.clone(),
                forgery: forgery.clone(),
            }),
            _ => None,
        }
    }
}

impl fmt::Display for Tamper {
    /// "a request with alg none (Authorization header)", "a request without its cookie `sid`".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tamper::Stripped(credential) => write!(f, "a request without its {credential}"),
            Tamper::Forged {
                credential,
                forgery,
            } => write!(f, "a request with {forgery} ({credential})"),
        }
    }
}

// === impl Finding ===

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Finding::ClientAcceptedCertificate {
                variant,
                handshakes,
            } => write!(
                f,
                "client accepted {} ({handshakes} handshake{})",
                variant.describe(),
                plural(*handshakes)
            ),
            Finding::UpstreamAcceptedCredential {
                fault,
                tamper,
                accepted,
            } => write!(
                f,
                "upstream accepted {tamper} (fault `{fault}`, {accepted} time{})",
                plural(*accepted)
            ),
            Finding::UpstreamAcceptedReplay {
                fault,
                accepted,
                replays,
            } => write!(
                f,
                "upstream accepted a replayed request (fault `{fault}`, {accepted} of {replays} \
                 replays)"
            ),
        }
    }
}

fn plural(n: u64) -> &'static str {
    if n == 1 { "" } else { "s" }
}

// === impl Recorder ===

impl Recorder {
    /// The record for a fault being set: created, or reused (counters kept) and re-described.
    pub(crate) fn fault_set(&self, name: &str, action: &HttpAction) -> Arc<FaultRecord> {
        let mut faults = lock(&self.faults);
        let record = faults
            .entry(name.to_owned())
            .or_insert_with(|| {
                Arc::new(FaultRecord {
                    matched: AtomicU64::new(0),
                    faulted: AtomicU64::new(0),
                    upstream_errors: AtomicU64::new(0),
                    inner: Mutex::new(FaultInfo {
                        kind: action.kind(),
                        active: true,
                        tamper: None,
                        statuses: BTreeMap::new(),
                    }),
                })
            })
            .clone();
        {
            let mut info = lock(&record.inner);
            info.kind = action.kind();
            info.active = true;
            info.tamper = Tamper::of(action);
        }
        record
    }

    /// Marks a fault name as no longer set (its counters stay).
    pub(crate) fn fault_removed(&self, name: &str) {
        if let Some(record) = lock(&self.faults).get(name) {
            lock(&record.inner).active = false;
        }
    }

    /// Starts a replay record; returns its index for [`Recorder::replayed`].
    pub(crate) fn replay_started(&self, mut record: ReplayRecord) -> usize {
        record.replays.clear();
        let mut replays = lock(&self.replays);
        replays.push(record);
        replays.len() - 1
    }

    /// Appends the outcome of one replayed copy.
    pub(crate) fn replayed(&self, index: usize, outcome: ReplayOutcome) {
        if let Some(record) = lock(&self.replays).get_mut(index) {
            record.replays.push(outcome);
        }
    }

    /// Records a TLS handshake with a client, presenting `variant`: completed, or failed for
    /// `reason`.
    pub(crate) fn handshake(&self, variant: MitmCert, result: Result<(), String>) {
        let mut all = lock(&self.tls);
        let tls = all.entry(variant).or_insert_with(|| TlsStats {
            variant,
            accepted: 0,
            rejected: 0,
            rejections: BTreeMap::new(),
        });
        match result {
            Ok(()) => tls.accepted += 1,
            Err(reason) => {
                tls.rejected += 1;
                *tls.rejections.entry(reason).or_default() += 1;
            }
        }
    }

    /// A copy of everything.
    pub(crate) fn snapshot(&self) -> ProxyStats {
        let faults = lock(&self.faults)
            .iter()
            .map(|(name, record)| {
                let info = lock(&record.inner);
                let stats = FaultStats {
                    kind: info.kind,
                    active: info.active,
                    matched: record.matched.load(Ordering::Relaxed),
                    faulted: record.faulted.load(Ordering::Relaxed),
                    upstream_statuses: info.statuses.clone(),
                    upstream_errors: record.upstream_errors.load(Ordering::Relaxed),
                    tamper: info.tamper.clone(),
                };
                (name.clone(), stats)
            })
            .collect();
        ProxyStats {
            connections: self.connections.load(Ordering::Relaxed),
            open_connections: self.open_connections.load(Ordering::Relaxed),
            requests: self.requests.load(Ordering::Relaxed),
            upstream_errors: self.upstream_errors.load(Ordering::Relaxed),
            faults,
            replays: lock(&self.replays).clone(),
            tls: lock(&self.tls).clone(),
            tls_passed_through: self.tls_passed_through.load(Ordering::Relaxed),
            tls_refused: self.tls_refused.load(Ordering::Relaxed),
        }
    }
}

// === impl FaultRecord ===

impl FaultRecord {
    /// Records what the upstream made of a faulted request: a status, or none (`502`).
    pub(crate) fn upstream(&self, status: Option<u16>) {
        match status {
            Some(status) => *lock(&self.inner).statuses.entry(status).or_default() += 1,
            None => {
                self.upstream_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Locks a stats mutex. A panic while one was held cannot leave the counters inconsistent
/// (each update is one assignment), so a poisoned lock is used as is.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn findings_name_what_was_accepted() {
        let recorder = Recorder::default();
        recorder.handshake(MitmCert::Expired, Ok(()));
        recorder.handshake(MitmCert::Expired, Err("alert".into()));
        recorder.handshake(MitmCert::Untrusted, Err("alert".into()));
        recorder.handshake(MitmCert::WrongHost, Ok(()));
        let forge = recorder.fault_set(
            "forge",
            &HttpAction::AuthForge {
                credential: Credential::Authorization,
                forgery: Forgery::JwtAlgNone,
            },
        );
        forge.upstream(Some(200));
        forge.upstream(Some(401));
        let strip = recorder.fault_set("strip", &HttpAction::AuthStrip(Credential::Authorization));
        strip.upstream(Some(401));
        let i = recorder.replay_started(ReplayRecord {
            fault: "r".into(),
            method: "POST".into(),
            uri: "/pay".into(),
            original: Some(200),
            times: 2,
            replays: Vec::new(),
        });
        recorder.replayed(i, ReplayOutcome::Status(200));
        recorder.replayed(i, ReplayOutcome::Status(409));

        let text: Vec<String> = recorder
            .snapshot()
            .findings()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            text,
            [
                "client accepted an expired certificate (1 handshake)",
                "client accepted a certificate for the wrong host name (1 handshake)",
                "upstream accepted a request with alg none (Authorization header) (fault `forge`, 1 time)",
                "upstream accepted a replayed request (fault `r`, 1 of 2 replays)",
            ]
        );
    }

    #[test]
    fn counters_outlive_removal_and_replacement() {
        let recorder = Recorder::default();
        let a = recorder.fault_set("a", &HttpAction::Hang);
        a.matched.fetch_add(3, Ordering::Relaxed);
        recorder.fault_removed("a");
        assert!(!recorder.snapshot().faults["a"].active);
        let again = recorder.fault_set("a", &HttpAction::Drop);
        let stats = recorder.snapshot();
        assert!(Arc::ptr_eq(&a, &again));
        assert_eq!(stats.faults["a"].matched, 3);
        assert_eq!(stats.faults["a"].kind, "http-abort");
        assert!(stats.faults["a"].active);
    }
}
