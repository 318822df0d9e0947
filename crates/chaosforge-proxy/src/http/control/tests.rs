use std::time::Duration;

use chaosforge::fault::net::HeaderCondition;
use chaosforge::units::Ratio;

use super::*;

fn rule(action: HttpRuleAction) -> HttpRule {
    HttpRule {
        name: "r".into(),
        matcher: HttpMatch::default(),
        probability: Ratio::ONE,
        action,
    }
}

fn problems(rule: &HttpRule) -> Vec<String> {
    fault_of(rule).expect_err("the rule must be refused")
}

#[test]
fn every_action_maps_to_its_fault_kind() {
    let jwt = |forgery| HttpRuleAction::AuthForge {
        credential: CredentialRule::Authorization,
        forgery,
    };
    let cases = [
        (
            HttpRuleAction::Abort {
                status: 503,
                body: Some("down".into()),
                headers: vec![("Retry-After".into(), "1".into())],
            },
            "http-abort",
        ),
        (HttpRuleAction::Drop, "http-abort"),
        (
            HttpRuleAction::Delay {
                request: Duration::from_millis(5),
                response: Duration::ZERO,
                jitter: Duration::ZERO,
            },
            "http-delay",
        ),
        (HttpRuleAction::Hang, "http-hang"),
        (HttpRuleAction::Truncate { keep: 3 }, "http-corrupt"),
        (
            HttpRuleAction::FlipBytes {
                probability: Ratio::new(0.5).unwrap(),
            },
            "http-corrupt",
        ),
        (
            HttpRuleAction::JsonReplace {
                path: "$.items[*].price".into(),
                value: serde_json::json!(0),
            },
            "http-corrupt",
        ),
        (
            HttpRuleAction::Headers {
                request: vec![HeaderEditRule::Set("X-Chaos".into(), "on".into())],
                response: vec![HeaderEditRule::Remove("etag".into())],
            },
            "http-header",
        ),
        (
            HttpRuleAction::AuthStrip {
                credential: CredentialRule::Cookie("sid".into()),
            },
            "auth-strip",
        ),
        (jwt(ForgeryRule::JwtAlgNone), "auth-forge"),
        (jwt(ForgeryRule::Token("abc".into())), "auth-forge"),
        (HttpRuleAction::Replay { times: 2 }, "replay"),
        (
            HttpRuleAction::TlsMitm {
                certificate: MitmVariant::NotYetValid,
            },
            "tls-mitm",
        ),
    ];
    for (action, kind) in cases {
        let fault = fault_of(&rule(action.clone())).unwrap_or_else(|p| panic!("{action:?}: {p:?}"));
        assert_eq!(fault.action.kind(), kind, "{action:?}");
    }
}

#[test]
fn the_matcher_is_typed_and_lower_case_methods_are_the_standard_ones() {
    let mut r = rule(HttpRuleAction::Drop);
    r.matcher = HttpMatch {
        methods: vec!["get".into(), "POST".into(), "PURGE".into()],
        path_prefix: Some("/api".into()),
        path_regex: Some(r"^/api/v\d+/".into()),
        headers: vec![
            HeaderCondition {
                name: "X-Tenant".into(),
                equals: None,
            },
            HeaderCondition {
                name: "x-env".into(),
                equals: Some("prod".into()),
            },
        ],
    };
    let fault = fault_of(&r).unwrap();
    let m = &fault.matcher;
    assert_eq!(m.methods[0], Method::GET);
    assert_eq!(m.methods[2].as_str(), "PURGE");
    let mut headers = hyper::HeaderMap::new();
    headers.insert("x-tenant", HeaderValue::from_static("a"));
    headers.insert("x-env", HeaderValue::from_static("prod"));
    assert!(m.matches(&Method::GET, "/api/v2/x", &headers));
    assert!(!m.matches(&Method::GET, "/api/vx/x", &headers));
}

#[test]
fn every_problem_of_a_rule_is_reported_at_once() {
    let mut r = rule(HttpRuleAction::Abort {
        status: 99,
        body: None,
        headers: vec![("bad name".into(), "v".into())],
    });
    r.name = String::new();
    r.matcher.methods = vec!["G ET".into()];
    r.matcher.path_regex = Some("(".into());
    r.matcher.headers = vec![HeaderCondition {
        name: "x".into(),
        equals: Some("line\nbreak".into()),
    }];
    let p = problems(&r);
    assert_eq!(p.len(), 6, "{p:#?}");
    let text = p.join("\n");
    for part in [
        "name is empty",
        "`G ET` is not an HTTP method",
        "matcher.path_regex `(`: unclosed group",
        "matcher.headers: \"line\\nbreak\" is not a header value",
        "abort.status: 99",
        "abort.headers: `bad name` is not a header name",
    ] {
        assert!(text.contains(part), "{part:?} missing from {text}");
    }
}

#[test]
fn bad_strings_in_actions_are_refused() {
    let bad = [
        HttpRuleAction::Abort {
            status: 600,
            body: None,
            headers: vec![],
        },
        HttpRuleAction::JsonReplace {
            path: "items[".into(),
            value: serde_json::Value::Null,
        },
        HttpRuleAction::Headers {
            request: vec![HeaderEditRule::Add("x".into(), "a\u{7f}".into())],
            response: vec![],
        },
        HttpRuleAction::AuthStrip {
            credential: CredentialRule::Cookie("a=b".into()),
        },
        HttpRuleAction::AuthStrip {
            credential: CredentialRule::Header(String::new()),
        },
        HttpRuleAction::AuthForge {
            credential: CredentialRule::Authorization,
            forgery: ForgeryRule::Token("two\r\nlines".into()),
        },
    ];
    for action in bad {
        assert_eq!(problems(&rule(action.clone())).len(), 1, "{action:?}");
    }
}

#[test]
fn tls_mitm_takes_no_request_matcher() {
    let mut r = rule(HttpRuleAction::TlsMitm {
        certificate: MitmVariant::Expired,
    });
    assert!(matches!(
        fault_of(&r).unwrap().action,
        HttpAction::TlsMitm(MitmCert::Expired)
    ));
    r.matcher.path_prefix = Some("/x".into());
    assert!(problems(&r)[0].contains("no request matcher"));
}

#[test]
fn the_upstream_ca_file_must_hold_a_certificate() {
    let missing = Path::new("/nonexistent/chaosforge-ca.pem");
    let err = read_ca(missing).unwrap_err();
    assert!(
        matches!(&err, ProxyError::Io(e) if e.kind() == io::ErrorKind::NotFound),
        "{err:?}"
    );
    assert!(err.to_string().contains("/nonexistent/chaosforge-ca.pem"));

    let dir = std::env::temp_dir().join(format!("chaosforge-ca-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let empty = dir.join("empty.pem");
    std::fs::write(&empty, "not a certificate\n").unwrap();
    let err = read_ca(&empty).unwrap_err();
    assert!(err.to_string().contains("no PEM `CERTIFICATE`"), "{err}");

    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["ca.test".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let good = dir.join("ca.pem");
    std::fs::write(&good, cert.pem()).unwrap();
    assert_eq!(read_ca(&good).unwrap(), [cert.der().clone()]);
    std::fs::remove_dir_all(&dir).unwrap();
}
