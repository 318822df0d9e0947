//! Parse tables, judging over handmade samples, and formatting. No runtime needed.

use super::*;

const MS: Duration = Duration::from_millis(1);

fn ok(ms: u32) -> Sample {
    Sample::success(ms * MS)
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

use crate::vocab::Resource;

fn failed(ms: u32) -> Sample {
    Sample::failure(ms * MS, "timeout after 1s")
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-12
}

#[test]
fn parses_good_expectations() {
    use LatencyStat::*;
    use Metric::*;
    let cases: &[(&str, Metric, Cmp, f64)] = &[
        ("availability >= 99%", Availability, Cmp::Ge, 0.99),
        ("availability>=99%", Availability, Cmp::Ge, 0.99),
        ("  availability >= 99.5 %  ", Availability, Cmp::Ge, 0.995),
        ("availability > 0.999", Availability, Cmp::Gt, 0.999),
        ("availability >= 100%", Availability, Cmp::Ge, 1.0),
        ("error_rate < 1%", ErrorRate, Cmp::Lt, 0.01),
        ("error_rate < 0.01", ErrorRate, Cmp::Lt, 0.01),
        ("error_rate<=0", ErrorRate, Cmp::Le, 0.0),
        ("latency.p99 < 300ms", Latency(P99), Cmp::Lt, 0.3),
        ("latency.p50<=120ms", Latency(P50), Cmp::Le, 0.12),
        ("latency.p90 < 1.5s", Latency(P90), Cmp::Lt, 1.5),
        ("latency.p95\t<\t250ms", Latency(P95), Cmp::Lt, 0.25),
        ("latency.max <= 1s", Latency(Max), Cmp::Le, 1.0),
        ("latency.min > 100us", Latency(Min), Cmp::Gt, 0.0001),
        ("latency.mean < 1m30s", Latency(Mean), Cmp::Lt, 90.0),
        ("latency.p99 < 250µs", Latency(P99), Cmp::Lt, 0.00025),
        ("throughput >= 50/s", Throughput, Cmp::Ge, 50.0),
        ("throughput>0.5/s", Throughput, Cmp::Gt, 0.5),
        ("value < 0.8", Value(Mean), Cmp::Lt, 0.8),
        ("value.p95 < 200", Value(P95), Cmp::Lt, 200.0),
        ("value.max >= -3.5e2", Value(Max), Cmp::Ge, -350.0),
        (
            "resource.cpu < 80%",
            Resource(ResourceKind::Cpu, Mean),
            Cmp::Lt,
            80.0,
        ),
        (
            "resource.cpu.max <= 150%",
            Resource(ResourceKind::Cpu, Max),
            Cmp::Le,
            150.0,
        ),
        (
            "resource.memory < 512MiB",
            Resource(ResourceKind::Memory, Mean),
            Cmp::Lt,
            512.0 * 1024.0 * 1024.0,
        ),
        (
            "resource.memory.p99 < 1GiB",
            Resource(ResourceKind::Memory, P99),
            Cmp::Lt,
            1073741824.0,
        ),
        (
            "resource.fds < 1000",
            Resource(ResourceKind::Fds, Mean),
            Cmp::Lt,
            1000.0,
        ),
        (
            "resource.threads.max < 64",
            Resource(ResourceKind::Threads, Max),
            Cmp::Lt,
            64.0,
        ),
    ];
    for &(text, metric, cmp, threshold) in cases {
        let e = Expectation::parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
        assert_eq!((e.metric, e.cmp), (metric, cmp), "{text:?}");
        assert_eq!(e.threshold_value(None), Some(e.fixed()), "{text:?}");
        assert!(close(e.fixed(), threshold), "{text:?}: {:?}", e.threshold);
        assert_eq!(e.text, text.trim(), "the original text is kept, trimmed");
        // Display is canonical and parses back to the same expectation.
        let again = Expectation::parse(&e.to_string()).unwrap();
        assert_eq!((again.metric, again.cmp), (metric, cmp), "{e}");
        assert!(
            close(again.fixed(), threshold),
            "{e}: {:?}",
            again.threshold
        );
    }
}

#[test]
fn refuses_bad_expectations_pointing_at_the_bad_part() {
    // (text, part of the message, offset, len)
    let cases: &[(&str, &str, usize, usize)] = &[
        ("", "empty expectation", 0, 0),
        ("   ", "empty expectation", 0, 3),
        (
            "availabilty >= 99%",
            "unknown metric `availabilty` (did you mean `availability`?)",
            0,
            11,
        ),
        (
            "  availabilty >= 99%",
            "did you mean `availability`?",
            2,
            11,
        ),
        ("Availability >= 99%", "did you mean `availability`?", 0, 12),
        ("error-rate < 1%", "did you mean `error_rate`?", 0, 10),
        ("success_rate >= 99%", "did you mean `availability`?", 0, 12),
        ("thruput >= 5/s", "did you mean `throughput`?", 0, 7),
        ("througput >= 5/s", "did you mean `throughput`?", 0, 9),
        (
            "latency.p98 < 300ms",
            "unknown latency statistic `p98`; use one of p50, p90",
            8,
            3,
        ),
        (
            "latency.p999 < 1s",
            "unknown latency statistic `p999` (did you mean `p99`?)",
            8,
            4,
        ),
        (
            "latency < 300ms",
            "`latency` needs a statistic, e.g. `latency.p99`",
            0,
            7,
        ),
        (
            "p99 < 300ms",
            "latency statistics are written `latency.p99`",
            0,
            3,
        ),
        (">= 99%", "missing metric before `>=`", 0, 2),
        (
            "availability 99%",
            "missing comparison between `availability` and `99%`",
            13,
            3,
        ),
        (
            "availability",
            "missing comparison after `availability`",
            12,
            0,
        ),
        (
            "availability: 99%",
            "and `:`; write e.g. `availability >= 99%`",
            12,
            1,
        ),
        (
            "latency.p99 300ms",
            "write e.g. `latency.p99 >= 300ms`",
            12,
            5,
        ),
        ("latency.p99", "write e.g. `latency.p99 >= 300ms`", 11, 0),
        (
            "availability >=",
            "missing threshold after `availability >=`",
            13,
            2,
        ),
        ("availability = 99%", "`=` is not supported", 13, 1),
        ("availability == 99%", "`==` is not supported", 13, 2),
        ("availability ≥ 99%", "write `>=` instead of `≥`", 13, 3),
        ("availability => 99%", "write `>=` instead of `=>`", 13, 2),
        ("latency.p99 <== 300ms", "unknown operator `<==`", 12, 3),
        ("availability >= 101%", "`101%` is over 100%", 16, 4),
        ("availability >= 2", "a bare number is a fraction", 16, 1),
        ("error_rate < -1%", "negative", 13, 3),
        ("availability >= 99%%", "`99%%` is not a ratio", 16, 4),
        (
            "latency.p99 < 300",
            "latency threshold `300` needs a duration unit",
            14,
            3,
        ),
        (
            "latency.p99 < 300 ms",
            "no space between the number and its unit; write `300ms`",
            17,
            3,
        ),
        (
            "latency.p99 < 5parsecs",
            "unknown duration unit `parsecs`",
            15,
            7,
        ),
        (
            "latency.p99 < 99%",
            "latency is a duration, not a ratio",
            14,
            3,
        ),
        (
            "throughput >= 50",
            "throughput `50` needs its unit; write `50/s`",
            14,
            2,
        ),
        (
            "throughput >= 50/m",
            "`/m` is not supported (50 per minute is `0.833/s`)",
            16,
            2,
        ),
        ("throughput >= fast/s", "`fast` is not a number", 14, 4),
        ("throughput >= -5/s", "must be zero or more", 14, 2),
        (
            "latency.p99 < 300ms and availability >= 99%",
            "unexpected `and availability >= 99%` after the threshold `300ms`; write each",
            20,
            23,
        ),
    ];
    for &(text, message, offset, len) in cases {
        let e = Expectation::parse(text).unwrap_err();
        assert!(e.message.contains(message), "{text:?}: got {:?}", e.message);
        assert_eq!((e.offset, e.len), (offset, len), "{text:?}: {}", e.message);
        // The range is always a valid slice of the input, so a diagnostic can underline it.
        assert!(text.get(e.offset..e.offset + e.len).is_some(), "{text:?}");
    }
}

#[test]
fn window_stats_over_handmade_samples() {
    // 1..=100 ms, all ok, over 10 s: every number is checkable by eye.
    let samples: Vec<_> = (1..=100).map(ok).collect();
    let s = WindowStats::from_samples(&samples, Duration::from_secs(10));
    assert_eq!((s.samples, s.ok), (100, 100));
    assert_eq!(s.availability, Some(1.0));
    assert_eq!(s.error_rate, Some(0.0));
    assert_eq!(s.throughput, Some(10.0));
    let l = s.latency.unwrap();
    assert_eq!((l.min, l.p50, l.p90), (MS, 50 * MS, 90 * MS));
    assert_eq!((l.p95, l.p99, l.max), (95 * MS, 99 * MS, 100 * MS));
    assert_eq!(l.mean, Duration::from_micros(50_500));
    assert_eq!(l.duration(LatencyStat::P99), 99 * MS);
    assert_eq!(l.get(LatencyStat::Max), 0.1);
}

#[test]
fn latency_ignores_failed_samples() {
    // Two timeouts at 1 s and one fast refusal: they lower availability, but neither raises
    // the p99 to the probe's timeout nor lowers the min to the refusal's 0 ms.
    let mut samples: Vec<_> = (1..=97).map(|_| ok(40)).collect();
    samples.extend([
        failed(1000),
        failed(1000),
        Sample::failure(Duration::ZERO, "connection refused"),
    ]);
    let s = WindowStats::from_samples(&samples, Duration::from_secs(10));
    assert_eq!((s.samples, s.ok), (100, 97));
    assert!(close(s.availability.unwrap(), 0.97));
    assert!(close(s.error_rate.unwrap(), 0.03));
    assert!(close(s.throughput.unwrap(), 9.7));
    let l = s.latency.unwrap();
    assert_eq!((l.min, l.p99, l.max), (40 * MS, 40 * MS, 40 * MS));
}

#[test]
fn judging() {
    let mut samples: Vec<_> = (1..=98).map(ok).collect();
    samples.extend([failed(1000), failed(1000)]);
    let stats = WindowStats::from_samples(&samples, Duration::from_secs(2));
    let judge = |text: &str| {
        let e = Expectation::parse(text).unwrap();
        let v = e.judge(&stats);
        (v, e.explain(&v))
    };
    let (v, line) = judge("availability >= 99%");
    assert!(v.is_violated());
    assert_eq!(line, "availability >= 99%: violated (observed 98.0%)");
    let (v, line) = judge("error_rate < 5%");
    assert!(v.holds());
    assert_eq!(line, "error_rate < 5%: holds (observed 2.0%)");
    let (v, line) = judge("latency.p99 < 100ms");
    assert_eq!(v, Verdict::Holds { observed: 0.098 });
    assert_eq!(line, "latency.p99 < 100ms: holds (observed 98ms)");
    let (v, line) = judge("latency.max<90ms");
    assert!(v.is_violated());
    assert_eq!(line, "latency.max < 90ms: violated (observed 98ms)");
    let (_, line) = judge("throughput >= 50/s");
    assert_eq!(line, "throughput >= 50/s: violated (observed 49/s)");
    let (v, _) = judge("latency.min > 0.5ms");
    assert_eq!(v.observed(), Some(0.001));
}

#[test]
fn boundaries_are_exact() {
    // 99 of 100 ok: `>= 99%` holds exactly at the threshold, `> 99%` does not.
    let mut samples: Vec<_> = (0..99).map(|_| ok(100)).collect();
    samples.push(failed(1000));
    let stats = WindowStats::from_samples(&samples, Duration::from_secs(1));
    let holds = |text: &str| Expectation::parse(text).unwrap().judge(&stats).holds();
    assert!(holds("availability >= 99%"));
    assert!(!holds("availability > 99%"));
    assert!(holds("latency.max <= 100ms"));
    assert!(!holds("latency.max < 100ms"));
    assert!(holds("latency.p50 >= 0.1s"));
}

#[test]
fn no_data_is_not_zero() {
    let empty = WindowStats::from_samples(&[], Duration::from_secs(1));
    assert_eq!(
        (empty.availability, empty.throughput, empty.latency),
        (None, None, None)
    );
    for text in [
        "availability >= 99%",
        "error_rate < 1%",
        "latency.p99 < 1s",
        "throughput > 1/s",
    ] {
        let e = Expectation::parse(text).unwrap();
        assert_eq!(e.judge(&empty), Verdict::NoData, "{text}");
        assert_eq!(e.explain(&Verdict::NoData), format!("{e}: no data"));
    }
    // All failed: availability is a real 0 %, but there is no latency to judge.
    let samples = [failed(5), failed(7)];
    let all_failed = WindowStats::from_samples(&samples, Duration::from_secs(1));
    let avail = Expectation::parse("availability >= 99%").unwrap();
    assert_eq!(
        avail.judge(&all_failed),
        Verdict::Violated { observed: 0.0 }
    );
    let p99 = Expectation::parse("latency.p99 < 1s").unwrap();
    assert_eq!(p99.judge(&all_failed), Verdict::NoData);
    assert_eq!(all_failed.throughput, Some(0.0));
    // A zero-length window has no rate.
    let zero = WindowStats::from_samples(&samples, Duration::ZERO);
    assert_eq!(zero.throughput, None);
}

#[test]
fn formats_values_in_their_units() {
    let avail = Metric::Availability;
    assert_eq!(avail.format_value(0.995), "99.5%");
    // One decimal everywhere, except where it would round onto 100 or 0.
    assert_eq!(avail.format_value(0.99873), "99.9%");
    assert_eq!(avail.format_value(0.474), "47.4%");
    assert_eq!(avail.format_value(0.9997), "99.97%");
    assert_eq!(avail.format_value(0.0001), "0.01%");
    assert_eq!(avail.format_value(1.0), "100.0%");
    assert_eq!(avail.format_value(0.0), "0.0%");
    let p99 = Metric::Latency(LatencyStat::P99);
    assert_eq!(p99.format_value(0.312), "312ms");
    assert_eq!(p99.format_value(1.5), "1.5s");
    assert_eq!(p99.format_value(0.000_120), "120µs");
    assert_eq!(p99.format_value(-1.0), "-1s");
    assert_eq!(Metric::Throughput.format_value(48.2), "48.2/s");
    assert_eq!(Metric::Throughput.format_value(50.0), "50/s");
    assert_eq!(Metric::Throughput.format_value(1.0 / 3.0), "0.33/s");
    assert_eq!(p99.name(), "latency.p99");
    assert_eq!(Metric::ErrorRate.to_string(), "error_rate");
    for name in Metric::NAMES {
        let e = Expectation::parse(&format!(
            "{name} > 0.5{}",
            if name.starts_with("latency") {
                "s"
            } else if name == "throughput" {
                "/s"
            } else if name == "resource.cpu" {
                "%"
            } else if name == "resource.memory" {
                "MiB"
            } else {
                ""
            }
        ))
        .unwrap();
        assert_eq!(e.metric.name(), name);
    }
}

#[test]
fn serde_forms() {
    let e = Expectation::parse("latency.p99<300ms").unwrap();
    let json = serde_json::to_string(&e).unwrap();
    assert_eq!(json, "\"latency.p99<300ms\"");
    assert_eq!(serde_json::from_str::<Expectation>(&json).unwrap(), e);
    assert!(serde_json::from_str::<Expectation>("\"latency.p98 < 1s\"").is_err());
    let v = serde_json::to_string(&Verdict::Holds { observed: 0.5 }).unwrap();
    assert_eq!(v, r#"{"verdict":"holds","observed":0.5}"#);
    assert_eq!(
        serde_json::to_string(&Verdict::NoData).unwrap(),
        r#"{"verdict":"no_data"}"#
    );
}

#[test]
fn did_you_mean_is_conservative() {
    assert_eq!(
        did_you_mean("availabiltiy", &Metric::NAMES),
        " (did you mean `availability`?)"
    );
    assert_eq!(did_you_mean("zzz", &Metric::NAMES), "");
    // A tie between equally close names suggests nothing rather than guessing.
    assert_eq!(did_you_mean("p98", &LatencyStat::NAMES), "");
    assert_eq!(crate::diag::edit_distance("kitten", "sitting"), 3);
}

impl Expectation {
    fn fixed(&self) -> f64 {
        match self.threshold {
            Threshold::Fixed(v) => v,
            Threshold::Baseline(r) => panic!("`{}` is relative: {r:?}", self.text),
        }
    }
}

#[test]
fn relative_thresholds_parse_print_and_resolve() {
    let cases: &[(&str, Relative, &str)] = &[
        (
            "latency.p99 < baseline * 1.5",
            Relative::Times(1.5),
            "latency.p99 < baseline * 1.5",
        ),
        (
            "latency.p99<baseline*2",
            Relative::Times(2.0),
            "latency.p99 < baseline * 2",
        ),
        (
            "latency.p50 < baseline + 50ms",
            Relative::Plus(0.05),
            "latency.p50 < baseline + 50ms",
        ),
        (
            "throughput > baseline - 10%",
            Relative::Percent(-0.1),
            "throughput > baseline - 10%",
        ),
        (
            "availability >= baseline - 0.5pp",
            Relative::Points(-0.005),
            "availability >= baseline - 0.5pp",
        ),
        (
            "value <= baseline",
            Relative::Times(1.0),
            "value <= baseline * 1",
        ),
        (
            "value < baseline + 10",
            Relative::Plus(10.0),
            "value < baseline + 10",
        ),
        (
            "resource.cpu < baseline + 20%",
            Relative::Plus(20.0),
            "resource.cpu < baseline + 20%",
        ),
        (
            "resource.memory < baseline * 1.2",
            Relative::Times(1.2),
            "resource.memory < baseline * 1.2",
        ),
    ];
    for &(text, rel, canonical) in cases {
        let e = Expectation::parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
        assert_eq!(e.threshold, Threshold::Baseline(rel), "{text:?}");
        assert!(e.is_relative());
        assert_eq!(e.to_string(), canonical);
        assert_eq!(
            Expectation::parse(canonical).unwrap().threshold,
            e.threshold
        );
    }
    assert!(close(Relative::Times(1.5).apply(0.2), 0.3));
    assert!(close(Relative::Percent(-0.1).apply(50.0), 45.0));
    assert!(close(Relative::Points(-0.005).apply(0.999), 0.994));

    // Judged against the baseline's own value of the metric.
    let fast: Vec<Sample> = (0..10).map(|_| Sample::success(ms(10))).collect();
    let slow: Vec<Sample> = (0..10).map(|_| Sample::success(ms(16))).collect();
    let base = WindowStats::from_samples(&fast, Duration::from_secs(1));
    let during = WindowStats::from_samples(&slow, Duration::from_secs(1));
    let e = Expectation::parse("latency.p99 < baseline * 1.5").unwrap();
    assert!(close(e.threshold_value(Some(&base)).unwrap(), 0.015));
    assert!(e.judge_against(&during, Some(&base)).is_violated());
    assert!(e.judge_against(&base, Some(&base)).holds());
    // Without a baseline there is nothing to compare with.
    assert_eq!(e.judge(&during), Verdict::NoData);
    let empty = WindowStats::from_samples(&[], Duration::from_secs(1));
    assert_eq!(e.judge_against(&during, Some(&empty)), Verdict::NoData);
}

#[test]
fn relative_thresholds_refuse_what_they_cannot_mean() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "latency.p99 < baseline / 2",
            "after `baseline` write `* 1.5`",
            "/",
        ),
        (
            "latency.p99 < baseline *",
            "missing number after `baseline *`",
            "*",
        ),
        (
            "latency.p99 < baseline * -1",
            "is not a positive factor",
            "-1",
        ),
        ("latency.p99 < baseline + 50", "needs a duration unit", "50"),
        (
            "latency.p99 < baseline + 1pp",
            "percentage points (`pp`) apply to",
            "1pp",
        ),
        (
            "availability >= baseline - 0.5",
            "percentage points (`0.5pp`)",
            "0.5",
        ),
    ];
    for &(text, message, points_at) in cases {
        let err = Expectation::parse(text).expect_err(text);
        assert!(err.message.contains(message), "{text:?}: {}", err.message);
        let at = text.rfind(points_at).unwrap();
        assert_eq!(
            &text[err.offset..err.offset + err.len],
            &text[at..at + points_at.len()],
            "{text:?}: {}",
            err.message
        );
    }
}

#[test]
fn values_and_resources_are_judged_over_the_window() {
    let samples: Vec<Sample> = (1..=10u32)
        .map(|i| {
            Sample::success(ms(1))
                .with_value(f64::from(i))
                .with_resource(Resource {
                    cpu: Some(f64::from(i) * 10.0),
                    memory: Some(u64::from(i) << 20),
                    fds: Some(12),
                    threads: Some(4),
                    state: Some('S'),
                })
        })
        // A failed sample's value is not counted; its resource readings are.
        .chain([Sample::failure(ms(1), "exit status 1")
            .with_value(1000.0)
            .with_resource(Resource {
                cpu: Some(0.0),
                memory: Some(0),
                fds: None,
                threads: None,
                state: Some('T'),
            })])
        .collect();
    let s = WindowStats::from_samples(&samples, Duration::from_secs(10));
    let get = |t: &str| Expectation::parse(t).unwrap().observe(&s).unwrap();
    assert!(close(get("value < 1"), 5.5));
    assert!(close(get("value.max < 1"), 10.0));
    assert!(close(get("value.p50 < 1"), 5.0));
    assert!(close(get("resource.cpu < 1%"), 50.0));
    assert!(close(get("resource.cpu.max < 1%"), 100.0));
    assert!(close(get("resource.memory.max < 1MiB"), 10.0 * 1048576.0));
    assert!(close(get("resource.memory.min < 1MiB"), 0.0));
    assert!(close(get("resource.fds < 1"), 12.0));
    let m = Metric::Resource(ResourceKind::Memory, LatencyStat::Max);
    assert_eq!(m.format_value(512.0 * 1048576.0), "512MiB");
    assert_eq!(m.format_value(1.5 * 1073741824.0), "1.5GiB");
    assert_eq!(
        Metric::Resource(ResourceKind::Cpu, LatencyStat::Mean).format_value(47.44),
        "47.4%"
    );
    assert_eq!(Metric::Value(LatencyStat::Mean).format_value(0.8), "0.8");
    assert_eq!(
        Metric::Value(LatencyStat::Mean).format_value(1234.5678),
        "1234.57"
    );
    // No data: a probe that yields no values.
    let plain = WindowStats::from_samples(&[Sample::success(ms(1))], Duration::from_secs(1));
    assert_eq!(
        Expectation::parse("value < 1").unwrap().judge(&plain),
        Verdict::NoData
    );
}

#[test]
fn refuses_bad_value_and_resource_expectations() {
    let cases: &[(&str, &str)] = &[
        ("value < fast", "is not a number"),
        ("value.p42 < 1", "unknown statistic `p42` of value"),
        (
            "resource.cpu < 80",
            "CPU is a percent of one core: write `80%`",
        ),
        ("resource.cpu < 0.8", "0.8 is `80%`"),
        ("resource.memory < 512", "needs a size unit"),
        ("resource.disk < 1", "unknown resource `disk`"),
        ("resource.mem < 1MiB", "unknown resource `mem`"),
        ("resource < 1", "`resource` needs a reading"),
        ("resource.fds < many", "is not a count"),
    ];
    for &(text, message) in cases {
        let err = Expectation::parse(text).expect_err(text);
        assert!(err.message.contains(message), "{text:?}: {}", err.message);
    }
}
