//! brain → heart over real sockets: the pulse, the breaker opening when heart is down or slow,
//! fast answers while it is open, and recovery through half-open.

use std::time::Duration;

use brain::BreakerState;
use http::Method;
use testbed::TestRouter;

use crate::helpers::{CHAOS_TOKEN, quick_breaker, spawn_brain, spawn_heart, spawn_heart_on};

async fn breaker_gauge(brain: &TestRouter) -> f64 {
    let metrics = brain.metrics().await;
    metrics
        .value("brain_circuit_breaker_state", &[])
        .unwrap_or_else(|| panic!("no brain_circuit_breaker_state in\n{}", metrics.text()))
}

/// Calls `/think?pulse=true` until the breaker rejects; panics after `max` calls.
async fn until_open(brain: &TestRouter, max: usize) {
    for _ in 0..max {
        let a = brain.get("/think?pulse=true").await;
        assert_eq!(a.status, 503, "{}", a.text);
        if a.error_code() == Some("circuit_open") {
            return;
        }
    }
    panic!("the breaker did not open after {max} calls");
}

/// Calls brain made to heart so far (its traced client's request count).
async fn calls_to_heart(brain: &TestRouter) -> f64 {
    brain
        .metrics()
        .await
        .sum("http_client_request_duration_seconds_count", &[])
}

/// Ten pulses while open: each a 503 `circuit_open` with `Retry-After`, answered without a
/// call to heart (counted by brain's client metrics, not timed: the machine's load would decide
/// a time bound).
async fn assert_fails_fast(brain: &TestRouter) {
    let calls_before = calls_to_heart(brain).await;
    for _ in 0..10 {
        let a = brain.get("/think?pulse=true").await;
        assert_eq!(a.status, 503, "{}", a.text);
        assert_eq!(a.error_code(), Some("circuit_open"), "{}", a.text);
        let retry_after: u64 = a
            .header("retry-after")
            .expect("Retry-After")
            .parse()
            .unwrap();
        assert!((1..=1).contains(&retry_after), "Retry-After {retry_after}");
    }
    assert_eq!(
        calls_to_heart(brain).await,
        calls_before,
        "an open breaker called heart"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_breaker_opens_when_heart_stops_and_closes_when_it_returns() {
    let heart = spawn_heart().await;
    let heart_addr = heart.addr();
    let brain = spawn_brain(&heart.url(), quick_breaker()).await;
    let b = brain.client();

    let a = b.get("/think?pulse=true").await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(
        a.body["pulse"]["beat"], 1,
        "brain's pulse reached heart: {}",
        a.text
    );
    let a = b.get("/think/pulse").await;
    assert_eq!(a.body["pulse"]["beat"], 2, "{}", a.text);
    assert_eq!(breaker_gauge(&b).await, 0.0);

    heart.stop().await;
    until_open(&b, 4).await;
    assert_eq!(breaker_gauge(&b).await, 2.0);
    assert_fails_fast(&b).await;
    assert!(
        b.get("/think").await.status == 200,
        "thinking without a pulse still works"
    );

    // Cool-down over, heart still down: the half-open probe fails and the breaker opens again.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let a = b.get("/think?pulse=true").await;
    assert_eq!(a.status, 503, "{}", a.text);
    assert_eq!(breaker_gauge(&b).await, 2.0, "a failed probe reopens");
    assert_fails_fast(&b).await;

    // heart returns on the same address; after the cool-down the probe closes the breaker.
    let heart = spawn_heart_on(heart_addr).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let a = b.get("/think?pulse=true").await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.body["pulse"]["beat"], 1, "the new heart beat: {}", a.text);
    assert_eq!(breaker_gauge(&b).await, 0.0);
    for _ in 0..5 {
        assert_eq!(b.get("/think?pulse=true").await.status, 200);
    }
    heart.stop().await;
    brain.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_heart_opens_the_breaker_too() {
    let heart = spawn_heart().await;
    let brain = spawn_brain(&heart.url(), quick_breaker()).await;
    let b = brain.client();
    assert_eq!(b.get("/think?pulse=true").await.status, 200);

    // heart takes 1 s per beat; brain's attempts time out after 300 ms and are not retried.
    let heart_chaos = heart.client().with_bearer(CHAOS_TOKEN);
    let r = heart_chaos
        .call(
            Method::POST,
            "/chaos",
            Some(serde_json::json!({"latency_ms": 1000})),
        )
        .await;
    assert_eq!(r.status, 200);
    for _ in 0..3 {
        let calls_before = calls_to_heart(&b).await;
        let a = b.get("/think?pulse=true").await;
        assert_eq!(a.status, 503, "{}", a.text);
        assert_eq!(
            calls_to_heart(&b).await - calls_before,
            1.0,
            "one attempt: a timed-out attempt is not retried"
        );
    }
    assert_fails_fast(&b).await;

    assert_eq!(
        heart_chaos
            .call(Method::DELETE, "/chaos", None)
            .await
            .status,
        200
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(b.get("/think?pulse=true").await.status, 200);
    assert_eq!(breaker_gauge(&b).await, BreakerState::Closed as i32 as f64);
    heart.stop().await;
    brain.stop().await;
}
