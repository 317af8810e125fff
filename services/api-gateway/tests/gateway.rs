//! Router tests of every gateway endpoint, in front of real organs (user-service over SQLite,
//! heart) and testbed's HTTP sink where a request has to be inspected as it arrives.

mod common;

use std::time::{Duration, Instant};

use api_gateway::Config;
use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use serde_json::{Value, json};
use testbed::{HttpSink, Reply, TestRouter};
use tokio::task::JoinHandle;

/// One call through testbed's [`TestRouter`] (with the chaos token); a body, when there is one,
/// must be JSON.
async fn call(router: &Router, method: &str, path: &str, body: Option<(&str, Vec<u8>)>) -> Reply {
    let app = TestRouter::new(router.clone()).with_bearer(common::CHAOS_TOKEN);
    let method: Method = method.parse().unwrap();
    let reply = match body {
        Some((content_type, bytes)) => app.raw(method.clone(), path, content_type, bytes).await,
        None => app.call(method.clone(), path, None).await,
    };
    if !reply.text.is_empty() {
        assert!(
            reply.is_json() && !reply.body.is_null(),
            "{method} {path}: {} {:?} {:?}",
            reply.status,
            reply.header("content-type"),
            reply.text
        );
    }
    reply
}

/// An upstream that records each request at once and answers `{"ok":true}` only when released:
/// "answered while the upstream still held a request" is an ordering fact a loaded machine
/// keeps, where a timing would not be.
async fn held_upstream() -> HttpSink {
    let upstream = HttpSink::start().await;
    upstream.set_response(StatusCode::OK, "application/json", r#"{"ok":true}"#);
    upstream.hold();
    upstream
}

/// `n` calls of `GET path` sent at once.
fn spawn_calls(gw: &Router, n: usize, path: &'static str) -> Vec<JoinHandle<Reply>> {
    (0..n)
        .map(|_| {
            let gw = gw.clone();
            tokio::spawn(async move { call(&gw, "GET", path, None).await })
        })
        .collect()
}

/// A gateway over `config` with `n` calls of `GET path` sent at once, returned when `upstream`
/// (holding them) has received `arrived` of them.
async fn calls_in_flight(
    config: Config,
    upstream: &HttpSink,
    (n, path): (usize, &'static str),
    arrived: usize,
) -> (service_kit::Context, Router, Vec<JoinHandle<Reply>>) {
    let (ctx, gw) = common::gateway_router(config);
    let calls = spawn_calls(&gw, n, path);
    upstream
        .wait_for_requests(arrived, Duration::from_secs(10))
        .await;
    (ctx, gw, calls)
}

/// Waits (bounded, generously) until `n` of `tasks` have finished.
async fn finished<T>(tasks: &[JoinHandle<T>], n: usize) -> bool {
    testbed::wait_until(Duration::from_secs(30), || async {
        tasks.iter().filter(|t| t.is_finished()).count() >= n
    })
    .await
}

fn json_body(v: Value) -> Option<(&'static str, Vec<u8>)> {
    Some(("application/json", v.to_string().into_bytes()))
}

struct Organs {
    users: common::Running,
    heart: common::Running,
    _dir: tempfile::TempDir,
}

async fn organs() -> Organs {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("users.db").display());
    Organs {
        users: common::user_service(&url).await,
        heart: common::heart().await,
        _dir: dir,
    }
}

#[tokio::test]
async fn user_lookups_pass_through_with_their_status() {
    let organs = organs().await;
    let (_ctx, gw) = gateway(&organs);
    let ok = call(&gw, "GET", "/user/123", None).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    assert_eq!(ok.body["name"], "Ada Lovelace");
    let missing = call(&gw, "GET", "/user/999", None).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND, "{}", missing.body);
    assert_eq!(missing.body["error"]["code"], "not_found");
    assert!(
        missing.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("999")
    );
}

#[tokio::test]
async fn bad_ids_are_400_at_the_gateway_without_an_upstream_call() {
    // No user-service at all: a 400 proves the id never went upstream.
    let (_ctx, gw) = common::gateway_router(Config::with_upstreams(
        &common::closed_url(),
        &common::closed_url(),
        &common::closed_url(),
    ));
    for (method, path) in [
        ("GET", "/user/abc"),
        ("GET", "/user/12abc"),
        ("GET", "/users/abc"),
        ("PUT", "/users/1e3"),
        ("DELETE", "/users/%2e%2e"),
        ("GET", "/user/99999999999999999999999"),
    ] {
        let body = (method == "PUT").then(|| json!({"name": "A", "email": "a@example.org"}));
        let r = call(&gw, method, path, body.and_then(json_body)).await;
        assert_eq!(
            r.status,
            StatusCode::BAD_REQUEST,
            "{method} {path}: {}",
            r.body
        );
        assert_eq!(
            r.body["error"]["field"], "id",
            "{method} {path}: {}",
            r.body
        );
    }
    let r = call(&gw, "GET", "/nowhere", None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = call(&gw, "PATCH", "/users/1", None).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn users_crud_through_the_gateway() {
    let organs = organs().await;
    let (_ctx, gw) = gateway(&organs);
    let created = call(
        &gw,
        "POST",
        "/users",
        json_body(json!({"name": "Margaret Hamilton", "email": "mh@example.org"})),
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let id = created.body["id"].as_i64().unwrap();
    assert_eq!(created.headers["location"], format!("/users/{id}").as_str());

    let fetched = call(&gw, "GET", &format!("/users/{id}"), None).await;
    assert_eq!(fetched.status, StatusCode::OK);
    assert_eq!(fetched.body, created.body);
    let via_user = call(&gw, "GET", &format!("/user/{id}"), None).await;
    assert_eq!(via_user.body, created.body);

    // The query string reaches user-service.
    let page = call(&gw, "GET", "/users?limit=2", None).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert_eq!(page.body["items"].as_array().unwrap().len(), 2);
    assert_eq!(page.body["next"], "/users?limit=2&cursor=122");
    let bad_page = call(&gw, "GET", "/users?limit=1000", None).await;
    assert_eq!(bad_page.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad_page.body["error"]["field"], "limit");

    let replaced = call(
        &gw,
        "PUT",
        &format!("/users/{id}"),
        json_body(json!({"name": "M. Hamilton", "email": "mh@example.org"})),
    )
    .await;
    assert_eq!(replaced.status, StatusCode::OK, "{}", replaced.body);
    assert_eq!(replaced.body["name"], "M. Hamilton");

    let duplicate = call(
        &gw,
        "POST",
        "/users",
        json_body(json!({"name": "Copy", "email": "MH@example.org"})),
    )
    .await;
    assert_eq!(duplicate.status, StatusCode::CONFLICT);

    let deleted = call(&gw, "DELETE", &format!("/users/{id}"), None).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    assert_eq!(deleted.body, Value::Null);
    let gone = call(&gw, "DELETE", &format!("/users/{id}"), None).await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn bad_bodies_are_4xx_json() {
    let organs = organs().await;
    let (_ctx, gw) = gateway(&organs);
    let r = call(
        &gw,
        "POST",
        "/users",
        Some(("application/json", b"{\"name\":".to_vec())),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert_eq!(r.body["error"]["code"], "malformed_json");
    let r = call(
        &gw,
        "POST",
        "/users",
        json_body(json!({"name": "A", "email": "a@example.org", "role": "admin"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert_eq!(r.body["error"]["field"], "role");
    let r = call(
        &gw,
        "PUT",
        "/users/123",
        json_body(json!({"name": "", "email": "a@example.org"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert_eq!(r.body["error"]["field"], "name");
    let r = call(
        &gw,
        "POST",
        "/users",
        Some(("text/plain", b"hello".to_vec())),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{}", r.body);
    // Oversized bodies stop at the gateway (1 MiB limit in tests).
    let huge = vec![b'x'; 2 * 1024 * 1024];
    for (method, path) in [("POST", "/users"), ("PUT", "/users/123")] {
        let r = call(&gw, method, path, Some(("application/json", huge.clone()))).await;
        assert_eq!(
            r.status,
            StatusCode::PAYLOAD_TOO_LARGE,
            "{method} {path}: {}",
            r.body
        );
        assert_eq!(r.body["error"]["code"], "payload_too_large");
    }
    let ada = call(&gw, "GET", "/user/123", None).await;
    assert_eq!(
        ada.body["name"], "Ada Lovelace",
        "nothing rejected reached the database"
    );
}

#[tokio::test]
async fn beat_reaches_heart_and_think_goes_to_brain_with_its_query_and_request_id() {
    let organs = organs().await;
    // brain is the recording sink here: what arrives can be inspected.
    let brain = testbed::HttpSink::start().await;
    brain.set_response(StatusCode::OK, "application/json", r#"{"thought":"done"}"#);
    let (_ctx, gw) = common::gateway_router(Config::with_upstreams(
        &organs.users.url(),
        &organs.heart.url(),
        &brain.url(),
    ));
    let beat = call(&gw, "GET", "/beat", None).await;
    assert_eq!(beat.status, StatusCode::OK, "{}", beat.body);
    assert!(beat.body.is_object());

    let req = Request::get("/think?difficulty=3&topic=a%20b")
        .header("x-request-id", "req-42")
        .body(Body::empty())
        .unwrap();
    let resp = TestRouter::new(gw.clone()).send(req).await;
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(resp.header("x-request-id"), Some("req-42"));
    let got = brain.wait_for_requests(1, Duration::from_secs(5)).await;
    assert_eq!(got[0].path, "/think");
    assert_eq!(got[0].query.as_deref(), Some("difficulty=3&topic=a%20b"));
    assert_eq!(got[0].header("x-request-id"), Some("req-42"));

    // Without one, the skeleton's generated id is the one forwarded and echoed.
    brain.clear();
    let resp = TestRouter::new(gw.clone()).get("/think").await;
    let echoed = resp.header("x-request-id").unwrap().to_owned();
    let got = brain.wait_for_requests(1, Duration::from_secs(5)).await;
    assert_eq!(got[0].header("x-request-id"), Some(echoed.as_str()));
    assert_eq!(got[0].query, None);
}

#[tokio::test]
async fn a_down_upstream_is_a_502_naming_it_without_waiting_for_the_timeout() {
    let organs = organs().await;
    let mut config = Config::with_upstreams(
        &organs.users.url(),
        &organs.heart.url(),
        &common::closed_url(),
    );
    // Were the refused connection waited out, this would be a 504 (or no answer for an hour).
    config.upstream_timeout = Duration::from_secs(3600);
    let (_ctx, gw) = common::gateway_router(config);
    let r = call(&gw, "GET", "/think?x=1", None).await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY, "{}", r.body);
    assert_eq!(r.body["error"]["code"], "upstream_unreachable");
    assert_eq!(r.body["error"]["upstream"], "brain");
}

#[tokio::test]
async fn a_down_upstream_leaves_the_others_served() {
    let organs = organs().await;
    let (_ctx, gw) = gateway(&organs);
    assert_eq!(
        call(&gw, "GET", "/think?x=1", None).await.status,
        StatusCode::BAD_GATEWAY
    );
    assert_eq!(call(&gw, "GET", "/beat", None).await.status, StatusCode::OK);
}

/// The gateway with `heart` as its heart and a 300 ms upstream timeout.
fn gateway_with_slow_heart(organs: &Organs, heart: &HttpSink) -> Config {
    let mut config =
        Config::with_upstreams(&organs.users.url(), &heart.url(), &common::closed_url());
    config.upstream_timeout = Duration::from_millis(300);
    config
}

#[tokio::test]
async fn a_slow_upstream_is_a_504_after_the_upstream_timeout() {
    let organs = organs().await;
    let heart = held_upstream().await;
    let (_ctx, gw) = common::gateway_router(gateway_with_slow_heart(&organs, &heart));
    let start = Instant::now();
    let r = call(&gw, "GET", "/beat", None).await;
    let took = start.elapsed();
    assert_eq!(r.status, StatusCode::GATEWAY_TIMEOUT, "{}", r.body);
    assert_eq!(r.body["error"]["code"], "upstream_timeout");
    assert_eq!(r.body["error"]["upstream"], "heart");
    assert!(took >= Duration::from_millis(300), "took {took:?}");
    // The 504 came while heart still held the request: the gateway did not wait for it.
    assert_eq!(heart.requests_to("/beat").len(), 1);
}

#[tokio::test]
async fn a_slow_upstream_leaves_the_others_served() {
    let organs = organs().await;
    let heart = held_upstream().await;
    let config = gateway_with_slow_heart(&organs, &heart);
    let (_ctx, gw, slow) = calls_in_flight(config, &heart, (1, "/beat"), 1).await;
    assert_eq!(
        call(&gw, "GET", "/user/123", None).await.status,
        StatusCode::OK
    );
    for task in slow {
        assert_eq!(task.await.unwrap().status, StatusCode::GATEWAY_TIMEOUT);
    }
}

/// A gateway allowing two requests at a time, with `/beat` held at `heart` and two
/// such requests in flight (each holding a permit).
async fn gateway_at_its_limit(
    organs: &Organs,
    heart: &HttpSink,
) -> (service_kit::Context, Router, Vec<JoinHandle<Reply>>) {
    let mut config =
        Config::with_upstreams(&organs.users.url(), &heart.url(), &common::closed_url());
    config.max_concurrency = 2;
    // Both take their permits: they are at the upstream.
    calls_in_flight(config, heart, (2, "/beat"), 2).await
}

#[tokio::test]
async fn load_beyond_the_concurrency_limit_is_shed_with_503_without_queueing() {
    let organs = organs().await;
    let heart = held_upstream().await;
    let (_ctx, gw, slow) = gateway_at_its_limit(&organs, &heart).await;
    let shed = tokio::time::timeout(Duration::from_secs(30), call(&gw, "GET", "/user/123", None))
        .await
        .expect("shedding must not queue behind the held requests");
    assert_eq!(
        shed.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        shed.body
    );
    assert_eq!(shed.body["error"]["code"], "overloaded");
    assert_eq!(shed.headers["retry-after"], "1");
    assert!(
        slow.iter().all(|t| !t.is_finished()),
        "shed while both permits were still held"
    );
}

#[tokio::test]
async fn health_endpoints_are_outside_the_concurrency_limit() {
    let organs = organs().await;
    let heart = held_upstream().await;
    let (_ctx, gw, _slow) = gateway_at_its_limit(&organs, &heart).await;
    assert_eq!(
        call(&gw, "GET", "/readyz", None).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn permits_are_given_back_when_requests_finish() {
    let organs = organs().await;
    let heart = held_upstream().await;
    let (_ctx, gw, slow) = gateway_at_its_limit(&organs, &heart).await;
    heart.release();
    for task in slow {
        assert_eq!(task.await.unwrap().status, StatusCode::OK);
    }
    assert_eq!(
        call(&gw, "GET", "/user/123", None).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn upstreams_are_reported_and_do_not_decide_the_gateways_readiness() {
    let organs = organs().await;
    let closed = common::closed_url();
    let (_ctx, gw) = common::gateway_router(Config::with_upstreams(
        &organs.users.url(),
        &organs.heart.url(),
        &closed,
    ));
    let r = call(&gw, "GET", "/upstreams", None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["all_ready"], false);
    let by_name = |name: &str| {
        r.body["upstreams"]
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["name"] == name)
            .cloned()
            .unwrap()
    };
    assert_eq!(by_name("user-service")["status"], "ready");
    assert_eq!(
        by_name("user-service")["readyz"]["checks"]["database"],
        "ok"
    );
    assert_eq!(by_name("heart")["status"], "ready");
    assert_eq!(by_name("brain")["status"], "unreachable");
    assert_eq!(by_name("brain")["url"], closed.as_str());
    let ready = call(&gw, "GET", "/readyz", None).await;
    assert_eq!(
        ready.status,
        StatusCode::OK,
        "the gateway is ready with brain down: {}",
        ready.body
    );
}

/// The gateway in front of `organs`, brain down.
fn gateway(organs: &Organs) -> (service_kit::Context, Router) {
    common::gateway_router(Config::with_upstreams(
        &organs.users.url(),
        &organs.heart.url(),
        &common::closed_url(),
    ))
}

#[tokio::test]
async fn the_gateways_chaos_fails_business_routes_not_readiness_until_cleared() {
    let organs = organs().await;
    let (_ctx, gw) = gateway(&organs);
    let on = call(&gw, "POST", "/chaos", json_body(json!({"error_rate": 1.0}))).await;
    assert_eq!(on.status, StatusCode::OK, "{}", on.body);
    assert_eq!(
        call(&gw, "GET", "/user/123", None).await.status,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    assert_eq!(
        call(&gw, "GET", "/readyz", None).await.status,
        StatusCode::OK
    );
    assert_eq!(
        call(&gw, "DELETE", "/chaos", None).await.status,
        StatusCode::OK
    );
    assert_eq!(
        call(&gw, "GET", "/user/123", None).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn metrics_label_routes_by_template_and_count_upstream_calls_and_faults() {
    let organs = organs().await;
    let (_ctx, gw) = gateway(&organs);
    assert_eq!(
        call(&gw, "GET", "/user/123", None).await.status,
        StatusCode::OK
    );
    let metrics = TestRouter::new(gw.clone()).metrics().await;
    let text = metrics.text();
    assert!(
        metrics
            .value(
                "http_server_request_duration_seconds_count",
                &[("http_route", "/user/{id}")]
            )
            .is_some(),
        "{text}"
    );
    assert!(
        text.contains("http_client_request_duration_seconds_count"),
        "{text}"
    );
    assert_eq!(
        metrics.value("chaos_fault_active", &[("fault", "error_rate")]),
        Some(0.0),
        "{text}"
    );
    assert!(!text.contains("/user/123"), "no raw paths in labels");
}

/// A gateway whose brain (held) takes 3 `/think` calls at a time, with 12 sent: brain's share
/// is full (3 held there) and the 9 others are answered.
async fn brain_share_full(
    organs: &Organs,
    brain: &HttpSink,
) -> (service_kit::Context, Router, Vec<JoinHandle<Reply>>) {
    let mut config = Config::with_upstreams(&organs.users.url(), &organs.heart.url(), &brain.url());
    config.upstream_concurrency.brain = 3;
    config.max_concurrency = 64;
    let (ctx, gw, thinks) = calls_in_flight(config, brain, (12, "/think?ms=1"), 3).await;
    assert!(
        finished(&thinks, 9).await,
        "the calls over brain's share were not answered"
    );
    (ctx, gw, thinks)
}

#[tokio::test]
async fn calls_over_an_upstreams_share_are_shed_while_its_share_is_held() {
    let organs = organs().await;
    let brain = held_upstream().await;
    let (_ctx, _gw, thinks) = brain_share_full(&organs, &brain).await;
    assert_eq!(brain.requests().len(), 3, "brain's limit is 3 in flight");
    let (done, held): (Vec<_>, Vec<_>) = thinks.into_iter().partition(|t| t.is_finished());
    assert_eq!(held.len(), 3);
    for task in done {
        let r = task.await.unwrap();
        assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.body);
        assert_eq!(r.body["error"]["code"], "upstream_busy", "{}", r.body);
        assert_eq!(r.headers["retry-after"], "1");
    }
    brain.release();
    for task in held {
        assert_eq!(task.await.unwrap().status, StatusCode::OK);
    }
}

#[tokio::test]
async fn a_full_upstream_share_cannot_starve_user_lookups() {
    let organs = organs().await;
    let brain = held_upstream().await;
    let (_ctx, gw, thinks) = brain_share_full(&organs, &brain).await;
    for _ in 0..5 {
        let r = call(&gw, "GET", "/user/123", None).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    }
    assert_eq!(
        thinks.iter().filter(|t| !t.is_finished()).count(),
        3,
        "user lookups answered while brain still held its share"
    );
}
