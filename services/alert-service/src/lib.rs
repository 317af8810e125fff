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
pub mod clock;
pub mod config;
pub mod delivery;
pub mod digest;
pub mod duration;
pub mod enrich;
pub mod escalation;
mod http_errors;
pub mod intake;
pub mod metrics;
pub mod routing;
pub mod settings;
pub mod slack;
pub mod store;
pub mod teams;
pub mod template_data;
pub mod templates;

use std::sync::Arc;
use std::time::Duration;

use alertmanager::AlertmanagerClient;
use axum::Router;
use axum::extract::FromRef;
use axum::routing::{get, post};
use service_kit::{CancellationToken, Context};
use tokio::sync::{Mutex, Notify};
use tokio::task::JoinHandle;

pub use config::Config;

use crate::ack::Acks;
use crate::channels::Channels;
use crate::delivery::DeliveryWorker;
use crate::digest::{DigestWorker, HealerSource, Reports};
use crate::enrich::Enricher;
use crate::escalation::EscalationWorker;
use crate::intake::Intake;
use crate::metrics::Metrics;
use crate::store::Store;
use crate::template_data::Links;

/// The service's name: crate, binary, chart key and `service.name`.
pub const SERVICE: &str = topology::ALERT_SERVICE.name;
/// The service's default port.
pub const PORT: u16 = topology::ALERT_SERVICE.port;

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

/// The collaborators the handlers and tasks are given their handles to.
struct Collaborators {
    store: Store,
    channels: Arc<Channels>,
    alertmanager: Option<AlertmanagerClient>,
    metrics: Metrics,
    enricher: Enricher,
    /// Intake, escalation and digest wake the delivery worker through it.
    wake: Arc<Notify>,
}

impl Collaborators {
    /// Opens the outbox, builds the channels and the Alertmanager client, registers metrics.
    async fn open(
        ctx: &Context,
        config: &Config,
        kube: Option<kube::Client>,
    ) -> Result<Self, StartError> {
        let settings = &config.settings;
        let store = {
            use secrecy::ExposeSecret as _;
            Store::connect(config.database_url.expose_secret()).await?
        };
        let http =
            ctx.http_client_with_timeouts(Duration::from_secs(3), settings.delivery.send_timeout);
        // A Slack or Teams webhook URL carries its token in the path: keep it out of the spans.
        let channels = Arc::new(
            Channels::new(&settings.channels, http.clone().redacting_url_paths())
                .map_err(StartError::Channel)?,
        );
        let alertmanager = match &config.alertmanager_url {
            Some(url) => Some(
                AlertmanagerClient::new(url, http.clone())?.with_timeout(Duration::from_secs(5)),
            ),
            None => None,
        };
        Ok(Self {
            store,
            channels,
            alertmanager,
            metrics: Metrics::new(&ctx.registry)?,
            enricher: Enricher::new(kube, settings.enrichment.clone()),
            wake: Arc::new(Notify::new()),
        })
    }
}

/// The background tasks (delivery worker, escalation, digest) and what stops them.
struct Background {
    cancel: CancellationToken,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    store: Store,
}

/// Shared state of the handlers: each handler extracts only its part (axum `FromRef`), and each
/// background task was given its own handles when it started.
#[derive(Clone)]
pub struct AppState {
    intake: Arc<Intake>,
    acks: Arc<Acks>,
    reports: Arc<Reports>,
    outbox: Store,
    background: Arc<Background>,
}

impl FromRef<AppState> for Arc<Intake> {
    fn from_ref(state: &AppState) -> Self {
        state.intake.clone()
    }
}

impl FromRef<AppState> for Arc<Acks> {
    fn from_ref(state: &AppState) -> Self {
        state.acks.clone()
    }
}

impl FromRef<AppState> for Arc<Reports> {
    fn from_ref(state: &AppState) -> Self {
        state.reports.clone()
    }
}

impl FromRef<AppState> for Store {
    fn from_ref(state: &AppState) -> Self {
        state.outbox.clone()
    }
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("intake", &self.intake)
            .field("acks", &self.acks)
            .finish_non_exhaustive()
    }
}

impl AppState {
    /// Opens the outbox, builds the channels, registers metrics and starts the background tasks
    /// (stopped by the context's shutdown token or [`AppState::shutdown`]). In Kubernetes mode
    /// (`ALERT_SERVICE_KUBERNETES`), enrichment uses the in-cluster client.
    pub async fn new(ctx: &Context, config: Config) -> Result<Self, StartError> {
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
        let parts = Collaborators::open(ctx, &config, kube).await?;
        let probe = parts.store.clone();
        ctx.readiness.add("outbox-database", move || {
            let probe = probe.clone();
            Box::pin(async move { probe.ping().await.map_err(|e| e.to_string()) })
        });
        let background = Arc::new(Background {
            cancel: ctx.shutdown.child_token(),
            tasks: Mutex::new(Vec::new()),
            store: parts.store.clone(),
        });
        let state = Self::handlers(ctx, &config, &parts, background);
        state.start_tasks(&config, parts).await;
        Ok(state)
    }

    /// The handlers' parts.
    fn handlers(
        ctx: &Context,
        config: &Config,
        parts: &Collaborators,
        background: Arc<Background>,
    ) -> Self {
        let settings = &config.settings;
        Self {
            intake: Arc::new(Intake {
                token: config.token.clone(),
                routes: settings.routes.clone(),
                dedup_window: settings.delivery.dedup_window,
                store: parts.store.clone(),
                metrics: parts.metrics.clone(),
                wake: parts.wake.clone(),
            }),
            acks: Arc::new(Acks {
                signer: config.ack_signer.clone(),
                settings: settings.ack.clone(),
                store: parts.store.clone(),
                alertmanager: parts.alertmanager.clone(),
                metrics: parts.metrics.clone(),
            }),
            reports: Arc::new(Reports {
                store: parts.store.clone(),
                healer: config.auto_healer_url.clone().map(|url| HealerSource {
                    url,
                    http: ctx
                        .http_client_with_timeouts(Duration::from_secs(3), Duration::from_secs(3)),
                }),
                default_window: settings
                    .digest
                    .as_ref()
                    .map_or(Duration::from_secs(86400), |d| d.interval),
            }),
            outbox: parts.store.clone(),
            background,
        }
    }

    /// Starts the delivery worker, and escalation and digest when configured, each with the
    /// handles it uses.
    async fn start_tasks(&self, config: &Config, parts: Collaborators) {
        let settings = &config.settings;
        let cancel = &self.background.cancel;
        let mut tasks = self.background.tasks.lock().await;
        if let Some(escalation) = &settings.escalation {
            let worker = EscalationWorker {
                settings: escalation.clone(),
                store: parts.store.clone(),
                channels: parts.channels.clone(),
                alertmanager: parts.alertmanager.clone(),
                metrics: parts.metrics.clone(),
                wake: parts.wake.clone(),
            };
            tasks.push(tokio::spawn(worker.run(cancel.clone())));
        }
        if let Some(digest) = &settings.digest {
            let worker = DigestWorker {
                settings: digest.clone(),
                reports: self.reports.clone(),
                wake: parts.wake.clone(),
            };
            tasks.push(tokio::spawn(worker.run(cancel.clone())));
        }
        tracing::info!(
            channels = ?settings.channels.keys().collect::<Vec<_>>(),
            kubernetes = parts.enricher.is_enabled(),
            alertmanager = parts.alertmanager.is_some(),
            "alert-service ready"
        );
        let delivery = DeliveryWorker {
            store: parts.store,
            channels: parts.channels,
            templates: settings.templates.clone(),
            settings: settings.delivery.clone(),
            enricher: parts.enricher,
            links: Links {
                public_url: config.public_url.clone(),
                grafana: config.grafana.clone(),
                signer: config.ack_signer.clone(),
            },
            metrics: parts.metrics,
            instance: config.instance.clone(),
            wake: parts.wake,
        };
        tasks.push(tokio::spawn(delivery.run(cancel.clone())));
    }

    /// Stops the background tasks (in-flight sends finish, bounded by the send timeout) and
    /// closes the database. What is in the outbox stays there for the next start.
    pub async fn shutdown(&self) {
        let background = &self.background;
        background.cancel.cancel();
        let tasks: Vec<JoinHandle<()>> = background.tasks.lock().await.drain(..).collect();
        for t in tasks {
            let _ = t.await;
        }
        background.store.close().await;
    }
}

/// The service's routes.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route(
            "/",
            service_kit::identity(SERVICE, env!("CARGO_PKG_VERSION")),
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
