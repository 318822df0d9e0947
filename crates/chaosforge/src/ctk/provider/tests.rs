use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use super::*;
use crate::ctk::config::Env;

/// What the test server received.
#[derive(Debug)]
struct Received {
    head: String,
    body: String,
}

impl Received {
    fn request_line(&self) -> &str {
        self.head.lines().next().unwrap_or("")
    }

    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    }
}

/// A one-purpose HTTP/1.1 server on 127.0.0.1: answers every request with `response` after
/// `delay`, and reports each request it read.
async fn server(
    response: &'static str,
    delay: Duration,
) -> (String, mpsc::UnboundedReceiver<Received>) {
    crate::testkit::assert_isolated();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let head_end = loop {
                    let n = sock.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break i;
                    }
                };
                let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
                let len = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                    })
                    .unwrap_or(0);
                let mut body = buf[head_end + 4..].to_vec();
                while body.len() < len {
                    let n = sock.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        break;
                    }
                    body.extend_from_slice(&chunk[..n]);
                }
                let _ = tx.send(Received {
                    head,
                    body: String::from_utf8_lossy(&body).into_owned(),
                });
                tokio::time::sleep(delay).await;
                let _ = sock.write_all(response.as_bytes()).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    (format!("http://{addr}"), rx)
}

fn activity(provider: Value) -> ActivityDef {
    ActivityDef::from_value(&json!({"type": "probe", "name": "p", "provider": provider})).unwrap()
}

fn cx(configuration: Value) -> Context {
    Context {
        configuration: configuration.as_object().cloned().unwrap_or_default(),
        secrets: Map::new(),
        env: Env::default(),
    }
}

async fn go(provider: Value, cx: &Context) -> ActivityRun {
    run(&activity(provider), cx, std::future::pending()).await
}

const JSON_OK: &str = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Multi: a\r\nX-Multi: b\r\nContent-Length: 16\r\nConnection: close\r\n\r\n{\"ok\": [1, 2.5]}";

#[tokio::test]
async fn http_get_sends_arguments_as_query_and_decodes_a_json_body() {
    let (base, mut rx) = server(JSON_OK, Duration::ZERO).await;
    let c = cx(json!({"base": base, "n": 3}));
    let r = go(
        json!({"type": "http", "url": "${base}/p?x=1", "arguments": {"q": "a b", "n": "${n}", "l": [1, true], "none": null}}),
        &c,
    )
    .await;
    assert_eq!(r.status, RunStatus::Succeeded, "{r:?}");
    assert_eq!(r.output["status"], 200);
    assert_eq!(r.output["body"], json!({"ok": [1, 2.5]}));
    // Title-Case names, repeated headers joined as requests' dict(**r.headers) shows them.
    assert_eq!(r.output["headers"]["Content-Type"], "application/json");
    assert_eq!(r.output["headers"]["X-Multi"], "a, b");
    let got = rx.recv().await.unwrap();
    assert_eq!(
        got.request_line(),
        "GET /p?x=1&q=a+b&n=3&l=1&l=True HTTP/1.1"
    );
}

#[tokio::test]
async fn post_bodies_are_json_only_for_the_exact_content_type_header_else_form() {
    let (base, mut rx) = server(JSON_OK, Duration::ZERO).await;
    let c = cx(json!({"v": 1}));
    let args = json!({"a": "é", "v": "${v}"});
    let r = go(
        json!({"type": "http", "url": base, "method": "post", "arguments": args,
                      "headers": {"Content-Type": "application/json"}}),
        &c,
    )
    .await;
    assert_eq!(r.status, RunStatus::Succeeded, "{r:?}");
    let got = rx.recv().await.unwrap();
    assert!(got.request_line().starts_with("POST / "));
    // Python's json.dumps: spaces after separators, non-ASCII escaped, the typed substitution.
    assert_eq!(got.body, r#"{"a": "\u00e9", "v": 1}"#);

    // Lower-case `content-type` is not what chaoslib checks: the body is a form.
    go(
        json!({"type": "http", "url": base, "method": "PUT", "arguments": args,
              "headers": {"content-type": "application/json"}}),
        &c,
    )
    .await;
    let got = rx.recv().await.unwrap();
    assert_eq!(got.body, "a=%C3%A9&v=1");
    assert_eq!(
        got.header("content-type").as_deref(),
        Some("application/json")
    );

    go(
        json!({"type": "http", "url": base, "method": "PATCH", "arguments": {"k": "x y"}}),
        &c,
    )
    .await;
    let got = rx.recv().await.unwrap();
    assert_eq!(got.body, "k=x+y");
    assert_eq!(
        got.header("content-type").as_deref(),
        Some("application/x-www-form-urlencoded")
    );
}

#[tokio::test]
async fn json_with_a_charset_is_text_and_errors_are_not_failures() {
    const RESP: &str = "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}";
    let (base, _rx) = server(RESP, Duration::ZERO).await;
    let r = go(json!({"type": "http", "url": base}), &cx(json!({}))).await;
    // A 503 succeeds (the tolerance judges it), and the body stays a string.
    assert_eq!(r.status, RunStatus::Succeeded);
    assert_eq!(r.output["status"], 503);
    assert_eq!(r.output["body"], "{}");
}

#[tokio::test]
async fn text_without_charset_is_latin1_as_requests_decodes_it() {
    const RESP: &str = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nConnection: close\r\n\r\né";
    let (base, _rx) = server(RESP, Duration::ZERO).await;
    let r = go(json!({"type": "http", "url": base}), &cx(json!({}))).await;
    assert_eq!(r.output["body"], "Ã©");
}

#[tokio::test]
async fn a_slow_response_times_out_with_chaoslibs_message() {
    let (base, _rx) = server(JSON_OK, Duration::from_secs(5)).await;
    let r = go(
        json!({"type": "http", "url": base, "timeout": [1, 0.2]}),
        &cx(json!({})),
    )
    .await;
    assert_eq!(r.status, RunStatus::Failed);
    assert_eq!(r.output, Value::Null);
    assert_eq!(
        r.exception,
        Some(vec![
            "chaoslib.exceptions.ActivityFailed: activity took too long to complete\n".to_owned()
        ])
    );
    assert!(r.duration < 2.0, "{}", r.duration);
}

#[tokio::test]
async fn a_refused_connection_fails_naming_the_url() {
    crate::testkit::assert_isolated();
    // Bind then drop a listener: nothing listens on that port any more.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{port}/");
    let r = go(
        json!({"type": "http", "url": url, "max_retries": 2, "timeout": 1}),
        &cx(json!({})),
    )
    .await;
    assert_eq!(r.status, RunStatus::Failed);
    let e = &r.exception.unwrap()[0];
    assert!(
        e.starts_with(&format!(
            "chaoslib.exceptions.ActivityFailed: failed to connect to {url}: "
        )),
        "{e}"
    );
}

#[tokio::test]
async fn process_list_arguments_are_argv_and_output_is_decoded() {
    let c = cx(json!({"who": "world"}));
    let r = go(json!({"type": "process", "path": "echo", "arguments": ["hello", "${who}", "", null, 3, true]}), &c).await;
    assert_eq!(r.status, RunStatus::Succeeded, "{r:?}");
    assert_eq!(
        r.output,
        json!({"status": 0, "stdout": "hello world 3 True\n", "stderr": ""})
    );
}

#[tokio::test]
async fn process_string_arguments_run_through_the_shell() {
    // `shell=True`: the shell sees the path and the string, so `;` and `$HOME` are its own.
    let r = go(
        json!({"type": "process", "path": "echo", "arguments": "a; echo b >&2; exit 3"}),
        &cx(json!({})),
    )
    .await;
    assert_eq!(
        r.output,
        json!({"status": 3, "stdout": "a\n", "stderr": "b\n"})
    );
    // The list form does not: the same text is one argument.
    let r = go(
        json!({"type": "process", "path": "echo", "arguments": ["a; exit 3"]}),
        &cx(json!({})),
    )
    .await;
    assert_eq!(r.output["stdout"], "a; exit 3\n");
}

#[tokio::test]
async fn process_dict_arguments_flatten_to_key_value_pairs() {
    let r = go(
        json!({"type": "process", "path": "echo", "arguments": {"-n": "x", "--skip": null}}),
        &cx(json!({})),
    )
    .await;
    // In the file's order, as Python's dict: `echo -n x --skip` (so no newline).
    assert_eq!(r.output["stdout"], "x --skip");
}

#[tokio::test]
async fn a_failing_process_succeeds_with_its_status() {
    let r = go(json!({"type": "process", "path": "false"}), &cx(json!({}))).await;
    assert_eq!(r.status, RunStatus::Succeeded);
    assert_eq!(r.output["status"], 1);
}

#[tokio::test]
async fn a_process_past_its_timeout_is_killed_and_fails() {
    let r = go(
        json!({"type": "process", "path": "sleep", "arguments": ["5"], "timeout": 0.2}),
        &cx(json!({})),
    )
    .await;
    assert_eq!(r.status, RunStatus::Failed);
    assert_eq!(
        r.exception,
        Some(vec![
            "chaoslib.exceptions.ActivityFailed: process activity took too long to complete\n"
                .to_owned()
        ])
    );
    assert!(r.duration < 2.0);
}

#[tokio::test]
async fn var_file_environment_reaches_the_process() {
    let c = Context {
        env: Env::with_overlay([("CF_OVERLAY".to_owned(), "from-env-file".to_owned())].into()),
        ..cx(json!({}))
    };
    let r = go(
        json!({"type": "process", "path": "sh", "arguments": ["-c", "echo $CF_OVERLAY"]}),
        &c,
    )
    .await;
    assert_eq!(r.output["stdout"], "from-env-file\n");
}

#[tokio::test]
async fn cancel_interrupts_a_running_activity() {
    let a = activity(json!({"type": "process", "path": "sleep", "arguments": ["5"]}));
    let r = run(
        &a,
        &cx(json!({})),
        tokio::time::sleep(Duration::from_millis(100)),
    )
    .await;
    assert!(r.interrupted);
    assert_eq!(r.status, RunStatus::Failed);
}

#[tokio::test]
async fn python_providers_fail_and_journal_entries_have_ctk_keys() {
    let a = ActivityDef::from_value(&json!({"type": "action", "name": "x",
        "provider": {"type": "python", "module": "m", "func": "f"}}))
    .unwrap();
    let r = run(&a, &cx(json!({})), std::future::pending()).await;
    assert_eq!(r.status, RunStatus::Failed);
    let j = r.to_journal(&a.raw);
    for key in [
        "activity",
        "output",
        "start",
        "status",
        "exception",
        "end",
        "duration",
    ] {
        assert!(j.contains_key(key), "{key}");
    }
    let start = j["start"].as_str().unwrap();
    assert!(start.ends_with("+00:00") && start.len() == 32, "{start}");
}
