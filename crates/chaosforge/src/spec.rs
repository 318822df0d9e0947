//! The experiment file as written: plain serde data (`…Spec` types), nothing validated yet.
//!
//! Field names are a contract (users' files and external checks are written against them): add
//! fields, never rename. Every doc comment here is the user reference for its field and ends up in
//! the JSON Schema (`chaosforge schema`).
//!
//! Values with units (durations, ratios, rates) and expectations are kept as text here and parsed
//! by [`crate::plan::compile`], so that one bad value never hides another: every problem in a file
//! is reported at once, with the exact column inside the scalar.
//!
//! A target's kind and a fault's kind are each named by a key (`proxy:`, `latency:`), so they are
//! optional fields here; `plan` checks that exactly one is present and turns them into the closed
//! enums [`crate::plan::TargetKind`] and [`crate::plan::FaultKind`].

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

mod notify;

pub use notify::{EnvRefSpec, NotifyEventSpec, NotifyFormatSpec, NotifySpec, SecretValueSpec};

/// A chaos experiment: a hypothesis about the steady state, the faults to inject, and the targets
/// they act on.
///
/// ```yaml
/// apiVersion: chaosforge/v1
/// name: checkout-survives-slow-payments
/// targets: [...]
/// hypothesis: {...}
/// faults: [...]
/// phases: { baseline: 10s, inject: 30s, recover_within: 30s }
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "chaosforge experiment")]
pub struct ExperimentSpec {
    /// Version of the file format. Always `chaosforge/v1`.
    #[serde(rename = "apiVersion")]
    pub api_version: String,
    /// Name of the experiment, used in reports and history (e.g. `checkout-survives-slow-payments`).
    pub name: String,
    /// What the experiment shows, in a sentence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Seed for every random choice (target selection, toxicity, jitter). A rerun with the same
    /// seed makes the same choices. Default: a random seed, recorded in the journal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// The things faults act on.
    #[serde(default)]
    pub targets: Vec<TargetSpec>,
    /// Inventory files (or directories of them) defining targets shared by many experiments,
    /// relative to this file: `inventory: targets.yaml` or a list. Names must be unique across
    /// the inventory and `targets`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inventory: Option<InventoryRef>,
    /// Free-form facts about the experiment: `owner`, `ticket`, … (see
    /// `policies.compliance.require`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
    /// The steady-state claim: monitors and what they must show.
    pub hypothesis: HypothesisSpec,
    /// The faults to inject, all at once, during the inject phase.
    #[serde(default)]
    pub faults: Vec<FaultSpec>,
    /// How long each phase lasts.
    #[serde(default)]
    pub phases: PhasesSpec,
    /// Safety rules.
    #[serde(default)]
    pub policies: PoliciesSpec,
    /// Webhooks told about the run as it goes (see [`NotifySpec`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notify: Vec<NotifySpec>,
}

/// A thing a fault acts on. Exactly one of `proxy` or `process`.
///
/// ```yaml
/// - name: payments-a
///   proxy: { listen: "127.0.0.1:18081", upstream: "127.0.0.1:9002" }
///   labels: { service: payments, zone: a }
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TargetSpec {
    /// Unique name of the target.
    pub name: String,
    /// Labels that fault selectors match, e.g. `{ service: payments, zone: a, region: eu-west }`.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// An in-process TCP fault proxy that the runner starts: the system under test talks to
    /// `listen` instead of `upstream`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<ProxyTargetSpec>,
    /// An existing process, found by pid, pidfile or a regex on its command line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<ProcessTargetSpec>,
    /// A host reached as a network namespace (`ip netns`), e.g. `netns: node-b`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns: Option<String>,
    /// The local host itself: `host: local`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// With `netns` or `host`: the interface faults act on. Default: the namespace's one
    /// non-loopback interface.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<String>,
    /// An in-process HTTP (L7) fault proxy the runner starts: the system under test calls
    /// `listen` instead of `upstream`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_proxy: Option<HttpProxyTargetSpec>,
    /// A container on the local Docker engine, by name, id or label, e.g.
    /// `container: { name: web }` or `container: { label: "app=web", socket: /run/docker.sock }`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<ContainerTargetSpec>,
    /// With `host`, `netns` or `process`: the target is on another machine, reached through the
    /// `chaosforge agent` there, e.g.
    /// `agent: { url: "https://10.0.0.7:7700", token_env: NODE7_TOKEN, fingerprint: "AB:CD:…" }`.
    /// `host: local` then means the agent's host; its faults run there, under a lease.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<AgentSpec>,
}

/// Exactly one of `name`, `id` or `label`; `socket` optionally.
///
/// `container: { name: web }`, `container: { id: 3f2a9c }`,
/// `container: { label: "com.example.service=web", socket: /run/cf-docker.sock }`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct ContainerTargetSpec {
    /// The container's name (`docker ps` NAMES), without a leading `/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The container's id, or an unambiguous prefix of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// `KEY=VALUE` (or `KEY`): the one running container with that label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// The Docker Engine's unix socket, e.g. `/run/cf-docker.sock`. Default: `DOCKER_HOST` when
    /// it is `unix://PATH`, else `/var/run/docker.sock`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub socket: Option<String>,
}

/// An agent written out, or the name of one in the inventory file's `agents:`.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum AgentSpec {
    /// `agent: node7`: an entry of `agents:` in the same inventory file.
    Named(String),
    /// `agent: { url, token_env, fingerprint, lease }`.
    Inline(AgentRefSpec),
}

/// How the runner reaches a `chaosforge agent`:
/// `{ url: "https://10.0.0.7:7700", token_env: NODE7_TOKEN, fingerprint: "AB:CD:…", lease: 10s }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentRefSpec {
    /// The agent's address, `https://host:port` (agents speak HTTPS only).
    pub url: String,
    /// The environment variable holding the agent's bearer token (the token itself is never
    /// written in files or journals).
    pub token_env: String,
    /// The SHA-256 fingerprint of a self-signed agent's certificate, as it printed it at start
    /// (`--tls-self-signed`); without it the system's roots must trust the agent's certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// How long the agent keeps a fault after the runner's last renewal (renewed every second);
    /// default: the agent's `--lease-default`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<DurationValue>")]
    pub lease: Option<String>,
}

/// `http_proxy: { listen: "127.0.0.1:18443", upstream: "https://payments.internal:8443",
/// upstream_ca: /etc/ssl/internal-ca.pem }`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpProxyTargetSpec {
    /// `host:port` the proxy listens on (port 0 picks a free one). Plain HTTP/1.1 and h2c from
    /// clients; TLS from clients is passed through to the upstream, or terminated by `tls-mitm`.
    pub listen: String,
    /// The real service: `http://host:port` or `https://host:port`.
    pub upstream: String,
    /// A PEM CA file trusted for an `https` upstream, besides the system's roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_ca: Option<String>,
}

/// A TCP fault proxy, in one of two shapes:
///
/// - in-process, started by the runner: `proxy: { listen: "127.0.0.1:18081", upstream: "127.0.0.1:9002" }`
/// - an existing proxy on a running `chaosforge proxy` or Toxiproxy server, driven through its
///   HTTP API: `proxy: { api: "http://127.0.0.1:8474", name: payments }`. Its faults outlive
///   the runner, so `chaosforge recover` reverts them through the same API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProxyTargetSpec {
    /// In-process: address the proxy listens on, `host:port` (port 0 picks a free one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    /// In-process: address each connection is forwarded to, `host:port`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<String>,
    /// Remote: base URL of the server's HTTP API, e.g. `http://127.0.0.1:8474`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api: Option<String>,
    /// Remote: the proxy's name on that server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// Exactly one of `pid`, `pidfile` or `command`.
///
/// `process: { pidfile: /run/db.pid }`, `process: { command: "postgres: checkpointer" }`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProcessTargetSpec {
    /// A process id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<i64>,
    /// A file holding a process id, read when the run starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pidfile: Option<String>,
    /// A regular expression matched against each process's command line (`/proc/PID/cmdline`,
    /// arguments joined by spaces); it must match exactly one process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
}

/// The steady-state claim.
///
/// ```yaml
/// hypothesis:
///   title: checkout p99 < 300ms and availability >= 99%
///   monitors:
///     - name: checkout
///       http: { url: "http://127.0.0.1:18080/checkout", interval: 100ms, timeout: 1s }
///       expect: ["availability >= 99%", "latency.p99 < 300ms"]
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HypothesisSpec {
    /// The claim in words, shown in reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// What is measured, and what it must show.
    pub monitors: Vec<MonitorSpec>,
    /// A significance level (e.g. `0.01`): the hypothesis then also requires that no
    /// expectation's metric degraded significantly between the baseline and the fault window
    /// (two-sided Mann–Whitney U, `p < significance`, in the direction the expectation calls
    /// worse), not only that the thresholds were met.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub significance: Option<f64>,
}

/// A probe sampled on an interval, with expectations over its samples. Exactly one of `http` or
/// `tcp`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MonitorSpec {
    /// Unique name of the monitor.
    pub name: String,
    /// An HTTP request per sample.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpProbeSpec>,
    /// A TCP connect per sample.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<TcpProbeSpec>,
    /// A program run per sample; ok by exit code, and may yield a number from its output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<CommandProbeSpec>,
    /// A process's or a cgroup's CPU, memory, fds and threads per sample.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<ProcessProbeSpec>,
    /// A PromQL instant query per sample; its result is the sample's value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus: Option<PrometheusProbeSpec>,
    /// Expectations judged over the samples of a phase: `availability >= 99%`,
    /// `error_rate < 1%`, `latency.p50|p90|p95|p99|max|min|mean < 300ms`, `throughput >= 50/s`,
    /// `value < 0.8`, `value.p95 < 200`, `resource.cpu < 80%`, `resource.memory < 512MiB`,
    /// `resource.fds < 1000`; a threshold may be relative to the baseline:
    /// `latency.p99 < baseline * 1.5`, `throughput > baseline - 10%`.
    #[serde(default)]
    pub expect: Vec<String>,
}

/// `http: { url: "http://127.0.0.1:8080/health", interval: 100ms, timeout: 1s }`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpProbeSpec {
    /// The URL, `http://` or `https://`.
    pub url: String,
    /// HTTP method. Default `GET`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Request headers, e.g. `{ Authorization: "Bearer …" }`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Request body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Time between the starts of two samples, e.g. `100ms`. Default `1s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<DurationValue>")]
    pub interval: Option<String>,
    /// How long one request may take before it counts as failed. Default `1s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<DurationValue>")]
    pub timeout: Option<String>,
    /// Statuses that count as success: `"2xx"`, `"200-299"`, `"200,204"`. Default 2xx and 3xx.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success: Option<String>,
}

/// `tcp: { address: "127.0.0.1:5432", interval: 200ms, timeout: 500ms }`, or with an answer
/// required: `tcp: { address: "127.0.0.1:6379", send: "PING\r\n", expect: "+PONG" }`.
///
/// A connect alone succeeds even when the process behind the port is stopped or frozen (the
/// kernel completes the handshake), so give `send`/`expect` to watch a `pause` or `freeze`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TcpProbeSpec {
    /// `host:port` to connect to.
    pub address: String,
    /// Time between the starts of two samples. Default `1s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<DurationValue>")]
    pub interval: Option<String>,
    /// How long a sample may take: the connect, and with `send`/`expect` the answer too.
    /// Default `1s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<DurationValue>")]
    pub timeout: Option<String>,
    /// Bytes sent once connected, as the YAML string gives them (`"PING\r\n"` in double quotes
    /// is P, I, N, G, CR, LF).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send: Option<String>,
    /// Bytes the answer must contain, e.g. `"+PONG"`; read until they appear or the timeout
    /// passes. With `send` but without `expect`, any answer will do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect: Option<String>,
}

/// `command: { run: ["redis-cli", "llen", "jobs"], interval: 1s, timeout: 2s, value: { regex: "(\\d+)" } }`
///
/// `run` is an argument list (run as is) or a string (run by `sh -c`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CommandProbeSpec {
    /// The program and its arguments, or a shell command line.
    pub run: CommandRunSpec,
    /// Time between the starts of two samples. Default `1s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<DurationValue>")]
    pub interval: Option<String>,
    /// How long the command may run; then it and its process group are killed and the sample
    /// fails. Default `5s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<DurationValue>")]
    pub timeout: Option<String>,
    /// How to read the sample's number from standard output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<ValueSpec>,
}

/// A command: `["pg_isready", "-h", "127.0.0.1"]` or `"curl -s localhost/stats | jq .depth"`.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum CommandRunSpec {
    /// The program and its arguments, run without a shell.
    Argv(Vec<String>),
    /// A command line run by `sh -c`.
    Shell(String),
}

/// `{ regex: "depth=(\\d+)", group: 1 }` or `{ json: "$.queue.depth" }`: exactly one of them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ValueSpec {
    /// A regular expression searched in the output; the number is its capture group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
    /// Which capture group holds the number. Default 1 (0 when the regex has no group).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<i64>,
    /// A JSONPath into the output parsed as JSON; the first match must be a number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json: Option<String>,
}

/// `process: { target: db, interval: 500ms }` or `process: { cgroup: /sys/fs/cgroup/app.slice }`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProcessProbeSpec {
    /// A `process` target by name: its CPU, RSS, fds, threads and state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// A cgroup v2 directory: its CPU (`cpu.stat`) and memory (`memory.current`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<String>,
    /// Time between two samples. Default `1s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<DurationValue>")]
    pub interval: Option<String>,
}

/// `prometheus: { url: "http://127.0.0.1:9090", query: "sum(rate(errors_total[1m]))" }`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PrometheusProbeSpec {
    /// The Prometheus server's base URL, `http://` or `https://`.
    pub url: String,
    /// A PromQL expression, evaluated as an instant query at each sample.
    pub query: String,
    /// Request headers, e.g. a tenant id.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Sent as `Authorization: Bearer …`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bearer_token: Option<String>,
    /// How a result of several series becomes one number: `sum`, `max`, `min` or `avg`.
    /// Without it, a result of more than one series is a failed sample.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aggregate: Option<AggregateSpec>,
    /// Time between the starts of two samples. Default `5s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<DurationValue>")]
    pub interval: Option<String>,
    /// How long a query may take. Default `2s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<DurationValue>")]
    pub timeout: Option<String>,
}

/// How several series become one number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AggregateSpec {
    /// The sum.
    Sum,
    /// The largest.
    Max,
    /// The smallest.
    Min,
    /// The mean.
    Avg,
}

/// One fault: a name, exactly one fault kind (the key names it), and the targets it acts on.
///
/// ```yaml
/// - name: slow-payments
///   latency: { delay: 200ms, jitter: 20ms }
///   target: { select: { service: payments }, scope: single }
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    /// Unique name of the fault.
    pub name: String,
    /// Which targets it acts on.
    pub target: TargetSelectorSpec,
    /// Proxy: delay every chunk of bytes. Host: delay packets (kernel level).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency: Option<LatencySpec>,
    /// Proxy: limit throughput.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bandwidth: Option<BandwidthSpec>,
    /// Proxy: stop forwarding data, then close after a while or never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<TimeoutSpec>,
    /// Proxy: reset connections (TCP RST).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reset: Option<ResetSpec>,
    /// Proxy: refuse new connections and drop open ones (the service is unavailable).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub down: Option<DownSpec>,
    /// Proxy: flip bits in the data. Host: flip a bit in a share of packets (kernel level).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub corrupt: Option<CorruptSpec>,
    /// Host: send a share of packets twice (kernel level).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duplicate: Option<DuplicateSpec>,
    /// Host: hold a share of packets back so that later ones overtake them (kernel level).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reorder: Option<ReorderSpec>,
    /// Host: limit the rate of an interface's traffic (kernel level).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<RateSpec>,
    /// Host: drop traffic with nftables — full isolation, or only to/from `peers`, both ways or
    /// one way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<PartitionSpec>,
    /// Host: drop a random share of packets (kernel level, nftables), to/from `peers` or all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss: Option<LossSpec>,
    /// Host: busy CPU workers, each at a share of one core; on a `process` target they are pinned
    /// to the CPUs that process may run on, so the stress lands on it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<CpuSpec>,
    /// Host: a worker that allocates and touches memory, and holds it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<MemorySpec>,
    /// Host: fill a directory's filesystem to a percentage with a ballast file.
    #[serde(default, rename = "disk-fill", skip_serializing_if = "Option::is_none")]
    pub disk_fill: Option<DiskFillSpec>,
    /// Process: stop it (SIGSTOP); reverted with SIGCONT.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause: Option<PauseSpec>,
    /// Process: send a signal (default SIGKILL) to it, its process group (`group: true`) or
    /// every process in its cgroup (`cgroup: true`). Irreversible: needs
    /// `policies.allow_irreversible: true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kill: Option<KillSpec>,
    /// Process: lower its open-files limit (`RLIMIT_NOFILE`, soft) to what it has open now, so
    /// that every new file, socket or accepted connection fails with EMFILE; reverted by
    /// restoring the old limit.
    #[serde(
        default,
        rename = "fd-exhaustion",
        skip_serializing_if = "Option::is_none"
    )]
    pub fd_exhaustion: Option<FdExhaustionSpec>,
    /// Process: lower its process limit (`RLIMIT_NPROC`, soft) to the number its user runs now,
    /// so that fork and thread creation fail with EAGAIN; reverted by restoring the old limit.
    /// Has no effect on processes running as root.
    #[serde(
        default,
        rename = "process-limit",
        skip_serializing_if = "Option::is_none"
    )]
    pub process_limit: Option<ProcessLimitSpec>,
    /// Process: freeze its cgroup (cgroup v2 `cgroup.freeze`, else the v1 freezer); a process in
    /// the root cgroup is moved into a cgroup made for the fault. Reverted by thawing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub freeze: Option<FreezeSpec>,
    /// Process: restart the service with a command, then wait until it is ready again; the
    /// report gives the time it took. Nothing to undo.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart: Option<RestartSpec>,
    /// Container: stop it (SIGTERM, then SIGKILL after `timeout`). Irreversible: needs
    /// `policies.allow_irreversible: true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<StopSpec>,
    /// Container: lower its CPU and/or memory limits (`docker update --cpus/--memory`); the old
    /// limits, read before the change, are set again on revert.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "resource-limit"
    )]
    pub resource_limit: Option<ResourceLimitSpec>,
    /// HTTP proxy: answer matching requests with a status (or drop the connection) without
    /// calling upstream.
    #[serde(
        default,
        rename = "http-abort",
        skip_serializing_if = "Option::is_none"
    )]
    pub http_abort: Option<HttpAbortSpec>,
    /// HTTP proxy: delay matching requests or their responses.
    #[serde(
        default,
        rename = "http-delay",
        skip_serializing_if = "Option::is_none"
    )]
    pub http_delay: Option<HttpDelaySpec>,
    /// HTTP proxy: never answer matching requests.
    #[serde(default, rename = "http-hang", skip_serializing_if = "Option::is_none")]
    pub http_hang: Option<HttpMatchOnlySpec>,
    /// HTTP proxy: alter response bodies (truncate, flip bytes, replace JSON values).
    #[serde(
        default,
        rename = "http-corrupt",
        skip_serializing_if = "Option::is_none"
    )]
    pub http_corrupt: Option<HttpCorruptSpec>,
    /// HTTP proxy: add, replace or remove request or response headers.
    #[serde(
        default,
        rename = "http-header",
        skip_serializing_if = "Option::is_none"
    )]
    pub http_header: Option<HttpHeaderSpec>,
    /// HTTP proxy (security): remove the credentials from matching requests.
    #[serde(
        default,
        rename = "auth-strip",
        skip_serializing_if = "Option::is_none"
    )]
    pub auth_strip: Option<AuthStripSpec>,
    /// HTTP proxy (security): replace the credentials with a forged value.
    #[serde(
        default,
        rename = "auth-forge",
        skip_serializing_if = "Option::is_none"
    )]
    pub auth_forge: Option<AuthForgeSpec>,
    /// HTTP proxy (security): send a captured request again and record what upstream says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay: Option<ReplaySpec>,
    /// HTTP proxy (security): terminate clients' TLS with a bad certificate.
    #[serde(default, rename = "tls-mitm", skip_serializing_if = "Option::is_none")]
    pub tls_mitm: Option<TlsMitmSpec>,
}

/// Which requests an HTTP fault acts on: every condition given must hold.
///
/// `match: { methods: [POST], path_prefix: /api/orders, headers: { x-canary: "1" }, present: [authorization] }`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct HttpMatchSpec {
    /// Methods; empty: any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
    /// The path starts with this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_prefix: Option<String>,
    /// The path matches this regular expression.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_regex: Option<String>,
    /// Headers that must equal these values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Headers that must be present, with any value.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub present: Vec<String>,
}

/// `http-abort: { status: 503, probability: 30% }`, or `http-abort: { drop: true }`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct HttpAbortSpec {
    /// The status to answer with (100–599). Required unless `drop`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<i64>,
    /// Close the connection without an answer instead.
    #[serde(default)]
    pub drop: bool,
    /// The answer's body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// The answer's headers.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Which requests. Default: all.
    #[serde(default, rename = "match", skip_serializing_if = "Option::is_none")]
    pub matcher: Option<HttpMatchSpec>,
    /// Share of the matching requests, drawn per request. Default `100%`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<RatioValue>")]
    pub probability: Option<String>,
}

/// `http-delay: { delay: 200ms, jitter: 20ms, on: response }`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpDelaySpec {
    /// Added delay.
    #[schemars(with = "DurationValue")]
    pub delay: String,
    /// Uniform spread around it. Default `0s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<DurationValue>")]
    pub jitter: Option<String>,
    /// `request` (before forwarding, the default) or `response` (before answering).
    #[serde(default)]
    pub on: HttpDelayOn,
    /// Which requests. Default: all.
    #[serde(default, rename = "match", skip_serializing_if = "Option::is_none")]
    pub matcher: Option<HttpMatchSpec>,
    /// Share of the matching requests. Default `100%`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<RatioValue>")]
    pub probability: Option<String>,
}

/// Where an `http-delay` waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum HttpDelayOn {
    /// Before forwarding the request.
    #[default]
    Request,
    /// Before returning the response.
    Response,
}

/// `http-hang: { match: { path_prefix: /slow } }`: only which requests and how often.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct HttpMatchOnlySpec {
    /// Which requests. Default: all.
    #[serde(default, rename = "match", skip_serializing_if = "Option::is_none")]
    pub matcher: Option<HttpMatchSpec>,
    /// Share of the matching requests. Default `100%`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<RatioValue>")]
    pub probability: Option<String>,
}

/// `http-corrupt: { truncate: 10 }`, `{ flip: 1% }` or `{ json_path: "$.total", value: "0" }`
/// (exactly one).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct HttpCorruptSpec {
    /// Keep only this many bytes of the body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truncate: Option<i64>,
    /// Flip a bit in each byte with this chance, e.g. `1%`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<RatioValue>")]
    pub flip: Option<String>,
    /// Replace the values at this RFC 9535 JSONPath in a JSON body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json_path: Option<String>,
    /// With `json_path`: the new value, as JSON text (`"0"`, `"null"`, `"\"x\""`); text that
    /// is not JSON is used as a string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Which requests. Default: all.
    #[serde(default, rename = "match", skip_serializing_if = "Option::is_none")]
    pub matcher: Option<HttpMatchSpec>,
    /// Share of the matching requests. Default `100%`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<RatioValue>")]
    pub probability: Option<String>,
}

/// `http-header: { request: { remove: [x-request-id] }, response: { set: { cache-control: no-store } } }`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct HttpHeaderSpec {
    /// Changes to the request, before forwarding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<HeaderEditsSpec>,
    /// Changes to the response, before answering.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<HeaderEditsSpec>,
    /// Which requests. Default: all.
    #[serde(default, rename = "match", skip_serializing_if = "Option::is_none")]
    pub matcher: Option<HttpMatchSpec>,
    /// Share of the matching requests. Default `100%`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<RatioValue>")]
    pub probability: Option<String>,
}

/// Header changes: `{ add: { x-a: "1" }, set: { x-b: "2" }, remove: [x-c] }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct HeaderEditsSpec {
    /// Add a value (keeping others).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub add: BTreeMap<String, String>,
    /// Replace every value.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub set: BTreeMap<String, String>,
    /// Remove.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<String>,
}

/// `auth-strip: {}` (the Authorization header), `{ cookie: session }` or `{ header: x-api-key }`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct AuthStripSpec {
    /// A cookie carrying the credential.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cookie: Option<String>,
    /// A header carrying the credential (an API key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    /// Which requests. Default: all.
    #[serde(default, rename = "match", skip_serializing_if = "Option::is_none")]
    pub matcher: Option<HttpMatchSpec>,
    /// Share of the matching requests. Default `100%`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<RatioValue>")]
    pub probability: Option<String>,
}

/// `auth-forge: { forgery: jwt-alg-none }`, `{ forgery: jwt-claims, claims: { role: admin } }`,
/// `{ forgery: token, token: "letmein", header: x-api-key }`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuthForgeSpec {
    /// `jwt-wrong-key`, `jwt-alg-none`, `jwt-expired`, `jwt-claims` or `token`.
    pub forgery: ForgerySpec,
    /// With `jwt-claims`: the claims to change.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub claims: BTreeMap<String, String>,
    /// With `token`: the token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// A cookie carrying the credential (default: the Authorization header).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cookie: Option<String>,
    /// A header carrying the credential.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    /// Which requests. Default: all.
    #[serde(default, rename = "match", skip_serializing_if = "Option::is_none")]
    pub matcher: Option<HttpMatchSpec>,
    /// Share of the matching requests. Default `100%`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<RatioValue>")]
    pub probability: Option<String>,
}

/// How `auth-forge` forges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ForgerySpec {
    /// The request's JWT re-signed with a wrong key.
    JwtWrongKey,
    /// The request's JWT with `alg: none`.
    JwtAlgNone,
    /// The request's JWT, expired.
    JwtExpired,
    /// The request's JWT with `claims` changed.
    JwtClaims,
    /// The literal `token`.
    Token,
}

/// `replay: { times: 2, match: { methods: [POST], path_prefix: /pay } }`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct ReplaySpec {
    /// Copies of the captured request sent again. Default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub times: Option<i64>,
    /// Which requests. Default: all.
    #[serde(default, rename = "match", skip_serializing_if = "Option::is_none")]
    pub matcher: Option<HttpMatchSpec>,
}

/// `tls-mitm: { certificate: expired }`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TlsMitmSpec {
    /// `untrusted` (own CA), `expired`, `not-yet-valid` or `wrong-host`.
    pub certificate: MitmCertSpec,
}

/// The defect of the certificate `tls-mitm` presents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum MitmCertSpec {
    /// Signed by a CA nobody trusts.
    Untrusted,
    /// Expired.
    Expired,
    /// Not valid yet.
    NotYetValid,
    /// For another host name.
    WrongHost,
}

/// `target: { select: { service: payments }, scope: single }`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct TargetSelectorSpec {
    /// Labels a target must all have (`name` also matches the target's name). Empty: every
    /// target.
    #[serde(default)]
    pub select: BTreeMap<String, String>,
    /// How many of the matching targets: `single` (default, chosen with the seed), `all`,
    /// `{ count: 2 }` or `{ percent: 50 }`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<ScopeSpec>,
}

/// The blast radius among the matching targets.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum ScopeSpec {
    /// `single` or `all`.
    Named(ScopeName),
    /// `{ count: n }` or `{ percent: n }`.
    Sized(SizedScopeSpec),
}

/// `single`: one matching target, chosen with the seed; `all`: every matching target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ScopeName {
    /// One target.
    Single,
    /// Every matching target.
    All,
    /// Every matching target of one cluster (label `cluster`), the cluster chosen with the seed.
    Cluster,
    /// Every matching target of one region (label `region`), the region chosen with the seed.
    Region,
}

/// `{ count: 2 }` or `{ percent: 50 }` (rounded up, at least one), or a named group:
/// `{ cluster: eu-1 }`, `{ region: eu }`. Exactly one key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SizedScopeSpec {
    /// Every matching target of this cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// Every matching target of this region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// This many matching targets, chosen with the seed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<i64>,
    /// This percentage of the matching targets, e.g. `50` or `"50%"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<RatioValue>")]
    pub percent: Option<String>,
}

/// Which way the traffic a fault acts on flows. On a proxy: `upstream`, `downstream` (the
/// default, as in Toxiproxy) or `both`; on a host: `egress` (the default), `ingress` or `both`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum DirectionSpec {
    /// Proxy: client → upstream (requests).
    Upstream,
    /// Proxy: upstream → client (responses). The default on proxies.
    #[default]
    Downstream,
    /// Both ways.
    Both,
    /// Host: packets the host sends. The default on hosts.
    Egress,
    /// Host: packets the host receives.
    Ingress,
}

/// `latency: { delay: 200ms, jitter: 20ms }`; on a host also
/// `latency: { delay: 50ms, peers: [db], ports: [5432], direction: egress }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LatencySpec {
    /// Added delay, e.g. `200ms`.
    #[schemars(with = "DurationValue")]
    pub delay: String,
    /// Uniform spread around the delay, e.g. `20ms`. Default `0s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<DurationValue>")]
    pub jitter: Option<String>,
    /// Which way. Default `downstream` on a proxy, `egress` on a host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direction: Option<DirectionSpec>,
    /// Proxy: share of connections affected, `100%` by default. Decided once per connection: a
    /// client that keeps one connection alive (as HTTP monitors do) sees all or none of the fault.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<RatioValue>")]
    pub toxicity: Option<String>,
    /// Host: only packets to/from these peers (IP addresses or `netns`/`host` target names).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub peers: Vec<String>,
    /// Host: only packets to/from these remote ports (TCP or UDP).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<u16>,
}

/// `bandwidth: { rate: 1MB/s }`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BandwidthSpec {
    /// Bytes per second: `1MB/s`, `512KiB/s`, `8Mbit/s`.
    #[schemars(with = "RateValue")]
    pub rate: String,
    /// Which way. Default `downstream`.
    #[serde(default)]
    pub direction: DirectionSpec,
    /// Share of connections affected, `100%` by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<RatioValue>")]
    pub toxicity: Option<String>,
}

/// `timeout: { after: 5s }` (omit `after` to hold connections open forever)
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TimeoutSpec {
    /// Close the connection this long after the data stops; omitted: never close.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<DurationValue>")]
    pub after: Option<String>,
    /// Which way. Default `downstream`.
    #[serde(default)]
    pub direction: DirectionSpec,
    /// Share of connections affected, `100%` by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<RatioValue>")]
    pub toxicity: Option<String>,
}

/// `reset: { after: 0s }`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetSpec {
    /// How long after the fault reaches a connection it is reset. Default `0s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<DurationValue>")]
    pub after: Option<String>,
    /// Share of connections affected, `100%` by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<RatioValue>")]
    pub toxicity: Option<String>,
}

/// `down: {}`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct DownSpec {}

/// `corrupt: { probability: 1%, per: byte }`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CorruptSpec {
    /// Chance that a unit (byte or chunk) gets one bit flipped, e.g. `1%`.
    #[schemars(with = "RatioValue")]
    pub probability: String,
    /// Proxy: `byte` (default) or `chunk`. On a host the unit is a packet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per: Option<CorruptPerSpec>,
    /// Which way. Default `downstream` on a proxy, `egress` on a host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direction: Option<DirectionSpec>,
    /// Proxy: share of connections affected, `100%` by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<RatioValue>")]
    pub toxicity: Option<String>,
    /// Host: only packets to/from these peers (IP addresses or `netns`/`host` target names).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub peers: Vec<String>,
    /// Host: only packets to/from these remote ports.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<u16>,
}

/// `duplicate: { probability: 5% }` (host): a share of packets is sent twice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DuplicateSpec {
    /// Share of packets sent twice, e.g. `5%`.
    #[schemars(with = "RatioValue")]
    pub probability: String,
    /// Only packets to/from these peers (IP addresses or `netns`/`host` target names).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub peers: Vec<String>,
    /// Only packets to/from these remote ports.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<u16>,
    /// `egress` (default), `ingress` or `both`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direction: Option<DirectionSpec>,
}

/// `reorder: { probability: 25%, gap: 10ms }` (host): a share of packets is held back by `gap`,
/// so that the packets after it overtake it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReorderSpec {
    /// Share of packets held back, e.g. `25%`.
    #[schemars(with = "RatioValue")]
    pub probability: String,
    /// How long they are held back. Default `10ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<DurationValue>")]
    pub gap: Option<String>,
    /// Only packets to/from these peers (IP addresses or `netns`/`host` target names).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub peers: Vec<String>,
    /// Only packets to/from these remote ports.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<u16>,
    /// `egress` (default), `ingress` or `both`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direction: Option<DirectionSpec>,
}

/// `rate: { rate: 8Mbit/s }` (host): the interface carries at most this much.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RateSpec {
    /// `8Mbit/s`, `1MB/s`, `512KiB/s`.
    #[schemars(with = "RateValue")]
    pub rate: String,
    /// Only packets to/from these peers (IP addresses or `netns`/`host` target names).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub peers: Vec<String>,
    /// Only packets to/from these remote ports.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<u16>,
    /// `egress` (default), `ingress` or `both`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direction: Option<DirectionSpec>,
}

/// What a corruption probability applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum CorruptPerSpec {
    /// Every byte independently.
    #[default]
    Byte,
    /// Every chunk read from the socket.
    Chunk,
}

/// `partition: {}` (isolate the target from everything), or
/// `partition: { peers: [node-a, 10.0.0.7], direction: ingress }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct PartitionSpec {
    /// Who is cut off: IP addresses, or names of `netns`/`host` targets. Empty: everyone (but
    /// loopback).
    #[serde(default)]
    pub peers: Vec<String>,
    /// `both` (default), `ingress` (drop what comes in from the peers: one-way, peers → target
    /// fails) or `egress` (drop what goes out to them: target → peers fails).
    #[serde(default)]
    pub direction: PartitionDirectionSpec,
    /// Split the selected targets among themselves instead of cutting each from `peers`:
    /// `halves`, `isolate-one` (one node from the majority) or `bridge` (two halves that one
    /// node still reaches). Roles are drawn with the seed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shape: Option<PartitionShapeSpec>,
}

/// How a group partition splits its targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum PartitionShapeSpec {
    /// Two halves (the first one larger when the count is odd) that cannot reach each other.
    Halves,
    /// One node cut from all the others, which still reach each other.
    IsolateOne,
    /// Two halves cut from each other, and one node that still reaches both.
    Bridge,
}

/// Which way a partition cuts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum PartitionDirectionSpec {
    /// Both ways.
    #[default]
    Both,
    /// Only traffic coming in from the peers.
    Ingress,
    /// Only traffic going out to the peers.
    Egress,
}

/// `loss: { probability: 20% }`, or `loss: { probability: 5%, peers: [node-a], direction: egress }`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LossSpec {
    /// Share of packets dropped, e.g. `20%`.
    #[schemars(with = "RatioValue")]
    pub probability: String,
    /// Whose packets: IP addresses or `netns`/`host` target names. Empty: all but loopback.
    #[serde(default)]
    pub peers: Vec<String>,
    /// `both` (default), `ingress` or `egress`.
    #[serde(default)]
    pub direction: PartitionDirectionSpec,
}

/// `cpu: { workers: 2, percent: 50 }`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CpuSpec {
    /// How many workers (each busy on one core at a time). Default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workers: Option<i64>,
    /// Each worker's share of one core, `1..=100` (`50` or `"50%"`). Default 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<RatioValue>")]
    pub percent: Option<String>,
}

/// `memory: { size: 256MiB }`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MemorySpec {
    /// How much to allocate and touch: `256MiB`, `1GB`.
    #[schemars(with = "SizeValue")]
    pub size: String,
}

/// `stop: {}`, or `stop: { timeout: 30s }` to give the container longer to exit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct StopSpec {
    /// How long the container may take to exit after SIGTERM before it is killed. Default
    /// `10s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<DurationValue>")]
    pub timeout: Option<String>,
}

/// `resource-limit: { cpus: 0.5 }`, `resource-limit: { memory: 64MiB }` or both.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct ResourceLimitSpec {
    /// CPUs the container may use, as `docker update --cpus` (`0.5`: half a core).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<f64>,
    /// Memory the container may use, as `docker update --memory` (`64MiB`; at least 6MiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<SizeValue>")]
    pub memory: Option<String>,
}

/// `disk-fill: { path: /var/tmp, percent: 95, margin: 100MiB }`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DiskFillSpec {
    /// A directory on the filesystem to fill (never the root filesystem).
    pub path: String,
    /// Fill the filesystem until this share is used, `1..=100`. Default 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<RatioValue>")]
    pub percent: Option<String>,
    /// Refuse if less than this would stay free. Default `0B` — set it on real hosts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<SizeValue>")]
    pub margin: Option<String>,
}

/// `pause: {}`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct PauseSpec {}

/// `kill: { signal: SIGTERM }`, `kill: { group: true }` (the target's process group),
/// `kill: { cgroup: true }` (every process in the target's cgroup).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct KillSpec {
    /// Signal name (`SIGKILL`, `SIGTERM`, `KILL`, …) or number. Default `SIGKILL`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<String>,
    /// Signal the target's whole process group (`killpg`), e.g. a shell pipeline or a server
    /// with its workers. Refused when chaosforge or one of its parents is in that group.
    /// Default `false`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub group: bool,
    /// Signal every process in the target's cgroup and the cgroups below it (cgroup v2
    /// `cgroup.kill` for SIGKILL, else each process in turn), e.g. a whole systemd service.
    /// Refused for a root cgroup and when chaosforge or one of its parents is in it. Default
    /// `false`. Not together with `group`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cgroup: bool,
}

/// `fd-exhaustion: {}`, or `fd-exhaustion: { headroom: 5 }` to leave five more files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct FdExhaustionSpec {
    /// How many more files the process may still open. Default `0`: the next open fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headroom: Option<i64>,
}

/// `process-limit: {}`, or `process-limit: { headroom: 2 }` to allow two more processes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct ProcessLimitSpec {
    /// How many more processes (or threads) the target's user may still start. Default `0`:
    /// the next fork fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headroom: Option<i64>,
}

/// `freeze: {}`, or `freeze: { tree: true }` to freeze the target's children along with it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct FreezeSpec {
    /// When the target is in the root cgroup and is moved into a cgroup made for the fault:
    /// move its descendants too (they are frozen with it). A target already in a cgroup of its
    /// own is frozen with everything in that cgroup anyway. Default `false`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tree: bool,
}

/// `restart: { command: "systemctl restart api", ready: { tcp: "127.0.0.1:8080" }, timeout: 30s }`
///
/// The command runs with `sh -c`, in its own process group, with `CHAOSFORGE_TARGET_PID` set to
/// the target's pid; its output goes to `restart-<n>.log` in the run's directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RestartSpec {
    /// The shell command that restarts the service, e.g. `systemctl restart api`. It must exit
    /// with status 0. Required for a process; left out for a container, which the Docker
    /// Engine restarts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// How to tell that the service is back: `{ tcp: "127.0.0.1:8080" }` (a connect
    /// succeeds), `{ http: "http://127.0.0.1:8080/health" }` (a 2xx or 3xx answer) or
    /// `{ command: "pg_isready" }` (exit status 0). Checked every 100ms after the command ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready: Option<ReadySpec>,
    /// How long the command and the wait for readiness may take together, e.g. `30s`. Default
    /// `30s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<DurationValue>")]
    pub timeout: Option<String>,
}

/// Exactly one of `tcp`, `http` or `command`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct ReadySpec {
    /// `host:port` that accepts a TCP connection once the service is ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<String>,
    /// An `http://` or `https://` URL that answers 2xx or 3xx once the service is ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<String>,
    /// A shell command (`sh -c`) that exits 0 once the service is ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
}

/// How long each phase lasts.
///
/// `phases: { baseline: 10s, inject: 30s, recover_within: 30s }`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct PhasesSpec {
    /// Sampling before any fault; the hypothesis must hold here. Default `10s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<DurationValue>")]
    pub baseline: Option<String>,
    /// How long faults are held while monitors observe. Default `30s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<DurationValue>")]
    pub inject: Option<String>,
    /// The longest acceptable time for the hypothesis to hold again after faults are reverted.
    /// Default `30s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<DurationValue>")]
    pub recover_within: Option<String>,
}

/// Safety rules.
///
/// `policies: { halt_when: ["availability < 50%"] }`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct PoliciesSpec {
    /// Expectations (same grammar as `expect`) that, when met by any monitor over the last
    /// `halt_window` of the observe phase, halt the run at once: faults are reverted, exit 3.
    #[serde(default)]
    pub halt_when: Vec<String>,
    /// The sliding window `halt_when` is judged over. Default `1s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<DurationValue>")]
    pub halt_window: Option<String>,
    /// Allow faults that cannot be undone (e.g. `kill`). Default `false`.
    #[serde(default)]
    pub allow_irreversible: bool,
    /// The longest the phases may last together (`baseline + inject + recover_within`), e.g.
    /// `2h`; a plan over it is refused. Setting it also allows phases over an hour without the
    /// warning they get otherwise. Default: no cap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<DurationValue>")]
    pub max_duration: Option<String>,
    /// How much of the estate the faults may touch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blast_radius: Option<BlastRadiusSpec>,
    /// When the experiment may run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_window: Option<TimeWindowSpec>,
    /// Who must approve a run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<ApprovalSpec>,
    /// Abort when a monitor fails this many samples in a row during the fault.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_consecutive_failures: Option<i64>,
    /// Required metadata and forbidden targets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compliance: Option<ComplianceSpec>,
}

/// An organisation's policy file (`$CHAOSFORGE_POLICY`): `policies:` as in an experiment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OrgPolicySpec {
    /// Rules every experiment inherits and cannot loosen.
    #[serde(default)]
    pub policies: PoliciesSpec,
}

/// `blast_radius: { max_targets: 3, max_percent: 50, per: service, max_concurrent_faults: 4 }`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BlastRadiusSpec {
    /// At most this many distinct targets faulted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_targets: Option<i64>,
    /// At most this percentage of the targets its selector matches, per fault (and per value of
    /// the `per` label, when given: at most half of each service).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<RatioValue>")]
    pub max_percent: Option<String>,
    /// The label whose groups `max_percent` applies to, e.g. `service`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per: Option<String>,
    /// At most this many fault instances (a fault on one target) at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrent_faults: Option<i64>,
}

/// `time_window: { timezone: Europe/Paris, days: mon-fri, hours: "09:00-16:00",
/// blackout: ["2026-12-24"] }`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TimeWindowSpec {
    /// An IANA time zone name. Default `UTC`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// Days allowed: `mon-fri`, `mon,wed,fri`, `sat-sun`. Default every day.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub days: Option<String>,
    /// Hours allowed, local time: `09:00-16:00`, or several: `09:00-12:00,14:00-16:00`.
    /// Default the whole day.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hours: Option<String>,
    /// Dates (local, `YYYY-MM-DD`) on which no run is allowed.
    #[serde(default)]
    pub blackout: Vec<String>,
}

/// `approval: { required: true, approvers: [alice, bob] }`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApprovalSpec {
    /// Whether a run needs an approval. Default `true` when the section is there.
    #[serde(default = "yes")]
    pub required: bool,
    /// Who may approve.
    #[serde(default)]
    pub approvers: Vec<String>,
}

fn yes() -> bool {
    true
}

/// `compliance: { require: [owner, ticket, description], forbid: { env: production } }`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ComplianceSpec {
    /// Metadata the file must carry: keys of `metadata`, or `description`.
    #[serde(default)]
    pub require: Vec<String>,
    /// Labels no faulted target may have (`env: production`), unless the run is given
    /// `--allow-forbidden`.
    #[serde(default)]
    pub forbid: BTreeMap<String, String>,
}

/// A ratio or percentage as written in the file: text (`99%`, `0.99`) or a bare number (a
/// fraction, or a percentage where the field says so). Only for the JSON Schema: the decoder
/// keeps both as text.
#[derive(JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)]
enum RatioValue {
    /// `99%`, `0.5`.
    Text(String),
    /// `0.99`, `50`.
    Number(f64),
}

/// `inventory: targets.yaml` or `inventory: [a.yaml, inventories/]`.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum InventoryRef {
    /// One file or directory.
    One(String),
    /// Several.
    Many(Vec<String>),
}

impl InventoryRef {
    /// The paths as written.
    pub fn paths(&self) -> Vec<&str> {
        match self {
            InventoryRef::One(p) => vec![p.as_str()],
            InventoryRef::Many(v) => v.iter().map(String::as_str).collect(),
        }
    }
}

/// An inventory file: `targets:`, as in an experiment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InventorySpec {
    /// The targets, with their labels (`cluster`, `region`, `zone`, `service`, …).
    #[serde(default)]
    pub targets: Vec<TargetSpec>,
    /// Agents its targets name (`agent: node7`), e.g.
    /// `agents: { node7: { url: "https://10.0.0.7:7700", token_env: NODE7_TOKEN } }`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub agents: BTreeMap<String, AgentRefSpec>,
}

// By hand: a name or a mapping, with a clear message for anything else.
impl<'de> Deserialize<'de> for AgentSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = AgentSpec;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an agent's name in the inventory, or { url, token_env, fingerprint }")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<AgentSpec, E> {
                Ok(AgentSpec::Named(v.to_string()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<AgentSpec, A::Error> {
                AgentRefSpec::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(AgentSpec::Inline)
            }
        }
        d.deserialize_any(V)
    }
}

// By hand, for the same reason as `CommandRunSpec`: a clear message for a wrong type.
impl<'de> Deserialize<'de> for InventoryRef {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = InventoryRef;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a path to an inventory file or directory, or a list of them")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<InventoryRef, E> {
                Ok(InventoryRef::One(v.to_string()))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<InventoryRef, A::Error> {
                let mut v = Vec::new();
                while let Some(p) = seq.next_element::<String>()? {
                    v.push(p);
                }
                Ok(InventoryRef::Many(v))
            }
            fn visit_unit<E: serde::de::Error>(self) -> Result<InventoryRef, E> {
                Ok(InventoryRef::Many(Vec::new()))
            }
        }
        d.deserialize_any(V)
    }
}

/// A duration (`250ms`, `1m30s`) or `0`: a bare number other than zero is refused, since it
/// could mean seconds or milliseconds. Only for the JSON Schema.
struct DurationValue;

/// A size (`256MiB`, `4096B`) or `0`. Only for the JSON Schema.
struct SizeValue;

/// A byte rate (`1MB/s`, `8Mbit/s`). Only for the JSON Schema.
struct RateValue;

/// The JSON Schema of a value that must carry a unit: a string matching `pattern`, or the
/// number zero when `zero` (the one number that means the same in every unit).
fn unit_schema(description: &str, pattern: &str, zero: bool) -> schemars::Schema {
    let text = serde_json::json!({ "type": "string", "pattern": pattern });
    let any_of = if zero {
        serde_json::json!([text, { "const": 0 }])
    } else {
        serde_json::json!([text])
    };
    schemars::json_schema!({ "description": description, "anyOf": any_of })
}

// === impl DurationValue, SizeValue, RateValue ===

impl JsonSchema for DurationValue {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "DurationValue".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        unit_schema(
            "A duration with its unit: `250ms`, `1.5s`, `1m30s` (ns, us, ms, s, m, h, d), or 0.",
            r"^\s*(0+(\.0*)?|([0-9]*\.?[0-9]+(ns|us|µs|ms|s|m|h|d))+)\s*$",
            true,
        )
    }
}

impl JsonSchema for SizeValue {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "SizeValue".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        unit_schema(
            "A size with its unit: `256MiB`, `1GB`, `4096B` (B, kB, MB, GB, KiB, MiB, GiB), or 0.",
            r"^\s*(0+(\.0*)?|[0-9]*\.?[0-9]+\s*(B|kB|KB|MB|GB|KiB|MiB|GiB))\s*$",
            true,
        )
    }
}

impl JsonSchema for RateValue {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "RateValue".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        unit_schema(
            "A byte rate with its unit: `1MB/s`, `512KiB/s`, `8Mbit/s`.",
            r"^\s*[0-9]*\.?[0-9]+\s*(B|kB|KB|MB|GB|KiB|MiB|GiB|bit|kbit|Kbit|Mbit|Gbit)(/s)?\s*$",
            false,
        )
    }
}

// === impl CommandRunSpec ===

// By hand: an untagged enum would answer `run: 5` with "did not match any variant".
impl<'de> Deserialize<'de> for CommandRunSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = CommandRunSpec;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(
                    "a list of arguments (`[\"pg_isready\", \"-q\"]`) or a shell command line",
                )
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<CommandRunSpec, E> {
                Ok(CommandRunSpec::Shell(v.to_string()))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<CommandRunSpec, A::Error> {
                let mut argv = Vec::new();
                while let Some(a) = seq.next_element::<String>()? {
                    argv.push(a);
                }
                Ok(CommandRunSpec::Argv(argv))
            }
            // The decoder's placeholder for a value it already reported.
            fn visit_unit<E: serde::de::Error>(self) -> Result<CommandRunSpec, E> {
                Ok(CommandRunSpec::Argv(Vec::new()))
            }
        }
        d.deserialize_any(V)
    }
}

// === impl ScopeSpec ===

// By hand rather than `#[serde(untagged)]`: untagged enums answer every mistake with "data did
// not match any variant", while a user who wrote `scope: singel` deserves the list of names.
impl<'de> Deserialize<'de> for ScopeSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = ScopeSpec;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(
                    "`single`, `all`, `cluster`, `region`, `{ count: n }`, `{ percent: n }`, \
                     `{ cluster: NAME }` or `{ region: NAME }`",
                )
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ScopeSpec, E> {
                match v {
                    "single" => Ok(ScopeSpec::Named(ScopeName::Single)),
                    "all" => Ok(ScopeSpec::Named(ScopeName::All)),
                    "cluster" => Ok(ScopeSpec::Named(ScopeName::Cluster)),
                    "region" => Ok(ScopeSpec::Named(ScopeName::Region)),
                    other => Err(E::unknown_variant(
                        other,
                        &["single", "all", "cluster", "region"],
                    )),
                }
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<ScopeSpec, A::Error> {
                SizedScopeSpec::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(ScopeSpec::Sized)
            }
        }
        d.deserialize_any(V)
    }
}

/// The JSON Schema (draft 2020-12) of the experiment file, generated from these types.
pub fn json_schema() -> String {
    let schema = schemars::schema_for!(ExperimentSpec);
    serde_json::to_string_pretty(&schema).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}
