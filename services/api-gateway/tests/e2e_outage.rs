//! End to end through a database outage: gateway → user-service → a real PostgreSQL that is
//! stopped and started again (testbed), all on 127.0.0.1.

mod common;

use std::time::Duration;

use serde_json::{Value, json};
use testbed::TestRouter;

/// Polls `GET path` until it answers `want` (bounded); the body of that answer.
async fn wait_status(service: &TestRouter, path: &str, want: u16, within: Duration) -> Value {
    let reached =
        testbed::wait_until(within, || async { service.get(path).await.status == want }).await;
    let last = service.get(path).await;
    assert!(
        reached && last.status == want,
        "{path} still {} after {within:?}: {}",
        last.status,
        last.text
    );
    last.body
}

#[tokio::test]
async fn a_database_outage_is_a_fast_503_and_recovery_keeps_the_data() {
    let mut pg = testbed::Postgres::start().await;
    let users = common::user_service(&pg.url()).await;
    let heart = common::heart().await;
    let (ctx, router) = common::gateway_router(api_gateway::Config::with_upstreams(
        &users.url(),
        &heart.url(),
        &common::closed_url(),
    ));
    let gateway = common::serve_assembled(ctx, router).await;
    let through_gateway = TestRouter::over_http(gateway.url());
    let user_service = TestRouter::over_http(users.url());

    let created = through_gateway
        .call(
            http::Method::POST,
            "/users",
            Some(json!({"name": "Survivor", "email": "survivor@example.org"})),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let created = created.body;
    let id = created["id"].as_i64().unwrap();

    pg.stop().await;

    // The gateway passes on user-service's 503 with Retry-After. It is fast: had user-service
    // waited for the database past the gateway's upstream timeout, the answer would be the
    // gateway's own 504 `upstream_timeout`, not user-service's 503 `unavailable`.
    for path in [
        format!("/user/{id}"),
        format!("/users/{id}"),
        "/users".to_owned(),
    ] {
        let r = through_gateway.get(&path).await;
        assert_eq!(r.status, 503, "{path}: {}", r.text);
        assert_eq!(r.error_code(), Some("unavailable"), "{path}: {}", r.text);
        assert!(r.header("retry-after").is_some(), "{path}: {:?}", r.headers);
    }
    // user-service is not ready, naming the database; the gateway stays ready and says why.
    let not_ready = wait_status(&user_service, "/readyz", 503, Duration::from_secs(10)).await;
    assert_eq!(not_ready["failing"][0]["check"], "database", "{not_ready}");
    assert!(
        not_ready["failing"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("postgresql")
    );
    assert_eq!(through_gateway.get("/readyz").await.status, 200);
    let upstreams = through_gateway.get("/upstreams").await.body;
    let listed = upstreams["upstreams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"] == "user-service")
        .unwrap();
    assert_eq!(listed["status"], "not_ready", "{upstreams}");
    // Other organs are unaffected.
    assert_eq!(through_gateway.get("/beat").await.status, 200);

    pg.start_again().await;
    wait_status(&user_service, "/readyz", 200, Duration::from_secs(10)).await;
    let user = through_gateway.get(&format!("/user/{id}")).await;
    assert_eq!(user.status, 200, "{}", user.text);
    assert_eq!(
        user.body, created,
        "the user created before the outage is still there"
    );
}
