//! `/think`, `/chaos` and bad input, through the assembled router.

use std::time::{Duration, Instant};

use brain::{BreakerState, Config, MAX_THINK_MS};

use http::Method;

use crate::helpers::{brain_router, config, quick_breaker};

#[tokio::test]
async fn think_does_cpu_work_for_the_asked_time_and_is_timed() {
    let (_ctx, _state, app) = brain_router(Config::default());
    let start = Instant::now();
    let a = app.get("/think").await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert!(start.elapsed() >= Duration::from_millis(10));
    assert_eq!(a.body["target_ms"], 10.0);
    assert!(a.body["thought_ms"].as_f64().unwrap() >= 10.0, "{}", a.text);
    assert!(a.body["iterations"].as_u64().unwrap() > 0);
    assert!(a.body.get("pulse").is_none(), "no pulse unless asked");

    let start = Instant::now();
    let a = app.get("/think?ms=40").await;
    assert_eq!(a.status, 200);
    assert!(start.elapsed() >= Duration::from_millis(40));
    assert_eq!(a.body["target_ms"], 40.0);

    let a = app.get("/think?ms=0&pulse=false").await;
    assert_eq!(a.status, 200, "{}", a.text);

    let metrics = app.metrics().await;
    assert_eq!(
        metrics
            .value("brain_think_duration_seconds_count", &[])
            .unwrap(),
        3.0
    );
    assert!(
        metrics
            .value("brain_think_duration_seconds_sum", &[])
            .unwrap()
            >= 0.05
    );
    assert_eq!(
        metrics.value("brain_circuit_breaker_state", &[]).unwrap(),
        0.0
    );
}

#[tokio::test]
async fn bad_query_values_are_400_naming_the_field() {
    let (_ctx, _state, app) = brain_router(Config::default());
    let too_long = format!("/think?ms={}", MAX_THINK_MS + 1);
    for (uri, field) in [
        ("/think?ms=abc", "ms"),
        ("/think?ms=-3", "ms"),
        ("/think?ms=2.5", "ms"),
        (too_long.as_str(), "ms"),
        ("/think?pulse=maybe", "pulse"),
        ("/think?pulse=1", "pulse"),
        ("/think/pulse?pulse=false", "pulse"),
    ] {
        let a = app.get(uri).await;
        assert_eq!(a.status, 400, "{uri}: {}", a.text);
        assert_eq!(a.body["error"]["field"], field, "{uri}: {}", a.text);
    }
    let metrics = app.metrics().await;
    assert_eq!(
        metrics
            .value("brain_think_duration_seconds_count", &[])
            .unwrap(),
        0.0,
        "nothing was thought"
    );
    assert_eq!(
        app.raw(Method::POST, "/think", "application/json", "{}")
            .await
            .status,
        405
    );
}

#[tokio::test]
async fn pulse_to_an_unreachable_heart_is_a_503_not_a_500() {
    // Nothing listens on port 9 of 127.0.0.1 (discard; never served here): connection refused.
    let (_ctx, state, app) = brain_router(config("http://127.0.0.1:9", quick_breaker()));
    let a = app.get("/think?pulse=true").await;
    assert_eq!(a.status, 503, "{}", a.text);
    assert_eq!(a.body["error"]["code"], "unavailable");
    assert_eq!(a.header("retry-after"), Some("1"));
    // Two attempts (one retry) of the three failures that open the breaker.
    assert_eq!(state.heart().state(), BreakerState::Closed);
    let a = app.get("/think/pulse").await;
    assert_eq!(a.status, 503);
    assert_eq!(state.heart().state(), BreakerState::Open);
    let a = app.get("/think/pulse").await;
    assert_eq!(a.body["error"]["code"], "circuit_open", "{}", a.text);
    let metrics = app.metrics().await;
    assert_eq!(
        metrics.value("brain_circuit_breaker_state", &[]).unwrap(),
        2.0
    );
}

#[tokio::test]
async fn chaos_is_wired_on_think() {
    let (_ctx, _state, app) = brain_router(Config::default());
    let a = app
        .raw(
            Method::POST,
            "/chaos",
            "application/json",
            r#"{"error_rate": 1, "latency_ms": 30}"#,
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.text);
    let start = Instant::now();
    let a = app.get("/think").await;
    assert_eq!(a.status, 500);
    assert_eq!(a.body["error"]["code"], "chaos");
    assert!(start.elapsed() >= Duration::from_millis(30));
    assert_eq!(app.get("/healthz").await.status, 200);
    let a = app
        .raw(
            Method::POST,
            "/chaos",
            "application/json",
            r#"{"error_rate": 2}"#,
        )
        .await;
    assert_eq!(a.status, 422);
    assert_eq!(a.body["error"]["field"], "error_rate");
    assert_eq!(app.call(Method::DELETE, "/chaos", None).await.status, 200);
    assert_eq!(app.get("/think").await.status, 200);
}

#[tokio::test]
async fn metrics_pass_promtool() {
    let (_ctx, _state, app) = brain_router(Config::default());
    app.get("/think?ms=1").await;
    let metrics = app.metrics().await;
    let text = metrics.text();
    assert!(text.contains(r#"http_route="/think""#), "{text}");
    let report = testbed::promtool_check_metrics(text);
    assert!(report.is_empty(), "promtool check metrics: {report}");
}

fn read_config(pairs: &[(&str, &str)]) -> (Config, Result<(), service_kit::ConfigError>) {
    let env: std::collections::HashMap<&str, &str> = pairs.iter().copied().collect();
    let mut reader = service_kit::EnvReader::new(&env);
    let config = Config::read(&mut reader);
    (config, reader.finish())
}

#[test]
fn configuration_is_read() {
    let (c, result) = read_config(&[
        ("HEART_URL", "http://heart:8081/"),
        ("BRAIN_THINK", "25ms"),
        ("BRAIN_THINK_JITTER", "5ms"),
        ("BRAIN_QUEUE_WAIT", "1s"),
    ]);
    result.unwrap();
    assert_eq!(c.heart_url, "http://heart:8081");
    assert_eq!(c.think, Duration::from_millis(25));
    assert_eq!(c.jitter, Duration::from_millis(5));
    assert_eq!(c.queue_wait, Duration::from_secs(1));
}

#[test]
fn every_bad_variable_is_named() {
    let (_, result) = read_config(&[
        ("HEART_URL", "heart"),
        ("BRAIN_THINK", "ten"),
        ("BRAIN_THINK_JITTER", "99s"),
    ]);
    let err = result.unwrap_err().to_string();
    for var in ["HEART_URL:", "BRAIN_THINK:", "BRAIN_THINK_JITTER:"] {
        assert!(err.contains(var), "{var} not named in {err}");
    }
}

#[test]
fn the_retired_millisecond_variables_are_refused_naming_their_replacements() {
    let (_, result) = read_config(&[
        ("BRAIN_THINK_MS", "25"),
        ("BRAIN_THINK_JITTER_MS", "5"),
        ("BRAIN_QUEUE_WAIT_MS", "500"),
    ]);
    let err = result.unwrap_err().to_string();
    for expected in [
        "BRAIN_THINK_MS: no longer read; set BRAIN_THINK=25ms",
        "BRAIN_THINK_JITTER_MS: no longer read; set BRAIN_THINK_JITTER=5ms",
        "BRAIN_QUEUE_WAIT_MS: no longer read; set BRAIN_QUEUE_WAIT=500ms",
    ] {
        assert!(err.contains(expected), "{expected:?} not in {err}");
    }
}

/// `cores + 6` calls of an 800 ms think on a brain that lets one wait (200 ms at most): the
/// answers in the order they arrived.
async fn think_beyond_the_cores() -> (usize, Vec<testbed::Reply>) {
    let (_ctx, _state, app) = brain_router(Config {
        think: Duration::from_millis(1),
        max_waiting: Some(1),
        queue_wait: Duration::from_millis(200),
        ..Config::default()
    });
    let cores = std::thread::available_parallelism().map_or(2, usize::from);
    let answered = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let calls: Vec<_> = (0..cores + 6)
        .map(|_| {
            let (app, answered) = (app.clone(), answered.clone());
            tokio::spawn(async move {
                let reply = app.get("/think?ms=800").await;
                answered.lock().unwrap().push(reply);
            })
        })
        .collect();
    for c in calls {
        c.await.unwrap();
    }
    let answered = std::mem::take(&mut *answered.lock().unwrap());
    (cores, answered)
}

#[tokio::test]
async fn load_beyond_the_cores_is_shed_with_503_one_think_per_core() {
    let (cores, answered) = think_beyond_the_cores().await;
    let ok = answered.iter().filter(|a| a.status == 200).count();
    assert_eq!(ok, cores, "one think per core");
    for a in answered.iter().filter(|a| a.status != 200) {
        assert_eq!(a.status, 503, "{}", a.text);
        assert_eq!(a.body["error"]["code"], "overloaded", "{}", a.text);
        assert_eq!(a.header("retry-after"), Some("1"));
    }
    assert_eq!(answered.len() - ok, 6);
}

#[tokio::test]
async fn shed_calls_are_answered_before_any_think_ends() {
    // Not held: every 503 comes back while the admitted thinks are still running.
    let (cores, answered) = think_beyond_the_cores().await;
    let statuses: Vec<u16> = answered.iter().map(|a| a.status.as_u16()).collect();
    assert_eq!(
        statuses[..6],
        [503; 6],
        "the shed calls are answered first: {statuses:?}"
    );
    assert!(statuses[6..].iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(statuses.len(), cores + 6);
}
