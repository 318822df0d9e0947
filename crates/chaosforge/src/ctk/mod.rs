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
//! The run flow (hypothesis strategies, rollbacks, `journal.json`, CLI) builds on these.

pub mod config;
pub mod model;
pub mod provider;
pub mod tolerance;
mod validate;

pub use config::{
    ConfigError, Context, Env, VarError, Vars, load_configuration, load_secrets, merge_vars,
    parse_var, substitute,
};
pub use model::{
    Activity, ActivityDef, ActivityKind, Experiment, Hypothesis, Pauses, Provider, Runtime,
};
pub use provider::ActivityRun;
pub use validate::{Warnings, is_ctk, load, load_document, python_replacement, validate, which};
