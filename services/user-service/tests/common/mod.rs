//! Shared by the SQLite and PostgreSQL test binaries: the app behind the real skeleton, driven
//! without a socket through testbed's [`TestRouter`], and the behaviour both backends must show.

#![allow(dead_code)]

use axum::http::{HeaderMap, Method, StatusCode};
use serde_json::{Value, json};
use service_kit::Context;
use testbed::TestRouter;

/// The user-service router as `launch` builds it, over one database.
pub struct TestApp {
    pub ctx: Context,
    pub router: TestRouter,
    pub state: user_service::AppState,
    _dir: Option<tempfile::TempDir>,
}

impl TestApp {
    /// Over a fresh SQLite file in a temp dir.
    pub async fn sqlite() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("users.db").display());
        let mut app = Self::start(&url).await;
        app._dir = Some(dir);
        app
    }

    /// Over `database_url`.
    pub async fn start(database_url: &str) -> Self {
        let ctx = Context::for_tests(user_service::SERVICE);
        let config = user_service::Config::with_database_url(database_url).unwrap();
        let state = user_service::AppState::new(&ctx, config).await.unwrap();
        let router = TestRouter::new(service_kit::assemble(
            &ctx,
            user_service::app(state.clone()),
        ));
        Self {
            ctx,
            router,
            state,
            _dir: None,
        }
    }

    /// Stops the monitor and closes the pool.
    pub async fn stop(self) {
        self.ctx.shutdown.cancel();
        self.state.database().close().await;
    }

    pub async fn get(&self, path: &str) -> (StatusCode, HeaderMap, Value) {
        self.send("GET", path, None).await
    }

    /// Sends `body` as JSON; answers status, headers and the JSON body (`Null` when empty).
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, HeaderMap, Value) {
        let method: Method = method.parse().expect("an HTTP method");
        let reply = self.router.call(method, path, body).await;
        let body = json_body(reply.status, &reply.headers, reply.text.as_bytes());
        (reply.status, reply.headers, body)
    }

    /// Sends raw bytes with a content type; answers status and JSON body.
    pub async fn raw(
        &self,
        method: &str,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> (StatusCode, Value) {
        let method: Method = method.parse().expect("an HTTP method");
        let reply = self.router.raw(method, path, content_type, body).await;
        let body = json_body(reply.status, &reply.headers, reply.text.as_bytes());
        (reply.status, body)
    }

    pub async fn metrics(&self) -> String {
        self.router.metrics().await.text().to_owned()
    }
}

/// Parses a body that must be JSON whenever there is one (every error of this service is JSON).
pub fn json_body(status: StatusCode, headers: &HeaderMap, bytes: &[u8]) -> Value {
    if bytes.is_empty() {
        return Value::Null;
    }
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    assert!(
        content_type.starts_with("application/json"),
        "{status}: content-type {content_type:?}, body {:?}",
        String::from_utf8_lossy(bytes)
    );
    serde_json::from_slice(bytes).unwrap_or_else(|e| {
        panic!(
            "{status}: not JSON ({e}): {:?}",
            String::from_utf8_lossy(bytes)
        )
    })
}

/// Create, read, replace, list, delete, and the 409 on a duplicate e-mail.
pub async fn crud_round_trip(app: &TestApp) {
    let (status, headers, created) = app
        .send(
            "POST",
            "/users",
            Some(json!({"name": "  Katherine Johnson ", "email": "kj@example.org"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_i64().unwrap();
    assert!(id > 123, "new ids continue after the seeds, got {id}");
    assert_eq!(headers["location"], format!("/users/{id}").as_str());
    assert_eq!(created["name"], "Katherine Johnson", "names are trimmed");
    assert_eq!(created["email"], "kj@example.org");
    assert_eq!(created["created_at"], created["updated_at"]);

    let (status, _, fetched) = app.get(&format!("/users/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(fetched, created, "what was stored is what was answered");

    // Same address in other case: a duplicate.
    let (status, _, error) = app
        .send(
            "POST",
            "/users",
            Some(json!({"name": "Copy", "email": "KJ@example.org"})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{error}");
    assert_eq!(error["error"]["field"], "email");

    let (status, _, replaced) = app
        .send(
            "PUT",
            &format!("/users/{id}"),
            Some(json!({"name": "K. Johnson", "email": "katherine@example.org"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{replaced}");
    assert_eq!(replaced["id"], id);
    assert_eq!(replaced["name"], "K. Johnson");
    assert_eq!(replaced["email"], "katherine@example.org");
    assert_eq!(replaced["created_at"], created["created_at"]);
    assert!(timestamp(&replaced["updated_at"]) > timestamp(&created["updated_at"]));

    // Taking a seed's address on update is a conflict too.
    let (status, _, error) = app
        .send(
            "PUT",
            &format!("/users/{id}"),
            Some(json!({"name": "K", "email": "ada.lovelace@example.org"})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{error}");

    let (status, _, page) = app.get("/users?limit=100").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|u| u["id"] == id)
    );

    let (status, _, body) = app.send("DELETE", &format!("/users/{id}"), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(body, Value::Null);
    let (status, _, _) = app.get(&format!("/users/{id}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, _) = app.send("DELETE", &format!("/users/{id}"), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // The freed address can be used again; the id is not reused.
    let (status, _, again) = app
        .send(
            "POST",
            "/users",
            Some(json!({"name": "KJ", "email": "katherine@example.org"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{again}");
    assert!(again["id"].as_i64().unwrap() > id);
}

fn timestamp(v: &Value) -> time::OffsetDateTime {
    time::OffsetDateTime::parse(
        v.as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap()
}

/// Every invalid body is a 4xx JSON error naming the field.
pub async fn validation_errors_name_the_field(app: &TestApp) {
    let long_name = "n".repeat(101);
    let cases = [
        (
            json!({"name": "", "email": "a@example.org"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "name",
        ),
        (
            json!({"name": long_name, "email": "a@example.org"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "name",
        ),
        (
            json!({"name": "Ada", "email": "not-an-email"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "email",
        ),
        (
            json!({"name": "Ada", "email": "ada@"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "email",
        ),
        (
            json!({"name": "Ada"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "email",
        ),
        (
            json!({"email": "a@example.org"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "name",
        ),
        (
            json!({"name": 7, "email": "a@example.org"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "name",
        ),
        (
            json!({"name": "Ada", "email": "a@example.org", "admin": true}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "admin",
        ),
        (
            json!({"name": "Ada", "email": "a@example.org", "id": 5}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "id",
        ),
    ];
    for (body, expected, field) in cases {
        for (method, path) in [("POST", "/users"), ("PUT", "/users/123")] {
            let (status, _, error) = app.send(method, path, Some(body.clone())).await;
            assert_eq!(status, expected, "{method} {body}: {error}");
            assert_eq!(error["error"]["field"], field, "{method} {body}: {error}");
        }
    }
    // Nothing was changed by the rejected requests.
    let (_, _, ada) = app.get("/users/123").await;
    assert_eq!(ada["name"], "Ada Lovelace");
}

/// Creates users and walks the pages with the cursor.
pub async fn pagination_walks_every_user_once(app: &TestApp) {
    for i in 0..7 {
        let (status, _, body) = app
            .send(
                "POST",
                "/users",
                Some(json!({"name": format!("User {i}"), "email": format!("user{i}@example.org")})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let mut seen = Vec::new();
    let mut next = Some("/users?limit=3".to_owned());
    let mut pages = 0;
    while let Some(link) = next {
        let (status, _, page) = app.get(&link).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 3);
        seen.extend(items.iter().map(|u| u["id"].as_i64().unwrap()));
        next = page["next"].as_str().map(str::to_owned);
        if next.is_some() {
            assert_eq!(page["next_cursor"], items.last().unwrap()["id"]);
        } else {
            assert_eq!(page["next_cursor"], Value::Null);
        }
        pages += 1;
        assert!(pages < 10, "pagination does not end");
    }
    assert_eq!(seen.len(), 10, "3 seeds + 7 new: {seen:?}");
    assert_eq!(pages, 4);
    let mut sorted = seen.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted, seen, "ascending, each once");
    assert_eq!(&seen[..3], &[121, 122, 123]);
    let (_, _, default_page) = app.get("/users").await;
    assert_eq!(
        default_page["items"].as_array().unwrap().len(),
        10,
        "default limit is 20"
    );
}

/// `promtool check metrics` on a /metrics body.
pub fn promtool_check(text: &str) {
    let report = testbed::promtool_check_metrics(text);
    assert!(report.is_empty(), "promtool check metrics:\n{report}");
}
