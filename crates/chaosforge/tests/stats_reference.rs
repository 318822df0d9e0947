//! `chaosforge::stats` against reference values computed by SciPy and NumPy
//! (`tests/data/stats/mwu.json`, written by `scripts/gen-stats-reference`; no Python needed here).
//!
//! Tolerances:
//! * U: exactly equal (it is a count of pairs, a multiple of ½).
//! * p: relative, `|p − p_ref| ≤ 1e-6 · p_ref`, for every case — also the tiny ones (down to
//!   p ≈ 6e-85), where an absolute tolerance would prove nothing. Only `p_ref = 0` (f64
//!   underflow) would need an absolute floor, 1e-300; no case has it.
//! * Cliff's delta and the Hodges–Lehmann shift: `|v − v_ref| ≤ 1e-9 · max(1, |v_ref|)`.
#![allow(clippy::unwrap_used)]

use chaosforge::stats::effect::{cliffs_delta, hodges_lehmann_shift};
use chaosforge::stats::significance::{EXACT_MAX_LEN, Method, mann_whitney_u, mann_whitney_u_with};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
struct Reference {
    meta: serde_json::Value,
    cases: Vec<Case>,
}

#[derive(Debug, Deserialize)]
struct Case {
    name: String,
    method: String,
    ties: bool,
    u: f64,
    p: f64,
    cliffs_delta: f64,
    hl_shift: f64,
    x: Vec<f64>,
    y: Vec<f64>,
}

fn reference() -> Reference {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/stats/mwu.json");
    let text = std::fs::read_to_string(path).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn method(name: &str) -> Method {
    match name {
        "exact" => Method::Exact,
        "asymptotic" => Method::Asymptotic,
        other => panic!("unknown method {other:?} in the reference"),
    }
}

/// `|got − want| / want`, the relative error the p tolerance bounds (0 when both are 0).
fn relative_error(got: f64, want: f64) -> f64 {
    if got == want {
        0.0
    } else {
        (got - want).abs() / want.abs()
    }
}

#[test]
fn mann_whitney_matches_scipy() {
    let reference = reference();
    // The brief asks for at least 25 cases; the generator writes them all, so this guards
    // against a truncated file.
    assert!(
        reference.cases.len() >= 25,
        "{} cases",
        reference.cases.len()
    );
    // The worst relative error of p per method, with its case.
    let mut worst = [(0.0_f64, ""), (0.0_f64, "")];
    for case in &reference.cases {
        let method = method(&case.method);
        let got = mann_whitney_u_with(&case.x, &case.y, method).unwrap();
        assert_eq!(got.method, method, "{}", case.name);
        // U is a count of pairs (a multiple of ½): SciPy's float and ours agree exactly.
        assert_eq!(got.u, case.u, "{}: U", case.name);
        let error = relative_error(got.p_value, case.p);
        assert!(
            error <= 1e-6 || (got.p_value - case.p).abs() <= 1e-300,
            "{}: p = {:e}, SciPy {:e} (relative error {error:e})",
            case.name,
            got.p_value,
            case.p,
        );
        let slot = &mut worst[usize::from(method == Method::Asymptotic)];
        if error > slot.0 {
            *slot = (error, &case.name);
        }
    }
    // Shown with --nocapture: how close we are, far inside the tolerance.
    println!(
        "p-values of {} cases vs SciPy {}: worst relative error exact {:e} ({}), asymptotic {:e} ({})",
        reference.cases.len(),
        reference.meta["scipy"],
        worst[0].0,
        worst[0].1,
        worst[1].0,
        worst[1].1,
    );
}

#[test]
fn automatic_method_follows_the_rule() {
    // Exact exactly when there are no ties and both sides have ≤ 20 values; where that is the
    // method the reference used, the automatic call gives SciPy's answer too.
    for case in &reference().cases {
        let got = mann_whitney_u(&case.x, &case.y).unwrap();
        let small = case.x.len() <= EXACT_MAX_LEN && case.y.len() <= EXACT_MAX_LEN;
        let want = if !case.ties && small {
            Method::Exact
        } else {
            Method::Asymptotic
        };
        assert_eq!(got.method, want, "{}", case.name);
        if want == method(&case.method) {
            assert!(relative_error(got.p_value, case.p) <= 1e-6, "{}", case.name);
        }
    }
}

#[test]
fn effect_sizes_match_numpy() {
    let close = |got: f64, want: f64| (got - want).abs() <= 1e-9 * want.abs().max(1.0);
    for case in &reference().cases {
        let delta = cliffs_delta(&case.x, &case.y).unwrap();
        assert!(
            close(delta, case.cliffs_delta),
            "{}: δ = {delta}, ref {}",
            case.name,
            case.cliffs_delta
        );
        // δ = 1 − 2U/(n·m): the effect size and the test agree on the direction.
        let pairs = (case.x.len() * case.y.len()) as f64;
        assert!(close(delta, 1.0 - 2.0 * case.u / pairs), "{}", case.name);
        let shift = hodges_lehmann_shift(&case.x, &case.y).unwrap();
        assert!(
            close(shift, case.hl_shift),
            "{}: shift = {shift}, ref {}",
            case.name,
            case.hl_shift
        );
    }
}
