//! auto-healer — the reflexes: guarded, audited remediation of alerts.
//!
//! Alertmanager (and health-monitor, without one) POSTs webhook v4 payloads to
//! `/webhook/alertmanager`; firing alerts go on a bounded queue (202 at once, 503 when full).
//! The engine ([`engine`]) asks the pure core ([`core`]: policy + guards → decision), acts through
//! a platform adapter ([`k8s`] with kube-rs, or [`local`] through the launcher), verifies the
//! target healthy, takes the next escalation step on failure and finally posts a
//! `RemediationFailed` alert. Every decision is audited. Guard state lives in the cluster (a
//! ConfigMap) or in a local JSON file; in a cluster only the holder of a Lease acts.
//!
//! `app(state)` builds the service's routes; the shared skeleton (`service-kit`) adds health,
//! readiness, metrics, limits and shutdown around them.

pub mod config;
pub mod core;
pub mod engine;
pub mod k8s;
pub mod local;
pub mod platform;
pub mod policy;
pub mod reload;
pub mod routes;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use secrecy::SecretString;
use service_kit::Context;
use tokio::sync::mpsc;

pub use config::{Config, PlatformChoice};
use engine::{Engine, History, Metrics};
use platform::{LeaderFlag, Leadership, Platform, StateStore};

/// The service's name: crate, binary, chart key and `service.name`.
pub const SERVICE: &str = topology::AUTO_HEALER.name;
/// The service's default port.
pub const PORT: u16 = topology::AUTO_HEALER.port;

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Metrics could not be registered.
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    /// No Kubernetes client could be built.
    #[error("kubernetes client: {0}")]
    Kube(String),
    /// The Alertmanager URL is unusable.
    #[error("ALERTMANAGER_URL: {0}")]
    Alertmanager(#[from] alertmanager::Error),
}

struct HandlerState {
    engine: Arc<Engine>,
    lease_task: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    queue: mpsc::Sender<core::AlertFacts>,
    token: Option<SecretString>,
    max_body: usize,
    history_size: usize,
}

/// Shared state of the handlers.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<HandlerState>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("engine", &self.inner.engine)
            .finish()
    }
}

/// The adapters an [`AppState`] is built from (platform, guard-state store, leadership); tests
/// pass their own.
pub struct Adapters {
    /// The leader-election task (releases the Lease when it ends), in a cluster.
    pub lease_task: Option<tokio::task::JoinHandle<()>>,
    /// Where actions go.
    pub platform: Arc<dyn Platform>,
    /// Where guard state lives.
    pub store: Arc<dyn StateStore>,
    /// Who may act.
    pub leader: Arc<dyn Leadership>,
}

impl std::fmt::Debug for Adapters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Adapters").finish()
    }
}

fn in_cluster_or_kubeconfig() -> bool {
    std::env::var_os("KUBERNETES_SERVICE_HOST").is_some()
        || std::env::var_os("KUBECONFIG").is_some()
        || std::env::var_os("HOME")
            .is_some_and(|h| std::path::Path::new(&h).join(".kube/config").is_file())
}

impl AppState {
    /// Builds the state for `config.mode`: the Kubernetes adapter, ConfigMap state and Lease
    /// election, or the local launcher adapter with file state (leader by definition).
    /// Starts the engine and, in a cluster, the elector; both stop on `ctx.shutdown`.
    pub async fn new(ctx: &Context, config: Config) -> Result<Self, StartError> {
        let mode = match config.mode {
            PlatformChoice::Auto if in_cluster_or_kubeconfig() => PlatformChoice::Kubernetes,
            PlatformChoice::Auto => PlatformChoice::Local,
            m => m,
        };
        let parts = match mode {
            PlatformChoice::Kubernetes => {
                let client = kube::Client::try_default()
                    .await
                    .map_err(|e| StartError::Kube(e.to_string()))?;
                let leader = LeaderFlag::new(false);
                let elector = k8s::lease::LeaseElector::new(
                    client.clone(),
                    &config.namespace,
                    &config.lease_name,
                    &config.identity,
                    config.lease_duration,
                );
                let lease_task = tokio::spawn(elector.run(leader.clone(), ctx.shutdown.clone()));
                Adapters {
                    lease_task: Some(lease_task),
                    platform: Arc::new(k8s::KubePlatform::new(
                        client.clone(),
                        &config.identity,
                        k8s::Timings::default(),
                    )),
                    store: Arc::new(k8s::state::ConfigMapStore::new(client, &config.namespace)),
                    leader: Arc::new(leader),
                }
            }
            _ => Adapters {
                lease_task: None,
                platform: Arc::new(local::LocalPlatform::new(
                    &config.launcher_url,
                    config.launcher_token.clone(),
                    Some(config.state_dir.join("audit.jsonl")),
                    ctx.http_client(),
                )),
                store: Arc::new(local::FileStore::new(&config.state_dir)),
                leader: Arc::new(LeaderFlag::new(true)),
            },
        };
        tracing::info!(
            mode = ?mode,
            dry_run = config.dry_run(),
            policy = %config.policy_source,
            rules = config.policy.rules.len(),
            "auto-healer configured"
        );
        Self::with_adapters(ctx, config, parts)
    }

    /// Builds the state over given parts and starts the engine (stops on `ctx.shutdown`).
    pub fn with_adapters(
        ctx: &Context,
        config: Config,
        parts: Adapters,
    ) -> Result<Self, StartError> {
        let metrics = Metrics::new(&ctx.registry)?;
        let alertmanager = match &config.alertmanager_url {
            Some(url) => Some(alertmanager::AlertmanagerClient::new(
                url,
                ctx.http_client(),
            )?),
            None => None,
        };
        let dry_run = config.dry_run();
        let max_concurrent = config.policy.guards.max_concurrent_actions as usize;
        let engine = Arc::new(
            Engine::new(
                Arc::new(config.policy),
                parts.platform,
                parts.store,
                parts.leader,
                dry_run,
                metrics,
                History::new(config.history),
                alertmanager,
            )
            .with_dry_run_override(config.dry_run),
        );
        if config.policy_source != "builtin" {
            tokio::spawn(reload::watch(
                engine.clone(),
                std::path::PathBuf::from(&config.policy_source),
                config.policy_poll,
                ctx.shutdown.clone(),
            ));
        }
        let (tx, rx) = mpsc::channel(config.queue_capacity);
        // Skips are quick; a few more workers than concurrent actions keep them from queueing
        // behind a slow verification.
        tokio::spawn(
            engine
                .clone()
                .run(rx, max_concurrent + 4, ctx.shutdown.clone()),
        );
        Ok(Self {
            inner: Arc::new(HandlerState {
                engine,
                lease_task: std::sync::Mutex::new(parts.lease_task),
                queue: tx,
                token: config.token,
                max_body: config.max_body,
                history_size: config.history,
            }),
        })
    }

    /// The engine (tests drive it directly).
    pub fn engine(&self) -> &Arc<Engine> {
        &self.inner.engine
    }

    /// The leader-election task, once: `main` awaits it after the server stopped so the Lease
    /// is released before the process exits.
    pub fn take_lease_task(&self) -> Option<tokio::task::JoinHandle<()>> {
        self.inner.lease_task.lock().ok()?.take()
    }
}

/// The service's routes.
pub fn app(state: AppState) -> Router {
    let max_body = state.inner.max_body;
    Router::new()
        .route(
            "/",
            service_kit::identity(SERVICE, env!("CARGO_PKG_VERSION")),
        )
        .route(
            "/webhook/alertmanager",
            post(routes::webhook).layer(DefaultBodyLimit::max(max_body)),
        )
        .route("/api/v1/actions", get(routes::actions))
        .with_state(state)
}
