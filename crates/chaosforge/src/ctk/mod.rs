//! Chaos Toolkit experiment files, run as chaostoolkit 1.19 / chaostoolkit-lib 1.44 would.
//!
//! Where to start:
//! - [`load`] reads, decodes and validates a file ([`is_ctk`] tells a CTK file from ours);
//!   every problem comes back at once, at file:line:col, with chaoslib's wording.
//! - [`Experiment`] is the typed view; every activity keeps its `raw` JSON for the CTK journal.
//! - [`Context::new`] resolves configuration and secrets (`env` entries, [`Vars`] from
//!   [`parse_var`]/[`merge_vars`]); [`Context::substitute`] applies `${name}`;
//!   [`Context::redact`] hides secrets from what is written out.
//! - [`provider::run`] runs one activity and returns an [`ActivityRun`], a CTK journal `run`
//!   entry.
//! - [`tolerance::within_tolerance`] judges a probe's output, case by case as chaoslib.
//!
//! - [`flow::run`] is chaoslib's run: the hypothesis strategies, the method with its background
//!   activities, rollbacks per strategy, signals; it returns the [`journal::CtkJournal`]
//!   (`journal.json`, key for key).
//! - [`record`] writes the same run into our own journal (the rollbacks write-ahead, so that
//!   `chaosforge recover` plays them for a killed run, [`replay_rollbacks`]), which gives CTK
//!   runs our reports and history.
//!
//! - [`convert::convert`] writes the nearest chaosforge experiment (`chaosforge convert`).
//!
//! Known differences from chaoslib, each small and deliberate or not yet worth the cost:
//! - response header names are Title-Cased, not as the server sent them;
//! - bytes that are not UTF-8 are replaced, where chaoslib guesses an encoding;
//! - `vault` secrets and Python providers are refused at validation;
//! - `env_var_type: bytes` stays a string (JSON has no bytes).

pub mod config;
pub mod convert;
mod exec;
pub mod flow;
pub mod journal;
pub mod model;
pub mod provider;
pub mod record;
pub mod tolerance;
mod validate;

pub use config::{
    ConfigError, Context, Env, VarError, Vars, load_configuration, load_secrets, merge_vars,
    parse_var, substitute,
};
pub use exec::{Providers, replay_rollbacks};
pub use model::{
    Activity, ActivityDef, ActivityKind, Experiment, Hypothesis, Pauses, Provider, Runtime,
};
pub use provider::{ActivityRun, Failure, RunStatus, isoformat};
pub use validate::{Warnings, is_ctk, load, load_document, python_replacement, validate, which};
