//! chaosforge: prove, with real faults and real measurements, that a system survives what
//! production will throw at it.
//!
//! Where to start: an experiment file is parsed by [`source`] and [`de`] into [`spec`] types,
//! compiled by [`plan::compile`] into a [`plan::Plan`] (every problem reported at once), and run by
//! [`engine::Engine`] through five phases. Every fault is journaled by [`journal`] before it is
//! applied; [`report::Report`] is computed from the journal alone.
//!
//! ```
//! use chaosforge::plan;
//! use chaosforge::source::Document;
//!
//! let text = r#"
//! apiVersion: chaosforge/v1
//! name: demo
//! targets:
//!   - name: backend
//!     proxy: { listen: "127.0.0.1:0", upstream: "127.0.0.1:9000" }
//!     labels: { service: backend }
//! hypothesis:
//!   monitors:
//!     - name: api
//!       http: { url: "http://127.0.0.1:8080/", interval: 100ms }
//!       expect: ["availability >= 99%", "latency.p99 < 300ms"]
//! faults:
//!   - name: slow-backend
//!     latency: { delay: 200ms }
//!     target: { select: { service: backend } }
//! phases: { baseline: 2s, inject: 5s, recover_within: 5s }
//! "#;
//! let doc = Document::parse("demo.yaml", text).unwrap();
//! let spec = chaosforge::de::decode(&doc).unwrap();
//! let plan = plan::compile(&doc, &spec, Some(42)).unwrap();
//! assert_eq!(plan.faults[0].targets, ["backend"]);
//! assert_eq!(plan.faults[0].kind.describe(), "latency 200ms (downstream)");
//! ```
//!
//! Modules:
//! - [`diag`]: diagnostics (`file:line:col: path: message`) and "did you mean".
//! - [`units`]: durations, ratios, byte rates.
//! - [`source`]: YAML/JSON parsed into a tree that keeps every node's position.
//! - [`de`]: a serde decoder over that tree that collects every problem.
//! - [`spec`]: the experiment file as written (`…Spec`).
//! - [`plan`]: validation and resolution into a [`plan::Plan`].
//! - [`scope`]: selectors, scopes and the seeded RNG.
//! - [`host_target`]: finding `netns`/`host` targets when a run starts.
//! - [`hypothesis`], [`stats`]: expectations and how they are judged over samples; whether a
//!   fault really moved a metric (Mann–Whitney U), by how much (Cliff's delta, Hodges–Lehmann
//!   shift), when it was detected and when it recovered (CUSUM).
//! - [`analysis`]: those statistics applied to an expectation's samples (significance, time to
//!   detect and to recover).
//! - [`probe`], [`monitor`]: measurements and interval sampling.
//! - [`fault`]: the fault contract, guards, and each fault family.
//! - [`vocab`]: the run's vocabulary (ids, phases, outcomes, the plan summary, samples, revert
//!   records): everything the journal records; imports nothing above `units`.
//! - [`journal`]: the write-ahead journal; imports only `vocab`, `units` and `audit`.
//! - [`audit`]: the machine's hash-chained audit log (`audit.jsonl`), fed by every journal.
//! - [`ctk`]: Chaos Toolkit experiment files, run as chaostoolkit 1.19 does (flow, providers,
//!   tolerances, `journal.json`), with rollbacks journaled write-ahead; `convert`.
//! - [`claims`]: the targets and kernel resources a run holds exclusively (a lock file each).
//! - [`halt`]: how `chaosforge halt` asks live runs to revert everything and stop.
//! - [`deadman`]: a run's heartbeat, and how `recover` takes over the faults of a stuck one.
//! - [`engine`]: the five phases.
//! - [`recover`]: reverting what dead or stuck runs left.
//! - [`notify`]: webhooks (`notify:`) told about a run's events, in the background.
//! - [`report`]: reports computed from journals.
//! - [`gameday`]: game days — several experiments in order or in parallel, with roles, their
//!   own journal linking each scenario's run, and one combined report.
//! - [`history`]: the run history (SQLite) and MTTR, MTTD, MTBF, trends and the resilience score over it.
//! - `testkit` (feature `testkit`): the fault compliance harness.
#![cfg_attr(test, allow(clippy::unwrap_used))]
#![warn(missing_docs)]

pub mod analysis;
pub mod audit;
pub mod claims;
pub mod ctk;
pub mod de;
pub mod deadman;
pub mod diag;
pub mod engine;
pub mod fault;
pub mod gameday;
pub mod halt;
pub mod history;
pub mod host_target;
pub mod hypothesis;
pub mod journal;
pub mod monitor;
pub mod notify;
pub mod plan;
pub mod probe;
pub mod recover;
pub mod report;
pub mod scope;
pub mod source;
pub mod spec;
pub mod stats;
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;
pub mod units;
pub mod vocab;
