//! `chaosforge demo` works out of the box: one confirmed and one refuted report, exit 0.

use crate::support::{Dir, chaosforge};

#[test]
fn demo_confirms_the_resilient_gateway_and_refutes_the_naive_one() {
    let dir = Dir::new();
    let out = chaosforge()
        .arg("demo")
        .arg("--state-dir")
        .arg(dir.state())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout.matches("outcome     CONFIRMED").count(),
        1,
        "{stdout}"
    );
    assert_eq!(stdout.matches("outcome     REFUTED").count(), 1, "{stdout}");
    assert_eq!(dir.journals().len(), 2);
}
