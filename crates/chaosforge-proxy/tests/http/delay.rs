//! `http-delay`: the client's median round trip grows by the delay (±5 ms), against a
//! baseline measured in the same test; a request delay holds the request before the upstream
//! sees it, a response delay holds only the answer.

use std::time::Duration;

use chaosforge_proxy::http::HttpAction;
use tokio::time::Instant;

use crate::support::*;

const N: usize = 21;

fn delay(request: u64, response: u64, jitter: u64) -> HttpAction {
    HttpAction::Delay {
        request: Duration::from_millis(request),
        response: Duration::from_millis(response),
        jitter: Duration::from_millis(jitter),
    }
}

#[tokio::test]
async fn request_and_response_delays_add_100ms_at_p50() {
    let _slot = timing_slot().await;
    let upstream = upstream(Behaviour::Echo).await;
    let proxy = proxy_to(&upstream).await;
    let client = client();
    let target = url(&proxy, "/");

    let baseline = p50_get(&client, &target, N).await;

    proxy.set_fault(fault("slow", 1.0, delay(100, 0, 0)));
    let request_delayed = p50_get(&client, &target, N).await;
    // The upstream saw the request only after the delay.
    let sent = Instant::now();
    within(Duration::from_secs(10), client.get(&target).send())
        .await
        .unwrap();
    let arrival = upstream.last_arrival.lock().unwrap().unwrap();
    assert!(arrival - sent >= Duration::from_millis(100));

    proxy.set_fault(fault("slow", 1.0, delay(0, 100, 0)));
    let response_delayed = p50_get(&client, &target, N).await;
    let sent = Instant::now();
    within(Duration::from_secs(10), client.get(&target).send())
        .await
        .unwrap();
    let arrival = upstream.last_arrival.lock().unwrap().unwrap();
    assert!(
        arrival - sent < Duration::from_millis(50),
        "{:?}",
        arrival - sent
    );

    let added_request = ms_diff(request_delayed, baseline);
    let added_response = ms_diff(response_delayed, baseline);
    println!(
        "http-delay 100 ms: baseline p50 {:.2} ms, request +{added_request:.2} ms, \
         response +{added_response:.2} ms",
        baseline.as_secs_f64() * 1000.0
    );
    assert!(
        (added_request - 100.0).abs() <= 5.0,
        "request +{added_request} ms"
    );
    assert!(
        (added_response - 100.0).abs() <= 5.0,
        "response +{added_response} ms"
    );
    proxy.shutdown().await;
}

#[tokio::test]
async fn jitter_spreads_delays_within_bounds() {
    let _slot = timing_slot().await;
    let upstream = upstream(Behaviour::Echo).await;
    let proxy = proxy_to(&upstream).await;
    let client = client();
    let target = url(&proxy, "/");
    let baseline = p50_get(&client, &target, N).await;
    proxy.set_fault(fault("jitter", 1.0, delay(60, 0, 30)));
    let mut added = Vec::new();
    for _ in 0..N {
        let started = Instant::now();
        within(Duration::from_secs(10), client.get(&target).send())
            .await
            .unwrap();
        added.push(ms_diff(started.elapsed(), baseline));
    }
    added.sort_by(f64::total_cmp);
    // Uniform in [30, 90] ms: all within (with a little slack for the baseline's own
    // variation below, and more above: on a loaded 2-core machine one request in twenty can be
    // scheduled late by ten milliseconds or more), and spread.
    assert!(added[0] >= 27.0, "{added:?}");
    assert!(added[N - 1] <= 115.0, "{added:?}");
    assert!(added[N - 1] - added[0] >= 20.0, "{added:?}");
    proxy.shutdown().await;
}
