use super::*;
use crate::ctk::model::Provider;

fn check(text: &str) -> Result<(Experiment, Warnings), Vec<String>> {
    let doc = Document::parse("exp.json", text).map_err(|d| vec![d.to_string()])?;
    load_document(&doc, &Env::default()).map_err(|d| d.iter().map(ToString::to_string).collect())
}

const OK: &str = r#"{
  "title": "t", "description": "d",
  "steady-state-hypothesis": {"title": "h", "probes": [
    {"type": "probe", "name": "up", "tolerance": 0,
     "provider": {"type": "process", "path": "true"}}]},
  "method": [{"ref": "up"},
             {"type": "action", "name": "a", "pauses": {"after": "${p}"},
              "provider": {"type": "http", "url": "http://127.0.0.1:1/"}}],
  "rollbacks": [],
  "extra-key": "ignored, as CTK does"
}"#;

#[test]
fn a_valid_file_loads_with_refs_resolved() {
    let (exp, _) = check(OK).unwrap();
    assert_eq!(exp.title, "t");
    assert_eq!(exp.method.len(), 2);
    // The ref resolves to the hypothesis probe, as chaoslib's activity cache finds it.
    let def = exp.resolve(&exp.method[0]).unwrap();
    assert_eq!(def.name, "up");
    assert!(matches!(def.provider, Provider::Process(_)));
    assert_eq!(exp.raw["extra-key"], "ignored, as CTK does");
}

#[test]
fn detects_ctk_by_title_and_method_without_api_version() {
    let ctk = Document::parse("a.yaml", "title: t\nmethod: []\n").unwrap();
    let ours = Document::parse("b.yaml", "apiVersion: x\ntitle: t\nmethod: []\n").unwrap();
    let neither = Document::parse("c.yaml", "foo: 1\n").unwrap();
    // A CTK file missing its method is still one, to be told in CTK's terms what it lacks.
    let no_method = Document::parse("d.yaml", "title: t\ndescription: d\n").unwrap();
    let ours_by_name = Document::parse("e.yaml", "name: n\ntitle: t\nmethod: []\n").unwrap();
    assert!(is_ctk(&ctk));
    assert!(!is_ctk(&ours));
    assert!(!is_ctk(&neither));
    assert!(is_ctk(&no_method));
    assert!(!is_ctk(&ours_by_name));
}

#[test]
fn missing_title_description_and_method_are_all_reported_at_their_place() {
    let errs = check("{\n  \"tags\": [\"\"]\n}").unwrap_err();
    let all = errs.join("\n");
    assert!(all.contains("experiment requires a title"), "{all}");
    assert!(all.contains("experiment requires a description"), "{all}");
    assert!(all.contains("an experiment requires a method"), "{all}");
    // The tag is pointed at where it is written: line 2, column 12.
    assert!(
        all.contains("exp.json:2:12: tags[0]: experiment tags must be a non-empty string"),
        "{all}"
    );
}

#[test]
fn an_empty_method_is_valid_with_a_warning() {
    let (_, warnings) = check(r#"{"title": "t", "description": "d", "method": []}"#).unwrap();
    assert!(warnings.0[0].message.contains("method is empty"));
}

#[test]
fn hypothesis_probe_without_tolerance_is_refused() {
    let errs = check(
        r#"{"title": "t", "description": "d", "method": [],
  "steady-state-hypothesis": {"title": "h", "probes": [
    {"type": "probe", "name": "p", "provider": {"type": "http", "url": "http://x/"}}]}}"#,
    )
    .unwrap_err();
    assert!(errs[0].contains("exp.json:3:5: steady-state-hypothesis.probes[0]: hypothesis probe must have a tolerance entry"), "{errs:?}");
}

#[test]
fn tolerance_shapes_chaoslib_rejects() {
    let with_tol = |tol: &str| {
        check(&format!(
            r#"{{"title": "t", "description": "d", "method": [],
  "steady-state-hypothesis": {{"title": "h", "probes": [
    {{"type": "probe", "name": "p", "tolerance": {tol}, "provider": {{"type": "http", "url": "http://x/"}}}}]}}}}"#
        ))
        .err()
        .map(|e| e.join("\n"))
    };
    assert!(
        with_tol("1.5")
            .unwrap()
            .contains("must either be an integer")
    );
    assert!(
        with_tol("null")
            .unwrap()
            .contains("must either be an integer")
    );
    assert!(
        with_tol(r#"{"type": "nope"}"#)
            .unwrap()
            .contains("tolerance type 'nope' is unsupported")
    );
    assert!(
        with_tol(r#"{"type": "regex"}"#)
            .unwrap()
            .contains("must have a `pattern` key")
    );
    assert!(
        with_tol(r#"{"type": "regex", "pattern": "("}"#)
            .unwrap()
            .contains("seems invalid")
    );
    assert!(
        with_tol(r#"{"type": "jsonpath", "path": "  "}"#)
            .unwrap()
            .contains("JSON path cannot be empty")
    );
    assert!(
        with_tol(r#"{"type": "range", "range": [1]}"#)
            .unwrap()
            .contains("made of two values")
    );
    assert!(
        with_tol(r#"{"type": "range", "range": ["a", 2]}"#)
            .unwrap()
            .contains("lower boundary must be a number")
    );
    // Booleans are numbers to Python, so chaoslib accepts them as range bounds.
    assert_eq!(with_tol(r#"{"type": "range", "range": [false, 2]}"#), None);
    assert_eq!(with_tol("[200, 201]"), None);
    assert_eq!(with_tol("true"), None);
}

#[test]
fn process_path_must_resolve_on_path_or_relative_to_the_cwd() {
    let with_path = |p: &str| {
        check(&format!(
            r#"{{"title": "t", "description": "d", "method": [
  {{"type": "action", "name": "a", "provider": {{"type": "process", "path": "{p}"}}}}]}}"#
        ))
        .err()
        .map(|e| e.join("\n"))
    };
    assert_eq!(with_path("sh"), None);
    assert_eq!(with_path("/bin/sh"), None);
    let err = with_path("no-such-tool-here").unwrap();
    assert!(err.contains("exp.json:2:75: method[0].provider.path: path 'no-such-tool-here' cannot be found, in activity 'a'"), "{err}");
    // A relative path with a slash is checked from the working directory (the crate root).
    assert!(with_path("./no/such").is_some());
    assert!(
        with_path("src").is_some(),
        "a directory is not an executable"
    );
}

#[test]
fn python_providers_name_module_function_and_replacement() {
    let errs = check(
        r#"{"title": "t", "description": "d", "method": [
  {"type": "action", "name": "slow", "provider": {"type": "python",
    "module": "chaostoxi.toxic.actions", "func": "create_latency_toxic", "arguments": {}}},
  {"type": "action", "name": "custom", "provider": {"type": "python",
    "module": "mine", "func": "go"}}]}"#,
    )
    .unwrap_err();
    assert!(
        errs[0].contains("chaostoxi.toxic.actions.create_latency_toxic"),
        "{errs:?}"
    );
    assert!(
        errs[0].contains("`latency` fault on a `proxy` target"),
        "{errs:?}"
    );
    assert!(
        errs[1].contains("mine.go") && errs[1].contains("`process` or `http`"),
        "{errs:?}"
    );
}

#[test]
fn safeguard_controls_are_accepted_with_a_pointer_to_halt_when() {
    let (_, w) = check(
        r#"{"title": "t", "description": "d", "method": [],
  "controls": [{"name": "safeguards", "provider": {"type": "python",
    "module": "chaosaddons.controls.safeguards"}}]}"#,
    )
    .unwrap();
    assert!(
        w.0.iter()
            .any(|d| d.path == "controls[0]" && d.message.contains("policies.halt_when")),
        "{w:?}"
    );
}

#[test]
fn unknown_refs_bad_types_and_pauses_are_refused() {
    let errs = check(
        r#"{"title": "t", "description": "d", "method": [
  {"ref": "ghost"},
  {"type": "probe", "name": "x", "provider": {"type": "ftp"}},
  {"type": "job", "name": "y", "provider": {"type": "http", "url": "u"}},
  {"type": "action", "name": "z", "pauses": {"before": "soon"}, "provider": {"type": "http", "url": "u"}},
  {"type": "action", "name": "w", "background": "yes", "provider": {"type": "http", "url": "u"}},
  {"type": "action", "name": "v", "provider": {"type": "http"}}
]}"#,
    )
    .unwrap_err()
    .join("\n");
    for want in [
        "method[0].ref: referenced activity 'ghost' could not be found in the experiment",
        "method[1].provider.type: unknown provider type 'ftp'",
        "method[2].type: 'job' is not a supported activity type",
        "method[3].pauses.before: activity before pause must be a number or a pattern",
        "method[4].background: activity background must be a boolean",
        "method[5].provider: a HTTP activity must have a URL",
    ] {
        assert!(errs.contains(want), "missing {want:?} in\n{errs}");
    }
}

#[test]
fn an_env_configuration_without_variable_or_default_is_refused_at_its_entry() {
    let errs = check(
        "title: t\ndescription: d\nmethod: []\nconfiguration:\n  port:\n    type: env\n    key: CHAOSFORGE_TEST_SURELY_UNSET\n",
    )
    .unwrap_err();
    assert!(
        errs[0].contains("exp.json:6:5: configuration.port: Configuration makes reference to an environment key that does not exist: CHAOSFORGE_TEST_SURELY_UNSET"),
        "{errs:?}"
    );
    let errs = check(
        "title: t\ndescription: d\nmethod: []\nsecrets:\n  db:\n    pw: {type: env, key: CHAOSFORGE_TEST_SURELY_UNSET}\n",
    )
    .unwrap_err();
    assert!(
        errs[0].contains(
            "secrets.db.pw: Secrets make reference to an environment key that does not exist"
        ),
        "{errs:?}"
    );
}

#[test]
fn load_reads_a_yaml_file_and_reports_with_its_name() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("exp.yaml");
    std::fs::write(
        &good,
        "title: t\ndescription: d\nmethod:\n  - type: action\n    name: a\n    provider:\n      type: process\n      path: echo\n      arguments: [hi]\n",
    )
    .unwrap();
    let (doc, exp, _) = load(&good).unwrap();
    assert!(is_ctk(&doc));
    assert_eq!(
        exp.method[0].raw()["provider"]["arguments"],
        serde_json::json!(["hi"])
    );

    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "description: d\nmethod: []\n").unwrap();
    let errs = load(&bad).unwrap_err().to_string();
    assert!(
        errs.contains("bad.yaml:1:1: title: experiment requires a title"),
        "{errs}"
    );
}
