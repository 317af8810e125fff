//! health-monitor — the senses: watches the cluster and the metrics and publishes findings as alerts.
//!
//! - [`finding`]: what is wrong, as plain data, and its Alertmanager alert form.
//! - [`classify`]: the pure core, Kubernetes objects + a clock + thresholds → findings.
//! - [`kube_watch`]: Kubernetes mode (watchers, reflectors, control-plane probes).
//! - [`local`]: local mode (HTTP probes of `/healthz` and `/readyz`).
//! - [`promql`]: PromQL checks against Prometheus, in both modes.
//! - [`publish`]: findings → Alertmanager (API v2) or, without one, webhook receivers.
//! - [`config`]: the environment and the YAML file (reloaded on change).
//!
//! `app(state)` builds the service's routes; the shared skeleton (`service-kit`) adds health,
//! readiness, metrics, limits and shutdown around them.

pub mod board;
pub mod classify;
pub mod config;
pub mod finding;
pub mod kube_watch;
pub mod local;
pub mod metrics;
pub mod promql;
pub mod publish;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use serde::{Deserialize, Serialize};
use service_kit::extract::Query;
use service_kit::{Context, EnvReader, ReadyFlag};
use tokio::sync::{mpsc, watch};

use crate::board::CurrentFindings;
use crate::config::{FileConfig, Receiver};
use crate::finding::{Finding, FindingKind, Severity};
use crate::metrics::Metrics;
use crate::publish::{Publisher, Sink};

/// The service's name: crate, binary, chart key and `service.name`.
pub const SERVICE: &str = topology::HEALTH_MONITOR.name;
/// The service's default port.
pub const PORT: u16 = topology::HEALTH_MONITOR.port;

/// What health-monitor watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    /// The Kubernetes API (watchers) — in a cluster or with a kubeconfig.
    Kubernetes,
    /// Local HTTP probes of the services of `cargo xtask up`.
    Local,
}

/// The service's own configuration (environment; the file is [`FileConfig`]).
#[derive(Debug, Clone)]
pub struct Config {
    /// `HEALTH_MONITOR_MODE` (`kubernetes`, `local`, or unset/`auto`: Kubernetes when in a
    /// cluster or a kubeconfig exists, local otherwise).
    pub mode: Environment,
    /// `HEALTH_MONITOR_CONFIG`: the YAML file, if any.
    pub config_path: Option<PathBuf>,
    /// The file's content at start (defaults when no file).
    pub file: FileConfig,
    /// `ALERTMANAGER_URL`.
    pub alertmanager_url: Option<String>,
    /// `PROMETHEUS_URL`.
    pub prometheus_url: Option<String>,
    /// `WEBHOOK_URLS`: comma-separated receivers for direct delivery.
    pub webhook_urls: Vec<String>,
    /// `HEALTH_MONITOR_CONFIG_POLL`: how often the file's mtime is checked (default `2s`).
    pub config_poll: Duration,
    /// `HEALTH_MONITOR_TICK`: how often the publisher syncs (default `250ms`).
    pub publish_tick: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            mode: Environment::Local,
            config_path: None,
            file: FileConfig::default(),
            alertmanager_url: None,
            prometheus_url: None,
            webhook_urls: Vec::new(),
            config_poll: Duration::from_secs(2),
            publish_tick: Duration::from_millis(250),
        }
    }
}

fn kube_available(reader: &EnvReader<'_>) -> bool {
    if reader.optional("KUBERNETES_SERVICE_HOST").is_some()
        || reader.optional("KUBECONFIG").is_some()
    {
        return true;
    }
    reader
        .optional("HOME")
        .is_some_and(|home| PathBuf::from(home).join(".kube/config").is_file())
}

impl Config {
    /// Reads the service's own variables and the configuration file; problems are recorded on
    /// `reader` (so a bad file on start exits with code 2 before the port is bound).
    pub fn read(reader: &mut EnvReader<'_>) -> Self {
        let mode = reader.parse_with("HEALTH_MONITOR_MODE", None, |raw| match raw {
            "kubernetes" | "k8s" => Ok(Some(Environment::Kubernetes)),
            "local" => Ok(Some(Environment::Local)),
            "auto" | "" => Ok(None),
            _ => Err("expected kubernetes, local or auto".to_owned()),
        });
        let mode = mode.unwrap_or_else(|| {
            if kube_available(reader) {
                Environment::Kubernetes
            } else {
                Environment::Local
            }
        });
        let config_path = reader.optional("HEALTH_MONITOR_CONFIG").map(PathBuf::from);
        let file = match &config_path {
            Some(path) => match FileConfig::load(path) {
                Ok(f) => f,
                Err(e) => {
                    reader.error("HEALTH_MONITOR_CONFIG", e.to_string());
                    FileConfig::default()
                }
            },
            None => FileConfig::default(),
        };
        let alertmanager_url = reader.optional_url("ALERTMANAGER_URL");
        let prometheus_url = reader.optional_url("PROMETHEUS_URL");
        let webhook_urls = reader.parse_with("WEBHOOK_URLS", Vec::new(), |raw| {
            raw.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|u| match reqwest::Url::parse(u) {
                    Ok(p) if matches!(p.scheme(), "http" | "https") => Ok(u.to_owned()),
                    _ => Err(format!("{u:?} is not an http(s) URL")),
                })
                .collect()
        });
        let config_poll = reader.duration("HEALTH_MONITOR_CONFIG_POLL", Duration::from_secs(2), ..);
        let publish_tick = reader.duration("HEALTH_MONITOR_TICK", Duration::from_millis(250), ..);
        Self {
            mode,
            config_path,
            file,
            alertmanager_url,
            prometheus_url,
            webhook_urls,
            config_poll,
            publish_tick,
        }
    }

    /// The receivers for direct delivery: `WEBHOOK_URLS` then the file's.
    pub fn receivers(&self) -> Vec<Receiver> {
        let mut out: Vec<Receiver> = self
            .webhook_urls
            .iter()
            .enumerate()
            .map(|(i, url)| Receiver {
                name: format!("webhook-{i}"),
                url: url.clone(),
                bearer_token: None,
            })
            .collect();
        out.extend(self.file.receivers.iter().cloned());
        out
    }
}

/// Why the service cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Metrics could not be registered.
    #[error("registering metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    /// The Alertmanager client could not be built.
    #[error(transparent)]
    Alertmanager(#[from] alertmanager::Error),
    /// The Kubernetes client could not be built.
    #[error("Kubernetes client: {0}")]
    Kube(#[from] kube::Error),
}

/// Shared state of the handlers.
#[derive(Debug, Clone)]
pub struct AppState {
    board: CurrentFindings,
    config: watch::Receiver<Arc<FileConfig>>,
    mode: Environment,
}

impl AppState {
    /// Builds the state and starts the background work: the watchers (Kubernetes mode) or the
    /// probes (local mode), the PromQL checks, the publisher and the config reloader, all
    /// stopping on the context's shutdown token.
    pub async fn new(ctx: &Context, config: Config) -> Result<Self, StartError> {
        let client = if config.mode == Environment::Kubernetes {
            Some(kube::Client::try_default().await?)
        } else {
            None
        };
        Self::with_kube_client(ctx, config, client)
    }

    /// As [`AppState::new`], with a given Kubernetes client (Kubernetes mode) — tests pass a
    /// mock service's client.
    pub fn with_kube_client(
        ctx: &Context,
        config: Config,
        client: Option<kube::Client>,
    ) -> Result<Self, StartError> {
        let metrics = Metrics::new(&ctx.registry)?;
        let board = CurrentFindings::new();
        let rx = spawn_config_watch(&config, &metrics, ctx.shutdown.clone());
        let work = Workers {
            ctx,
            config: rx.clone(),
            board: board.clone(),
            metrics: metrics.clone(),
        };
        match (config.mode, client) {
            (Environment::Kubernetes, Some(client)) => {
                work.watch_kubernetes(client, &config.file);
            }
            _ => work.probe_local(&config.file),
        }
        if let Some(url) = &config.prometheus_url {
            work.check_promql(url);
        }
        let (sink, ready) = publish_sink(ctx, &config)?;
        let publisher = Publisher::new(sink, config.file.publish.clone(), metrics.clone(), ready);
        tokio::spawn(run_publisher(
            publisher,
            board.clone(),
            metrics,
            rx.clone(),
            config.publish_tick,
            ctx.shutdown.clone(),
        ));
        Ok(Self {
            board,
            config: rx,
            mode: config.mode,
        })
    }

    /// The findings board.
    pub fn board(&self) -> &CurrentFindings {
        &self.board
    }
}

/// The configuration in force: the file's reloads (when there is a file) on a watch channel
/// that stays open until `shutdown`.
fn spawn_config_watch(
    config: &Config,
    metrics: &Metrics,
    shutdown: tokio_util::sync::CancellationToken,
) -> watch::Receiver<Arc<FileConfig>> {
    let (tx, rx) = watch::channel(Arc::new(config.file.clone()));
    if let Some(path) = config.config_path.clone() {
        tokio::spawn(config::watch_file(
            path,
            config.config_poll,
            tx,
            metrics.config_reload_failures.clone(),
            shutdown,
        ));
    } else {
        // Keep the sender alive so receivers do not see a closed channel.
        tokio::spawn(async move {
            shutdown.cancelled().await;
            drop(tx);
        });
    }
    rx
}

/// What every background task is given: the configuration in force, the board it writes
/// findings to and the metrics; each stops on the context's shutdown token.
struct Workers<'a> {
    ctx: &'a Context,
    config: watch::Receiver<Arc<FileConfig>>,
    board: CurrentFindings,
    metrics: Metrics,
}

impl Workers<'_> {
    /// Kubernetes mode: the watchers, the pods' readiness probes, the evaluator and the
    /// control-plane checks.
    fn watch_kubernetes(&self, client: kube::Client, file: &FileConfig) {
        let shutdown = &self.ctx.shutdown;
        let ready = self
            .ctx
            .readiness
            .flag("kubernetes", "a Kubernetes watch is failing");
        let (changes_tx, changes_rx) = mpsc::channel(10_000);
        let wc = kube_watch::WatchContext {
            tx: changes_tx,
            metrics: self.metrics.clone(),
            ready: Some(ready),
            shutdown: shutdown.clone(),
        };
        let stores = kube_watch::start_watchers(&client, &file.namespaces, &wc);
        let reports = kube_watch::ReadinessReports::default();
        tokio::spawn(kube_watch::run_readiness_probes(
            stores.pods.clone(),
            reports.clone(),
            wc.tx.clone(),
            // Each probe bounds itself to 1 s (probe_readiness).
            self.ctx
                .http_client_with_timeouts(Duration::from_millis(500), Duration::from_secs(1)),
            self.config.clone(),
            Duration::from_secs(5),
            shutdown.clone(),
        ));
        let evaluator =
            kube_watch::Evaluator::new(stores, self.board.clone(), self.metrics.clone())
                .with_readiness(reports);
        tokio::spawn(kube_watch::run_evaluator(
            evaluator,
            changes_rx,
            self.config.clone(),
            shutdown.clone(),
        ));
        tokio::spawn(kube_watch::run_control_plane(
            client,
            self.config.clone(),
            self.board.clone(),
            shutdown.clone(),
        ));
    }

    /// Local mode: HTTP probes of the file's targets.
    fn probe_local(&self, file: &FileConfig) {
        let http = self
            .ctx
            .http_client_with_timeouts(file.local.timeout, file.local.timeout);
        tokio::spawn(local::run_prober(
            http,
            self.config.clone(),
            self.board.clone(),
            self.metrics.clone(),
            self.ctx.shutdown.clone(),
        ));
    }

    /// The file's PromQL checks against Prometheus at `url`, which readiness also asks.
    fn check_promql(&self, url: &str) {
        let prom = promql::PromClient::new(url, self.ctx.http_client());
        let check = prom.clone();
        self.ctx.readiness.add("prometheus", move || {
            let c = check.clone();
            Box::pin(async move { c.ready().await })
        });
        tokio::spawn(promql::run_checks(
            prom,
            self.config.clone(),
            self.board.clone(),
            self.metrics.clone(),
            self.ctx.shutdown.clone(),
            None,
        ));
    }
}

/// Where findings go: Alertmanager when configured (readiness asks it), else the webhook
/// receivers (with a readiness flag their deliveries set), else nowhere.
fn publish_sink(ctx: &Context, config: &Config) -> Result<(Sink, Option<ReadyFlag>), StartError> {
    if let Some(url) = &config.alertmanager_url {
        let http = ctx.http_client_with_timeouts(Duration::from_secs(2), Duration::from_secs(5));
        let client = alertmanager::AlertmanagerClient::new(url, http)?;
        let check = client.clone().with_timeout(Duration::from_millis(900));
        ctx.readiness.add("alertmanager", move || {
            let c = check.clone();
            Box::pin(async move { c.ready().await.map_err(|e| e.to_string()) })
        });
        return Ok((Sink::Alertmanager(client), None));
    }
    let receivers = config.receivers();
    if receivers.is_empty() {
        return Ok((Sink::Nowhere, None));
    }
    let flag = ctx.readiness.flag(
        "webhook-receivers",
        "a webhook receiver is failing; deliveries are retried",
    );
    let http = ctx.http_client_with_timeouts(Duration::from_secs(2), Duration::from_secs(5));
    Ok((Sink::Webhooks { http, receivers }, Some(flag)))
}

/// Syncs the publisher with the board every `tick` until `shutdown`; updates the findings
/// gauge and the health score.
pub async fn run_publisher(
    mut publisher: Publisher,
    board: CurrentFindings,
    metrics: Metrics,
    mut config: watch::Receiver<Arc<FileConfig>>,
    tick: Duration,
    shutdown: tokio_util::sync::CancellationToken,
) {
    loop {
        if config.has_changed().unwrap_or(false) {
            publisher.set_config(config.borrow_and_update().publish.clone());
        }
        let findings = board.all();
        metrics.set_findings(&findings);
        metrics.health_score.set(board.health_score());
        publisher.tick(&findings).await;
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(tick) => {}
        }
    }
}

/// Filters of `GET /api/v1/findings`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FindingsQuery {
    /// Only this severity.
    pub severity: Option<Severity>,
    /// Only this kind.
    pub finding: Option<FindingKind>,
    /// Only this namespace.
    pub namespace: Option<String>,
}

#[derive(Serialize)]
struct FindingsBody {
    mode: Environment,
    count: usize,
    findings: Vec<Finding>,
}

async fn findings(
    State(state): State<AppState>,
    Query(q): Query<FindingsQuery>,
) -> axum::Json<serde_json::Value> {
    let findings: Vec<Finding> = state
        .board
        .all()
        .into_iter()
        .filter(|f| q.severity.is_none_or(|s| f.severity == s))
        .filter(|f| q.finding.is_none_or(|k| f.finding == k))
        .filter(|f| {
            q.namespace
                .as_deref()
                .is_none_or(|n| f.object.namespace.as_deref() == Some(n))
        })
        .collect();
    let body = FindingsBody {
        mode: state.mode,
        count: findings.len(),
        findings,
    };
    axum::Json(serde_json::to_value(body).unwrap_or_default())
}

async fn effective_config(State(state): State<AppState>) -> axum::Json<serde_json::Value> {
    let cfg = state.config.borrow().clone();
    axum::Json(serde_json::to_value(&*cfg).unwrap_or_default())
}

/// The service's routes: `GET /api/v1/findings` (`?severity=&finding=&namespace=`) and
/// `GET /api/v1/config` (the configuration in force, secrets left out).
pub fn app(state: AppState) -> Router {
    Router::new()
        .route(
            "/",
            service_kit::identity(SERVICE, env!("CARGO_PKG_VERSION")),
        )
        .route("/api/v1/findings", get(findings))
        .route("/api/v1/config", get(effective_config))
        .with_state(state)
}
