use serde_json::json;

use super::*;

fn obj(v: Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap()
}

#[test]
fn exactly_one_reference_keeps_the_type_otherwise_str_interpolation() {
    let conf = obj(json!({"port": 8080, "on": true, "list": [1, "a"], "host": "h"}));
    let secrets = obj(json!({"db": {"pw": "s3cret"}}));
    let s = |v: Value| substitute(&v, &conf, &secrets);
    assert_eq!(s(json!("${port}")), json!(8080));
    assert_eq!(s(json!("${list}")), json!([1, "a"]));
    // Python's str(): True, and the list's repr.
    assert_eq!(s(json!("on=${on} l=${list}")), json!("on=True l=[1, 'a']"));
    assert_eq!(s(json!("http://${host}:${port}/")), json!("http://h:8080/"));
    // Secrets are looked up at their second level.
    assert_eq!(s(json!("${pw}")), json!("s3cret"));
    // string.Template: `$name` too, `$$` is `$`, unknown names and stray `$` stay as written.
    assert_eq!(
        s(json!("$host $$x ${nope} $nope $ ${ x}")),
        json!("h $x ${nope} $nope $ ${ x}")
    );
    assert_eq!(s(json!("${nope}")), json!("${nope}"));
    // Nested maps and lists; keys are not substituted; non-strings untouched.
    assert_eq!(
        s(json!({"${host}": ["${port}", {"k": "${host}"}, 3, null]})),
        json!({"${host}": [8080, {"k": "h"}, 3, null]})
    );
}

#[test]
fn env_entries_with_defaults_and_types() {
    let env = Env::with_overlay(
        [
            ("CF_PORT", "9090"),
            ("CF_F", "2.5"),
            ("CF_B", "No"),
            ("CF_J", r#"{"a": [1]}"#),
            ("CF_S", "x"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .into(),
    );
    let info = obj(json!({
        "lit": "as is",
        "port": {"type": "env", "key": "CF_PORT", "env_var_type": "int"},
        "f": {"type": "env", "key": "CF_F", "env_var_type": "float"},
        "b": {"type": "env", "key": "CF_B", "env_var_type": "bool"},
        "j": {"type": "env", "key": "CF_J", "env_var_type": "json"},
        "s": {"type": "env", "key": "CF_S"},
        "d": {"type": "env", "key": "CF_UNSET_SURELY", "default": "7", "env_var_type": "int"},
        "other": {"type": "probe", "kept": true}
    }));
    let conf = load_configuration(&info, &Map::new(), &env).unwrap();
    assert_eq!(
        Value::Object(conf),
        json!({"lit": "as is", "port": 9090, "f": 2.5, "b": false, "j": {"a": [1]}, "s": "x",
               "d": 7, "other": {"type": "probe", "kept": true}})
    );
    let bad = obj(
        json!({"n": {"type": "env", "key": "CF_S", "env_var_type": "int"},
                         "m": {"type": "env", "key": "CF_UNSET_SURELY"}}),
    );
    let errs = load_configuration(&bad, &Map::new(), &env).unwrap_err();
    assert_eq!(errs.len(), 2);
    assert!(errs.iter().any(|e| e.path == "configuration.n"
        && e.message == "invalid literal for int() with base 10: 'x'"));
    assert!(errs.iter().any(|e| e.message
        == "Configuration makes reference to an environment key that does not exist: CF_UNSET_SURELY"));
}

#[test]
fn vars_override_declared_keys_only_and_replace_env_definitions() {
    let info = obj(json!({"a": 1, "need": {"type": "env", "key": "CF_UNSET_SURELY"}}));
    let extra = obj(json!({"a": 2, "need": "given", "undeclared": 3}));
    let conf = load_configuration(&info, &extra, &Env::default()).unwrap();
    assert_eq!(Value::Object(conf), json!({"a": 2, "need": "given"}));
}

#[test]
fn var_syntax_and_types_as_chaostoolkit() {
    assert_eq!(parse_var("k=v=w").unwrap(), ("k".into(), json!("v=w")));
    assert_eq!(parse_var("n:int=42").unwrap(), ("n".into(), json!(42)));
    assert_eq!(parse_var("f:float=1.5").unwrap(), ("f".into(), json!(1.5)));
    assert_eq!(parse_var("b:bool=0").unwrap(), ("b".into(), json!(false)));
    assert_eq!(parse_var("j:json=[1]").unwrap(), ("j".into(), json!([1])));
    assert_eq!(parse_var("a:b:str=x").unwrap(), ("a:b".into(), json!("x")));
    assert_eq!(parse_var("novalue"), Err(VarError::Syntax));
    assert!(matches!(parse_var("n:int=x"), Err(VarError::Convert(_))));
    assert_eq!(
        parse_var("n:uuid=x").unwrap_err().to_string(),
        "variable type can only be: bool, str, int, float, bytes or json"
    );
}

#[test]
fn var_files_json_yaml_and_dotenv() {
    let dir = tempfile::tempdir().unwrap();
    let json_file = dir.path().join("v.json");
    std::fs::write(
        &json_file,
        r#"{"configuration": {"a": 1, "b": 1}, "secrets": {"db": {"pw": "x"}}}"#,
    )
    .unwrap();
    let yaml_file = dir.path().join("v.yaml");
    std::fs::write(&yaml_file, "configuration:\n  b: 2\n").unwrap();
    let env_file = dir.path().join("vars.env");
    std::fs::write(&env_file, "# comment\n\nCF_FROM_FILE=hello=world\n").unwrap();
    let broken = dir.path().join("broken.json");
    std::fs::write(&broken, "{").unwrap();
    let vars = merge_vars(
        &[("a".into(), json!("cli"))],
        &[&json_file, &yaml_file, &env_file, &broken],
    )
    .unwrap();
    // Later files override earlier ones; --var overrides the files.
    assert_eq!(
        Value::Object(vars.configuration),
        json!({"a": "cli", "b": 2})
    );
    assert_eq!(Value::Object(vars.secrets), json!({"db": {"pw": "x"}}));
    assert_eq!(vars.env.get("CF_FROM_FILE").as_deref(), Some("hello=world"));
    assert_eq!(
        vars.warnings.len(),
        1,
        "the broken file is skipped with a warning"
    );
}

#[test]
fn secrets_resolve_and_are_redacted() {
    let env = Env::with_overlay([("CF_PW".to_owned(), "hunter2".to_owned())].into());
    let info = obj(json!({
        "db": {"pw": {"type": "env", "key": "CF_PW"}, "user": "admin"},
        "api": {"token": {"type": "env", "key": "CF_UNSET_SURELY"}}
    }));
    let extra = obj(json!({"api": {"token": "tok-123"}}));
    let secrets = load_secrets(&info, &extra, &env).unwrap();
    assert_eq!(
        Value::Object(secrets.clone()),
        json!({"db": {"pw": "hunter2", "user": "admin"}, "api": {"token": "tok-123"}})
    );
    let cx = Context {
        configuration: Map::new(),
        secrets,
        env,
    };
    let out = cx.substitute(&json!({"url": "http://admin:${pw}@h/?t=${token}"}));
    assert_eq!(out, json!({"url": "http://admin:hunter2@h/?t=tok-123"}));
    assert_eq!(cx.redact(&out), json!({"url": "http://***:***@h/?t=***"}));
    assert!(load_secrets(&info, &Map::new(), &Env::default()).is_err());
}

#[test]
fn pauses_resolve_through_substitution() {
    let cx = Context {
        configuration: obj(json!({"wait": 2})),
        ..Context::default()
    };
    let pauses = crate::ctk::model::Pauses {
        before: Some(json!("${wait}")),
        after: Some(json!(0.5)),
    };
    assert_eq!(cx.pauses(&pauses), (Some(2.0), Some(0.5)));
    let none = crate::ctk::model::Pauses {
        before: Some(json!("${unknown}")),
        after: Some(json!(0)),
    };
    assert_eq!(cx.pauses(&none), (None, None));
}
