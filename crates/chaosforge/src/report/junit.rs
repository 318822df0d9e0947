//! The JUnit XML renderer (quick-junit), so CI systems show chaos results as tests.
//!
//! Each report is a `<testsuite>` named after its experiment, each expectation of each monitor a
//! `<testcase>`:
//! - a failure when it did not hold during the fault (the message has the observed value and
//!   the threshold);
//! - an error for every expectation of a run that could not judge them: not steady (nothing was
//!   injected), errored, or unfinished (the runner died);
//! - skipped when the fault window had no data (a run halted before it).
//!
//! Three more cases make the rest of the verdict visible: `recovery` (failed when the system did
//! not return to its steady state within `recover_within`), `faults reverted` (an error when a
//! revert failed or never happened) and, for halted, errored or unfinished runs, `run` (an error
//! with the outcome). The suite's properties carry the run id and seed, its `system-out` the text
//! report. No timestamps or ids are made up, so the same journals give the same bytes.

use quick_junit::{NonSuccessKind, Property, TestCase, TestCaseStatus, TestSuite};

use super::{ExpectationReport, Report, ReportError};
use crate::vocab::Outcome;

/// One JUnit document with a test suite per report, in order.
pub fn render(reports: &[Report]) -> Result<String, ReportError> {
    let mut doc = quick_junit::Report::new("chaosforge");
    doc.set_time(reports.iter().map(|r| r.duration).sum());
    for r in reports {
        doc.add_test_suite(suite(r));
    }
    doc.to_string().map_err(|e| ReportError::Render {
        format: "junit",
        message: e.to_string(),
    })
}

fn suite(r: &Report) -> TestSuite {
    let p = &r.plan;
    let mut s = TestSuite::new(p.name.as_str());
    s.set_time(r.duration);
    s.add_properties([
        Property::new("run_id", r.run_id.0.as_str()),
        Property::new("seed", p.seed.to_string()),
        Property::new("file", p.file.as_str()),
        Property::new("started_at", r.started_at.to_string()),
        Property::new("hypothesis", p.title.as_str()),
        Property::new("verdict", r.verdict()),
    ]);
    let unjudged = match &r.outcome {
        Some(Outcome::NotSteady { .. }) => Some(("not-steady", r.headline())),
        Some(Outcome::Errored { .. }) => Some(("run-error", r.headline())),
        None => Some(("unfinished", r.headline())),
        Some(_) => None,
    };
    for m in &r.monitors {
        for e in &m.expectations {
            let name = format!("{}: {}", m.name, e.expect);
            let status = match &unjudged {
                Some((ty, why)) => {
                    let message = match (ty, e.baseline.held) {
                        (&"not-steady", Some(false)) => format!(
                            "did not hold at baseline: observed {}{}",
                            e.baseline.shown,
                            threshold(e)
                        ),
                        _ => format!("not judged: {why}"),
                    };
                    non_success(NonSuccessKind::Error, ty, message)
                }
                None => match e.during.held {
                    Some(false) => non_success(
                        NonSuccessKind::Failure,
                        "refuted",
                        format!(
                            "observed {} during the fault{}; baseline {}{}",
                            e.during.shown,
                            threshold(e),
                            e.baseline.shown,
                            e.delta
                                .as_ref()
                                .map(|d| format!(", delta {d}"))
                                .unwrap_or_default()
                        ),
                    ),
                    Some(true) => TestCaseStatus::success(),
                    None => {
                        let mut st = TestCaseStatus::skipped();
                        st.set_message("no samples during the fault to judge");
                        st
                    }
                },
            };
            let mut case = TestCase::new(name, status);
            case.set_classname(format!("{}.{}", p.name, m.name));
            s.add_test_case(case);
        }
    }
    if let Some(rec) = &r.recovery {
        let status = match (rec.ttr, r.recovery_text()) {
            (Some(_), _) => TestCaseStatus::success(),
            (None, text) => non_success(
                NonSuccessKind::Failure,
                "not-recovered",
                text.unwrap_or_else(|| "did not recover".into()),
            ),
        };
        s.add_test_case(case(&p.name, "recovery", status));
    }
    if !r.faults.is_empty() {
        let stuck: Vec<String> = r
            .faults
            .iter()
            .filter(|f| {
                f.reverted_by.is_none()
                    || f.error
                        .as_deref()
                        .is_some_and(|e| e.starts_with("revert failed"))
            })
            .map(|f| {
                format!(
                    "{} on {}: {}",
                    f.name,
                    f.target,
                    f.error.as_deref().unwrap_or("not reverted")
                )
            })
            .collect();
        let status = if stuck.is_empty() {
            TestCaseStatus::success()
        } else {
            non_success(
                NonSuccessKind::Error,
                "revert-failed",
                format!(
                    "{}; run `chaosforge recover` and check the target",
                    stuck.join("; ")
                ),
            )
        };
        s.add_test_case(case(&p.name, "faults reverted", status));
    }
    if !r.security_findings.is_empty() {
        s.add_test_case(case(
            &p.name,
            "security findings",
            non_success(
                NonSuccessKind::Failure,
                "security",
                r.security_findings.join("; "),
            ),
        ));
    }
    if matches!(
        r.outcome,
        None | Some(Outcome::Halted { .. } | Outcome::Errored { .. })
    ) {
        let ty = match r.outcome {
            Some(Outcome::Halted { .. }) => "halted",
            Some(_) => "run-error",
            None => "unfinished",
        };
        s.add_test_case(case(
            &p.name,
            "run",
            non_success(NonSuccessKind::Error, ty, r.headline()),
        ));
    }
    s.set_system_out(r.render_text());
    s
}

fn case(experiment: &str, name: &str, status: TestCaseStatus) -> TestCase {
    let mut c = TestCase::new(name, status);
    c.set_classname(experiment);
    c
}

fn non_success(kind: NonSuccessKind, ty: &str, message: String) -> TestCaseStatus {
    let mut st = TestCaseStatus::non_success(kind);
    st.set_type(ty).set_message(message);
    st
}

/// `, threshold 15ms (baseline * 1.5)` for relative expectations, else `, expected latency.p99 <
/// 300ms`.
fn threshold(e: &ExpectationReport) -> String {
    match &e.threshold {
        Some(t) => format!(", threshold {t}"),
        None => format!(", expected {}", e.expect),
    }
}

// === impl Report ===

impl Report {
    /// Renders this report as a JUnit XML document with one test suite.
    pub fn render_junit(&self) -> Result<String, ReportError> {
        render(std::slice::from_ref(self))
    }
}
