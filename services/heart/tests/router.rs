//! heart's router behind the real skeleton, driven without a socket through testbed's
//! [`TestRouter`].

use std::collections::HashMap;

use heart::{AppState, Config, MAX_WORK_ITERATIONS};
use http::{Method, StatusCode};
use serde_json::json;
use service_kit::{Context, EnvReader};
use testbed::TestRouter;

/// The `CHAOS_TOKEN` of the test apps (`/chaos` is closed without one).
const CHAOS_TOKEN: &str = "test-chaos";

/// heart as `launch` assembles it, every request carrying [`CHAOS_TOKEN`].
fn app_with(mut config: Config) -> TestRouter {
    if config.chaos_token.is_none() {
        config.chaos_token = Some(CHAOS_TOKEN.into());
    }
    let ctx = Context::for_tests(heart::SERVICE);
    let state = AppState::new(&ctx, config).unwrap();
    TestRouter::new(service_kit::assemble(&ctx, heart::app(state))).with_bearer(CHAOS_TOKEN)
}

async fn beats_total(app: &TestRouter) -> f64 {
    app.metrics()
        .await
        .value("heart_beats_total", &[])
        .expect("heart_beats_total is exposed")
}

#[tokio::test]
async fn beat_counts_works_and_names_the_instance() {
    let app = app_with(Config {
        instance: Some("heart-7f9c".into()),
        ..Config::default()
    });
    let first = app.get("/beat").await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text);
    assert_eq!(first.body["beat"], 1);
    assert_eq!(first.body["instance"], "heart-7f9c");
    assert_eq!(
        first.body["work_iterations"],
        heart::DEFAULT_WORK_ITERATIONS
    );
    assert!(first.body["digest"].is_u64());
    assert_eq!(app.get("/beat").await.body["beat"], 2);
    assert_eq!(beats_total(&app).await, 2.0);
}

#[tokio::test]
async fn the_work_of_a_beat_can_be_chosen_per_request() {
    let app = app_with(Config::default());
    for work in [100, 0] {
        let reply = app.get(&format!("/beat?work={work}")).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
        assert_eq!(reply.body["work_iterations"], work);
    }
    assert_eq!(beats_total(&app).await, 2.0);
}

#[tokio::test]
async fn the_instance_falls_back_to_the_host_name() {
    let app = app_with(Config::default());
    let reply = app.get("/beat").await;
    let instance = reply.body["instance"].as_str().unwrap();
    assert!(!instance.is_empty());
}

#[tokio::test]
async fn bad_work_values_are_400_naming_work_and_not_counted() {
    let app = app_with(Config::default());
    let too_much = format!("/beat?work={}", MAX_WORK_ITERATIONS + 1);
    for uri in [
        "/beat?work=abc",
        "/beat?work=-1",
        "/beat?work=1.5",
        "/beat?work=",
        too_much.as_str(),
    ] {
        let reply = app.get(uri).await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{uri}: {}",
            reply.text
        );
        assert_eq!(
            reply.body["error"]["field"], "work",
            "{uri}: {}",
            reply.text
        );
    }
    assert_eq!(
        beats_total(&app).await,
        0.0,
        "rejected beats are not counted"
    );
}

#[tokio::test]
async fn beat_answers_only_get() {
    let app = app_with(Config::default());
    let reply = app.call(Method::POST, "/beat", Some(json!({}))).await;
    assert_eq!(
        reply.status,
        StatusCode::METHOD_NOT_ALLOWED,
        "{}",
        reply.text
    );
}

#[tokio::test]
async fn chaos_fails_beats_and_readiness_but_not_liveness() {
    let app = app_with(Config::default());
    let set = app
        .call(
            Method::POST,
            "/chaos",
            Some(json!({"error_rate": 1.0, "fail_readiness": true})),
        )
        .await;
    assert_eq!(set.status, StatusCode::OK, "{}", set.text);
    let beat = app.get("/beat").await;
    assert_eq!(beat.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(beat.error_code(), Some("chaos"));
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ready.body["failing"][0]["check"], "chaos");
    assert_eq!(app.get("/healthz").await.status, StatusCode::OK);
}

#[tokio::test]
async fn clearing_chaos_restores_beats_and_readiness() {
    let app = app_with(Config::default());
    let faults = json!({"error_rate": 1.0, "fail_readiness": true});
    app.call(Method::POST, "/chaos", Some(faults)).await;
    let cleared = app.call(Method::DELETE, "/chaos", None).await;
    assert_eq!(cleared.status, StatusCode::OK, "{}", cleared.text);
    assert_eq!(app.get("/beat").await.status, StatusCode::OK);
    assert_eq!(app.get("/readyz").await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_bad_chaos_field_is_422_naming_it() {
    let app = app_with(Config::default());
    let reply = app
        .call(Method::POST, "/chaos", Some(json!({"latency_ms": "slow"})))
        .await;
    assert_eq!(
        reply.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        reply.text
    );
    assert_eq!(reply.body["error"]["field"], "latency_ms");
}

#[tokio::test]
async fn a_chaos_token_is_required_when_configured() {
    let app = app_with(Config {
        chaos_token: Some("pump".into()),
        ..Config::default()
    });
    let reply = app
        .call(Method::POST, "/chaos", Some(json!({"error_rate": 1.0})))
        .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reply.error_code(), Some("unauthorized"));
    assert_eq!(app.get("/beat").await.status, StatusCode::OK);
}

#[tokio::test]
async fn metrics_pass_promtool() {
    let app = app_with(Config::default());
    app.get("/beat").await;
    let metrics = app.metrics().await;
    assert_eq!(
        metrics.value("chaos_fault_active", &[("fault", "leak")]),
        Some(0.0)
    );
    assert!(
        metrics.samples().any(|s| s
            .labels
            .iter()
            .any(|(k, v)| k == "http_route" && v == "/beat")),
        "{}",
        metrics.text()
    );
    let report = testbed::promtool_check_metrics(metrics.text());
    assert!(report.is_empty(), "promtool check metrics: {report}");
}

fn read_config(pairs: &[(&str, &str)]) -> (Config, Result<(), service_kit::ConfigError>) {
    let env: HashMap<&str, &str> = pairs.iter().copied().collect();
    let mut reader = EnvReader::new(&env);
    let config = Config::read(&mut reader);
    (config, reader.finish())
}

#[test]
fn configuration_is_read() {
    let (config, result) = read_config(&[
        ("HEART_WORK_ITERATIONS", "500"),
        ("POD_NAME", "heart-0"),
        ("CHAOS_TOKEN", "t"),
    ]);
    result.unwrap();
    assert_eq!(config.work_iterations, 500);
    assert_eq!(config.instance.as_deref(), Some("heart-0"));
    assert!(config.chaos_token.is_some());
}

#[test]
fn a_bad_work_iterations_value_is_named() {
    for bad in ["lots", "-1", "99999999999"] {
        let (_, result) = read_config(&[("HEART_WORK_ITERATIONS", bad)]);
        let err = result.unwrap_err().to_string();
        assert!(err.contains("HEART_WORK_ITERATIONS"), "{err}");
    }
}
