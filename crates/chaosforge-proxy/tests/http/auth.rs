//! `auth-strip` and `auth-forge`: an upstream that checks its HS256 JWTs answers 401 to every
//! tampered request; a broken one that skips the check answers 200, and the proxy records it
//! so the report can name the finding.

use std::time::Duration;

use chaosforge_proxy::http::{Credential, Finding, Forgery, HttpAction, HttpProxy, Tamper};
use hyper::header::HeaderName;
use serde_json::json;

use crate::support::*;

fn forgeries() -> Vec<(&'static str, Forgery)> {
    let mut claims = serde_json::Map::new();
    claims.insert("role".into(), json!("admin"));
    vec![
        ("wrong-key", Forgery::JwtWrongKey),
        ("alg-none", Forgery::JwtAlgNone),
        ("expired", Forgery::JwtExpired),
        ("claims", Forgery::JwtClaims(claims)),
        ("token", Forgery::Token("not-a-jwt".into())),
    ]
}

/// Sends one request with a valid token through `proxy` under each tampering fault in turn;
/// returns the statuses seen.
async fn statuses_under_each_fault(proxy: &HttpProxy) -> Vec<(String, u16)> {
    let client = client();
    let mut actions = vec![(
        "strip".to_owned(),
        HttpAction::AuthStrip(Credential::Authorization),
    )];
    for (name, forgery) in forgeries() {
        actions.push((
            format!("forge-{name}"),
            HttpAction::AuthForge {
                credential: Credential::Authorization,
                forgery,
            },
        ));
    }
    let mut seen = Vec::new();
    for (name, action) in actions {
        proxy.set_fault(fault(&name, 1.0, action));
        let response = within(
            Duration::from_secs(10),
            client
                .get(url(proxy, "/account"))
                .bearer_auth(valid_jwt())
                .send(),
        )
        .await
        .unwrap();
        seen.push((name.clone(), response.status().as_u16()));
        assert!(proxy.remove_fault(&name));
    }
    seen
}

#[tokio::test]
async fn a_checking_upstream_rejects_every_tampered_credential() {
    let upstream = upstream(Behaviour::CheckJwt).await;
    let proxy = proxy_to(&upstream).await;
    // The untouched token is accepted: the 401s below are the faults' doing.
    let response = within(
        Duration::from_secs(10),
        client()
            .get(url(&proxy, "/account"))
            .bearer_auth(valid_jwt())
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 200);

    let seen = statuses_under_each_fault(&proxy).await;
    assert!(seen.iter().all(|(_, status)| *status == 401), "{seen:?}");
    let stats = proxy.stats();
    for (name, _) in &seen {
        assert_eq!(
            stats.faults[name].upstream_statuses.get(&401),
            Some(&1),
            "{name}"
        );
    }
    assert!(stats.findings().is_empty(), "{:?}", stats.findings());
    proxy.shutdown().await;
}

#[tokio::test]
async fn a_broken_upstream_accepts_them_and_the_findings_say_so() {
    let upstream = upstream(Behaviour::Broken).await;
    let proxy = proxy_to(&upstream).await;
    let seen = statuses_under_each_fault(&proxy).await;
    assert!(seen.iter().all(|(_, status)| *status == 200), "{seen:?}");

    let findings = proxy.stats().findings();
    assert_eq!(findings.len(), seen.len());
    let texts: Vec<String> = findings.iter().map(ToString::to_string).collect();
    for text in &texts {
        println!("finding: {text}");
    }
    assert!(texts.contains(
        &"upstream accepted a request with alg none (Authorization header) (fault `forge-alg-none`, 1 time)"
            .to_owned()
    ));
    assert!(
        texts.contains(
            &"upstream accepted a request without its Authorization header (fault `strip`, 1 time)"
                .to_owned()
        )
    );
    assert!(findings.iter().any(|f| matches!(
        f,
        Finding::UpstreamAcceptedCredential {
            tamper: Tamper::Forged {
                forgery: Forgery::JwtExpired,
                ..
            },
            accepted: 1,
            ..
        }
    )));
    proxy.shutdown().await;
}

#[tokio::test]
async fn forgeries_keep_the_original_claims_and_cookies_and_api_keys_are_handled() {
    let upstream = upstream(Behaviour::Echo).await;
    let proxy = proxy_to(&upstream).await;
    let client = client();
    let target = url(&proxy, "/");

    // A forged JWT starts from the request's own: same subject, changed role.
    let mut claims = serde_json::Map::new();
    claims.insert("role".into(), json!("admin"));
    proxy.set_fault(fault(
        "claims",
        1.0,
        HttpAction::AuthForge {
            credential: Credential::Authorization,
            forgery: Forgery::JwtClaims(claims),
        },
    ));
    let response = within(
        Duration::from_secs(10),
        client.get(&target).bearer_auth(valid_jwt()).send(),
    )
    .await
    .unwrap();
    let echo: serde_json::Value = response.json().await.unwrap();
    let auth = header_values(&echo, "authorization");
    let token = auth[0].strip_prefix("Bearer ").unwrap();
    let forged = jwt_claims(token);
    assert_eq!(forged["sub"], "alice");
    assert_eq!(forged["role"], "admin");
    proxy.remove_fault("claims");

    // A named cookie goes; the others stay.
    proxy.set_fault(fault(
        "cookie",
        1.0,
        HttpAction::AuthStrip(Credential::Cookie("session".into())),
    ));
    let response = within(
        Duration::from_secs(10),
        client
            .get(&target)
            .header("cookie", "theme=dark; session=abc123; lang=en")
            .send(),
    )
    .await
    .unwrap();
    let echo: serde_json::Value = response.json().await.unwrap();
    assert_eq!(header_values(&echo, "cookie"), ["theme=dark; lang=en"]);
    proxy.remove_fault("cookie");

    // An API-key header is replaced by an arbitrary token.
    let api_key = HeaderName::from_static("x-api-key");
    proxy.set_fault(fault(
        "api-key",
        1.0,
        HttpAction::AuthForge {
            credential: Credential::Header(api_key.clone()),
            forgery: Forgery::Token("forged-key".into()),
        },
    ));
    let response = within(
        Duration::from_secs(10),
        client
            .get(&target)
            .header(api_key.clone(), "real-key")
            .send(),
    )
    .await
    .unwrap();
    let echo: serde_json::Value = response.json().await.unwrap();
    assert_eq!(header_values(&echo, "x-api-key"), ["forged-key"]);
    proxy.shutdown().await;
}
