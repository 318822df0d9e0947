//! Chaos Toolkit experiment files, run as chaostoolkit 1.19 / chaostoolkit-lib 1.44 would.
//!
//! So far: [`tolerance`], chaoslib's `within_tolerance` case by case (pure, at the
//! `hypothesis` level). The model, providers, run flow and CTK journal are issue 13's next steps.

pub mod tolerance;
