//! An auto-healer for integration tests, built as `main` builds it but over the test's own
//! platform adapter: file guard state in its own temp dir, a leadership flag the test can flip,
//! and the router behind `service_kit::assemble`. Calls go through testbed's [`TestRouter`]
//! (or [`Served`] when another hop must reach the healer).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use alertmanager::{Alert, WebhookMessage};
use auto_healer::local::FileStore;
use auto_healer::platform::{LeaderFlag, Platform};
use auto_healer::{Adapters, AppState, Config, app};
use http::Method;
use service_kit::Context;
use testbed::{Reply, Served, TestRouter};

/// The webhook's bearer token (the webhook is closed without one).
pub const TOKEN: &str = "test-healer-token";

/// The webhook's path.
pub const WEBHOOK: &str = "/webhook/alertmanager";

/// A running auto-healer (its engine works the queue until the healer is dropped).
pub struct TestHealer {
    /// Calls the router, sending [`TOKEN`].
    pub client: TestRouter,
    /// Whether this instance is the leader.
    pub leader: LeaderFlag,
    /// Where the guard state (`state.json`) and any audit file live.
    pub dir: tempfile::TempDir,
    _ctx: Context,
}

impl TestHealer {
    /// A healer acting through `platform`, with the default configuration changed by `tweak`.
    pub fn new(platform: Arc<dyn Platform>, tweak: impl FnOnce(&mut Config)) -> Self {
        Self::build(|_, _| platform, tweak)
    }

    /// As [`TestHealer::new`], with the platform built from the healer's context (its traced
    /// HTTP client) and state directory (e.g. for an audit file).
    pub fn build(
        platform: impl FnOnce(&Context, &Path) -> Arc<dyn Platform>,
        tweak: impl FnOnce(&mut Config),
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ctx = Context::for_tests(auto_healer::SERVICE);
        let platform = platform(&ctx, dir.path());
        let mut config = Config {
            state_dir: dir.path().to_owned(),
            token: Some(TOKEN.to_owned().into()),
            ..Config::default()
        };
        tweak(&mut config);
        let leader = LeaderFlag::new(true);
        let state = AppState::with_adapters(
            &ctx,
            config,
            Adapters {
                lease_task: None,
                platform,
                store: Arc::new(FileStore::new(dir.path())),
                leader: Arc::new(leader.clone()),
            },
        )
        .unwrap();
        let client = TestRouter::new(service_kit::assemble(&ctx, app(state))).with_bearer(TOKEN);
        Self {
            client,
            leader,
            dir,
            _ctx: ctx,
        }
    }

    /// Serves the healer on `addr` (e.g. a port handed to Alertmanager before it started).
    pub async fn serve_on(&self, addr: SocketAddr) -> Served {
        Served::start_on(addr, self.client.router().clone()).await
    }

    /// Posts a webhook message holding `alerts`.
    pub async fn post_alerts(&self, alerts: Vec<Alert>) -> Reply {
        self.post_raw(payload(alerts)).await
    }

    /// Posts `body` as the webhook's JSON body.
    pub async fn post_raw(&self, body: impl Into<axum::body::Body>) -> Reply {
        self.client
            .raw(Method::POST, WEBHOOK, "application/json", body)
            .await
    }

    /// `GET /api/v1/actions`: the recent decisions, newest first.
    pub async fn actions(&self) -> Vec<serde_json::Value> {
        let reply = self.client.get("/api/v1/actions").await;
        assert_eq!(reply.status, http::StatusCode::OK, "{}", reply.text);
        reply.body["actions"].as_array().unwrap().clone()
    }
}

/// A webhook message from Alertmanager's `auto-healer` receiver holding `alerts`, as JSON.
pub fn payload(alerts: Vec<Alert>) -> String {
    serde_json::to_string(
        &WebhookMessage::builder("auto-healer")
            .alerts(alerts)
            .build(),
    )
    .unwrap()
}

/// health-monitor's crash-loop alert for `pod` of Deployment `heart` in `namespace`: the
/// default policy's `crashing-pod` rule acts on it.
pub fn crashing(pod: &str, namespace: &str) -> Alert {
    Alert::firing([
        ("alertname", "PodCrashLooping"),
        ("namespace", namespace),
        ("pod", pod),
        ("workload", "heart"),
        ("workload_kind", "Deployment"),
        ("remediation", "restart-pod"),
        ("severity", "warning"),
    ])
}

/// Lets every task that can run finish its work: under paused time the clock moves only when
/// the runtime has nothing left to run, so after this nothing queued is still pending.
pub async fn settle() {
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
}
