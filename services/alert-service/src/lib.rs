//! alert-service — the voice: receives Alertmanager webhooks, enriches, routes and delivers
//! notifications (Slack, Teams, email, webhook, log) through a durable outbox, escalates what
//! nobody acknowledges, turns acknowledgements into Alertmanager silences, and reports.
//!
//! `app(state)` builds the service's routes; the shared skeleton (`service-kit`) adds health,
//! readiness, metrics, limits and shutdown around them.
//!
//! | route | what |
//! |---|---|
//! | `POST /webhook/alertmanager` | intake (webhook v4, JSON only; bearer `ALERT_SERVICE_TOKEN`, closed without it): 202 once in the outbox |
//! | `POST /api/v1/alerts/{fingerprint}/ack?exp&nonce&sig` | acknowledge with a signed, expiring, single-use link (`ACK_SIGNING_KEY`): an Alertmanager silence on the alert's labels |
//! | `GET /api/v1/alerts/{fingerprint}/ack` | the acknowledgement state (JSON, or an HTML page with a form) |
//! | `GET /api/v1/report?window=24h` | the digest report |
//! | `GET /api/v1/outbox` | outbox counts and the latest rows |

pub mod ack;
pub mod ack_link;
pub mod channels;
pub mod config;
pub mod delivery;
pub mod digest;
pub mod duration;
pub mod enrich;
pub mod escalation;
pub mod intake;
pub mod metrics;
pub mod routing;
pub mod store;
pub mod templates;
pub mod view;

use std::sync::Arc;
use std::time::Duration;

use alertmanager::{AlertmanagerClient, WebhookMessage};
use axum::Router;
use axum::routing::{get, post};
use service_kit::{CancellationToken, Context};
use tokio::sync::{Mutex, Notify};
use tokio::task::JoinHandle;

pub use config::Config;

use crate::channels::Channels;
use crate::config::Settings;
use crate::enrich::{Enricher, Enrichment};
use crate::metrics::Metrics;
use crate::store::Store;
use crate::view::Links;

/// The service's name: crate, binary, chart key and `service.name`.
pub const SERVICE: &str = "alert-service";
/// The service's default port.
pub const PORT: u16 = 8086;

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The outbox database cannot be opened.
    #[error(transparent)]
    Store(#[from] store::StoreError),
    /// Metrics could not be registered.
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    /// A channel cannot be built (e.g. an SMTP host lettre rejects).
    #[error("channel: {0}")]
    Channel(String),
    /// `ALERTMANAGER_URL` is not usable.
    #[error(transparent)]
    Alertmanager(#[from] alertmanager::Error),
}

pub(crate) struct Inner {
    pub(crate) config: Config,
    pub(crate) settings: Arc<Settings>,
    pub(crate) store: Store,
    pub(crate) channels: Channels,
    pub(crate) metrics: Metrics,
    pub(crate) links: Links,
    pub(crate) enricher: Enricher,
    pub(crate) alertmanager: Option<AlertmanagerClient>,
    pub(crate) http: reqwest::Client,
    pub(crate) wake: Notify,
    pub(crate) cancel: CancellationToken,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

/// Shared state of the handlers and background tasks (delivery worker, escalation, digest).
#[derive(Clone)]
pub struct AppState {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("config", &self.inner.config)
            .field("enricher", &self.inner.enricher)
            .finish_non_exhaustive()
    }
}

impl AppState {
    /// Opens the outbox, builds the channels, registers metrics and starts the background tasks
    /// (stopped by the context's shutdown token or [`AppState::shutdown`]). In Kubernetes mode
    /// (`ALERT_SERVICE_KUBERNETES`), enrichment uses the in-cluster client.
    pub async fn new(ctx: &Context, config: Config) -> Result<Self, StartError> {
        install_crypto_provider();
        let kube = if config.kubernetes {
            match kube::Client::try_default().await {
                Ok(c) => Some(c),
                Err(e) => {
                    tracing::warn!(error = %e, "no Kubernetes client; enrichment is off (links only)");
                    None
                }
            }
        } else {
            None
        };
        Self::with_kube(ctx, config, kube).await
    }

    /// As [`AppState::new`], with the Kubernetes client given (tests pass a mock, or `None`).
    pub async fn with_kube(
        ctx: &Context,
        config: Config,
        kube: Option<kube::Client>,
    ) -> Result<Self, StartError> {
        install_crypto_provider();
        let settings = config.settings.clone();
        let store = {
            use secrecy::ExposeSecret as _;
            Store::connect(config.database_url.expose_secret()).await?
        };
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(3))
            .timeout(settings.delivery.send_timeout)
            .build()
            .map_err(|e| StartError::Channel(e.to_string()))?;
        let channels =
            Channels::new(&settings.channels, http.clone()).map_err(StartError::Channel)?;
        let alertmanager = match &config.alertmanager_url {
            Some(url) => Some(
                AlertmanagerClient::new(url, http.clone())?.with_timeout(Duration::from_secs(5)),
            ),
            None => None,
        };
        let metrics = Metrics::new(&ctx.registry)?;
        let links = Links {
            public_url: config.public_url.clone(),
            grafana: config.grafana.clone(),
            signer: config.ack_signer.clone(),
        };
        let enricher = Enricher::new(kube, settings.enrichment.clone());
        let state = Self {
            inner: Arc::new(Inner {
                config,
                settings,
                store,
                channels,
                metrics,
                links,
                enricher,
                alertmanager,
                http,
                wake: Notify::new(),
                cancel: ctx.shutdown.child_token(),
                tasks: Mutex::new(Vec::new()),
            }),
        };
        let probe = state.inner.store.clone();
        ctx.readiness.add("outbox-database", move || {
            let probe = probe.clone();
            Box::pin(async move { probe.ping().await.map_err(|e| e.to_string()) })
        });
        let mut tasks = state.inner.tasks.lock().await;
        tasks.push(tokio::spawn(delivery::run(state.clone())));
        if state.inner.settings.escalation.is_some() {
            tasks.push(tokio::spawn(escalation::run(state.clone())));
        }
        if state.inner.settings.digest.is_some() {
            tasks.push(tokio::spawn(digest::run(state.clone())));
        }
        drop(tasks);
        tracing::info!(
            channels = ?state.inner.settings.channels.keys().collect::<Vec<_>>(),
            kubernetes = state.inner.enricher.is_enabled(),
            alertmanager = state.inner.alertmanager.is_some(),
            "alert-service ready"
        );
        Ok(state)
    }

    /// Stops the background tasks (in-flight sends finish, bounded by the send timeout) and
    /// closes the database. What is in the outbox stays there for the next start.
    pub async fn shutdown(&self) {
        self.inner.cancel.cancel();
        let tasks: Vec<JoinHandle<()>> = self.inner.tasks.lock().await.drain(..).collect();
        for t in tasks {
            let _ = t.await;
        }
        self.inner.store.close().await;
    }

    /// Enrichment of the first firing alerts of `message` (Kubernetes mode), index-aligned with
    /// `message.alerts`; every lookup is bounded, failures are noted, never fatal.
    pub(crate) async fn enrich(&self, message: &WebhookMessage) -> Vec<Option<Enrichment>> {
        let e = &self.inner.enricher;
        if !e.is_enabled() {
            return Vec::new();
        }
        let max = self.inner.settings.enrichment.max_alerts;
        futures::future::join_all(message.alerts.iter().enumerate().map(|(i, a)| async move {
            if i < max && a.is_firing() {
                e.enrich(&a.labels).await
            } else {
                None
            }
        }))
        .await
    }
}

fn install_crypto_provider() {
    // reqwest brings aws-lc-rs, kube and lettre ring: pick one for the process (TOOLING.md).
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// The service's routes.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route(
            "/",
            get(|| async {
                axum::Json(
                    serde_json::json!({"service": SERVICE, "version": env!("CARGO_PKG_VERSION")}),
                )
            }),
        )
        .route("/webhook/alertmanager", post(intake::webhook))
        .route(
            "/api/v1/alerts/{fingerprint}/ack",
            post(ack::acknowledge).get(ack::status),
        )
        .route("/api/v1/report", get(digest::report))
        .route("/api/v1/outbox", get(intake::outbox))
        .with_state(state)
}
