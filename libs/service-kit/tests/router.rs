//! The assembled router, driven without a socket through testbed's [`TestRouter`].

use axum::Router;
use axum::body::Body;
use axum::routing::{get, post};
use http::{Method, Request, StatusCode};
use serde::Deserialize;
use serde_json::Value;
use service_kit::extract::{Json, Path};
use service_kit::{Context, assemble};
use testbed::TestRouter;
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

/// The test routes behind the skeleton, over a fresh test context.
fn test_app() -> TestRouter {
    let ctx = Context::for_tests("router-test");
    TestRouter::new(app(&ctx))
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
        .route("/", service_kit::identity("router-test", "1.2.3"))
        .route("/panic", get(panics))
        .route(
            "/plain",
            post(|body: axum::Json<Value>| async move { body.0.to_string() }),
        );
    assemble(ctx, routes)
}

fn post_json(path: &str, body: impl Into<Body>) -> Request<Body> {
    Request::post(path)
        .header("content-type", "application/json")
        .body(body.into())
        .unwrap()
}

#[tokio::test]
async fn metrics_use_route_templates_and_pass_promtool() {
    let app = test_app();
    for id in [42, 43] {
        assert_eq!(
            app.get(&format!("/users/{id}")).await.status,
            StatusCode::OK
        );
    }
    let metrics = app.metrics().await;
    let text = metrics.text();
    assert!(text.contains(r#"http_route="/users/{id}""#), "{text}");
    assert!(!text.contains("/users/42"), "raw path leaked into labels");
    for name in [
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_start_time_seconds",
        "process_cpu_seconds_total",
    ] {
        assert!(
            metrics.value(name, &[]).is_some(),
            "{name} missing:\n{text}"
        );
    }
    let report = testbed::promtool_check_metrics(text);
    assert!(report.is_empty(), "promtool check metrics: {report}");
}

#[tokio::test]
async fn readiness_names_the_failing_check() {
    let ctx = Context::for_tests("router-test");
    let db = ctx.readiness.flag("database", "connection refused");
    ctx.readiness.add("cache", || Box::pin(async { Ok(()) }));
    let app = TestRouter::new(app(&ctx));
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status, StatusCode::OK, "{}", ready.text);
    db.set_down();
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ready.body["failing"][0]["check"], "database");
    assert_eq!(ready.body["failing"][0]["reason"], "connection refused");
    assert_eq!(ready.body["checks"]["cache"], "ok");
}

#[tokio::test]
async fn liveness_does_not_follow_readiness() {
    let ctx = Context::for_tests("router-test");
    ctx.readiness
        .flag("database", "connection refused")
        .set_down();
    let app = TestRouter::new(app(&ctx));
    assert_eq!(
        app.get("/readyz").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(app.get("/healthz").await.status, StatusCode::OK);
}

#[tokio::test]
async fn the_root_names_the_service_and_its_version() {
    let reply = test_app().get("/").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        reply.body,
        serde_json::json!({"service": "router-test", "version": "1.2.3"})
    );
}

#[tokio::test]
async fn a_bad_path_parameter_is_400_naming_it() {
    let reply = test_app().get("/users/abc").await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.body["error"]["field"], "id", "{}", reply.text);
}

#[tokio::test]
async fn malformed_json_is_400() {
    let reply = test_app().send(post_json("/users", "{not json")).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.error_code(), Some("malformed_json"));
}

#[tokio::test]
async fn a_missing_unknown_or_mistyped_field_is_422_naming_it() {
    let app = test_app();
    for (body, field) in [
        (r#"{"name":"Ada"}"#, "age"),
        (r#"{"name":"Ada","age":36,"role":"x"}"#, "role"),
        (r#"{"name":"Ada","age":"old"}"#, "age"),
    ] {
        let reply = app.send(post_json("/users", body)).await;
        assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(reply.body["error"]["field"], field, "{}", reply.text);
    }
}

#[tokio::test]
async fn a_body_over_the_limit_is_413() {
    let huge = format!(r#"{{"name":"{}","age":1}}"#, "a".repeat(2 * 1024 * 1024));
    let reply = test_app().send(post_json("/users", huge)).await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(reply.error_code(), Some("payload_too_large"));
}

#[tokio::test]
async fn a_body_without_a_content_type_is_415() {
    let req = Request::post("/users").body(Body::from("{}")).unwrap();
    let reply = test_app().send(req).await;
    assert_eq!(
        reply.status,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "{}",
        reply.text
    );
}

#[tokio::test]
async fn an_unknown_path_is_404_json() {
    let reply = test_app().get("/nowhere").await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(reply.error_code(), Some("not_found"));
}

#[tokio::test]
async fn an_unknown_method_is_405_json() {
    let reply = test_app().call(Method::DELETE, "/users/1", None).await;
    assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(reply.error_code(), Some("method_not_allowed"));
}

#[tokio::test]
async fn a_panicking_handler_is_a_500_with_a_generic_body() {
    let app = test_app();
    let reply = app.get("/panic").await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(reply.error_code(), Some("internal"));
    assert!(
        !reply.text.contains("boom"),
        "internal details must not reach the client"
    );
    assert_eq!(
        app.get("/healthz").await.status,
        StatusCode::OK,
        "the service keeps serving"
    );
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
    let reply = testbed::Reply::read(response).await;
    assert_eq!(reply.error_code(), Some("timeout"), "{}", reply.text);
    let metrics = TestRouter::new(app).metrics().await;
    assert_eq!(
        metrics.value(
            "http_server_request_duration_seconds_count",
            &[
                ("http_response_status_code", "503"),
                ("http_route", "/slow")
            ]
        ),
        Some(1.0),
        "{}",
        metrics.text()
    );
}

#[tokio::test]
async fn a_plain_text_415_becomes_a_json_error() {
    // axum's own `Json` rejects a text body with a plain-text 415.
    let reply = test_app()
        .raw(Method::POST, "/plain", "text/plain", "{}")
        .await;
    assert_eq!(reply.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(
        reply.error_code(),
        Some("unsupported_media_type"),
        "{}",
        reply.text
    );
    assert!(
        reply.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Content-Type"),
        "{}",
        reply.text
    );
}

#[tokio::test]
async fn a_plain_text_json_rejection_becomes_a_json_400() {
    let reply = test_app().send(post_json("/plain", "{oops")).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.error_code(), Some("bad_request"));
}

#[tokio::test]
async fn an_oversize_content_length_is_refused_before_the_body() {
    let req = Request::post("/users")
        .header("content-type", "application/json")
        .header("content-length", "100000000000")
        .body(Body::from("{"))
        .unwrap();
    let reply = test_app().send(req).await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(reply.error_code(), Some("payload_too_large"));
}

#[tokio::test]
async fn an_oversize_request_id_is_replaced() {
    let ctx = Context::for_tests("router-test");
    let app = app(&ctx);
    let long = "a".repeat(129);
    for bad in [long.as_str(), "has space", "caf\u{e9}"] {
        let Ok(value) = http::HeaderValue::from_str(bad) else {
            continue;
        };
        let req = Request::get("/healthz")
            .header("x-request-id", value)
            .body(Body::empty())
            .unwrap();
        let response = app.clone().oneshot(req).await.unwrap();
        let id = response.headers()["x-request-id"].to_str().unwrap();
        assert!(id != bad && id.len() <= 128, "{id}");
    }
    let ok = "a".repeat(128);
    let req = Request::get("/healthz")
        .header("x-request-id", &ok)
        .body(Body::empty())
        .unwrap();
    let response = app.clone().oneshot(req).await.unwrap();
    assert_eq!(response.headers()["x-request-id"], ok.as_str());
}
