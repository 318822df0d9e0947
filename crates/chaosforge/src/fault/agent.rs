//! Faults held by a `chaosforge agent` on another host.
//!
//! The runner compiles a fault as usual, resolves its peers to addresses, and sends the result —
//! an [`InjectRequest`]: the fault's parameters ([`AgentFaultKind`]) and the target as the agent
//! finds it on its own host ([`AgentTarget`]) — over HTTPS. The agent turns it into the very same
//! `impl Fault` a local run uses, through [`build`], and journals it in its own journal. Nothing
//! here implements a fault a second time.
//!
//! The runner's side is [`RemoteAgentFault`]: it journals [`RevertSpec::RemoteAgent`] (never the
//! token) before the request, renews the fault's lease every `renew_every` while the guard
//! lives, and reverts with `DELETE /faults/{id}`. If the renewals stop for a lease, the agent
//! reverts the fault itself ([`revert_detached`] is what `chaosforge recover` calls).
//!
//! Wire API (JSON; every endpoint but `GET /version` needs `Authorization: Bearer TOKEN`):
//! - `GET /version` → [`AgentVersion`]
//! - `GET /status` → [`AgentStatus`]
//! - `POST /targets/resolve` [`AgentTarget`] → [`Resolved`]
//! - `POST /faults` [`InjectRequest`] → [`HeldFault`] (201)
//! - `POST /faults/{id}/renew` → [`HeldFault`]; 404 once the fault is gone
//! - `DELETE /faults/{id}` → `{ "note": … }`; 404 when it was not held

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::host::partition::PartitionDirection;
use super::params::{KillReach, Mechanism, NetDirection, NetEffect, ProcessSelector, Readiness};
use super::process::ProcessId;
use super::{BoxError, Fault, FaultError, Guard, InjectCx, Revert, RevertSpec};
use crate::units::{self, Ratio};

/// The version of the wire API; the runner refuses an agent that speaks another.
pub const API_VERSION: u32 = 1;

/// Where the fault acts, as the agent resolves it on its own host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentTarget {
    /// The agent's host (`netns: None`) or a network namespace on it.
    Host {
        /// The namespace; `None` for the agent's own.
        netns: Option<String>,
        /// The interface; `None`: the one non-loopback interface.
        interface: Option<String>,
    },
    /// A process on the agent's host.
    Process(ProcessSelector),
    /// A TCP fault proxy this agent runs: the id of the held `proxy-listen` that started it.
    Proxy {
        /// The listener's fault id.
        listener: String,
    },
}

/// A fault's compiled parameters, with peers already resolved to addresses by the runner.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum AgentFaultKind {
    /// nftables drop rules towards `peers` (everyone but loopback when empty).
    Partition {
        /// The peers' addresses.
        peers: Vec<IpAddr>,
        /// Which way.
        direction: PartitionDirection,
    },
    /// Kernel-level packet degradation (latency, corrupt, …).
    Network {
        /// What happens to the packets.
        effect: NetEffect,
        /// Only packets to/from these; empty: all but loopback.
        peers: Vec<IpAddr>,
        /// Only these ports; empty: every port.
        ports: Vec<u16>,
        /// Which way.
        direction: NetDirection,
        /// The mechanism; `None`: the agent chooses from its own capabilities.
        mechanism: Option<Mechanism>,
    },
    /// A random share of packets dropped.
    Loss {
        /// The peers' addresses.
        peers: Vec<IpAddr>,
        /// Which way.
        direction: PartitionDirection,
        /// Share dropped.
        probability: Ratio,
    },
    /// CPU workers in a cgroup made for the fault.
    Cpu {
        /// How many.
        workers: u32,
        /// Each one's share of a core, 1..=100.
        percent: u32,
    },
    /// A worker holding resident memory.
    Memory {
        /// How much.
        bytes: u64,
    },
    /// A ballast file.
    DiskFill {
        /// A directory on the filesystem to fill.
        path: String,
        /// Target share used, 1..=100.
        percent: u32,
        /// Free space that must remain.
        margin: u64,
    },
    /// SIGSTOP, reverted with SIGCONT.
    Pause,
    /// The process's cgroup frozen (a cgroup made for the fault when it is in the root one).
    Freeze {
        /// Move its descendants into the fault's cgroup too.
        tree: bool,
    },
    /// A signal that ends the process (its group, its cgroup). Irreversible: the runner's plan
    /// admitted it under `allow_irreversible`.
    Kill {
        /// Signal number.
        signal: i32,
        /// Its name, for reports.
        signal_name: String,
        /// Whom it is sent to.
        #[serde(default)]
        reach: KillReach,
    },
    /// `RLIMIT_NOFILE` lowered to what the process holds open plus `headroom`.
    FdExhaustion {
        /// How many more files it may open.
        headroom: u64,
    },
    /// `RLIMIT_NPROC` lowered to what the process's user runs plus `headroom`.
    ProcessLimit {
        /// How many more processes it may start.
        headroom: u64,
    },
    /// A TCP fault proxy started on the agent's host, held (and leased) like a fault so that
    /// it stops listening when its runner is gone. It passes traffic unchanged; the toxics of
    /// [`AgentFaultKind::ProxyToxics`] act on it. Sent with `on: host` (the agent's own).
    ProxyListen {
        /// `host:port` to listen on, on the agent's host.
        listen: String,
        /// `host:port` each connection is forwarded to, from the agent's host.
        upstream: String,
    },
    /// Toxics added to a proxy this agent runs (`on: proxy`), removed by name on revert.
    ProxyToxics {
        /// The toxics, named after the fault and stream as a local run names them.
        toxics: Vec<super::net::ProxyToxic>,
    },
    /// A shell command run on the agent's host (`sh -c`), then a bounded wait for readiness.
    Restart {
        /// The shell command.
        command: String,
        /// When the service counts as back.
        ready: Readiness,
        /// The longest the command and the wait may take together.
        #[serde(with = "units::duration_text")]
        timeout: Duration,
    },
}

/// `POST /faults`: inject a fault and hold it under a lease.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InjectRequest {
    /// The fault's id, chosen by the runner (`<run id>-<fault id>`), so that the runner's
    /// journal names it before the request is sent. Letters, digits, `-`, `_`, `.`.
    pub id: String,
    /// The fault's name in the runner's plan.
    pub name: String,
    /// The target's name in the runner's plan.
    pub target: String,
    /// Where it acts.
    pub on: AgentTarget,
    /// What it does.
    pub fault: AgentFaultKind,
    /// How long the fault outlives its last renewal; `None`: the agent's default.
    #[serde(default, with = "units::opt_duration_text")]
    pub lease: Option<Duration>,
    /// The seed for the fault's random choices.
    #[serde(default)]
    pub seed: u64,
}

/// A fault an agent holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeldFault {
    /// Its id.
    pub id: String,
    /// Its name in the runner's plan.
    pub name: String,
    /// The target's name in the runner's plan.
    pub target: String,
    /// The kind (`partition`, `latency`, …).
    pub kind: String,
    /// Its lease.
    #[serde(with = "units::duration_text")]
    pub lease: Duration,
    /// Time left before the agent reverts it by itself.
    #[serde(with = "units::duration_text")]
    pub expires_in: Duration,
    /// The address of the runner that injected it.
    pub from: String,
    /// Where a `proxy-listen` listens (concrete, after binding `:0`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listening: Option<std::net::SocketAddr>,
}

/// `GET /version`, the one unauthenticated answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentVersion {
    /// chaosforge's version.
    pub version: String,
    /// The wire API's version ([`API_VERSION`]).
    pub api: u32,
}

/// `GET /status`: what the agent is, can do and holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentStatus {
    /// chaosforge's version.
    pub version: String,
    /// The wire API's version.
    pub api: u32,
    /// Its host name.
    pub hostname: String,
    /// The fault kinds it accepts (`--allow`).
    pub allow: Vec<String>,
    /// Its default lease.
    #[serde(with = "units::duration_text")]
    pub lease_default: Duration,
    /// The kernel network mechanisms of its host (the same probe as a local run's).
    pub capabilities: Capabilities,
    /// The faults it holds now.
    pub held: Vec<HeldFault>,
}

/// What [`super::host::caps::probe`] found on the agent's host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capabilities {
    /// `tc … netem`.
    pub netem: bool,
    /// `htb` with `u32` filters.
    pub htb_u32: bool,
    /// `ifb` devices.
    pub ifb: bool,
    /// NFQUEUE; `Some(why)` when missing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nfqueue_missing: Option<String>,
    /// nftables `dup`.
    pub nft_dup: bool,
}

/// `POST /targets/resolve`: what the agent found for a target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Resolved {
    /// A host target's addresses (peers of other faults are cut by them).
    #[serde(default)]
    pub addresses: Vec<IpAddr>,
    /// A process target's pid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<i32>,
}

/// Where [`build`] places a fault: the agent's resolution of an [`AgentTarget`].
#[derive(Debug, Clone)]
pub enum Placement {
    /// A host or namespace, with its interface.
    Host {
        /// The namespace; `None` for the agent's own.
        netns: Option<String>,
        /// The interface.
        interface: Option<String>,
    },
    /// A process.
    Process(ProcessId),
    /// A running proxy of the agent's.
    Proxy(Arc<dyn super::net::ProxyControl>),
}

/// A client of one agent: its URL, its token, and how its certificate is trusted.
#[derive(Debug, Clone)]
pub struct AgentClient {
    url: String,
    token: String,
    http: reqwest::Client,
}

/// `RemoteAgentFault`: a fault injected through an agent, held while its guard lives.
#[derive(Debug)]
pub struct RemoteAgentFault {
    /// The target's name.
    pub target: String,
    /// The agent.
    pub client: AgentClient,
    /// What to inject.
    pub request: InjectRequest,
    /// The environment variable the token was read from (journaled instead of the token).
    pub token_env: String,
    /// The pinned fingerprint, if any.
    pub fingerprint: Option<String>,
    /// How often the lease is renewed.
    pub renew_every: Duration,
}

/// A proxy an agent runs for a `proxy` target of this run, held under a renewed lease.
#[derive(Debug)]
pub struct AgentListener {
    client: AgentClient,
    id: String,
    listening: Option<std::net::SocketAddr>,
    renewer: tokio::task::JoinHandle<()>,
}

/// The undo half of a [`RemoteAgentFault`]: stops renewing, then deletes the fault.
struct RemoteRevert {
    client: AgentClient,
    id: String,
    renewer: tokio::task::JoinHandle<()>,
}

// === impl AgentFaultKind ===

impl AgentFaultKind {
    /// The kind users write, which `--allow` lists: `partition`, `latency`, `loss`, `cpu`, …
    pub fn name(&self) -> &'static str {
        match self {
            AgentFaultKind::Partition { .. } => "partition",
            AgentFaultKind::Network { effect, .. } => effect.name(),
            AgentFaultKind::Loss { .. } => "loss",
            AgentFaultKind::Cpu { .. } => "cpu",
            AgentFaultKind::Memory { .. } => "memory",
            AgentFaultKind::DiskFill { .. } => "disk-fill",
            AgentFaultKind::Pause => "pause",
            AgentFaultKind::Freeze { .. } => "freeze",
            AgentFaultKind::Kill { .. } => "kill",
            AgentFaultKind::FdExhaustion { .. } => "fd-exhaustion",
            AgentFaultKind::ProcessLimit { .. } => "process-limit",
            AgentFaultKind::Restart { .. } => "restart",
            // One name for both: allowing a proxy is allowing the toxics on it.
            AgentFaultKind::ProxyListen { .. } | AgentFaultKind::ProxyToxics { .. } => "proxy",
        }
    }

    /// Every kind name an agent can be asked for.
    pub const NAMES: &'static [&'static str] = &[
        "partition",
        "latency",
        "corrupt",
        "duplicate",
        "reorder",
        "rate",
        "loss",
        "cpu",
        "memory",
        "disk-fill",
        "pause",
        "freeze",
        "kill",
        "fd-exhaustion",
        "process-limit",
        "restart",
        "proxy",
    ];
}

/// Whether `id` is a fault id an agent accepts: it becomes part of nft table and chain names
/// and of URLs, so only `[A-Za-z0-9_.-]`, 1..=80 bytes.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 80
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// The one constructor from a request to the same `impl Fault` a local run builds: the agent
/// calls it with the target it resolved. `unique` names the fault's kernel objects (tables,
/// chains, devices); `exe` is the chaosforge binary (for stress workers). A network fault must
/// come with its mechanism chosen (the agent picks one from its capabilities).
pub fn build(
    req: &InjectRequest,
    at: &Placement,
    unique: &str,
    exe: PathBuf,
) -> Result<Box<dyn Fault>, String> {
    let exec = || Arc::new(super::host::exec::SystemExecutor);
    let target = req.target.clone();
    let table = super::host::nft::table_name(unique);
    Ok(match (&req.fault, at) {
        (AgentFaultKind::Partition { peers, direction }, Placement::Host { netns, .. }) => {
            Box::new(super::host::partition::PartitionFault {
                target,
                netns: netns.clone(),
                peers: peers.clone(),
                direction: *direction,
                table,
                exec: exec(),
            })
        }
        (
            AgentFaultKind::Loss {
                peers,
                direction,
                probability,
            },
            Placement::Host { netns, .. },
        ) => Box::new(super::host::loss::LossFault {
            target,
            netns: netns.clone(),
            peers: peers.clone(),
            direction: *direction,
            probability: *probability,
            table,
            exec: exec(),
        }),
        (
            AgentFaultKind::Network {
                effect,
                peers,
                ports,
                direction,
                mechanism,
            },
            Placement::Host { netns, interface },
        ) => Box::new(super::host::netdeg::NetFault {
            target,
            netns: netns.clone(),
            interface: interface.clone(),
            peers: peers.clone(),
            ports: ports.clone(),
            direction: *direction,
            effect: effect.clone(),
            mechanism: mechanism.ok_or("no mechanism chosen for a network fault")?,
            unique: unique.to_string(),
            seed: req.seed,
            exec: exec(),
        }),
        (
            AgentFaultKind::Cpu { workers, percent },
            at @ (Placement::Process(_) | Placement::Host { .. }),
        ) => Box::new(super::stress::CpuStress {
            target,
            workers: *workers,
            percent: *percent,
            exe,
            alongside: match at {
                Placement::Process(p) => Some(*p),
                _ => None,
            },
        }),
        (AgentFaultKind::Memory { bytes }, Placement::Host { .. }) => {
            Box::new(super::stress::MemoryStress {
                target,
                bytes: *bytes,
                exe,
            })
        }
        (
            AgentFaultKind::DiskFill {
                path,
                percent,
                margin,
            },
            Placement::Host { .. },
        ) => Box::new(super::stress::DiskFill {
            target,
            dir: path.into(),
            percent: *percent,
            margin_bytes: *margin,
        }),
        (AgentFaultKind::Pause, Placement::Process(p)) => Box::new(super::process::PauseFault {
            target,
            process: *p,
        }),
        (AgentFaultKind::Freeze { tree }, Placement::Process(p)) => {
            Box::new(super::freeze::FreezeFault {
                target,
                process: *p,
                tree: *tree,
                freezer: None,
            })
        }
        (
            AgentFaultKind::Kill {
                signal,
                signal_name,
                reach,
            },
            Placement::Process(p),
        ) => Box::new(super::process::KillFault {
            target,
            process: *p,
            signal: *signal,
            signal_name: signal_name.clone(),
            reach: *reach,
        }),
        (
            AgentFaultKind::FdExhaustion { headroom } | AgentFaultKind::ProcessLimit { headroom },
            Placement::Process(p),
        ) => Box::new(super::limits::LimitFault {
            target,
            process: *p,
            resource: if matches!(req.fault, AgentFaultKind::FdExhaustion { .. }) {
                crate::vocab::LimitResource::Nofile
            } else {
                crate::vocab::LimitResource::Nproc
            },
            headroom: *headroom,
        }),
        (
            AgentFaultKind::Restart {
                command,
                ready,
                timeout,
            },
            Placement::Process(p),
        ) => Box::new(super::restart::RestartFault {
            target,
            process: *p,
            command: command.clone(),
            ready: ready.clone(),
            timeout: *timeout,
        }),
        (AgentFaultKind::ProxyToxics { toxics }, Placement::Proxy(proxy)) => {
            Box::new(super::proxy::ProxyToxicFault {
                target,
                kind: toxics.first().map_or("proxy", |t| t.fault.name()),
                proxy: proxy.clone(),
                toxics: toxics.clone(),
            })
        }
        (AgentFaultKind::ProxyListen { .. }, _) => {
            return Err("a proxy listener is started by the agent itself, not built".into());
        }
        (kind, _) => {
            return Err(format!(
                "a `{}` fault does not act on this kind of target",
                kind.name()
            ));
        }
    })
}

// === impl AgentClient ===

impl AgentClient {
    /// A client of the agent at `url` (`https://host:port`). With `fingerprint` (the SHA-256 of
    /// the agent's certificate, hex, colons allowed) that one certificate is trusted and nothing
    /// else; without, the system's roots verify it as any HTTPS server.
    pub fn new(url: &str, token: String, fingerprint: Option<&str>) -> Result<AgentClient, String> {
        let parsed = reqwest::Url::parse(url).map_err(|e| format!("agent URL `{url}`: {e}"))?;
        if parsed.scheme() != "https" {
            return Err(format!(
                "agent URL `{url}`: agents speak HTTPS only (`https://host:port`)"
            ));
        }
        let builder = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .connect_timeout(Duration::from_secs(3))
            // Agents are reached directly; a proxy in between would see the token.
            .no_proxy();
        let builder = match fingerprint {
            Some(f) => builder.tls_backend_preconfigured(pinned_tls(parse_fingerprint(f)?)),
            None => builder,
        };
        let http = builder
            .build()
            .map_err(|e| format!("agent client for `{url}`: {e}"))?;
        Ok(AgentClient {
            url: url.trim_end_matches('/').to_string(),
            token,
            http,
        })
    }

    /// As [`AgentClient::new`], the token read from the environment variable `token_env`.
    pub fn from_env(
        url: &str,
        token_env: &str,
        fingerprint: Option<&str>,
    ) -> Result<AgentClient, String> {
        let token = std::env::var(token_env).map_err(|_| {
            format!("the token of agent `{url}` is read from ${token_env}, which is not set")
        })?;
        AgentClient::new(url, token.trim().to_string(), fingerprint)
    }

    /// The agent's base URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// `GET /version` (no token needed).
    pub async fn version(&self) -> Result<AgentVersion, String> {
        let url = format!("{}/version", self.url);
        let resp = self.http.get(&url).send().await.map_err(|e| err(&url, e))?;
        json_of(&url, resp).await
    }

    /// `GET /status`.
    pub async fn status(&self) -> Result<AgentStatus, String> {
        let url = format!("{}/status", self.url);
        let resp = self.authed(self.http.get(&url)).await?;
        json_of(&url, resp).await
    }

    /// `POST /targets/resolve`: checks the target exists on the agent's host.
    pub async fn resolve(&self, on: &AgentTarget) -> Result<Resolved, String> {
        let url = format!("{}/targets/resolve", self.url);
        let resp = self.authed(self.http.post(&url).json(on)).await?;
        json_of(&url, resp).await
    }

    /// `POST /faults`.
    pub async fn inject(&self, req: &InjectRequest) -> Result<HeldFault, String> {
        let url = format!("{}/faults", self.url);
        let resp = self.authed(self.http.post(&url).json(req)).await?;
        json_of(&url, resp).await
    }

    /// `POST /faults/{id}/renew`; `Ok(None)` when the agent no longer holds it.
    pub async fn renew(&self, id: &str) -> Result<Option<HeldFault>, String> {
        let url = format!("{}/faults/{id}/renew", self.url);
        let resp = self.authed(self.http.post(&url)).await?;
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        json_of(&url, resp).await.map(Some)
    }

    /// `DELETE /faults/{id}`: reverts it. A fault the agent does not hold (already reverted,
    /// by its lease or an earlier call) is success, so this is idempotent.
    pub async fn revert(&self, id: &str) -> Result<String, String> {
        let url = format!("{}/faults/{id}", self.url);
        let resp = self.authed(self.http.delete(&url)).await?;
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(format!(
                "agent {} no longer held fault {id} (reverted already)",
                self.url
            ));
        }
        let body: serde_json::Value = json_of(&url, resp).await?;
        let note = body["note"].as_str().unwrap_or("reverted");
        Ok(format!("agent {}: {note}", self.url))
    }

    async fn authed(&self, req: reqwest::RequestBuilder) -> Result<reqwest::Response, String> {
        req.bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| err(&self.url, e))
    }
}

fn err(url: &str, e: reqwest::Error) -> String {
    // The source chain says why (refused, TLS, timeout); the top error alone rarely does.
    let mut msg = format!("{url}: {e}");
    let mut src = std::error::Error::source(&e);
    while let Some(s) = src {
        msg.push_str(&format!(": {s}"));
        src = s.source();
    }
    msg
}

async fn json_of<T: serde::de::DeserializeOwned>(
    url: &str,
    resp: reqwest::Response,
) -> Result<T, String> {
    let status = resp.status();
    let body = resp.bytes().await.map_err(|e| err(url, e))?;
    if !status.is_success() {
        let text = String::from_utf8_lossy(&body);
        let why = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_string))
            .unwrap_or_else(|| text.chars().take(300).collect());
        return Err(format!("{url}: {status}: {why}"));
    }
    serde_json::from_slice(&body).map_err(|e| format!("{url}: unexpected answer: {e}"))
}

/// Parses a SHA-256 fingerprint: 64 hex digits, optionally in colon-separated pairs.
pub fn parse_fingerprint(f: &str) -> Result<[u8; 32], String> {
    let hex: String = f.chars().filter(|c| *c != ':').collect();
    let bad = || format!("`{f}` is not a SHA-256 fingerprint (64 hex digits, colons allowed)");
    if hex.len() != 64 || !hex.is_ascii() {
        return Err(bad());
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
    }
    Ok(out)
}

/// The SHA-256 fingerprint of a DER certificate, as `AB:CD:…`.
pub fn fingerprint_of(der: &[u8]) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der);
    digest
        .as_ref()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// A rustls client configuration that trusts exactly the certificate with this fingerprint
/// (the agent's self-signed one); handshake signatures are still verified against it.
fn pinned_tls(pin: [u8; 32]) -> rustls::ClientConfig {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier = Arc::new(Pinned {
        pin,
        algorithms: provider.signature_verification_algorithms,
    });
    // The provider's safe defaults cannot fail for aws-lc-rs; fall back to them if they ever do.
    let builder = match rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
    {
        Ok(b) => b,
        Err(_) => rustls::ClientConfig::builder(),
    };
    let mut cfg = builder
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    cfg
}

#[derive(Debug)]
struct Pinned {
    pin: [u8; 32],
    algorithms: rustls::crypto::WebPkiSupportedAlgorithms,
}

impl rustls::client::danger::ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        // The pin is the identity: a self-signed agent has no name a CA vouched for.
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, end_entity.as_ref());
        if digest.as_ref() == self.pin {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(format!(
                "the agent's certificate has fingerprint {}, not the pinned one",
                fingerprint_of(end_entity.as_ref())
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

// === impl RemoteAgentFault ===

#[async_trait]
impl Fault for RemoteAgentFault {
    fn kind(&self) -> &'static str {
        self.request.fault.name()
    }

    fn target(&self) -> &str {
        &self.target
    }

    async fn inject(&self, cx: &InjectCx<'_>) -> Result<Guard, FaultError> {
        let id = self.request.id.clone();
        cx.announce(
            &self.target,
            self.kind(),
            RevertSpec::RemoteAgent {
                url: self.client.url().to_string(),
                fault_id: id.clone(),
                token_env: self.token_env.clone(),
                fingerprint: self.fingerprint.clone(),
            },
        )?;
        if let Err(e) = self.client.inject(&self.request).await {
            // The request may have been applied before the answer was lost: ask the agent to
            // revert it, which is a no-op when it holds nothing.
            let undone = self.client.revert(&id).await.is_ok();
            return Err(FaultError::Apply { message: e, undone });
        }
        let renewer = renew(self.client.clone(), id.clone(), self.renew_every);
        Ok(cx.guard(Box::new(RemoteRevert {
            client: self.client.clone(),
            id,
            renewer,
        })))
    }
}

/// Renews the lease of `id` every `every` until aborted, or until the agent no longer holds it.
fn renew(client: AgentClient, id: String, every: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            match client.renew(&id).await {
                Ok(Some(_)) => {}
                Ok(None) => {
                    tracing::warn!(
                        "agent {} no longer holds {id} (its lease ran out?)",
                        client.url()
                    );
                    return;
                }
                // Keep trying: a renewal that gets through before the lease runs out keeps it.
                Err(e) => tracing::warn!("renewing {id}: {e}"),
            }
        }
    })
}

// === impl AgentListener ===

impl AgentListener {
    /// Asks the agent to start a proxy (`req.fault` is a [`AgentFaultKind::ProxyListen`]) and
    /// keeps its lease renewed until [`AgentListener::stop`].
    pub async fn start(
        client: AgentClient,
        req: &InjectRequest,
        renew_every: Duration,
    ) -> Result<AgentListener, String> {
        let held = client.inject(req).await?;
        let renewer = renew(client.clone(), req.id.clone(), renew_every);
        Ok(AgentListener {
            client,
            id: req.id.clone(),
            listening: held.listening,
            renewer,
        })
    }

    /// The address the agent's proxy listens on (concrete, after binding `:0`).
    pub fn listening(&self) -> Option<std::net::SocketAddr> {
        self.listening
    }

    /// Stops renewing and asks the agent to stop the proxy. Should the request fail, the
    /// lease stops it.
    pub async fn stop(self) -> Result<String, String> {
        self.renewer.abort();
        self.client.revert(&self.id).await
    }
}

#[async_trait]
impl Revert for RemoteRevert {
    async fn revert(self: Box<Self>) -> Result<String, BoxError> {
        self.renewer.abort();
        Ok(self.client.revert(&self.id).await?)
    }
}

/// `chaosforge recover`'s revert of a [`RevertSpec::RemoteAgent`]: the token from `token_env`.
pub async fn revert_detached(
    url: &str,
    fault_id: &str,
    token_env: &str,
    fingerprint: Option<&str>,
) -> Result<String, BoxError> {
    let client = AgentClient::from_env(url, token_env, fingerprint)?;
    Ok(client.revert(fault_id).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_parse_with_or_without_colons() {
        let der = b"not really a certificate";
        let f = fingerprint_of(der);
        let pin = parse_fingerprint(&f).unwrap();
        assert_eq!(parse_fingerprint(&f.replace(':', "")).unwrap(), pin);
        assert!(parse_fingerprint("abc").is_err());
        assert!(parse_fingerprint(&"zz".repeat(32)).is_err());
    }

    #[test]
    fn requests_round_trip_through_json() {
        let req = InjectRequest {
            id: "run-1".into(),
            name: "cut".into(),
            target: "node-b".into(),
            on: AgentTarget::Host {
                netns: None,
                interface: None,
            },
            fault: AgentFaultKind::Network {
                effect: NetEffect::Latency {
                    delay: Duration::from_millis(100),
                    jitter: Duration::ZERO,
                },
                peers: vec!["10.0.0.1".parse().unwrap()],
                ports: vec![],
                direction: NetDirection::Egress,
                mechanism: None,
            },
            lease: Some(Duration::from_secs(2)),
            seed: 7,
        };
        let text = serde_json::to_string(&req).unwrap();
        assert_eq!(serde_json::from_str::<InjectRequest>(&text).unwrap(), req);
        assert!(valid_id("abc-1_2.3") && !valid_id("a/b") && !valid_id(""));
        let toxics = InjectRequest {
            on: AgentTarget::Proxy {
                listener: "run-proxy-1".into(),
            },
            fault: AgentFaultKind::ProxyToxics {
                toxics: super::super::proxy::ProxyToxicFault::toxics(
                    "slow",
                    &[super::super::net::Stream::Downstream],
                    Ratio::ONE,
                    &super::super::net::ProxyFault::Latency {
                        delay: Duration::from_millis(150),
                        jitter: Duration::ZERO,
                    },
                ),
            },
            ..req
        };
        let text = serde_json::to_string(&toxics).unwrap();
        assert!(text.contains(r#""kind":"proxy-toxics""#), "{text}");
        assert_eq!(
            serde_json::from_str::<InjectRequest>(&text).unwrap(),
            toxics
        );
        assert_eq!(toxics.fault.name(), "proxy");
    }
}
