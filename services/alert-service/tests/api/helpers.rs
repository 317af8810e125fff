//! Spawning alert-service on 127.0.0.1:0 over a given configuration and database file.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use alert_service::{AppState, Config, app};
use axum::body::Body;
use http::Request;
use serde_json::Value;
use service_kit::Context;
use testbed::{Metrics, Reply, Served, TestRouter};

/// The webhook token of a [`TestApp`] unless a test sets another (`ALERT_SERVICE_TOKEN`).
pub const WEBHOOK_TOKEN: &str = "test-webhook-token";
/// The key a [`TestApp`] signs acknowledge links with (`ACK_SIGNING_KEY`).
pub const ACK_KEY: &str = "test-ack-signing-key-0123456789abcdef";

/// A signer with [`ACK_KEY`], as the service has.
pub fn signer() -> alert_service::ack_link::Signer {
    alert_service::ack_link::Signer::new(ACK_KEY.to_owned().into(), Duration::from_secs(3600))
        .unwrap()
}

/// A running alert-service, served on 127.0.0.1:0 (Alertmanager and ack links reach it there)
/// and called through testbed.
pub struct TestApp {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// Calls over HTTP; answers are testbed [`Reply`]s.
    pub api: TestRouter,
    /// The webhook token it was configured with.
    pub token: Option<String>,
    pub state: AppState,
    /// Kept so the process-like context (registry, readiness) lives as long as the app.
    pub _ctx: Context,
    served: Served,
}

/// A temp dir with the SQLite file.
pub fn db_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("alert-service-test-")
        .tempdir()
        .unwrap()
}

pub fn db_url(dir: &Path) -> String {
    format!("sqlite://{}", dir.join("outbox.db").display())
}

/// Fast delivery settings for tests (retries within a second or two).
pub const FAST_DELIVERY: &str = r#"
delivery:
  initial_backoff: 200ms
  max_backoff: 1s
  max_attempts: 60
  lease: 3s
  poll_interval: 100ms
  send_timeout: 2s
  dedup_window: 1s
"#;

impl TestApp {
    pub async fn spawn(yaml: &str, env: &[(&str, &str)], db: &Path) -> Self {
        Self::spawn_with(yaml, env, db, |_| {}).await
    }

    pub async fn spawn_with(
        yaml: &str,
        env: &[(&str, &str)],
        db: &Path,
        tweak: impl FnOnce(&mut Config),
    ) -> Self {
        let env: HashMap<&str, &str> = env.iter().copied().collect();
        let mut config =
            Config::for_tests(yaml, &env, &db_url(db)).unwrap_or_else(|e| panic!("config: {e:#?}"));
        config.token = Some(WEBHOOK_TOKEN.to_owned().into());
        config.ack_signer = Some(signer());
        tweak(&mut config);
        let token = {
            use secrecy::ExposeSecret as _;
            config.token.as_ref().map(|t| t.expose_secret().to_owned())
        };
        let ctx = Context::for_tests(alert_service::SERVICE);
        let state = AppState::with_kube(&ctx, config, None)
            .await
            .expect("state");
        let served = Served::start(service_kit::assemble(&ctx, app(state.clone()))).await;
        Self {
            url: served.url(),
            api: served.client(),
            token,
            state,
            _ctx: ctx,
            served,
        }
    }

    /// Stops the app like a process exit: background tasks end, the listener closes.
    pub async fn stop(self) {
        self.state.shutdown().await;
        self.served.stop().await;
    }

    /// `POST /webhook/alertmanager` of a JSON `body` with the app's token.
    pub async fn post_webhook(&self, body: impl Into<Body>) -> Reply {
        let request = webhook_request(self.token.as_deref(), "application/json", body);
        self.api.send(request).await
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> Reply {
        self.api.get(path).await
    }

    /// A freshly signed acknowledge link of `fingerprint` (path and query), as a notification
    /// would carry.
    pub fn ack_path(&self, fingerprint: &str) -> String {
        let now = (std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()) as i64;
        format!(
            "/api/v1/alerts/{fingerprint}/ack?{}",
            signer().sign(fingerprint, now)
        )
    }

    pub async fn post_message(&self, msg: &alertmanager::WebhookMessage) -> Value {
        let r = self.post_webhook(serde_json::to_vec(msg).unwrap()).await;
        assert_eq!(r.status, 202, "{}", r.text);
        r.body
    }

    pub async fn outbox(&self) -> Value {
        self.get("/api/v1/outbox").await.body
    }

    pub async fn metrics(&self) -> Metrics {
        self.api.metrics().await
    }
}

/// `POST /webhook/alertmanager` of `body` as `content_type`, with `Authorization: Bearer
/// <token>` when given.
pub fn webhook_request(
    token: Option<&str>,
    content_type: &str,
    body: impl Into<Body>,
) -> Request<Body> {
    let mut request = Request::post("/webhook/alertmanager").header("content-type", content_type);
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    request.body(body.into()).unwrap()
}
