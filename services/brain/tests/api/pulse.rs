//! brain → heart over real sockets: the pulse, the breaker opening when heart is down or slow,
//! fast answers while it is open, and recovery through half-open.

use std::time::Duration;

use brain::BreakerState;

use crate::helpers::{
    CHAOS_TOKEN, client, get, quick_breaker, spawn_brain, spawn_heart, spawn_heart_on,
};

/// brain's `/metrics`, over its socket.
async fn metrics(client: &reqwest::Client, brain: &str) -> testbed::Metrics {
    let response = client.get(format!("{brain}/metrics")).send().await;
    testbed::Metrics::new(response.unwrap().text().await.unwrap())
}

async fn breaker_gauge(client: &reqwest::Client, brain: &str) -> f64 {
    let metrics = metrics(client, brain).await;
    metrics
        .value("brain_circuit_breaker_state", &[])
        .unwrap_or_else(|| panic!("no brain_circuit_breaker_state in\n{}", metrics.text()))
}

/// Calls `/think?pulse=true` until the breaker rejects; panics after `max` calls.
async fn until_open(client: &reqwest::Client, brain: &str, max: usize) {
    for _ in 0..max {
        let a = get(client, &format!("{brain}/think?pulse=true")).await;
        assert_eq!(a.status, 503, "{}", a.text);
        if a.body["error"]["code"] == "circuit_open" {
            return;
        }
    }
    panic!("the breaker did not open after {max} calls");
}

/// Calls brain made to heart so far (its traced client's request count).
async fn calls_to_heart(client: &reqwest::Client, brain: &str) -> f64 {
    metrics(client, brain)
        .await
        .sum("http_client_request_duration_seconds_count", &[])
}

/// Ten pulses while open: each a 503 `circuit_open` with `Retry-After`, answered without a
/// call to heart (counted by brain's client metrics, not timed: the machine's load would decide
/// a time bound).
async fn assert_fails_fast(client: &reqwest::Client, brain: &str) {
    let calls_before = calls_to_heart(client, brain).await;
    for _ in 0..10 {
        let a = get(client, &format!("{brain}/think?pulse=true")).await;
        assert_eq!(a.status, 503, "{}", a.text);
        assert_eq!(a.body["error"]["code"], "circuit_open", "{}", a.text);
        let retry_after: u64 = a
            .retry_after
            .as_deref()
            .expect("Retry-After")
            .parse()
            .unwrap();
        assert!((1..=1).contains(&retry_after), "Retry-After {retry_after}");
    }
    assert_eq!(
        calls_to_heart(client, brain).await,
        calls_before,
        "an open breaker called heart"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_breaker_opens_when_heart_stops_and_closes_when_it_returns() {
    let client = client();
    let heart = spawn_heart().await;
    let heart_addr = heart.addr();
    let brain = spawn_brain(&heart.url(), quick_breaker()).await;
    let b = brain.url();

    let a = get(&client, &format!("{b}/think?pulse=true")).await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(
        a.body["pulse"]["beat"], 1,
        "brain's pulse reached heart: {}",
        a.text
    );
    let a = get(&client, &format!("{b}/think/pulse")).await;
    assert_eq!(a.body["pulse"]["beat"], 2, "{}", a.text);
    assert_eq!(breaker_gauge(&client, &b).await, 0.0);

    heart.stop().await;
    until_open(&client, &b, 4).await;
    assert_eq!(breaker_gauge(&client, &b).await, 2.0);
    assert_fails_fast(&client, &b).await;
    assert!(
        get(&client, &format!("{b}/think")).await.status == 200,
        "thinking without a pulse still works"
    );

    // Cool-down over, heart still down: the half-open probe fails and the breaker opens again.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let a = get(&client, &format!("{b}/think?pulse=true")).await;
    assert_eq!(a.status, 503, "{}", a.text);
    assert_eq!(
        breaker_gauge(&client, &b).await,
        2.0,
        "a failed probe reopens"
    );
    assert_fails_fast(&client, &b).await;

    // heart returns on the same address; after the cool-down the probe closes the breaker.
    let heart = spawn_heart_on(heart_addr).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let a = get(&client, &format!("{b}/think?pulse=true")).await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.body["pulse"]["beat"], 1, "the new heart beat: {}", a.text);
    assert_eq!(breaker_gauge(&client, &b).await, 0.0);
    for _ in 0..5 {
        assert_eq!(
            get(&client, &format!("{b}/think?pulse=true")).await.status,
            200
        );
    }
    heart.stop().await;
    brain.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_heart_opens_the_breaker_too() {
    let client = client();
    let heart = spawn_heart().await;
    let brain = spawn_brain(&heart.url(), quick_breaker()).await;
    let b = brain.url();
    assert_eq!(
        get(&client, &format!("{b}/think?pulse=true")).await.status,
        200
    );

    // heart takes 1 s per beat; brain's attempts time out after 300 ms and are not retried.
    let r = client
        .post(format!("{}/chaos", heart.url()))
        .bearer_auth(CHAOS_TOKEN)
        .json(&serde_json::json!({"latency_ms": 1000}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    for _ in 0..3 {
        let calls_before = calls_to_heart(&client, &b).await;
        let a = get(&client, &format!("{b}/think?pulse=true")).await;
        assert_eq!(a.status, 503, "{}", a.text);
        assert_eq!(
            calls_to_heart(&client, &b).await - calls_before,
            1.0,
            "one attempt: a timed-out attempt is not retried"
        );
    }
    assert_fails_fast(&client, &b).await;

    let r = client
        .delete(format!("{}/chaos", heart.url()))
        .bearer_auth(CHAOS_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        get(&client, &format!("{b}/think?pulse=true")).await.status,
        200
    );
    assert_eq!(
        breaker_gauge(&client, &b).await,
        BreakerState::Closed as i32 as f64
    );
    heart.stop().await;
    brain.stop().await;
}
