//! The `http` provider, as chaoslib's `run_http_activity` (Python `requests`).
//!
//! - `GET` sends `arguments` as the query; any other verb sends them as a JSON body only when
//!   `headers` has `Content-Type` (that exact spelling) equal to `application/json`, else as a
//!   form body (a string is sent raw).
//! - `timeout`: seconds for connecting and for each read, or `[connect, read]`. A timeout while
//!   waiting for the response fails with "activity took too long to complete"; a connect
//!   timeout, a refused connection and a timeout while reading the body fail with "failed to
//!   connect to URL: …" (requests raises `ConnectionError` for those).
//! - `max_retries` retries connection failures only, as `HTTPAdapter(max_retries=n)`.
//! - The body is JSON only when the response's `Content-Type` is exactly `application/json`
//!   (`application/json; charset=utf-8` gives text!), else text decoded as requests does: the
//!   `charset` parameter, else ISO-8859-1 for `text/*`, else UTF-8.
//! - Header names are reported in Title-Case (`Content-Type`): requests shows them as the
//!   server sent them, which reqwest does not keep; repeated headers are joined with `, `.
//! - A 4xx or 5xx status does not fail the activity.

use std::time::Duration;

use reqwest::{Client, Method, Url};
use serde_json::{Map, Value};

use super::{Failure, failed};
use crate::ctk::config::Context;
use crate::ctk::model::{HttpProvider, py_str};
use crate::ctk::tolerance::py_truthy;

/// Sends the request and returns `{status, headers, body}`.
///
/// `has_tolerance` only decides whether a status above 399 is logged as a warning, as chaoslib
/// does outside the hypothesis.
///
/// # Errors
///
/// chaoslib's `ActivityFailed` messages, and what requests would raise otherwise.
pub async fn run(p: &HttpProvider, has_tolerance: bool, cx: &Context) -> Result<Value, Failure> {
    let url = cx.substitute(&p.url);
    let url_text = py_str(&url);
    let method = p.method.as_deref().unwrap_or("GET").to_uppercase();
    let headers = p.headers.as_ref().map(|h| cx.substitute(h));
    let timeout = p.timeout.as_ref().map(|t| cx.substitute(t));
    let mut arguments = p.arguments.clone();
    if arguments.as_ref().is_some_and(py_truthy) && !cx.is_empty() {
        arguments = arguments.map(|a| cx.substitute(&a));
    }
    let verify = p.verify_tls.as_ref().is_none_or(py_truthy);
    let retries = p.max_retries.as_ref().and_then(Value::as_u64).unwrap_or(0);

    let (connect, read) = timeouts(timeout.as_ref());
    let client = client(verify, connect, read).map_err(|e| Failure {
        class: "requests.exceptions.RequestException",
        message: e.to_string(),
    })?;

    let mut parsed = Url::parse(&url_text).map_err(|e| Failure {
        class: "requests.exceptions.InvalidURL",
        message: format!("Invalid URL '{url_text}': {e}"),
    })?;
    let method = Method::from_bytes(method.as_bytes()).map_err(|e| Failure {
        class: "ValueError",
        message: e.to_string(),
    })?;
    let header_map = headers.as_ref().and_then(Value::as_object);
    let mut body: Option<(Vec<u8>, Option<&str>)> = None;
    if method == Method::GET {
        append_query(&mut parsed, arguments.as_ref());
    } else if header_map
        .and_then(|h| h.get("Content-Type"))
        .and_then(Value::as_str)
        == Some("application/json")
    {
        if let Some(a) = arguments.as_ref().filter(|a| !a.is_null()) {
            body = Some((py_json_dumps(a).into_bytes(), None));
        }
    } else {
        match arguments.as_ref() {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) => body = Some((s.clone().into_bytes(), None)),
            Some(a) => {
                let form = urlencode(a);
                if !form.is_empty() {
                    body = Some((form.into_bytes(), Some("application/x-www-form-urlencoded")));
                }
            }
        }
    }

    let mut attempt = 0;
    let response = loop {
        let mut req = client.request(method.clone(), parsed.clone());
        for (k, v) in header_map.into_iter().flatten() {
            req = req.header(k.as_str(), py_str(v));
        }
        if let Some((bytes, ctype)) = &body {
            let has_ctype = header_map
                .is_some_and(|h| h.keys().any(|k| k.eq_ignore_ascii_case("content-type")));
            if let (Some(ct), false) = (ctype, has_ctype) {
                req = req.header("Content-Type", *ct);
            }
            req = req.body(bytes.clone());
        }
        match req.send().await {
            Ok(r) => break r,
            // requests' `HTTPAdapter(max_retries=n)` is urllib3's `Retry(n)`: connection errors
            // always, and read errors (no answer, a reset, a read timeout) for the idempotent
            // methods; never a status. Without `max_retries` (`Retry(0, read=False)`) none.
            Err(e)
                if attempt < retries
                    && (e.is_connect()
                        || (idempotent(&method) && (e.is_timeout() || e.is_request()))) =>
            {
                attempt += 1;
            }
            Err(e) if e.is_connect() => {
                return Err(failed(format!(
                    "failed to connect to {url_text}: {}",
                    chain(&e)
                )));
            }
            Err(e) if e.is_timeout() => return Err(failed("activity took too long to complete")),
            Err(e) => {
                return Err(failed(format!(
                    "failed to connect to {url_text}: {}",
                    chain(&e)
                )));
            }
        }
    };

    let status = response.status().as_u16();
    let mut out_headers = Map::new();
    for (name, value) in response.headers() {
        let key = title_case(name.as_str());
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        match out_headers.get_mut(&key) {
            Some(Value::String(prev)) => {
                prev.push_str(", ");
                prev.push_str(&value);
            }
            _ => {
                out_headers.insert(key, Value::String(value));
            }
        }
    }
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let bytes = response.bytes().await.map_err(|e| {
        // requests turns a read timeout while streaming the body into a ConnectionError.
        failed(format!("failed to connect to {url_text}: {}", chain(&e)))
    })?;
    let body = if content_type.as_deref() == Some("application/json") {
        serde_json::from_slice(&bytes).map_err(|e| Failure {
            class: "requests.exceptions.JSONDecodeError",
            message: e.to_string(),
        })?
    } else {
        Value::String(decode_text(&bytes, content_type.as_deref()))
    };
    if !has_tolerance && status > 399 {
        tracing::warn!(
            "This HTTP call returned a response with a HTTP status code above 400. This may \
             indicate some error and not what you expected. Please have a look at the logs."
        );
    }
    let mut out = Map::new();
    out.insert("status".into(), status.into());
    out.insert("headers".into(), Value::Object(out_headers));
    out.insert("body".into(), body);
    Ok(Value::Object(out))
}

/// `timeout` as requests reads it: a number for both, or `[connect, read]` (`null` = none).
/// A client for these settings, built once per run and settings: building one loads the TLS
/// roots, which costs more than a loopback request. Connections are not kept between calls, as
/// `requests.request` opens its own session each time (and a server that closes a connection
/// must see the next call open a new one).
fn client(
    verify: bool,
    connect: Option<Duration>,
    read: Option<Duration>,
) -> Result<Client, reqwest::Error> {
    type Key = (bool, Option<Duration>, Option<Duration>);
    static CLIENTS: std::sync::OnceLock<std::sync::Mutex<std::collections::HashMap<Key, Client>>> =
        std::sync::OnceLock::new();
    let key = (verify, connect, read);
    let clients = CLIENTS.get_or_init(Default::default);
    if let Some(c) = clients.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
        return Ok(c.clone());
    }
    let mut builder = Client::builder()
        .danger_accept_invalid_certs(!verify)
        .pool_max_idle_per_host(0);
    if let Some(c) = connect {
        builder = builder.connect_timeout(c);
    }
    if let Some(r) = read {
        builder = builder.read_timeout(r);
    }
    let c = builder.build()?;
    clients
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(key, c.clone());
    Ok(c)
}

fn timeouts(t: Option<&Value>) -> (Option<Duration>, Option<Duration>) {
    let secs = |v: &Value| {
        v.as_f64()
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(Duration::from_secs_f64)
    };
    match t {
        Some(Value::Array(a)) if a.len() == 2 => (secs(&a[0]), secs(&a[1])),
        Some(v) => (secs(v), secs(v)),
        None => (None, None),
    }
}

/// The key/value pairs requests' `_encode_params` makes of a mapping: list values repeat the
/// key, `None` values are dropped, others are `str()`ed.
fn pairs(a: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut push = |k: &str, v: &Value| match v {
        Value::Array(items) => {
            for i in items.iter().filter(|i| !i.is_null()) {
                out.push((k.to_owned(), py_str(i)));
            }
        }
        Value::Null => {}
        other => out.push((k.to_owned(), py_str(other))),
    };
    match a {
        Value::Object(m) => m.iter().for_each(|(k, v)| push(k, v)),
        // A list of `[key, value]` pairs, as requests accepts.
        Value::Array(items) => {
            for item in items {
                if let Some([k, v]) = item.as_array().map(Vec::as_slice) {
                    push(&py_str(k), v);
                }
            }
        }
        _ => {}
    }
    out
}

/// `urlencode(pairs, doseq=True)`: `+` for spaces, as an HTML form.
fn urlencode(a: &Value) -> String {
    let mut scratch = Url::parse("http://x/").unwrap_or_else(|_| unreachable!("a fixed valid URL"));
    scratch.query_pairs_mut().extend_pairs(pairs(a));
    scratch.query().unwrap_or("").to_owned()
}

/// requests' `params=`: a mapping is encoded and appended to the URL's own query; a string is
/// appended as it is.
fn append_query(url: &mut Url, arguments: Option<&Value>) {
    let extra = match arguments {
        Some(Value::String(s)) => s.clone(),
        Some(a) => urlencode(a),
        None => String::new(),
    };
    if extra.is_empty() {
        return;
    }
    let query = match url.query() {
        Some(q) if !q.is_empty() => format!("{q}&{extra}"),
        _ => extra,
    };
    url.set_query(Some(&query));
}

/// urllib3's `Retry.DEFAULT_ALLOWED_METHODS`.
fn idempotent(m: &Method) -> bool {
    [
        Method::GET,
        Method::HEAD,
        Method::PUT,
        Method::DELETE,
        Method::OPTIONS,
        Method::TRACE,
    ]
    .contains(m)
}

/// Python's `json.dumps(value)`: `", "` and `": "` separators and `\uXXXX` for non-ASCII.
pub fn py_json_dumps(v: &Value) -> String {
    match v {
        Value::String(s) => {
            let mut out = String::from("\"");
            for c in s.chars() {
                match c {
                    '"' => out.push_str("\\\""),
                    '\\' => out.push_str("\\\\"),
                    '\n' => out.push_str("\\n"),
                    '\r' => out.push_str("\\r"),
                    '\t' => out.push_str("\\t"),
                    '\u{8}' => out.push_str("\\b"),
                    '\u{c}' => out.push_str("\\f"),
                    c if c.is_ascii() && !c.is_ascii_control() => out.push(c),
                    c => {
                        let mut buf = [0u16; 2];
                        for unit in c.encode_utf16(&mut buf) {
                            out.push_str(&format!("\\u{unit:04x}"));
                        }
                    }
                }
            }
            out.push('"');
            out
        }
        Value::Array(items) => {
            let inner: Vec<String> = items.iter().map(py_json_dumps).collect();
            format!("[{}]", inner.join(", "))
        }
        Value::Object(m) => {
            let inner: Vec<String> = m
                .iter()
                .map(|(k, v)| {
                    format!(
                        "{}: {}",
                        py_json_dumps(&Value::String(k.clone())),
                        py_json_dumps(v)
                    )
                })
                .collect();
            format!("{{{}}}", inner.join(", "))
        }
        Value::Number(n) if !(n.is_i64() || n.is_u64()) => crate::ctk::model::py_repr(v),
        other => other.to_string(),
    }
}

/// `Response.text`: the charset of `Content-Type`, else ISO-8859-1 for `text/*`, else UTF-8
/// (requests would guess; UTF-8 is what it guesses for UTF-8 text); undecodable bytes replaced.
fn decode_text(bytes: &[u8], content_type: Option<&str>) -> String {
    let ct = content_type.unwrap_or("").to_ascii_lowercase();
    let charset = ct.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        (k.trim() == "charset").then(|| v.trim().trim_matches(|c| c == '"' || c == '\'').to_owned())
    });
    let latin1 = match charset.as_deref() {
        Some("iso-8859-1" | "latin-1" | "latin1" | "iso8859-1") => true,
        Some(_) => false,
        None => ct.contains("text"),
    };
    if latin1 {
        bytes.iter().map(|b| char::from(*b)).collect()
    } else {
        String::from_utf8_lossy(bytes).into_owned()
    }
}

/// `content-type` → `Content-Type`.
fn title_case(name: &str) -> String {
    name.split('-')
        .map(|part| {
            let mut c = part.chars();
            match c.next() {
                Some(f) => f.to_ascii_uppercase().to_string() + c.as_str(),
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join("-")
}

/// The error and its causes, as one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(cause) = src {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        src = cause.source();
    }
    s
}
