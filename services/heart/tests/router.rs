//! heart's router behind the real skeleton, driven without a socket.

use std::collections::HashMap;

use axum::Router;
use axum::body::Body;
use heart::{AppState, Config, MAX_WORK_ITERATIONS};
use http_body_util::BodyExt;
use serde_json::Value;
use service_kit::{Context, EnvReader};
use tower::ServiceExt;

/// The `CHAOS_TOKEN` of the test apps (`/chaos` is closed without one).
const CHAOS_TOKEN: &str = "test-chaos";

fn app_with(mut config: Config) -> Router {
    if config.chaos_token.is_none() {
        config.chaos_token = Some(CHAOS_TOKEN.into());
    }
    let ctx = Context::for_tests(heart::SERVICE);
    let state = AppState::new(&ctx, config).unwrap();
    service_kit::assemble(&ctx, heart::app(state))
}

async fn call(app: &Router, method: &str, uri: &str, body: &str) -> (u16, Value, String) {
    let req = http::Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {CHAOS_TOKEN}"))
        .body(Body::from(body.to_owned()))
        .unwrap();
    let response = app.clone().oneshot(req).await.unwrap();
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::Null),
        text,
    )
}

async fn beats_total(app: &Router) -> u64 {
    let (_, _, text) = call(app, "GET", "/metrics", "").await;
    text.lines()
        .find_map(|l| l.strip_prefix("heart_beats_total "))
        .unwrap_or_else(|| panic!("no heart_beats_total in\n{text}"))
        .parse()
        .unwrap()
}

#[tokio::test]
async fn beat_counts_works_and_names_the_instance() {
    let app = app_with(Config {
        instance: Some("heart-7f9c".into()),
        ..Config::default()
    });
    let (s, first, _) = call(&app, "GET", "/beat", "").await;
    assert_eq!(s, 200, "{first}");
    assert_eq!(first["beat"], 1);
    assert_eq!(first["instance"], "heart-7f9c");
    assert_eq!(first["work_iterations"], heart::DEFAULT_WORK_ITERATIONS);
    assert!(first["digest"].is_u64());
    let (_, second, _) = call(&app, "GET", "/beat", "").await;
    assert_eq!(second["beat"], 2);
    assert_eq!(beats_total(&app).await, 2);

    let (s, v, _) = call(&app, "GET", "/beat?work=100", "").await;
    assert_eq!(s, 200);
    assert_eq!(v["work_iterations"], 100);
    let (s, v, _) = call(&app, "GET", "/beat?work=0", "").await;
    assert_eq!(s, 200);
    assert_eq!(v["work_iterations"], 0);
    assert_eq!(beats_total(&app).await, 4);
}

#[tokio::test]
async fn the_instance_falls_back_to_the_host_name() {
    let app = app_with(Config::default());
    let (_, v, _) = call(&app, "GET", "/beat", "").await;
    let instance = v["instance"].as_str().unwrap();
    assert!(!instance.is_empty());
}

#[tokio::test]
async fn bad_work_values_are_400_naming_work() {
    let app = app_with(Config::default());
    let too_much = format!("/beat?work={}", MAX_WORK_ITERATIONS + 1);
    for uri in [
        "/beat?work=abc",
        "/beat?work=-1",
        "/beat?work=1.5",
        "/beat?work=",
        too_much.as_str(),
    ] {
        let (s, v, text) = call(&app, "GET", uri, "").await;
        assert_eq!(s, 400, "{uri}: {text}");
        assert_eq!(v["error"]["field"], "work", "{uri}: {text}");
    }
    assert_eq!(beats_total(&app).await, 0, "rejected beats are not counted");
    let (s, v, _) = call(&app, "POST", "/beat", "{}").await;
    assert_eq!(s, 405, "{v}");
}

#[tokio::test]
async fn chaos_is_wired_on_beat_only() {
    let app = app_with(Config::default());
    let (s, v, _) = call(
        &app,
        "POST",
        "/chaos",
        r#"{"error_rate": 1.0, "fail_readiness": true}"#,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let (s, v, _) = call(&app, "GET", "/beat", "").await;
    assert_eq!(s, 500);
    assert_eq!(v["error"]["code"], "chaos");
    let (s, v, _) = call(&app, "GET", "/readyz", "").await;
    assert_eq!(s, 503);
    assert_eq!(v["failing"][0]["check"], "chaos");
    assert_eq!(call(&app, "GET", "/healthz", "").await.0, 200);
    let (s, v, _) = call(&app, "POST", "/chaos", r#"{"latency_ms": "slow"}"#).await;
    assert_eq!(s, 422);
    assert_eq!(v["error"]["field"], "latency_ms");
    assert_eq!(call(&app, "DELETE", "/chaos", "").await.0, 200);
    assert_eq!(call(&app, "GET", "/beat", "").await.0, 200);
    assert_eq!(call(&app, "GET", "/readyz", "").await.0, 200);
}

#[tokio::test]
async fn a_chaos_token_is_required_when_configured() {
    let app = app_with(Config {
        chaos_token: Some("pump".into()),
        ..Config::default()
    });
    let (s, v, _) = call(&app, "POST", "/chaos", r#"{"error_rate": 1.0}"#).await;
    assert_eq!(s, 401);
    assert_eq!(v["error"]["code"], "unauthorized");
    assert_eq!(call(&app, "GET", "/beat", "").await.0, 200);
}

#[tokio::test]
async fn metrics_pass_promtool() {
    let app = app_with(Config::default());
    call(&app, "GET", "/beat", "").await;
    let (_, _, text) = call(&app, "GET", "/metrics", "").await;
    assert!(
        text.contains(r#"chaos_fault_active{fault="leak"} 0"#),
        "{text}"
    );
    assert!(text.contains(r#"http_route="/beat""#), "{text}");
    let report = testbed::promtool_check_metrics(&text);
    assert!(report.is_empty(), "promtool check metrics: {report}");
}

#[test]
fn configuration_is_read_and_checked() {
    let env: HashMap<&str, &str> = [
        ("HEART_WORK_ITERATIONS", "500"),
        ("POD_NAME", "heart-0"),
        ("CHAOS_TOKEN", "t"),
    ]
    .into_iter()
    .collect();
    let mut reader = EnvReader::new(&env);
    let config = Config::read(&mut reader);
    reader.finish().unwrap();
    assert_eq!(config.work_iterations, 500);
    assert_eq!(config.instance.as_deref(), Some("heart-0"));
    assert!(config.chaos_token.is_some());

    for bad in ["lots", "-1", "99999999999"] {
        let env: HashMap<&str, &str> = [("HEART_WORK_ITERATIONS", bad)].into_iter().collect();
        let mut reader = EnvReader::new(&env);
        Config::read(&mut reader);
        let err = reader.finish().unwrap_err().to_string();
        assert!(err.contains("HEART_WORK_ITERATIONS"), "{err}");
    }
}
