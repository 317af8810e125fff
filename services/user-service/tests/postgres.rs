//! The same behaviour over a real PostgreSQL (testbed), and what happens when it goes away.

mod common;

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use common::TestApp;
use serde_json::json;
use testbed::Postgres;

#[tokio::test]
async fn crud_validation_and_pagination_on_postgres() {
    let pg = Postgres::start().await;
    let app = TestApp::start(&pg.url()).await;
    assert_eq!(app.state.database().system(), "postgresql");
    let (status, _, ada) = app.get("/users/123").await;
    assert_eq!(status, StatusCode::OK, "{ada}");
    assert_eq!(ada["name"], "Ada Lovelace");
    assert_eq!(ada["created_at"], "2024-01-01T00:00:00Z");
    common::pagination_walks_every_user_once(&app).await;
    common::validation_errors_name_the_field(&app).await;
    common::crud_round_trip(&app).await;
    let (status, _, _) = app.get("/users/999").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let text = app.metrics().await;
    assert!(text.contains("user_service_db_up 1"), "{text}");
    assert!(text.contains(r#"db_operation="INSERT""#), "{text}");
    common::promtool_check(&text);
    app.stop().await;
}

#[tokio::test]
async fn a_restart_over_the_same_database_keeps_the_data_and_does_not_seed_again() {
    let pg = Postgres::start().await;
    let app = TestApp::start(&pg.url()).await;
    common::crud_round_trip(&app).await;
    app.stop().await;
    let app = TestApp::start(&pg.url()).await;
    let (_, _, page) = app.get("/users?limit=100").await;
    let items = page["items"].as_array().unwrap();
    assert_eq!(
        items.iter().filter(|u| u["name"] == "Ada Lovelace").count(),
        1
    );
    assert!(
        items.iter().any(|u| u["email"] == "katherine@example.org"),
        "{page}"
    );
    app.stop().await;
}

/// Polls `/readyz` until it answers `want` (bounded).
async fn wait_ready(app: &TestApp, want: StatusCode, within: Duration) -> serde_json::Value {
    let start = Instant::now();
    loop {
        let (status, _, body) = app.get("/readyz").await;
        if status == want {
            return body;
        }
        assert!(
            start.elapsed() < within,
            "/readyz still {status} after {within:?}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// How long a request may hold the database at most (`db.rs`: the query timeout, never under
/// 10 s). A request that waited for a database that is down instead of failing at the pool
/// (acquire timeout 500 ms) would run into it; the bound is 20 times what the pool takes, so a
/// loaded machine keeps it.
const QUERY_LIMIT: Duration = Duration::from_secs(10);

/// A request during an outage: a 503 JSON with Retry-After, from the pool's acquire timeout, not
/// after waiting out the query limit.
async fn assert_fast_503(app: &TestApp, method: &str, path: &str, body: Option<serde_json::Value>) {
    let start = Instant::now();
    let (status, headers, error) = app.send(method, path, body).await;
    let took = start.elapsed();
    assert_eq!(
        status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{method} {path}: {error}"
    );
    assert!(
        took < QUERY_LIMIT,
        "{method} {path} waited for the database: {took:?}"
    );
    assert_eq!(error["error"]["code"], "unavailable");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("postgresql"),
        "{error}"
    );
    assert!(headers.contains_key("retry-after"), "{headers:?}");
}

#[tokio::test]
async fn starts_without_postgres_and_survives_outages_without_losing_data() {
    let mut pg = Postgres::start().await;
    pg.stop().await;

    // Start while the database is down (start does not wait for it: the database is only
    // started again below), and not ready, naming the database.
    let app = TestApp::start(&pg.url()).await;
    let not_ready = wait_ready(
        &app,
        StatusCode::SERVICE_UNAVAILABLE,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(not_ready["failing"][0]["check"], "database", "{not_ready}");
    let reason = not_ready["failing"][0]["reason"].as_str().unwrap();
    assert!(
        reason.contains(&format!("postgresql at 127.0.0.1:{}/testbed", pg.port())),
        "{reason}"
    );
    assert!(!reason.contains("testbed-password"), "{reason}");
    assert_fast_503(&app, "GET", "/users/123", None).await;
    assert!(app.metrics().await.contains("user_service_db_up 0"));

    // The database comes up: the service migrates and becomes ready by itself.
    pg.start_again().await;
    wait_ready(&app, StatusCode::OK, Duration::from_secs(10)).await;
    let (status, _, created) = app
        .send(
            "POST",
            "/users",
            Some(json!({"name": "Before Outage", "email": "before@example.org"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_i64().unwrap();

    for round in 0..2 {
        pg.stop().await;
        // The first request may be the one that finds out; it is still fast.
        assert_fast_503(&app, "GET", &format!("/users/{id}"), None).await;
        assert_fast_503(&app, "GET", "/users", None).await;
        assert_fast_503(
            &app,
            "POST",
            "/users",
            Some(json!({"name": "During", "email": format!("during{round}@example.org")})),
        )
        .await;
        assert_fast_503(&app, "DELETE", &format!("/users/{id}"), None).await;
        wait_ready(
            &app,
            StatusCode::SERVICE_UNAVAILABLE,
            Duration::from_secs(10),
        )
        .await;
        assert!(app.metrics().await.contains("user_service_db_up 0"));

        pg.start_again().await;
        wait_ready(&app, StatusCode::OK, Duration::from_secs(10)).await;
        let (status, _, user) = app.get(&format!("/users/{id}")).await;
        assert_eq!(status, StatusCode::OK, "round {round}: {user}");
        assert_eq!(
            user, created,
            "round {round}: the user survived the outage unchanged"
        );
        assert!(app.metrics().await.contains("user_service_db_up 1"));
    }
    app.stop().await;
}
