//! Spawning alert-service on 127.0.0.1:0 over a given configuration and database file.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use alert_service::{AppState, Config, app};
use service_kit::Context;
use tokio::task::JoinHandle;

/// The webhook token of a [`TestApp`] unless a test sets another (`ALERT_SERVICE_TOKEN`).
pub const WEBHOOK_TOKEN: &str = "test-webhook-token";
/// The key a [`TestApp`] signs acknowledge links with (`ACK_SIGNING_KEY`).
pub const ACK_KEY: &str = "test-ack-signing-key-0123456789abcdef";

/// A signer with [`ACK_KEY`], as the service has.
pub fn signer() -> alert_service::ack_link::Signer {
    alert_service::ack_link::Signer::new(ACK_KEY.to_owned().into(), Duration::from_secs(3600))
        .unwrap()
}

/// A running alert-service.
pub struct TestApp {
    pub url: String,
    /// The webhook token it was configured with.
    pub token: Option<String>,
    pub state: AppState,
    /// Kept so the process-like context (registry, readiness) lives as long as the app.
    pub _ctx: Context,
    pub client: reqwest::Client,
    server: JoinHandle<()>,
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
        let router = service_kit::assemble(&ctx, app(state.clone()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let _ = axum::serve(
                listener,
                router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
            )
            .await;
        });
        Self {
            url: format!("http://{addr}"),
            token,
            state,
            _ctx: ctx,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
            server,
        }
    }

    /// Stops the app like a process exit: background tasks end, the listener closes.
    pub async fn stop(self) {
        self.state.shutdown().await;
        self.server.abort();
        let _ = self.server.await;
    }

    pub async fn post_webhook(&self, body: impl Into<reqwest::Body>) -> reqwest::Response {
        self.client
            .post(format!("{}/webhook/alertmanager", self.url))
            .header("content-type", "application/json")
            .bearer_auth(self.token.as_deref().unwrap_or_default())
            .body(body)
            .send()
            .await
            .unwrap()
    }

    /// A freshly signed acknowledge link of `fingerprint`, as a notification would carry.
    pub fn ack_url(&self, fingerprint: &str) -> String {
        let now = (std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()) as i64;
        format!(
            "{}/api/v1/alerts/{fingerprint}/ack?{}",
            self.url,
            signer().sign(fingerprint, now)
        )
    }

    pub async fn post_message(&self, msg: &alertmanager::WebhookMessage) -> serde_json::Value {
        let r = self.post_webhook(serde_json::to_vec(msg).unwrap()).await;
        let status = r.status();
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(status, 202, "{body}");
        body
    }

    pub async fn outbox(&self) -> serde_json::Value {
        self.client
            .get(format!("{}/api/v1/outbox", self.url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    pub async fn metrics(&self) -> String {
        self.client
            .get(format!("{}/metrics", self.url))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
}
