//! `chaosforge agent`: runs this host's faults for remote runners, over HTTPS, under leases.
//!
//! Every fault is built by `chaosforge::fault::agent::build` — the same `impl Fault` a local run
//! uses — and journaled write-ahead in the agent's own journal (one run directory per agent
//! session under `--state-dir`), so a restarted agent (and `chaosforge recover` on this host)
//! reverts what a killed one held. Each fault carries a lease; a runner renews it every second,
//! and when renewals stop for the lease the agent reverts the fault itself, journaling
//! `Reverted { by: "lease" }`.
//!
//! `chaosforge agents status` is the client side of `GET /status`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use chaosforge::fault::agent::{
    self as wire, AgentFaultKind, AgentStatus, AgentTarget, AgentVersion, HeldFault, InjectRequest,
    Placement,
};
use chaosforge::fault::net::{ProxyBackend as _, ProxyControl};
use chaosforge::fault::{Fault, FaultError, Guard, InjectCx, Revert, RevertSpec};
use chaosforge::journal::{Event, FaultId, Journal};
use chaosforge::vocab::{Outcome, PhasesSummary, PlanSummary};
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Method, Request, Response, StatusCode};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::time::Instant;

/// The faults an agent accepts when `--allow` is not given: network faults only; stress,
/// disk fill and pauses must be allowed by name.
const DEFAULT_ALLOW: &[&str] = &[
    "partition",
    "latency",
    "corrupt",
    "duplicate",
    "reorder",
    "rate",
    "loss",
];

/// Paths `disk-fill` may never fill (or fill below), besides `--forbid-path` and the agent's
/// own state directory.
const FORBIDDEN_PATHS: &[&str] = &[
    "/", "/proc", "/sys", "/dev", "/boot", "/etc", "/usr", "/bin", "/sbin", "/lib", "/lib64",
    "/run",
];

/// Failed authentications a peer may make before each further attempt waits (doubling).
const FREE_FAILURES: u32 = 5;
/// The wait after the first failure beyond the free ones; doubles up to `MAX_BACKOFF`.
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// The largest request body read (a fault request is well under 4 KiB).
const MAX_BODY: usize = 64 * 1024;

/// `chaosforge agent`'s options.
#[derive(Debug, clap::Args)]
pub struct AgentArgs {
    /// Address to listen on, `IP:PORT`
    #[arg(long, value_name = "ADDR")]
    listen: SocketAddr,
    /// A file holding the bearer token runners must send
    #[arg(long, value_name = "FILE")]
    token_file: PathBuf,
    /// PEM certificate chain to serve
    #[arg(
        long,
        value_name = "FILE",
        requires = "tls_key",
        conflicts_with = "tls_self_signed"
    )]
    tls_cert: Option<PathBuf>,
    /// PEM private key of `--tls-cert`
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Serve a self-signed certificate (made once, kept in the state directory) and print its
    /// SHA-256 fingerprint, which runners pin (`agent: { fingerprint }`)
    #[arg(long)]
    tls_self_signed: bool,
    /// Fault kinds accepted, comma-separated [default: partition,latency,corrupt,duplicate,
    /// reorder,rate,loss]; also cpu, memory, disk-fill, pause, freeze, kill, fd-exhaustion,
    /// process-limit, restart (which runs the runner's shell command on this host), proxy
    /// (a TCP fault proxy here, relaying to any upstream the runner names)
    #[arg(long, value_delimiter = ',', value_name = "KINDS")]
    allow: Vec<String>,
    /// Directories `disk-fill` must never fill (besides /, /proc, /sys, /dev, /etc, /usr, …)
    #[arg(long, value_name = "DIR")]
    forbid_path: Vec<PathBuf>,
    /// How long a fault outlives its runner's last renewal when the runner asks for no lease
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = crate::duration)]
    lease_default: Duration,
    /// Where the agent's journals live [default: as for `run`]
    #[arg(long, env = "CHAOSFORGE_STATE_DIR", value_name = "DIR")]
    state_dir: Option<PathBuf>,
}

impl AgentArgs {
    /// `--state-dir`, for the shared default.
    pub fn state_dir(&self) -> Option<PathBuf> {
        self.state_dir.clone()
    }
}

/// What every request handler shares.
struct Agent {
    token_digest: [u8; 32],
    allow: BTreeSet<String>,
    forbidden: Vec<PathBuf>,
    lease_default: Duration,
    listen: SocketAddr,
    journal: Journal,
    /// The session's short unique tag: kernel object names of its faults start with it.
    unique: String,
    next: AtomicU32,
    held: Mutex<BTreeMap<String, Slot>>,
    failures: Mutex<HashMap<IpAddr, Failures>>,
    exe: PathBuf,
    own_netns: Option<u64>,
    /// Ids a runner revoked before their injection arrived, with when (unix seconds).
    revoked: Mutex<BTreeMap<String, u64>>,
    revoked_file: PathBuf,
    /// The proxies held `proxy-listen` faults started, by their fault id.
    proxies: Proxies,
}

type Proxies = Arc<Mutex<HashMap<String, Arc<dyn ProxyControl>>>>;

/// How long and how many revoked ids are remembered: far beyond any in-flight request.
const REVOKED_AGE_SECS: u64 = 3600;
const REVOKED_MAX: usize = 4096;

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The revoked ids a previous session journaled, still young enough to matter.
fn load_revoked(file: &Path) -> BTreeMap<String, u64> {
    let now = unix_now();
    let text = std::fs::read_to_string(file).unwrap_or_default();
    let mut all: Vec<(String, u64)> = text
        .lines()
        .filter_map(|l| {
            let (id, at) = l.split_once(' ')?;
            let at = at.parse::<u64>().ok()?;
            (wire::valid_id(id) && now.saturating_sub(at) < REVOKED_AGE_SECS)
                .then(|| (id.to_string(), at))
        })
        .collect();
    all.sort_by_key(|(_, at)| *at);
    let skip = all.len().saturating_sub(REVOKED_MAX);
    let kept: BTreeMap<String, u64> = all.into_iter().skip(skip).collect();
    // The file is append-only while serving; rewritten here with what is kept, so it stays
    // bounded across sessions. A failure only leaves the longer file, which reads the same.
    if !text.is_empty() {
        let compact: String = kept.iter().map(|(id, at)| format!("{id} {at}\n")).collect();
        let tmp = file.with_extension("tmp");
        let written = std::fs::write(&tmp, compact)
            .and_then(|()| std::fs::File::open(&tmp)?.sync_all())
            .and_then(|()| std::fs::rename(&tmp, file));
        if let Err(e) = written {
            eprintln!("warning: compacting {}: {e}", file.display());
        }
    }
    kept
}

/// A fault id being injected (so a second request with it is refused), or held.
enum Slot {
    Pending,
    Held(Box<Held>),
}

struct Held {
    guard: Guard,
    info: HeldFault,
    deadline: Instant,
}

#[derive(Debug, Default)]
struct Failures {
    count: u32,
    until: Option<Instant>,
}

type Resp = Response<Full<Bytes>>;

/// Runs the agent until SIGINT or SIGTERM, then reverts what it holds.
pub async fn run(args: AgentArgs, state_dir: PathBuf) -> anyhow::Result<u8> {
    let token = std::fs::read_to_string(&args.token_file)
        .with_context(|| format!("reading the token file {}", args.token_file.display()))?;
    let token = token.trim();
    if token.len() < 16 {
        bail!(
            "the token in {} is shorter than 16 characters",
            args.token_file.display()
        );
    }
    let allow: BTreeSet<String> = if args.allow.is_empty() {
        DEFAULT_ALLOW.iter().map(|s| s.to_string()).collect()
    } else {
        args.allow.iter().map(|s| s.trim().to_string()).collect()
    };
    for k in &allow {
        if !AgentFaultKind::NAMES.contains(&k.as_str()) {
            bail!(
                "--allow: `{k}` is not a fault kind an agent runs (one of {})",
                AgentFaultKind::NAMES.join(", ")
            );
        }
    }
    let (certs, key, fingerprint) =
        tls_material(&args, &state_dir).context("setting up the agent's certificate")?;
    let tls = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .context("the agent's certificate and key")?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));

    // Before serving: revert what an earlier, killed agent session (or any dead run) left here.
    let summary = chaosforge::recover::recover(&state_dir)
        .await
        .context("recovering what earlier agent sessions held")?;
    for f in &summary.faults {
        match &f.result {
            Ok(note) => println!(
                "recovered: fault `{}` on `{}` of agent session {}: {note}",
                f.name, f.target, f.run.0
            ),
            Err(e) => eprintln!(
                "error: recovering fault `{}` on `{}` of agent session {}: {e}",
                f.name, f.target, f.run.0
            ),
        }
    }
    if summary.has_failures() {
        bail!(
            "could not revert what an earlier agent session held; see `chaosforge recover --state-dir {}`",
            state_dir.display()
        );
    }

    let run_id = chaosforge::journal::new_run_id();
    let journal = Journal::create(&state_dir, &run_id)?;
    let hostname = hostname();
    journal.append_durable(&Event::RunStarted {
        run_id: run_id.clone(),
        started_at: jiff::Timestamp::now(),
        pid: std::process::id(),
        version: env!("CARGO_PKG_VERSION").into(),
        plan: PlanSummary {
            name: format!("agent on {hostname}"),
            description: Some(format!("chaosforge agent listening on {}", args.listen)),
            title: "faults held for remote runners".into(),
            file: String::new(),
            seed: 0,
            targets: Vec::new(),
            monitors: Vec::new(),
            faults: Vec::new(),
            phases: PhasesSummary {
                baseline: Duration::ZERO,
                inject: Duration::ZERO,
                recover_within: Duration::ZERO,
            },
            halt_when: Vec::new(),
            significance: None,
            policies: Vec::new(),
        },
    })?;
    let mut forbidden: Vec<PathBuf> = FORBIDDEN_PATHS.iter().map(PathBuf::from).collect();
    forbidden.extend(args.forbid_path.iter().cloned());
    forbidden.push(state_dir.clone());
    let unique = run_id.0.rsplit('-').next().unwrap_or(&run_id.0).to_string();
    let agent = Arc::new(Agent {
        token_digest: digest(token.as_bytes()),
        allow,
        forbidden,
        lease_default: args.lease_default,
        listen: args.listen,
        journal,
        unique,
        next: AtomicU32::new(0),
        held: Mutex::new(BTreeMap::new()),
        failures: Mutex::new(HashMap::new()),
        exe: std::env::current_exe().context("finding the chaosforge binary")?,
        own_netns: netns_inode("/proc/self/ns/net"),
        revoked: Mutex::new(load_revoked(&state_dir.join("agent").join("revoked"))),
        revoked_file: state_dir.join("agent").join("revoked"),
        proxies: Arc::default(),
    });
    // Probing takes a moment (commands in a scratch namespace); do it before the first request.
    tokio::task::spawn_blocking(chaosforge::fault::host::caps::probe)
        .await
        .context("probing network capabilities")?;

    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let bound = listener.local_addr()?;
    match &fingerprint {
        Some(f) => println!("chaosforge agent listening on https://{bound} fingerprint {f}"),
        None => println!("chaosforge agent listening on https://{bound}"),
    }
    println!(
        "agent session {} journal {}",
        run_id.0,
        agent.journal.path().display()
    );

    let reaper = tokio::spawn(reap_leases(agent.clone()));
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((tcp, peer)) = accepted else { continue };
                let (agent, acceptor) = (agent.clone(), acceptor.clone());
                tokio::spawn(async move { serve_conn(agent, acceptor, tcp, peer).await });
            }
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
        }
    }
    reaper.abort();
    let held: Vec<Box<Held>> = {
        let mut map = lock(&agent.held);
        std::mem::take(&mut *map)
            .into_values()
            .filter_map(|s| match s {
                Slot::Held(h) => Some(h),
                Slot::Pending => None,
            })
            .collect()
    };
    let mut failed = false;
    for h in held.into_iter().rev() {
        if let Err(e) = h.guard.revert_as("agent-stop").await {
            eprintln!("error: {e}; run `chaosforge recover`");
            failed = true;
        }
    }
    agent.journal.append_durable(&Event::RunFinished {
        outcome: Outcome::Halted {
            policy: "agent".into(),
            reason: "the agent was stopped".into(),
        },
        at: agent.journal.now(),
    })?;
    Ok(if failed { 2 } else { 0 })
}

/// The certificate chain, key and (self-signed) fingerprint to serve.
fn tls_material(
    args: &AgentArgs,
    state_dir: &Path,
) -> anyhow::Result<(
    Vec<CertificateDer<'static>>,
    PrivateKeyDer<'static>,
    Option<String>,
)> {
    let (cert_path, key_path) = match (&args.tls_cert, &args.tls_key) {
        (Some(c), Some(k)) => (c.clone(), k.clone()),
        _ if args.tls_self_signed => {
            // Kept across restarts, so runners' pins (and journaled fingerprints) stay valid.
            let dir = state_dir.join("agent");
            let (c, k) = (dir.join("cert.pem"), dir.join("key.pem"));
            if !c.exists() || !k.exists() {
                std::fs::create_dir_all(&dir)?;
                let mut names = vec!["localhost".to_string(), hostname()];
                names.push(args.listen.ip().to_string());
                let made = rcgen::generate_simple_self_signed(names)?;
                write_private(&k, made.signing_key.serialize_pem().as_bytes())?;
                std::fs::write(&c, made.cert.pem())?;
            }
            (c, k)
        }
        _ => bail!("give --tls-cert and --tls-key, or --tls-self-signed (agents speak HTTPS only)"),
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert_path)
        .with_context(|| format!("reading {}", cert_path.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("reading {}", cert_path.display()))?;
    let Some(first) = certs.first() else {
        bail!("{} holds no certificate", cert_path.display());
    };
    // Printed in both modes: a runner may pin a CA-issued leaf as well as a self-signed one.
    let fingerprint = Some(wire::fingerprint_of(first.as_ref()));
    let key = PrivateKeyDer::from_pem_file(&key_path)
        .with_context(|| format!("reading {}", key_path.display()))?;
    Ok((certs, key, fingerprint))
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

async fn serve_conn(
    agent: Arc<Agent>,
    acceptor: tokio_rustls::TlsAcceptor,
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
) {
    // A peer that never finishes its handshake must not hold a task forever.
    let Ok(Ok(tls)) = tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await
    else {
        return;
    };
    let service = hyper::service::service_fn(move |req| {
        let agent = agent.clone();
        async move { Ok::<_, std::convert::Infallible>(handle(&agent, peer.ip(), req).await) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .header_read_timeout(Duration::from_secs(10))
        .timer(hyper_util::rt::TokioTimer::new())
        .serve_connection(hyper_util::rt::TokioIo::new(tls), service);
    let _ = conn.await;
}

async fn handle(agent: &Agent, peer: IpAddr, req: Request<hyper::body::Incoming>) -> Resp {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    if method == Method::GET && path == "/version" {
        return json(
            StatusCode::OK,
            &AgentVersion {
                version: env!("CARGO_PKG_VERSION").into(),
                api: wire::API_VERSION,
            },
        );
    }
    if let Some(r) = agent.authenticate(peer, req.headers()) {
        return r;
    }
    let body = match tokio::time::timeout(
        Duration::from_secs(10),
        Limited::new(req.into_body(), MAX_BODY).collect(),
    )
    .await
    {
        Ok(Ok(b)) => b.to_bytes(),
        Ok(Err(_)) => return error(StatusCode::PAYLOAD_TOO_LARGE, "request body too large"),
        Err(_) => return error(StatusCode::REQUEST_TIMEOUT, "request body too slow"),
    };
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (&method, parts.as_slice()) {
        (&Method::GET, ["status"]) => json(StatusCode::OK, &agent.status().await),
        (&Method::GET, ["faults"]) => json(StatusCode::OK, &agent.held_faults()),
        (&Method::POST, ["targets", "resolve"]) => match serde_json::from_slice(&body) {
            Ok(on) => match place(&on, &agent.proxies).await {
                Ok((_, resolved)) => json(StatusCode::OK, &resolved),
                Err(e) => error(StatusCode::UNPROCESSABLE_ENTITY, &e),
            },
            Err(e) => error(StatusCode::BAD_REQUEST, &format!("not a target: {e}")),
        },
        (&Method::POST, ["faults"]) => match serde_json::from_slice::<InjectRequest>(&body) {
            Ok(r) => agent.inject(r, peer).await,
            Err(e) => error(
                StatusCode::BAD_REQUEST,
                &format!("not a fault request: {e}"),
            ),
        },
        (&Method::POST, ["faults", id, "renew"]) => agent.renew(id),
        (&Method::DELETE, ["faults", id]) => agent.revert(id).await,
        _ => error(StatusCode::NOT_FOUND, "no such endpoint"),
    }
}

// === impl Agent ===

impl Agent {
    /// `None` when the request carries the token; else the refusal (401, or 429 while the peer
    /// is backing off after repeated failures).
    fn authenticate(&self, peer: IpAddr, headers: &hyper::HeaderMap) -> Option<Resp> {
        let now = Instant::now();
        let mut failures = lock(&self.failures);
        if let Some(until) = failures.get(&peer).and_then(|f| f.until)
            && until > now
        {
            let mut r = error(
                StatusCode::TOO_MANY_REQUESTS,
                "too many failed authentications; wait",
            );
            let secs = (until - now).as_secs().max(1).to_string();
            if let Ok(v) = hyper::header::HeaderValue::from_str(&secs) {
                r.headers_mut().insert(hyper::header::RETRY_AFTER, v);
            }
            return Some(r);
        }
        let presented = headers
            .get(hyper::header::AUTHORIZATION)
            .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "));
        // Digests of equal length compared in constant time: neither the token's length nor
        // its prefix leaks through timing.
        let ok = presented.is_some_and(|t| {
            aws_lc_rs::constant_time::verify_slices_are_equal(&digest(t), &self.token_digest)
                .is_ok()
        });
        if ok {
            failures.remove(&peer);
            return None;
        }
        let f = failures.entry(peer).or_default();
        f.count = f.count.saturating_add(1);
        if f.count > FREE_FAILURES {
            let doublings = (f.count - FREE_FAILURES - 1).min(16);
            let wait = (FIRST_BACKOFF * 2u32.pow(doublings)).min(MAX_BACKOFF);
            f.until = Some(now + wait);
        }
        // Bounded memory under a flood from many addresses: forget the oldest-looking entries.
        if failures.len() > 10_000 {
            failures.retain(|_, f| f.until.is_some_and(|u| u > now));
        }
        let why = if presented.is_some() {
            "wrong token"
        } else {
            "missing `Authorization: Bearer TOKEN`"
        };
        Some(error(StatusCode::UNAUTHORIZED, why))
    }

    async fn status(&self) -> AgentStatus {
        let caps = chaosforge::fault::host::caps::probe();
        AgentStatus {
            version: env!("CARGO_PKG_VERSION").into(),
            api: wire::API_VERSION,
            hostname: hostname(),
            allow: self.allow.iter().cloned().collect(),
            lease_default: self.lease_default,
            capabilities: wire::Capabilities {
                netem: caps.netem,
                htb_u32: caps.htb_u32,
                ifb: caps.ifb,
                nfqueue_missing: caps.nfqueue.clone().err(),
                nft_dup: caps.nft_dup,
            },
            held: self.held_faults(),
        }
    }

    fn held_faults(&self) -> Vec<HeldFault> {
        let now = Instant::now();
        lock(&self.held)
            .values()
            .filter_map(|s| match s {
                Slot::Held(h) => Some(HeldFault {
                    expires_in: h.deadline.saturating_duration_since(now),
                    ..h.info.clone()
                }),
                Slot::Pending => None,
            })
            .collect()
    }

    async fn inject(&self, req: InjectRequest, peer: IpAddr) -> Resp {
        if !wire::valid_id(&req.id) {
            return error(
                StatusCode::BAD_REQUEST,
                "a fault id is 1 to 80 of [A-Za-z0-9_.-]",
            );
        }
        let kind = req.fault.name();
        if !self.allow.contains(kind) {
            return error(
                StatusCode::FORBIDDEN,
                &format!("this agent does not allow `{kind}` faults (--allow)"),
            );
        }
        let lease = req.lease.unwrap_or(self.lease_default);
        if lease < Duration::from_secs(1) || lease > Duration::from_secs(3600) {
            return error(StatusCode::BAD_REQUEST, "a lease is between 1s and 1h");
        }
        let (placement, _) = match place(&req.on, &self.proxies).await {
            Ok(p) => p,
            Err(e) => return error(StatusCode::UNPROCESSABLE_ENTITY, &e),
        };
        if let Err(e) = self.refuse_self(&req, &placement, peer) {
            return error(StatusCode::FORBIDDEN, &e);
        }
        let mut req = req;
        if let AgentFaultKind::Network {
            effect,
            peers,
            ports,
            direction,
            mechanism: mechanism @ None,
        } = &mut req.fault
        {
            let filtered = !peers.is_empty() || !ports.is_empty();
            match chaosforge::plan::mechanism_for(
                effect,
                filtered,
                *direction,
                chaosforge::fault::host::caps::probe(),
            ) {
                Ok(m) => *mechanism = Some(m),
                Err(e) => return error(StatusCode::UNPROCESSABLE_ENTITY, &e),
            }
        }
        {
            // Under the `held` lock, as in `revert`: a DELETE is either seen as revoking this
            // id before it is pending, or finds it pending and waits for it.
            let mut held = lock(&self.held);
            if lock(&self.revoked).contains_key(&req.id) {
                return error(
                    StatusCode::GONE,
                    &format!(
                        "fault {} was revoked by its runner before it arrived",
                        req.id
                    ),
                );
            }
            if held.contains_key(&req.id) {
                return error(
                    StatusCode::CONFLICT,
                    &format!("fault {} is already held", req.id),
                );
            }
            held.insert(req.id.clone(), Slot::Pending);
        }
        let n = self.next.fetch_add(1, Ordering::SeqCst);
        let unique = format!("{}_{n}", self.unique);
        let built = match &req.fault {
            AgentFaultKind::ProxyListen { listen, upstream } => Ok(Box::new(ListenFault {
                id: req.id.clone(),
                target: req.target.clone(),
                listen: listen.clone(),
                upstream: upstream.clone(),
                seed: req.seed,
                proxies: self.proxies.clone(),
            })
                as Box<dyn Fault>),
            _ => wire::build(&req, &placement, &unique, self.exe.clone()),
        };
        let fault = match built {
            Ok(f) => f,
            Err(e) => {
                lock(&self.held).remove(&req.id);
                return error(StatusCode::UNPROCESSABLE_ENTITY, &e);
            }
        };
        let id = FaultId(n);
        let cx = InjectCx {
            journal: &self.journal,
            id,
            name: &req.name,
        };
        match fault.inject(&cx).await {
            Ok(guard) => {
                let _ = self.journal.append_durable(&Event::Injected {
                    fault: id,
                    at: self.journal.now(),
                });
                let info = HeldFault {
                    id: req.id.clone(),
                    name: req.name.clone(),
                    target: req.target.clone(),
                    kind: kind.to_string(),
                    lease,
                    expires_in: lease,
                    from: peer.to_string(),
                    listening: lock(&self.proxies).get(&req.id).map(|p| p.listen_addr()),
                };
                lock(&self.held).insert(
                    req.id.clone(),
                    Slot::Held(Box::new(Held {
                        guard,
                        info: info.clone(),
                        deadline: Instant::now() + lease,
                    })),
                );
                json(StatusCode::CREATED, &info)
            }
            Err(e) => {
                lock(&self.held).remove(&req.id);
                let _ = self.journal.append_durable(&Event::InjectFailed {
                    fault: id,
                    error: e.to_string(),
                    at: self.journal.now(),
                });
                // As the engine does: close the record only when nothing stayed applied.
                let nothing_applied = match &e {
                    FaultError::Journal(_) => false,
                    FaultError::Apply { undone, .. } => *undone,
                    _ => true,
                };
                if nothing_applied {
                    let _ = self.journal.append_durable(&Event::Reverted {
                        fault: id,
                        by: "agent".into(),
                        note: Some("injection failed; nothing applied".into()),
                        at: self.journal.now(),
                    });
                }
                error(StatusCode::UNPROCESSABLE_ENTITY, &e.to_string())
            }
        }
    }

    /// Refuses a fault aimed at the agent itself: its own process, process group or cgroup,
    /// a disk fill of a forbidden path, or a partition that would cut its listen address or
    /// the runner asking (whose renewals keep the fault alive).
    fn refuse_self(
        &self,
        req: &InjectRequest,
        placement: &Placement,
        peer: IpAddr,
    ) -> Result<(), String> {
        match placement {
            Placement::Process(p) => {
                let me = std::process::id() as i32;
                if p.pid == me {
                    return Err("the target is this agent".into());
                }
                let pgid = |pid: i32| {
                    rustix::process::Pid::from_raw(pid)
                        .and_then(|pid| rustix::process::getpgid(Some(pid)).ok())
                };
                if pgid(p.pid).is_some() && pgid(p.pid) == rustix::process::getpgid(None).ok() {
                    return Err("the target is in this agent's process group".into());
                }
                let cgroup = |pid: String| std::fs::read_to_string(format!("/proc/{pid}/cgroup"));
                // A freeze or a kill of the cgroup would stop or end the agent with its target.
                let whole_cgroup = matches!(
                    req.fault,
                    AgentFaultKind::Pause
                        | AgentFaultKind::Freeze { .. }
                        | AgentFaultKind::Kill {
                            reach: chaosforge::fault::params::KillReach::Cgroup,
                            ..
                        }
                );
                if whole_cgroup
                    && let (Ok(a), Ok(b)) = (cgroup(p.pid.to_string()), cgroup("self".into()))
                    && a == b
                    && !a.trim().ends_with("::/")
                {
                    return Err("the target shares this agent's cgroup".into());
                }
            }
            // A proxy of the agent's passes only what the runner sends through it.
            Placement::Proxy(_) => {}
            Placement::Host { netns, .. } => {
                let here = match netns {
                    None => true,
                    Some(ns) => {
                        self.own_netns.is_some()
                            && netns_inode(&format!("/run/netns/{ns}")) == self.own_netns
                    }
                };
                let cuts = match &req.fault {
                    AgentFaultKind::Partition { peers, .. }
                    | AgentFaultKind::Loss { peers, .. } => Some(peers),
                    _ => None,
                };
                if here && let Some(peers) = cuts {
                    let listen = self.listen.ip();
                    if peers.is_empty() && !listen.is_loopback() {
                        return Err(format!(
                            "a `{}` from every peer would cut this agent's own listen address {}",
                            req.fault.name(),
                            self.listen
                        ));
                    }
                    if let Some(p) = peers.iter().find(|p| **p == peer || **p == listen) {
                        return Err(format!(
                            "a `{}` from {p} would cut this agent from the runner or its own listen address",
                            req.fault.name()
                        ));
                    }
                }
                if let AgentFaultKind::DiskFill { path, .. } = &req.fault {
                    let real = std::fs::canonicalize(path)
                        .map_err(|e| format!("disk-fill path `{path}`: {e}"))?;
                    for f in &self.forbidden {
                        let f = std::fs::canonicalize(f).unwrap_or_else(|_| f.clone());
                        let under = if f == Path::new("/") {
                            real == f
                        } else {
                            real.starts_with(&f)
                        };
                        if under {
                            return Err(format!(
                                "disk-fill path `{path}` is on the forbidden list ({})",
                                f.display()
                            ));
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn revoke(&self, id: &str) {
        use std::io::Write as _;
        let now = unix_now();
        let mut revoked = lock(&self.revoked);
        revoked.retain(|_, at| now.saturating_sub(*at) < REVOKED_AGE_SECS);
        if revoked.len() >= REVOKED_MAX
            && let Some(oldest) = revoked
                .iter()
                .min_by_key(|(_, at)| **at)
                .map(|(k, _)| k.clone())
        {
            revoked.remove(&oldest);
        }
        revoked.insert(id.to_string(), now);
        let written = (|| {
            if let Some(dir) = self.revoked_file.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.revoked_file)?;
            f.write_all(format!("{id} {now}\n").as_bytes())?;
            f.sync_all()
        })();
        if let Err(e) = written {
            eprintln!("error: journaling revoked fault id {id}: {e}");
        }
    }

    fn renew(&self, id: &str) -> Resp {
        let mut held = lock(&self.held);
        match held.get_mut(id) {
            Some(Slot::Held(h)) => {
                h.deadline = Instant::now() + h.info.lease;
                let info = HeldFault {
                    expires_in: h.info.lease,
                    ..h.info.clone()
                };
                json(StatusCode::OK, &info)
            }
            Some(Slot::Pending) => error(StatusCode::CONFLICT, "the fault is being injected"),
            None => error(StatusCode::NOT_FOUND, "no such fault held"),
        }
    }

    async fn revert(&self, id: &str) -> Resp {
        // A fault still being injected is reverted once its injection ends: a runner's
        // `recover` may come while the agent is still applying it.
        let deadline = Instant::now() + Duration::from_secs(30);
        let taken = loop {
            {
                let mut held = lock(&self.held);
                match held.get(id) {
                    Some(Slot::Held(_)) => break held.remove(id),
                    Some(Slot::Pending) => {}
                    None => {
                        // Revoked before `held` is released, so an inject racing this DELETE
                        // either is pending already or sees the revocation (`inject`).
                        if wire::valid_id(id) {
                            self.revoke(id);
                        }
                        break None;
                    }
                }
            }
            if Instant::now() >= deadline {
                return error(StatusCode::CONFLICT, "the fault is still being injected");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let Some(Slot::Held(h)) = taken else {
            // The inject may still be on its way (a runner's `recover` overtaking it): the id
            // was remembered, durably, so that the late inject is refused, not left to its lease.
            return error(StatusCode::NOT_FOUND, "no such fault held");
        };
        match h.guard.revert_as("runner").await {
            Ok(()) => json(
                StatusCode::OK,
                &serde_json::json!({ "note": format!("fault {id} reverted") }),
            ),
            Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        }
    }
}

/// Reverts every fault whose lease ran out, journaling `by: "lease"`.
async fn reap_leases(agent: Arc<Agent>) {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tick.tick().await;
        let now = Instant::now();
        let expired: Vec<Box<Held>> = {
            let mut held = lock(&agent.held);
            let ids: Vec<String> = held
                .iter()
                .filter_map(|(id, s)| match s {
                    Slot::Held(h) if h.deadline <= now => Some(id.clone()),
                    _ => None,
                })
                .collect();
            ids.iter()
                .filter_map(|id| match held.remove(id) {
                    Some(Slot::Held(h)) => Some(h),
                    _ => None,
                })
                .collect()
        };
        for h in expired {
            let info = h.info.clone();
            match h.guard.revert_as("lease").await {
                Ok(()) => println!(
                    "lease of fault {} (`{}` on `{}`, {}) ran out without renewal from {}; reverted",
                    info.id,
                    info.name,
                    info.target,
                    chaosforge::units::format_duration(info.lease),
                    info.from
                ),
                Err(e) => eprintln!("error: lease of fault {} ran out: {e}", info.id),
            }
        }
    }
}

/// Resolves a target on this host, as a local run would.
async fn place(on: &AgentTarget, proxies: &Proxies) -> Result<(Placement, wire::Resolved), String> {
    match on {
        AgentTarget::Proxy { listener } => {
            let p = lock(proxies).get(listener).cloned().ok_or_else(|| {
                format!("no proxy is held here as `{listener}` (its `proxy-listen` lease ran out?)")
            })?;
            Ok((
                Placement::Proxy(p),
                wire::Resolved {
                    addresses: Vec::new(),
                    pid: None,
                },
            ))
        }
        AgentTarget::Host { netns, interface } => {
            let h =
                chaosforge::host_target::resolve(netns.as_deref(), interface.as_deref()).await?;
            Ok((
                Placement::Host {
                    netns: h.netns,
                    interface: h.interface,
                },
                wire::Resolved {
                    addresses: h.addresses,
                    pid: None,
                },
            ))
        }
        AgentTarget::Process(sel) => {
            let p = chaosforge::fault::process::resolve(sel)?;
            Ok((
                Placement::Process(p),
                wire::Resolved {
                    addresses: Vec::new(),
                    pid: Some(p.pid),
                },
            ))
        }
    }
}

/// A `proxy-listen`: a TCP fault proxy in this process, registered under its fault id for the
/// toxics that follow. It ends with the agent, so a killed agent leaves nothing to undo.
#[derive(Debug)]
struct ListenFault {
    id: String,
    target: String,
    listen: String,
    upstream: String,
    seed: u64,
    proxies: Proxies,
}

struct StopListening {
    id: String,
    proxy: Arc<dyn ProxyControl>,
    proxies: Proxies,
}

#[async_trait::async_trait]
impl Fault for ListenFault {
    fn kind(&self) -> &'static str {
        "proxy"
    }

    fn target(&self) -> &str {
        &self.target
    }

    async fn inject(&self, cx: &InjectCx<'_>) -> Result<Guard, FaultError> {
        cx.announce(
            &self.target,
            "proxy",
            RevertSpec::InProcessToxics {
                target: self.target.clone(),
                toxics: Vec::new(),
            },
        )?;
        let proxy = chaosforge_proxy::InProcessBackend
            .start(&self.target, &self.listen, &self.upstream, self.seed)
            .await
            .map_err(|e| FaultError::Apply {
                message: format!("starting a proxy on {}: {e}", self.listen),
                undone: true,
            })?;
        lock(&self.proxies).insert(self.id.clone(), proxy.clone());
        Ok(cx.guard(Box::new(StopListening {
            id: self.id.clone(),
            proxy,
            proxies: self.proxies.clone(),
        })))
    }
}

#[async_trait::async_trait]
impl Revert for StopListening {
    async fn revert(self: Box<Self>) -> Result<String, chaosforge::fault::BoxError> {
        lock(&self.proxies).remove(&self.id);
        self.proxy.shutdown().await;
        Ok(format!(
            "the proxy stopped listening on {}",
            self.proxy.listen_addr()
        ))
    }
}

fn json<T: serde::Serialize>(status: StatusCode, body: &T) -> Resp {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut r = Response::new(Full::new(Bytes::from(bytes)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

fn error(status: StatusCode, message: &str) -> Resp {
    json(status, &serde_json::json!({ "error": message }))
}

fn digest(b: &[u8]) -> [u8; 32] {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, b);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panicking handler must not take the agent down with it: the data stays consistent
    // (every critical section is a single map operation).
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn netns_inode(path: &str) -> Option<u64> {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata(path).ok().map(|m| m.ino())
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

/// An agent to ask, as `agents status` was given it.
#[derive(Debug, Clone)]
pub struct AgentAddr {
    /// `https://host:port`.
    pub url: String,
    /// The variable holding its token.
    pub token_env: String,
    /// Its pinned fingerprint.
    pub fingerprint: Option<String>,
}

/// The agents of an inventory file's `agents:`.
pub fn inventory_agents(file: &Path) -> anyhow::Result<Vec<AgentAddr>> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("reading inventory {}", file.display()))?;
    let shown = file.display().to_string();
    let doc =
        chaosforge::source::Document::parse(&shown, &text).map_err(|d| anyhow::anyhow!("{d}"))?;
    let inv: chaosforge::spec::InventorySpec =
        chaosforge::de::decode(&doc).map_err(|d| anyhow::anyhow!("{d}"))?;
    if inv.agents.is_empty() {
        bail!("{shown} names no agents (`agents:`)");
    }
    Ok(inv
        .agents
        .into_values()
        .map(|a| AgentAddr {
            url: a.url,
            token_env: a.token_env,
            fingerprint: a.fingerprint,
        })
        .collect())
}

/// `chaosforge agents status`: each agent's version, capabilities and held faults.
pub async fn status(agents: &[AgentAddr], as_json: bool) -> anyhow::Result<u8> {
    let mut all_ok = true;
    let mut out = Vec::new();
    for a in agents {
        let url = &a.url;
        let result = async {
            let c = wire::AgentClient::from_env(url, &a.token_env, a.fingerprint.as_deref())?;
            c.status().await
        }
        .await;
        match result {
            Ok(s) => {
                if !as_json {
                    println!(
                        "{url}: reachable, chaosforge {} (API {}) on {}",
                        s.version, s.api, s.hostname
                    );
                    println!("  allows: {}", s.allow.join(", "));
                    let c = &s.capabilities;
                    println!(
                        "  capabilities: netem={} htb={} ifb={} nfqueue={} nft-dup={}",
                        c.netem,
                        c.htb_u32,
                        c.ifb,
                        c.nfqueue_missing.is_none(),
                        c.nft_dup
                    );
                    if s.held.is_empty() {
                        println!("  holds no fault");
                    }
                    for h in &s.held {
                        println!(
                            "  holds {} `{}` on `{}` ({}{}) from {}, lease {} ({} left)",
                            h.id,
                            h.name,
                            h.target,
                            h.kind,
                            h.listening
                                .map(|a| format!(", listening on {a}"))
                                .unwrap_or_default(),
                            h.from,
                            chaosforge::units::format_duration(h.lease),
                            chaosforge::units::format_duration(h.expires_in)
                        );
                    }
                }
                out.push(serde_json::json!({ "url": url, "status": s }));
            }
            Err(e) => {
                all_ok = false;
                if !as_json {
                    println!("{url}: unreachable: {e}");
                }
                out.push(serde_json::json!({ "url": url, "error": e }));
            }
        }
    }
    if as_json {
        println!("{}", serde_json::to_string_pretty(&out)?);
    }
    Ok(if all_ok { 0 } else { 2 })
}
