//! How long validating a large experiment takes, stage by stage: parse, parse + decode,
//! parse + decode + compile, and `plan::load_document` (what `chaosforge validate` runs after
//! parsing), for 100- and 1,000-fault files, so that growth shows whether it stays linear.
//! Measurements only, nothing is asserted about them.
//!
//! `cargo bench -p chaosforge-cli --bench validate` (add `-- --quick` for a fast estimate).

use std::fmt::Write as _;
use std::hint::black_box;

use chaosforge::plan;
use chaosforge::source::Document;
use chaosforge::spec::ExperimentSpec;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const TARGETS: usize = 20;
/// Fault counts benchmarked: the mission's 100, and 10× that to show the growth is linear.
const SIZES: [usize; 2] = [100, 1_000];

/// An experiment with `TARGETS` labelled proxy targets, 3 monitors and `faults` faults of every
/// proxy kind, with a mix of selectors and scopes, as a user would write it (block style with
/// flow mappings).
fn experiment(faults: usize) -> String {
    let zones = ["a", "b", "c", "d"];
    let roles = ["web", "api", "db", "cache", "queue"];
    let mut s = String::from(
        "apiVersion: chaosforge/v1\nname: bench-faults\ndescription: a large file for benchmarks\nseed: 42\ntargets:\n",
    );
    for i in 0..TARGETS {
        let _ = write!(
            s,
            "  - name: svc-{i}\n    proxy: {{ listen: \"127.0.0.1:{}\", upstream: \"127.0.0.1:{}\" }}\n    labels: {{ zone: {}, role: {}, tier: \"{}\" }}\n",
            20_000 + i,
            30_000 + i,
            zones[i % zones.len()],
            roles[i % roles.len()],
            i % 3,
        );
    }
    s.push_str(
        "hypothesis:
  title: the shop stays up
  monitors:
    - name: checkout
      http: { url: \"http://127.0.0.1:18080/checkout\", method: POST, interval: 100ms, timeout: 1s, success: \"2xx\", headers: { Accept: application/json } }
      expect: [\"availability >= 99%\", \"latency.p99 < 300ms\", \"latency.p50 < 50ms\"]
    - name: home
      http: { url: \"http://127.0.0.1:18080/\", interval: 250ms }
      expect: [\"error_rate < 1%\", \"throughput >= 3/s\"]
    - name: db-port
      tcp: { address: \"127.0.0.1:5432\", interval: 200ms, timeout: 500ms }
      expect: [\"availability >= 99.9%\"]
faults:
",
    );
    let kinds = [
        "latency: { delay: 200ms, jitter: 20ms }",
        "latency: { delay: 1s, direction: both, toxicity: 50% }",
        "bandwidth: { rate: 512KiB/s }",
        "timeout: { after: 5s, direction: upstream }",
        "reset: { after: 10ms, toxicity: 25% }",
        "down: {}",
        "corrupt: { probability: 1%, per: chunk }",
    ];
    let targets = [
        "{ select: { zone: a }, scope: single }",
        "{ select: { role: web }, scope: all }",
        "{ scope: { count: 3 } }",
        "{ select: { tier: \"1\" }, scope: { percent: 50 } }",
        "{ select: { name: svc-7 } }",
        "{ select: { zone: b, role: api }, scope: all }",
    ];
    for i in 0..faults {
        let _ = write!(
            s,
            "  - name: fault-{i}\n    {}\n    target: {}\n",
            kinds[i % kinds.len()],
            targets[i % targets.len()],
        );
    }
    s.push_str(
        "phases: { baseline: 10s, inject: 30s, recover_within: 30s }
policies:
  halt_when: [\"availability < 50%\", \"latency.p99 > 2s\"]
  halt_window: 2s
",
    );
    s
}

fn parse(text: &str) -> Document {
    match Document::parse("bench.yaml", text) {
        Ok(d) => d,
        Err(e) => panic!("the bench experiment does not parse:\n{e}"),
    }
}

fn decode(doc: &Document) -> ExperimentSpec {
    match chaosforge::de::decode(doc) {
        Ok(s) => s,
        Err(e) => panic!("the bench experiment does not decode:\n{e}"),
    }
}

fn compile(doc: &Document, spec: &ExperimentSpec) -> plan::Plan {
    match plan::compile(doc, spec, None) {
        Ok(p) => p,
        Err(e) => panic!("the bench experiment is invalid:\n{e}"),
    }
}

fn bench_validate(c: &mut Criterion) {
    for faults in SIZES {
        let text = experiment(faults);
        // Set-up check, not a measurement: benchmarking an invalid file would time the error path.
        let p = compile(&parse(&text), &decode(&parse(&text)));
        assert_eq!(
            (p.targets.len(), p.monitors.len(), p.faults.len()),
            (TARGETS, 3, faults)
        );

        let mut g = c.benchmark_group(format!("validate_{faults}_faults"));
        g.throughput(Throughput::Bytes(text.len() as u64));
        g.bench_function("parse", |b| b.iter(|| parse(black_box(&text))));
        g.bench_function("parse_decode", |b| {
            b.iter(|| decode(&parse(black_box(&text))))
        });
        g.bench_function("parse_decode_compile", |b| {
            b.iter(|| {
                let doc = parse(black_box(&text));
                let spec = decode(&doc);
                compile(&doc, &spec)
            })
        });
        // What `chaosforge validate` does once the file is read (the organisation policy aside).
        g.bench_function("load_document", |b| {
            b.iter(|| {
                let doc = parse(black_box(&text));
                match plan::load_document(&doc, Some(0)) {
                    Ok(p) => p,
                    Err(e) => panic!("the bench experiment is invalid:\n{e}"),
                }
            })
        });
        g.finish();
    }
}

criterion_group!(benches, bench_validate);
criterion_main!(benches);
