//! Chaos Toolkit experiment files, run as chaostoolkit 1.19 / chaostoolkit-lib 1.44 would.
//!
//! So far: [`tolerance`], chaoslib's `within_tolerance` case by case (pure, at the
//! `hypothesis` level). The model, providers, run flow and CTK journal are issue 13's next steps.

pub mod flow;
pub mod journal;
pub mod record;
pub mod tolerance;

/// Plays a CTK run's rollbacks from the record alone (`chaosforge recover`).
///
/// # Errors
///
/// The configuration or secrets cannot be resolved here, or a rollback failed.
pub async fn replay_rollbacks(
    file: &std::path::Path,
    rollbacks: &[serde_json::Value],
    configuration: &serde_json::Value,
    vars: &std::collections::BTreeMap<String, serde_json::Value>,
) -> Result<String, crate::fault::BoxError> {
    let _ = (file, rollbacks, configuration, vars);
    Err("CTK rollback replay is not wired to the providers yet".into())
}
