//! The assembled router, driven without a socket.

use axum::Router;
use axum::body::Body;
use axum::routing::{get, post};
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde::Deserialize;
use serde_json::Value;
use service_kit::extract::{Json, Path};
use service_kit::{Context, assemble};
use tower::ServiceExt;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct NewUser {
    name: String,
    age: u8,
}

async fn panics() -> &'static str {
    panic!("boom")
}

fn app(ctx: &Context) -> Router {
    let routes = Router::new()
        .route(
            "/users/{id}",
            get(|Path(id): Path<u64>| async move { format!("user {id}") }),
        )
        .route(
            "/users",
            post(|Json(u): Json<NewUser>| async move { u.name }),
        )
        .route("/panic", get(panics));
    assemble(ctx, routes)
}

async fn call(app: &Router, req: Request<Body>) -> (StatusCode, String) {
    let response = app.clone().oneshot(req).await.unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

fn post_json(path: &str, body: impl Into<Body>) -> Request<Body> {
    Request::post(path)
        .header("content-type", "application/json")
        .body(body.into())
        .unwrap()
}

#[tokio::test]
async fn metrics_use_route_templates_and_pass_promtool() {
    let ctx = Context::for_tests("router-test");
    let app = app(&ctx);
    for id in [42, 43] {
        let (s, _) = call(
            &app,
            Request::get(format!("/users/{id}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(s, 200);
    }
    let (s, text) = call(&app, Request::get("/metrics").body(Body::empty()).unwrap()).await;
    assert_eq!(s, 200);
    assert!(text.contains(r#"http_route="/users/{id}""#), "{text}");
    assert!(!text.contains("/users/42"), "raw path leaked into labels");
    assert!(text.contains("process_resident_memory_bytes"));
    assert!(text.contains("process_open_fds"));
    assert!(text.contains("process_start_time_seconds"));
    assert!(text.contains("process_cpu_seconds_total"));

    let report = testbed::promtool_check_metrics(&text);
    assert!(report.is_empty(), "promtool check metrics: {report}");
}

#[tokio::test]
async fn readiness_names_the_failing_check() {
    let ctx = Context::for_tests("router-test");
    let db = ctx.readiness.flag("database", "connection refused");
    ctx.readiness.add("cache", || Box::pin(async { Ok(()) }));
    let app = app(&ctx);
    let (s, body) = call(&app, Request::get("/readyz").body(Body::empty()).unwrap()).await;
    assert_eq!(s, 200, "{body}");
    db.set_down();
    let (s, body) = call(&app, Request::get("/readyz").body(Body::empty()).unwrap()).await;
    assert_eq!(s, 503);
    let v = json(&body);
    assert_eq!(v["failing"][0]["check"], "database");
    assert_eq!(v["failing"][0]["reason"], "connection refused");
    assert_eq!(v["checks"]["cache"], "ok");
    let (s, _) = call(&app, Request::get("/healthz").body(Body::empty()).unwrap()).await;
    assert_eq!(s, 200, "liveness does not follow readiness");
}

#[tokio::test]
async fn bad_input_gets_a_4xx_json_error_naming_what_is_wrong() {
    let ctx = Context::for_tests("router-test");
    let app = app(&ctx);

    let (s, body) = call(
        &app,
        Request::get("/users/abc").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(s, 400);
    assert_eq!(json(&body)["error"]["field"], "id", "{body}");

    let (s, body) = call(&app, post_json("/users", "{not json")).await;
    assert_eq!(s, 400);
    assert_eq!(json(&body)["error"]["code"], "malformed_json");

    let (s, body) = call(&app, post_json("/users", r#"{"name":"Ada"}"#)).await;
    assert_eq!(s, 422);
    assert_eq!(json(&body)["error"]["field"], "age", "{body}");

    let (s, body) = call(
        &app,
        post_json("/users", r#"{"name":"Ada","age":36,"role":"x"}"#),
    )
    .await;
    assert_eq!(s, 422);
    assert_eq!(json(&body)["error"]["field"], "role", "{body}");

    let (s, body) = call(&app, post_json("/users", r#"{"name":"Ada","age":"old"}"#)).await;
    assert_eq!(s, 422);
    assert_eq!(json(&body)["error"]["field"], "age", "{body}");

    let huge = format!(r#"{{"name":"{}","age":1}}"#, "a".repeat(2 * 1024 * 1024));
    let (s, body) = call(&app, post_json("/users", huge)).await;
    assert_eq!(s, 413);
    assert_eq!(json(&body)["error"]["code"], "payload_too_large");

    let (s, body) = call(
        &app,
        Request::post("/users").body(Body::from("{}")).unwrap(),
    )
    .await;
    assert_eq!(s, 415, "{body}");

    let (s, body) = call(&app, Request::get("/nowhere").body(Body::empty()).unwrap()).await;
    assert_eq!(s, 404);
    assert_eq!(json(&body)["error"]["code"], "not_found");

    let (s, body) = call(
        &app,
        Request::delete("/users/1").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(s, 405);
    assert_eq!(json(&body)["error"]["code"], "method_not_allowed");
}

#[tokio::test]
async fn a_panicking_handler_is_a_500_with_a_generic_body() {
    let ctx = Context::for_tests("router-test");
    let app = app(&ctx);
    let (s, body) = call(&app, Request::get("/panic").body(Body::empty()).unwrap()).await;
    assert_eq!(s, 500);
    let v = json(&body);
    assert_eq!(v["error"]["code"], "internal");
    assert!(
        !body.contains("boom"),
        "internal details must not reach the client"
    );
    let (s, _) = call(&app, Request::get("/healthz").body(Body::empty()).unwrap()).await;
    assert_eq!(s, 200, "the service keeps serving");
}

#[tokio::test]
async fn responses_carry_a_request_id() {
    let ctx = Context::for_tests("router-test");
    let app = app(&ctx);
    let response = app
        .clone()
        .oneshot(
            Request::get("/healthz")
                .header("x-request-id", "abc-123")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "abc-123");
    let response = app
        .oneshot(Request::get("/healthz").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"].len(), 36);
}

#[tokio::test]
async fn a_request_over_the_time_limit_is_a_503_json_timeout_recorded_as_such() {
    let mut base = service_kit::config::BaseConfig::for_tests("router-test");
    base.request_timeout = std::time::Duration::from_millis(100);
    let ctx = Context::new(base).unwrap();
    let routes = Router::new().route(
        "/slow",
        get(|| async {
            tokio::time::sleep(std::time::Duration::from_secs(30)).await;
            "too late"
        }),
    );
    let app = assemble(&ctx, routes);
    let started = std::time::Instant::now();
    let response = app
        .clone()
        .oneshot(Request::get("/slow").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["x-request-id"].len(), 36);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let v = json(&String::from_utf8_lossy(&body));
    assert_eq!(v["error"]["code"], "timeout", "{v}");
    let (_, text) = call(&app, Request::get("/metrics").body(Body::empty()).unwrap()).await;
    assert!(
        text.contains(r#"http_server_request_duration_seconds_count{http_request_method="GET",http_response_status_code="503",http_route="/slow"} 1"#),
        "{text}"
    );
}
