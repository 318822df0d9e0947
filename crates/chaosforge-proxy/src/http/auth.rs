//! `auth-strip` and `auth-forge`: finding, removing and replacing a request's credential,
//! and forging JWTs (HS256 via aws-lc-rs HMAC, base64url segments).

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hyper::header::{AUTHORIZATION, COOKIE, HeaderMap, HeaderValue};
use rand::RngExt;
use rand::rngs::SmallRng;
use serde_json::{Map, Value, json};

use super::fault::{Credential, Forgery};

/// How far `JwtExpired` moves `exp` into the past, and the lifetime of a fresh token.
const HOUR: i64 = 3600;

/// Removes the credential from `headers` (other cookies stay).
pub(crate) fn strip(headers: &mut HeaderMap, credential: &Credential) {
    match credential {
        Credential::Authorization => {
            headers.remove(AUTHORIZATION);
        }
        Credential::Header(name) => {
            headers.remove(name);
        }
        Credential::Cookie(name) => {
            let _ = take_cookie(headers, name);
        }
    }
}

/// Replaces the credential in `headers` with a forgery (added if there was none). Random
/// choices (the wrong key) come from `rng`.
pub(crate) fn forge(
    headers: &mut HeaderMap,
    credential: &Credential,
    forgery: &Forgery,
    rng: &mut SmallRng,
) {
    match credential {
        Credential::Authorization => {
            let current = headers
                .get(AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            // Keep the client's scheme ("Bearer", "Token", …); the token is what follows it.
            let (scheme, token) = match current.as_deref().and_then(|v| v.split_once(' ')) {
                Some((scheme, token)) => (scheme.to_owned(), Some(token.trim().to_owned())),
                None => ("Bearer".to_owned(), current),
            };
            let forged = forged_token(token.as_deref(), forgery, rng);
            set_or_strip(headers, AUTHORIZATION, &format!("{scheme} {forged}"));
        }
        Credential::Header(name) => {
            let current = headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let forged = forged_token(current.as_deref(), forgery, rng);
            set_or_strip(headers, name.clone(), &forged);
        }
        Credential::Cookie(name) => {
            let current = take_cookie(headers, name);
            let forged = forged_token(current.as_deref(), forgery, rng);
            let pair = format!("{name}={forged}");
            // Appended to the first Cookie header, so the request still sends one header.
            let joined = match headers.get(COOKIE).and_then(|v| v.to_str().ok()) {
                Some(rest) if !rest.trim().is_empty() => format!("{rest}; {pair}"),
                _ => pair,
            };
            headers.remove(COOKIE);
            set_or_strip(headers, COOKIE, &joined);
        }
    }
}

/// Sets `name: value`; a value that is not a valid header value (an arbitrary token with a
/// control character) leaves the credential removed instead, and says so.
fn set_or_strip(headers: &mut HeaderMap, name: hyper::header::HeaderName, value: &str) {
    match HeaderValue::from_str(value) {
        Ok(value) => {
            headers.insert(name, value);
        }
        Err(_) => {
            tracing::warn!(header = %name, "forged credential is not a valid header value; removed instead");
            headers.remove(name);
        }
    }
}

/// Removes cookie `name` from every `Cookie` header (dropping headers left empty) and returns
/// its first value.
fn take_cookie(headers: &mut HeaderMap, name: &str) -> Option<String> {
    let mut found = None;
    let mut kept = Vec::new();
    for value in headers.get_all(COOKIE) {
        let Ok(text) = value.to_str() else {
            // Not text: keep it as it is rather than lose it.
            kept.push(value.clone());
            continue;
        };
        let mut rest = Vec::new();
        for pair in text.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some((k, v)) if k.trim() == name => {
                    found.get_or_insert_with(|| v.trim().to_owned());
                }
                _ => rest.push(pair),
            }
        }
        if !rest.is_empty()
            && let Ok(v) = HeaderValue::from_str(&rest.join("; "))
        {
            kept.push(v);
        }
    }
    headers.remove(COOKIE);
    for value in kept {
        headers.append(COOKIE, value);
    }
    found
}

/// The forged token for `forgery`, from the request's own token when it has one.
fn forged_token(original: Option<&str>, forgery: &Forgery, rng: &mut SmallRng) -> String {
    let now = unix_now();
    let (mut header, mut claims) = original.and_then(decode_jwt).unwrap_or_else(|| {
        (
            json_map(json!({"alg": "HS256", "typ": "JWT"})),
            json_map(json!({"sub": "chaosforge", "iat": now, "exp": now + HOUR})),
        )
    });
    match forgery {
        Forgery::Token(token) => return token.clone(),
        Forgery::JwtAlgNone => {
            header.insert("alg".into(), json!("none"));
            // RFC 7519 §6.1: an unsecured JWT has an empty signature segment.
            return format!("{}.{}.", segment(&header), segment(&claims));
        }
        Forgery::JwtWrongKey => {}
        Forgery::JwtExpired => {
            claims.insert("exp".into(), json!(now - HOUR));
            claims.insert("iat".into(), json!(now - 2 * HOUR));
            if claims.contains_key("nbf") {
                claims.insert("nbf".into(), json!(now - 2 * HOUR));
            }
        }
        Forgery::JwtClaims(extra) => {
            claims.extend(extra.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
    }
    header.insert("alg".into(), json!("HS256"));
    let mut key = [0u8; 32];
    rng.fill(&mut key[..]);
    sign_hs256(&header, &claims, &key)
}

/// A JWT's header and claims, if `token` is one (three base64url segments of JSON objects).
fn decode_jwt(token: &str) -> Option<(Map<String, Value>, Map<String, Value>)> {
    let mut parts = token.split('.');
    let (header, claims) = (parts.next()?, parts.next()?);
    parts.next()?;
    let decode = |s: &str| -> Option<Map<String, Value>> {
        let bytes = URL_SAFE_NO_PAD.decode(s.trim_end_matches('=')).ok()?;
        match serde_json::from_slice(&bytes).ok()? {
            Value::Object(map) => Some(map),
            _ => None,
        }
    };
    Some((decode(header)?, decode(claims)?))
}

/// `header.claims.signature`, HS256 with `key`.
pub(crate) fn sign_hs256(
    header: &Map<String, Value>,
    claims: &Map<String, Value>,
    key: &[u8],
) -> String {
    let signing_input = format!("{}.{}", segment(header), segment(claims));
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, key);
    let tag = aws_lc_rs::hmac::sign(&key, signing_input.as_bytes());
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
}

/// One base64url JWT segment.
fn segment(map: &Map<String, Value>) -> String {
    // Serializing a map of JSON values cannot fail.
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(map).unwrap_or_default())
}

fn json_map(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// Seconds since the epoch (0 for a clock before 1970).
fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    fn original() -> String {
        let header = json_map(json!({"alg": "HS256", "typ": "JWT"}));
        let claims = json_map(json!({"sub": "alice", "role": "user", "exp": unix_now() + 600}));
        sign_hs256(&header, &claims, b"real key")
    }

    fn bearer(headers: &HeaderMap) -> (Map<String, Value>, Map<String, Value>, String) {
        let value = headers[AUTHORIZATION].to_str().unwrap();
        let token = value.strip_prefix("Bearer ").unwrap();
        let (h, c) = decode_jwt(token).unwrap();
        (h, c, token.rsplit('.').next().unwrap().to_owned())
    }

    fn forged(forgery: Forgery) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            AUTHORIZATION,
            format!("Bearer {}", original()).parse().unwrap(),
        );
        let mut rng = SmallRng::seed_from_u64(7);
        forge(&mut headers, &Credential::Authorization, &forgery, &mut rng);
        headers
    }

    #[test]
    fn forgeries_keep_the_claims_and_break_the_signature() {
        let (h, c, sig) = bearer(&forged(Forgery::JwtWrongKey));
        assert_eq!(h["alg"], "HS256");
        assert_eq!(c["sub"], "alice");
        assert_ne!(sig, original().rsplit('.').next().unwrap());

        let (h, c, sig) = bearer(&forged(Forgery::JwtAlgNone));
        assert_eq!(h["alg"], "none");
        assert_eq!(c["role"], "user");
        assert!(sig.is_empty());

        let (_, c, _) = bearer(&forged(Forgery::JwtExpired));
        assert!(c["exp"].as_i64().unwrap() < unix_now());

        let (_, c, _) = bearer(&forged(Forgery::JwtClaims(json_map(
            json!({"role": "admin"}),
        ))));
        assert_eq!(c["role"], "admin");
        assert_eq!(c["sub"], "alice");

        let headers = forged(Forgery::Token("abc".into()));
        assert_eq!(headers[AUTHORIZATION], "Bearer abc");
    }

    #[test]
    fn cookies_are_stripped_and_forged_one_at_a_time() {
        let mut headers = HeaderMap::new();
        headers.append(COOKIE, "a=1; sid=secret".parse().unwrap());
        headers.append(COOKIE, "b=2".parse().unwrap());
        strip(&mut headers, &Credential::Cookie("sid".into()));
        let all: Vec<_> = headers.get_all(COOKIE).iter().collect();
        assert_eq!(all, ["a=1", "b=2"]);

        let mut rng = SmallRng::seed_from_u64(7);
        forge(
            &mut headers,
            &Credential::Cookie("sid".into()),
            &Forgery::Token("forged".into()),
            &mut rng,
        );
        assert_eq!(headers[COOKIE], "a=1; sid=forged");
    }

    #[test]
    fn a_missing_credential_is_forged_from_scratch() {
        let mut headers = HeaderMap::new();
        let mut rng = SmallRng::seed_from_u64(7);
        let name = hyper::header::HeaderName::from_static("x-api-key");
        forge(
            &mut headers,
            &Credential::Header(name.clone()),
            &Forgery::JwtExpired,
            &mut rng,
        );
        let (_, claims) = decode_jwt(headers[&name].to_str().unwrap()).unwrap();
        assert_eq!(claims["sub"], "chaosforge");
        assert!(claims["exp"].as_i64().unwrap() < unix_now());
    }
}
