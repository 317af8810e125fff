//! Router tests of every endpoint over the embedded SQLite backend (a temp file per test).

mod common;

use axum::http::StatusCode;
use common::TestApp;
use serde_json::json;

#[tokio::test]
async fn seed_user_123_is_ada_lovelace() {
    let app = TestApp::sqlite().await;
    let (status, _, body) = app.get("/users/123").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["id"], 123);
    assert_eq!(body["name"], "Ada Lovelace");
    assert_eq!(body["email"], "ada.lovelace@example.org");
    assert_eq!(body["created_at"], "2024-01-01T00:00:00Z");
    assert_eq!(body["updated_at"], "2024-01-01T00:00:00Z");
}

#[tokio::test]
async fn crud_round_trip() {
    let app = TestApp::sqlite().await;
    common::crud_round_trip(&app).await;
}

#[tokio::test]
async fn validation_errors_name_the_field() {
    let app = TestApp::sqlite().await;
    common::validation_errors_name_the_field(&app).await;
}

#[tokio::test]
async fn ids_must_be_integers() {
    let app = TestApp::sqlite().await;
    for path in ["/users/abc", "/users/1.5", "/users/99999999999999999999999"] {
        for method in ["GET", "PUT", "DELETE"] {
            let body = (method == "PUT").then(|| json!({"name": "A", "email": "a@example.org"}));
            let (status, _, error) = app.send(method, path, body).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{method} {path}: {error}");
            assert_eq!(error["error"]["field"], "id", "{method} {path}: {error}");
        }
    }
}

#[tokio::test]
async fn unknown_ids_are_404_json() {
    let app = TestApp::sqlite().await;
    for (method, body) in [
        ("GET", None),
        (
            "PUT",
            Some(json!({"name": "Nobody", "email": "nobody@example.org"})),
        ),
        ("DELETE", None),
    ] {
        let (status, _, error) = app.send(method, "/users/999", body).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method}: {error}");
        assert_eq!(error["error"]["code"], "not_found");
        assert!(error["error"]["message"].as_str().unwrap().contains("999"));
    }
}

#[tokio::test]
async fn pagination_walks_every_user_once() {
    let app = TestApp::sqlite().await;
    common::pagination_walks_every_user_once(&app).await;
}

#[tokio::test]
async fn bad_pagination_is_400_naming_the_parameter() {
    let app = TestApp::sqlite().await;
    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=ten", "limit"),
        ("limit=-1", "limit"),
        ("cursor=abc", "cursor"),
        ("offset=3", "offset"),
    ] {
        let (status, _, error) = app.get(&format!("/users?{query}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {error}");
        assert_eq!(error["error"]["field"], field, "{query}: {error}");
    }
}

#[tokio::test]
async fn malformed_and_oversized_bodies_are_4xx_json() {
    let app = TestApp::sqlite().await;
    // Malformed JSON.
    let (status, error) = app
        .raw(
            "POST",
            "/users",
            "application/json",
            b"{\"name\": ".to_vec(),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
    assert_eq!(error["error"]["code"], "malformed_json");
    // Not JSON at all.
    let (status, error) = app
        .raw("POST", "/users", "text/plain", b"name=Ada".to_vec())
        .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{error}");
    // Larger than the body limit (1 MiB in tests).
    let huge = format!(
        r#"{{"name": "{}", "email": "big@example.org"}}"#,
        "x".repeat(2 * 1024 * 1024)
    );
    let (status, error) = app
        .raw("POST", "/users", "application/json", huge.into_bytes())
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{error}");
    assert_eq!(error["error"]["code"], "payload_too_large");
    // A JSON array instead of an object.
    let (status, error) = app
        .raw("PUT", "/users/123", "application/json", b"[1, 2]".to_vec())
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{error}");
}

#[tokio::test]
async fn data_and_deleted_seeds_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("users.db").display());
    let created_id;
    {
        let app = TestApp::start(&url).await;
        let (status, _, user) = app
            .send(
                "POST",
                "/users",
                Some(json!({"name": "Kept", "email": "kept@example.org"})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED);
        created_id = user["id"].as_i64().unwrap();
        let (status, _, _) = app.send("DELETE", "/users/122", None).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        app.stop().await;
    }
    let app = TestApp::start(&url).await;
    let (status, _, user) = app.get(&format!("/users/{created_id}")).await;
    assert_eq!(status, StatusCode::OK, "{user}");
    assert_eq!(user["name"], "Kept");
    // Seeds are inserted on the first start only: a deleted seed stays deleted.
    let (status, _, _) = app.get("/users/122").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // The WAL journal is in use.
    assert!(dir.path().join("users.db-wal").exists());
}

#[tokio::test]
async fn an_unopenable_sqlite_file_fails_the_start_naming_it() {
    let ctx = service_kit::Context::for_tests(user_service::SERVICE);
    let config =
        user_service::Config::with_database_url("sqlite:///nonexistent-dir/sub/users.db").unwrap();
    let err = user_service::AppState::new(&ctx, config).await.unwrap_err();
    assert!(
        err.to_string().contains("/nonexistent-dir/sub/users.db"),
        "{err}"
    );
}

#[tokio::test]
async fn readiness_metrics_and_promtool() {
    let app = TestApp::sqlite().await;
    let (status, _, ready) = app.get("/readyz").await;
    assert_eq!(status, StatusCode::OK, "{ready}");
    assert_eq!(ready["checks"]["database"], "ok");
    let _ = app.get("/users/123").await;
    let _ = app.get("/users/0").await;
    let text = app.metrics().await;
    assert!(text.contains("user_service_db_up 1"), "{text}");
    assert!(
        text.contains(r#"user_service_db_query_duration_seconds_count{db_operation="SELECT"} 2"#),
        "{text}"
    );
    assert!(text.contains(r#"http_route="/users/{id}""#), "{text}");
    common::promtool_check(&text);
}

#[tokio::test]
async fn root_names_the_service() {
    let app = TestApp::sqlite().await;
    let (status, _, body) = app.get("/").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["service"], "user-service");
    let (status, _, body) = app.send("PATCH", "/users/123", None).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{body}");
}

#[tokio::test]
async fn chaos_faults_hit_users_routes_only_and_need_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("users.db").display());
    let ctx = service_kit::Context::for_tests(user_service::SERVICE);
    let mut config = user_service::Config::with_database_url(&url).unwrap();
    config.chaos_token = Some(secrecy::SecretString::from("letmein"));
    let state = user_service::AppState::new(&ctx, config).await.unwrap();
    let app = service_kit::assemble(&ctx, user_service::app(state.clone()));
    let call = |method: &str, path: &str, token: Option<&str>, body: Option<serde_json::Value>| {
        let mut req = axum::http::Request::builder().method(method).uri(path);
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        if body.is_some() {
            req = req.header("content-type", "application/json");
        }
        let req = req
            .body(axum::body::Body::from(
                body.map(|b| b.to_string()).unwrap_or_default(),
            ))
            .unwrap();
        let app = app.clone();
        async move {
            use tower::ServiceExt as _;
            app.oneshot(req).await.unwrap().status()
        }
    };
    let fault = json!({"error_rate": 1.0});
    assert_eq!(
        call("POST", "/chaos", None, Some(fault.clone())).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(call("GET", "/users/123", None, None).await, StatusCode::OK);
    assert_eq!(
        call("POST", "/chaos", Some("letmein"), Some(fault)).await,
        StatusCode::OK
    );
    assert_eq!(
        call("GET", "/users/123", None, None).await,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    assert_eq!(call("GET", "/readyz", None, None).await, StatusCode::OK);
    assert_eq!(call("GET", "/healthz", None, None).await, StatusCode::OK);
    assert_eq!(
        call("DELETE", "/chaos", Some("letmein"), None).await,
        StatusCode::OK
    );
    assert_eq!(call("GET", "/users/123", None, None).await, StatusCode::OK);
    assert!(state.chaos().faults().active().is_empty());
    ctx.shutdown.cancel();
}
