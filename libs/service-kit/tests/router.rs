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
        .route("/panic", get(panics))
        .route(
            "/plain",
            post(|body: axum::Json<Value>| async move { body.0.to_string() }),
        );
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

#[tokio::test]
async fn plain_text_rejections_become_json_errors() {
    let ctx = Context::for_tests("router-test");
    let app = app(&ctx);
    // axum's own `Json` rejects a text body with a plain-text 415.
    let req = Request::post("/plain")
        .header("content-type", "text/plain")
        .body(Body::from("{}"))
        .unwrap();
    let (status, body) = call(&app, req).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let v = json(&body);
    assert_eq!(v["error"]["code"], "unsupported_media_type", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Content-Type"),
        "{v}"
    );
    let (status, body) = call(&app, post_json("/plain", "{oops")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(json(&body)["error"]["code"], "bad_request");
}

#[tokio::test]
async fn an_oversize_content_length_is_refused_before_the_body() {
    let ctx = Context::for_tests("router-test");
    let app = app(&ctx);
    let req = Request::post("/users")
        .header("content-type", "application/json")
        .header("content-length", "100000000000")
        .body(Body::from("{"))
        .unwrap();
    let (status, body) = call(&app, req).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(json(&body)["error"]["code"], "payload_too_large");
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
