// Tests unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use proptest::prelude::*;
use serde::Deserialize;

use super::*;
use crate::diag::Span;

#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct Exp {
    name: String,
    #[serde(default)]
    seed: Option<u64>,
    #[serde(default)]
    targets: Vec<Target>,
    #[serde(default)]
    faults: Vec<Fault>,
}

#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct Target {
    name: String,
    port: u16,
    #[serde(default)]
    scope: Option<Scope>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case")]
enum Scope {
    Single,
    All,
}

#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct Fault {
    name: String,
    #[serde(default)]
    latency: Option<Latency>,
    #[serde(default)]
    action: Option<Action>,
    #[serde(default)]
    header: Option<StrOrMap>,
}

#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct Latency {
    delay: Millis,
    #[serde(default)]
    jitter: Option<Millis>,
}

#[derive(Debug, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case")]
enum Action {
    Kill { signal: String },
    Pause(u32),
}

#[derive(Debug, Deserialize, PartialEq)]
#[serde(untagged)]
enum StrOrMap {
    Str(String),
    Map(BTreeMap<String, String>),
}

/// `"250ms"`, parsed after deserializing the string: its error is raised outside any visitor,
/// the hardest case for placing it (it must still land on the scalar, not the parent).
#[derive(Debug, PartialEq)]
struct Millis(u64);

impl<'de> Deserialize<'de> for Millis {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.strip_suffix("ms")
            .and_then(|n| n.parse().ok())
            .map(Millis)
            .ok_or_else(|| de::Error::custom(format!("invalid duration `{s}`")))
    }
}

fn errors<T: DeserializeOwned + fmt::Debug>(text: &str) -> String {
    let doc = match Document::parse("exp.yaml", text) {
        Ok(doc) => doc,
        Err(e) => return e.to_string(),
    };
    decode::<T>(&doc).unwrap_err().to_string()
}

fn ok<T: DeserializeOwned>(text: &str) -> T {
    let doc = Document::parse("exp.yaml", text).unwrap();
    decode(&doc).unwrap()
}

#[test]
fn decodes_a_valid_file() {
    let exp: Exp = ok(
        "name: 123\nseed: 0x10\ntargets:\n  - name: a\n    port: 8080\n    scope: all\n    labels: {zone: a, n: 1}\nfaults:\n  - name: f\n    latency: {delay: 5ms}\n    action: {kill: {signal: TERM}}\n    header: {a: b}\n  - name: g\n    action: {pause: 3}\n    header: plain\n",
    );
    // `name: 123` is the text as written, not an error: YAML users rarely quote.
    assert_eq!(exp.name, "123");
    assert_eq!(exp.seed, Some(16));
    assert_eq!(exp.targets[0].scope, Some(Scope::All));
    assert_eq!(exp.targets[0].labels["n"], "1");
    assert_eq!(
        exp.faults[0].latency,
        Some(Latency {
            delay: Millis(5),
            jitter: None
        })
    );
    assert_eq!(
        exp.faults[0].action,
        Some(Action::Kill {
            signal: "TERM".into()
        })
    );
    assert_eq!(exp.faults[1].action, Some(Action::Pause(3)));
    assert_eq!(exp.faults[1].header, Some(StrOrMap::Str("plain".into())));
}

#[test]
fn unknown_fields_suggest_and_are_skipped() {
    let text = "name: x\nsed: 1\nfaults:\n  - name: f\n    latency: {delya: 5ms}\n    zzz: 1\n";
    assert_eq!(
        errors::<Exp>(text),
        "exp.yaml:2:1: sed: unknown field `sed`, did you mean `seed`?\n\
         \
         exp.yaml:5:15: faults[0].latency.delya: unknown field `delya`, did you mean `delay`?\n\
         exp.yaml:6:5: faults[0].zzz: unknown field `zzz`, expected one of: name, latency, action, header\n"
    );
}

#[test]
fn type_errors_say_expected_and_found() {
    let text = "name: {a: 1}\ntargets:\n  - {name: a, port: -3}\n  - {name: b, port: 70000}\n  - {name: c, port: \"80\"}\n  - {name: [x], port: 1.5}\n";
    assert_eq!(
        errors::<Exp>(text),
        "exp.yaml:1:7: name: expected a string, found a map\n\
         exp.yaml:3:21: targets[0].port: expected an unsigned integer, found `-3`\n\
         exp.yaml:4:21: targets[1].port: expected an integer from 0 to 65535, found `70000`\n\
         exp.yaml:5:21: targets[2].port: expected an unsigned integer, found the string \"80\"\n\
         exp.yaml:6:12: targets[3].name: expected a string, found a sequence\n\
         exp.yaml:6:23: targets[3].port: expected an unsigned integer, found `1.5`\n"
    );
}

#[test]
fn missing_fields_point_at_the_map() {
    assert_eq!(
        errors::<Exp>("seed: 1\ntargets:\n  - port: 1\n"),
        "exp.yaml:1:1: missing field `name`\nexp.yaml:3:5: targets[0]: missing field `name`\n"
    );
}

/// A missing field is filled with a placeholder for the next run, so the struct's other fields
/// are still read: the bad port after the missing name is reported, and the partial value keeps
/// what was written, with the placeholder's path.
#[test]
fn a_missing_field_does_not_hide_its_siblings() {
    let text = "name: x\ntargets:\n  - port: -1\n    labels: { a: b }\n";
    assert_eq!(
        errors::<Exp>(text),
        "exp.yaml:3:5: targets[0]: missing field `name`\n\
         exp.yaml:3:11: targets[0].port: expected an unsigned integer, found `-1`\n"
    );
    let doc = Document::parse("exp.yaml", text).unwrap();
    let (_, partial) = decode_partial::<Exp>(&doc).unwrap_err();
    let partial = partial.unwrap();
    assert_eq!(partial.value.targets[0].labels["a"], "b");
    assert!(partial.covers("targets[0].name"));
    assert!(partial.covers("targets[0].port"));
    assert!(!partial.covers("targets[0].labels"));
    assert!(!partial.covers("targets[0].names"));
}

#[test]
fn enums_report_unknown_variants_and_shapes() {
    let text = "name: x\ntargets:\n  - {name: a, port: 1, scope: singel}\n  - {name: b, port: 1, scope: {x: 1}}\nfaults:\n  - {name: f, action: {kil: {signal: x}}}\n  - {name: g, action: pause}\n  - {name: h, action: {pause: -1}}\n";
    assert_eq!(
        errors::<Exp>(text),
        "exp.yaml:3:31: targets[0].scope: unknown value `singel`, did you mean `single`?\n\
         exp.yaml:4:32: targets[1].scope: unknown value `x`, expected one of: single, all\n\
         exp.yaml:6:24: faults[0].action: unknown value `kil`, did you mean `kill`?\n\
         exp.yaml:7:23: faults[1].action: `pause` needs a value: write it as a map, `pause: …`\n\
         exp.yaml:8:31: faults[2].action.pause: expected an unsigned integer, found `-1`\n"
    );
}

#[test]
fn custom_errors_land_on_their_scalar_and_siblings_are_still_checked() {
    // The bad duration unwinds serde's whole `Latency` value; the re-runs must still find the
    // problems after it: `jitter` in the same struct, the next fault, the next target.
    let text = "name: x\nfaults:\n  - name: f\n    latency:\n      delay: 10 sex\n      jitter: 1\n      extra: 1\n  - name: g\n    latency: {delay: 5ms, jitter: 3s}\n    naem: y\ntargets:\n  - {name: a, port: x}\n";
    assert_eq!(
        errors::<Exp>(text),
        "exp.yaml:5:14: faults[0].latency.delay: invalid duration `10 sex`\n\
         exp.yaml:6:15: faults[0].latency.jitter: invalid duration `1`\n\
         exp.yaml:7:7: faults[0].latency.extra: unknown field `extra`, expected one of: delay, jitter\n\
         exp.yaml:9:35: faults[1].latency.jitter: invalid duration `3s`\n\
         exp.yaml:10:5: faults[1].naem: unknown field `naem`, did you mean `name`?\n\
         exp.yaml:12:21: targets[0].port: expected an unsigned integer, found `x`\n"
    );
}

#[test]
fn json_input_with_nesting_and_escapes() {
    let text = r#"{"name": "caf\u00e9 \ud83d\ude00\n", "targets": [{"name": "a", "port": 80, "labels": {"k": "v"}}],
  "faults": [{"name": "f", "latency": {"delay": "5ms", "jittr": null}}]}"#;
    assert_eq!(
        errors::<Exp>(text),
        "exp.yaml:2:56: faults[0].latency.jittr: unknown field `jittr`, did you mean `jitter`?\n"
    );
    let fixed = text.replace("jittr", "jitter");
    let exp: Exp = ok(&fixed);
    assert_eq!(exp.name, "café 😀\n");
    assert_eq!(exp.targets[0].labels["k"], "v");
}

#[test]
fn anchors_and_merge_keys() {
    let text = "name: x\ntargets:\n  - &base {name: a, port: 1, labels: {zone: a}}\n  - <<: *base\n    name: b\n  - *base\n";
    let exp: Exp = ok(text);
    assert_eq!(exp.targets.len(), 3);
    assert_eq!(exp.targets[1].name, "b");
    assert_eq!(exp.targets[1].port, 1);
    assert_eq!(exp.targets[2].name, "a");
    // A problem inside anchored content is reported where the text is.
    let bad = "name: x\nbase: &b {port: x}\n";
    assert_eq!(
        errors::<Exp>(bad),
        "exp.yaml:2:1: base: unknown field `base`, expected one of: name, seed, targets, faults\n"
    );
    let merged = "name: x\ntargets:\n  - <<: [{port: x, name: a}, {scope: all}]\n  - <<: 3\n    name: b\n    port: 1\n";
    assert_eq!(
        errors::<Exp>(merged),
        "exp.yaml:3:17: targets[0].port: expected an unsigned integer, found `x`\n\
         exp.yaml:4:9: targets[1][\"<<\"]: a merge key `<<` takes a map or a list of maps\n"
    );
}

#[test]
fn alias_bombs_are_refused() {
    let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..8 {
        let p = i - 1;
        text.push_str(&format!(
            "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
        ));
    }
    let err = Document::parse("bomb.yaml", &text).unwrap_err().to_string();
    assert!(err.starts_with("bomb.yaml:4:"), "{err}");
    assert!(err.contains("more than 10000 values"), "{err}");
}

#[test]
fn large_files_without_aliases_are_not_refused() {
    // The alias budget counts copies only: 20 000 written values (a 1,000-fault experiment has
    // about 17 000) are bounded by the file's length, not a bomb.
    let mut text = String::from("items:\n");
    for i in 0..20_000 {
        text.push_str(&format!("  - {i}\n"));
    }
    let doc = Document::parse("big.yaml", &text).unwrap();
    let items = doc.root().get("items").unwrap();
    assert!(matches!(&items.value, Value::Seq(v) if v.len() == 20_000));
}

#[test]
fn duplicate_keys_are_reported_with_both_places() {
    let text = "name: x\nseed: 1\nname: y\ntargets:\n  - {name: a, port: 1, port: 2}\n";
    assert_eq!(
        errors::<Exp>(text),
        "exp.yaml:3:1: name: duplicate key `name` (first defined at line 1, column 1); this one is ignored\n\
         exp.yaml:5:24: targets[0].port: duplicate key `port` (first defined at line 5, column 15); this one is ignored\n"
    );
    let json = "{\"name\": \"x\", \"name\": \"y\"}";
    assert_eq!(
        errors::<Exp>(json),
        "exp.yaml:1:15: name: duplicate key `name` (first defined at line 1, column 2); this one is ignored\n"
    );
}

#[test]
fn fatal_parse_errors() {
    assert_eq!(
        errors::<Exp>("name: x\ntargets: [a, b\nseed: 1\n"),
        "exp.yaml:3:5: syntax error: illegal placement of ':' indicator\n"
    );
    assert_eq!(
        errors::<Exp>("name: x\n---\nname: y\n"),
        "exp.yaml:2:1: a file holds one document; found a second one (`---`)\n"
    );
    assert_eq!(
        errors::<Exp>("# nothing\n"),
        "exp.yaml:1:1: the file is empty: expected a YAML or JSON document\n"
    );
    assert_eq!(
        errors::<Exp>(""),
        "exp.yaml:1:1: the file is empty: expected a YAML or JSON document\n"
    );
}

#[test]
fn core_schema_scalars_keep_their_text() {
    let doc = Document::parse(
        "t.yaml",
        "a: ~\nb: 0o17\nc: -.inf\nd: 1e3\ne: 'true'\nf: 99999999999999999999\ng: !!str 12\nh: .nan\ni: nan\n",
    )
    .unwrap();
    let v = |p: &str| doc.node_at(p).unwrap();
    assert_eq!(v("a").value, Value::Null);
    assert_eq!(v("a").raw, "~");
    assert_eq!(v("b").value, Value::Int(15));
    assert_eq!(v("c").value, Value::Float(f64::NEG_INFINITY));
    assert_eq!(v("d").value, Value::Float(1000.0));
    assert_eq!(v("e").value, Value::Str("true".into()));
    assert_eq!(v("g").value, Value::Str("12".into()));
    assert!(matches!(v("h").value, Value::Float(f) if f.is_nan()));
    assert_eq!(v("i").value, Value::Str("nan".into()));
    // Integers beyond i64 still decode exactly into wider types, and are refused by narrower ones.
    let big: BTreeMap<String, u128> = ok("f: 99999999999999999999\n");
    assert_eq!(big["f"], 99_999_999_999_999_999_999);
    assert_eq!(
        errors::<BTreeMap<String, u64>>("f: 99999999999999999999\n"),
        "exp.yaml:1:4: f: expected an integer from 0 to 18446744073709551615, found `99999999999999999999`\n"
    );
}

#[test]
fn paths_and_spans() {
    let text = "faults:\n  - name: a\n  - name: b\n    latency: {delay: 10 sex}\n    q1: '10 sex'\n    q2: \"10 sex\"\n    q3: \"10\\t sex\"\n    m: |\n      10 sex\n    \"odd.key\": x\n";
    let doc = Document::parse("e.yaml", text).unwrap();
    let delay = doc.node_at("faults[1].latency.delay").unwrap();
    assert_eq!(
        delay.span,
        Span {
            offset: 53,
            len: 6,
            line: 4,
            col: 22
        }
    );
    assert_eq!(doc.node_at("faults[1][\"odd.key\"]").unwrap().raw, "x");
    assert!(doc.node_at("faults[9]").is_none());
    assert!(doc.node_at("faults[").is_none());
    // A missing path falls back to its nearest existing ancestor.
    assert_eq!(
        doc.span_at("faults[1].latency.jitter"),
        doc.span_at("faults[1].latency")
    );
    assert_eq!(doc.key_span_at("faults[1].latency").map(|s| s.col), Some(5));
    assert_eq!(doc.span_at("").map(|s| (s.line, s.col)), Some((1, 1)));
    let col = |path: &str| doc.diag_in(path, 3, 3, "bad unit").to_string();
    assert_eq!(
        col("faults[1].latency.delay"),
        "e.yaml:4:25: faults[1].latency.delay: bad unit"
    );
    assert_eq!(col("faults[1].q1"), "e.yaml:5:13: faults[1].q1: bad unit");
    assert_eq!(col("faults[1].q2"), "e.yaml:6:13: faults[1].q2: bad unit");
    // An escape or a block scalar breaks the value/text correspondence: the node's span is used.
    assert_eq!(col("faults[1].q3"), "e.yaml:7:9: faults[1].q3: bad unit");
    assert_eq!(col("faults[1].m"), "e.yaml:9:7: faults[1].m: bad unit");
    let d = doc.diag_in("faults[1].q1", 3, 3, "x");
    assert_eq!(
        d.span.map(|s| (s.offset, s.len)),
        Some((text.find("sex'").unwrap(), 3))
    );
    assert_eq!(
        doc.diag("faults[0].name", "m").to_string(),
        "e.yaml:2:11: faults[0].name: m"
    );
}

#[test]
fn columns_count_characters_not_bytes() {
    let doc = Document::parse("u.yaml", "é: {ü: 10 sex}\n").unwrap();
    let d = doc.diag_in("é.ü", 3, 3, "bad unit");
    assert_eq!(d.to_string(), "u.yaml:1:11: é.ü: bad unit");
    assert_eq!(d.span.map(|s| s.offset), Some(12));
}

#[test]
fn many_problems_sorted_without_repeats() {
    let text = "naem: x\ntargets:\n  - {name: a, port: x}\n  - {name: b, port: 1, scope: al}\nfaults:\n  - {name: f, latency: {delay: 1}}\n";
    let doc = Document::parse("exp.yaml", text).unwrap();
    let diags = decode::<Exp>(&doc).unwrap_err();
    // `missing field name` is implied by `naem`'s did-you-mean, so it is not repeated.
    assert_eq!(diags.len(), 4, "{diags}");
    let lines: Vec<u32> = diags.iter().map(|d| d.span.unwrap().line).collect();
    assert_eq!(lines, [1, 3, 4, 6]);
}

fn mutate(text: &str, ops: &[(u8, usize, u8)]) -> String {
    let mut bytes = text.as_bytes().to_vec();
    for &(op, at, b) in ops {
        let at = at % (bytes.len() + 1);
        match op % 4 {
            0 => bytes.insert(at, b),
            1 if at < bytes.len() => {
                bytes.remove(at);
            }
            2 if at < bytes.len() => bytes[at] = b,
            _ => {
                // Duplicate a whole line: exercises duplicate keys and indentation.
                let lines: Vec<&[u8]> = bytes.split(|&c| c == b'\n').collect();
                let line = lines[at % lines.len()].to_vec();
                bytes.extend_from_slice(b"\n");
                bytes.extend_from_slice(&line);
            }
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

const VALID: &str = "name: x\nseed: 1\ntargets:\n  - &t {name: a, port: 1, scope: all, labels: {z: a}}\n  - <<: *t\n    name: b\nfaults:\n  - name: f\n    latency: {delay: 5ms, jitter: \"1ms\"}\n    action: {kill: {signal: TERM}}\n    header: {a: b}\n";

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn mutations_never_panic(ops in prop::collection::vec(
        (0u8..4, 0usize..400, prop::sample::select(b"{}[]:,-'\"&*<!#|>\n x1.\t\\?%@".to_vec())),
        1..8,
    )) {
        let text = mutate(VALID, &ops);
        if let Ok(doc) = Document::parse("m.yaml", &text) {
            let _ = decode::<Exp>(&doc);
            let _ = decode::<BTreeMap<String, StrOrMap>>(&doc);
        }
    }
}

#[test]
fn self_describing_targets_and_nulls() {
    // `deserialize_any` drives serde_json::Value; plain `1` stays a number, `'1'` a string.
    let v: serde_json::Value = ok("a: [1, '1', ~, true, {b: 1.5}]\n");
    assert_eq!(
        v,
        serde_json::json!({"a": [1, "1", null, true, {"b": 1.5}]})
    );
    let exp: Exp =
        ok("name: x\nseed: ~\nfaults:\n  - name: f\n    latency: {delay: 1ms, jitter:}\n");
    assert_eq!(exp.seed, None);
    assert_eq!(exp.faults[0].latency.as_ref().unwrap().jitter, None);
}
