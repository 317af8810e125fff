//! Local mode end to end: health-monitor probes a real HTTP server (in-process axum on a free
//! port) and publishes to a real Alertmanager; the server is stopped, started, made not ready.
//!
//! Waits are bounded generously (a test gone wrong, not a timing requirement); how soon a
//! failure becomes a finding is checked by counting probes.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use alertmanager::{AlertmanagerClient, GettableAlert, Matcher};
use axum::Router;
use axum::routing::get;
use health_monitor::config::{FileConfig, LocalTarget};
use health_monitor::finding::FindingKind;
use health_monitor::{AppState, Config, Environment};
use http::StatusCode;
use service_kit::{Context, EnvReader};
use testbed::{Alertmanager, HttpSink, Served, TestRouter, wait_until};

mod support;
use support::alertmanager_notifying;

/// A bound for waits on things that take a few probe rounds (500 ms each).
const WAIT: Duration = Duration::from_secs(20);

/// A stand-in organ: the service-kit health endpoints' shapes, readiness switchable.
struct Organ {
    addr: SocketAddr,
    db_down: Arc<AtomicBool>,
    served: Option<Served>,
}

impl Organ {
    fn router(db_down: Arc<AtomicBool>) -> Router {
        Router::new()
            .route("/healthz", get(|| async { axum::Json(serde_json::json!({"status": "alive"})) }))
            .route(
                "/readyz",
                get(move || {
                    let down = db_down.load(Ordering::Relaxed);
                    async move {
                        if down {
                            (
                                StatusCode::SERVICE_UNAVAILABLE,
                                axum::Json(serde_json::json!({"status": "not ready", "failing": [{"check": "database", "reason": "connection refused"}], "checks": {"database": "failing"}})),
                            )
                        } else {
                            (StatusCode::OK, axum::Json(serde_json::json!({"status": "ready", "checks": {"database": "ok"}})))
                        }
                    }
                }),
            )
    }

    async fn start() -> Self {
        let db_down = Arc::new(AtomicBool::new(false));
        let served = Served::start(Self::router(db_down.clone())).await;
        Self {
            addr: served.addr(),
            db_down,
            served: Some(served),
        }
    }

    async fn stop(&mut self) {
        if let Some(served) = self.served.take() {
            served.stop().await;
        }
    }

    /// Serves again on the same address.
    async fn restart(&mut self) {
        self.stop().await;
        let router = Self::router(self.db_down.clone());
        self.served = Some(Served::start_on(self.addr, router).await);
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn target(&self, name: &str) -> LocalTarget {
        LocalTarget {
            name: name.into(),
            url: self.url(),
        }
    }
}

fn local_config(targets: Vec<LocalTarget>, alertmanager: Option<String>) -> Config {
    let mut file = FileConfig::default();
    file.local.targets = targets;
    file.publish.resend_interval = Duration::from_secs(1);
    Config {
        mode: Environment::Local,
        file,
        alertmanager_url: alertmanager,
        publish_tick: Duration::from_millis(100),
        ..Config::default()
    }
}

/// health-monitor in local mode, its router, and what it publishes to.
struct Monitor {
    ctx: Context,
    state: AppState,
    app: TestRouter,
}

impl Monitor {
    fn start(config: Config) -> Self {
        let ctx = Context::for_tests(health_monitor::SERVICE);
        let state = AppState::with_kube_client(&ctx, config, None).unwrap();
        let app = TestRouter::new(service_kit::assemble(
            &ctx,
            health_monitor::app(state.clone()),
        ));
        Self { ctx, state, app }
    }

    fn has(&self, kind: FindingKind) -> bool {
        self.state.board().all().iter().any(|f| f.finding == kind)
    }

    async fn wait_for(&self, kind: FindingKind) {
        let seen = wait_until(WAIT, || async { self.has(kind) }).await;
        assert!(seen, "no {kind}: {:?}", self.state.board().all());
    }

    /// `health_monitor_probes_total{target,result}`.
    async fn probes(&self, target: &str, result: &str) -> f64 {
        let labels = [("target", target), ("result", result)];
        let metrics = self.app.metrics().await;
        metrics
            .value("health_monitor_probes_total", &labels)
            .unwrap_or(0.0)
    }

    async fn wait_for_probes(&self, target: &str, result: &str, n: f64) {
        let done = wait_until(WAIT, || async { self.probes(target, result).await >= n }).await;
        assert!(done, "fewer than {n} {result} probes of {target}");
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        self.ctx.shutdown.cancel();
    }
}

/// A real Alertmanager (notifying an HTTP sink) and a client of its API.
struct RealAlertmanager {
    am: Alertmanager,
    client: AlertmanagerClient,
    _receiver: HttpSink,
}

impl RealAlertmanager {
    async fn start() -> Self {
        let (am, receiver, client) = alertmanager_notifying("/hook").await;
        Self {
            am,
            client,
            _receiver: receiver,
        }
    }

    async fn active(&self, alertname: &str) -> Vec<GettableAlert> {
        self.client
            .alerts(&[Matcher::equal("alertname", alertname)])
            .await
            .unwrap_or_default()
    }

    /// Waits until exactly one `alertname` alert is active and returns it.
    async fn wait_for_one(&self, alertname: &str) -> GettableAlert {
        let one = wait_until(WAIT, || async { self.active(alertname).await.len() == 1 }).await;
        assert!(
            one,
            "{alertname} not in Alertmanager: {}",
            self.am.log_tail()
        );
        self.active(alertname).await.remove(0)
    }
}

/// An organ `heart` watched by a monitor publishing to Alertmanager when given.
async fn heart_watched(am: Option<&RealAlertmanager>) -> (Organ, Monitor) {
    let organ = Organ::start().await;
    let config = local_config(vec![organ.target("heart")], am.map(|a| a.am.url()));
    (organ, Monitor::start(config))
}

/// `heart` stopped and seen down.
async fn heart_down(am: Option<&RealAlertmanager>) -> (Organ, Monitor) {
    let (mut organ, monitor) = heart_watched(am).await;
    organ.stop().await;
    monitor.wait_for(FindingKind::ServiceDown).await;
    (organ, monitor)
}

#[tokio::test]
async fn a_healthy_service_has_no_findings() {
    let (_organ, monitor) = heart_watched(None).await;
    // Two ready probes: the board was written after the first.
    monitor.wait_for_probes("heart", "ready", 2.0).await;
    let reply = monitor.app.get("/api/v1/findings").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body["count"], 0, "{}", reply.text);
    assert_eq!(reply.body["mode"], "local");
}

#[tokio::test]
async fn a_stopped_service_is_down_after_failures_before_down_failed_probes() {
    let (_organ, monitor) = heart_down(None).await;
    let failures_before_down = FileConfig::default().local.failures_before_down;
    assert!(
        monitor.probes("heart", "down").await >= f64::from(failures_before_down),
        "service-down before {failures_before_down} failed probes"
    );
}

#[tokio::test]
async fn service_down_is_listed_with_its_service_and_a_restart() {
    let (_organ, monitor) = heart_down(None).await;
    let reply = monitor
        .app
        .get("/api/v1/findings?finding=service-down")
        .await;
    assert_eq!(reply.body["findings"][0]["service"], "heart");
    assert_eq!(reply.body["findings"][0]["remediation"], "restart-pod");
}

#[tokio::test]
async fn service_down_reaches_alertmanager_with_the_contract_labels() {
    let am = RealAlertmanager::start().await;
    let (_organ, _monitor) = heart_down(Some(&am)).await;
    let a = am.wait_for_one("ServiceDown").await;
    assert_eq!(a.labels["service"], "heart");
    assert_eq!(a.labels["finding"], "service-down");
    assert_eq!(a.labels["severity"], "critical");
    assert_eq!(a.labels["remediation"], "restart-pod");
}

#[tokio::test]
async fn findings_and_the_health_score_are_exported_as_metrics() {
    let (_organ, monitor) = heart_down(None).await;
    let metrics = monitor.app.metrics().await;
    let down = [
        ("finding", "service-down"),
        ("namespace", ""),
        ("severity", "critical"),
    ];
    assert_eq!(
        metrics.value("health_monitor_findings", &down),
        Some(1.0),
        "{}",
        metrics.text()
    );
    assert_eq!(
        metrics.value("health_monitor_cluster_health_score", &[]),
        Some(0.0),
        "one target, down"
    );
}

#[tokio::test]
async fn the_metrics_pass_promtool_check() {
    let (_organ, monitor) = heart_down(None).await;
    let metrics = monitor.app.metrics().await;
    let report = testbed::promtool_check_metrics(metrics.text());
    let ours: Vec<&str> = report
        .lines()
        .filter(|l| l.contains("health_monitor"))
        .collect();
    assert!(ours.is_empty(), "promtool check metrics: {report}");
}

#[tokio::test]
async fn a_reachable_alertmanager_is_ready() {
    let am = RealAlertmanager::start().await;
    let (_organ, monitor) = heart_watched(Some(&am)).await;
    let reply = monitor.app.get("/readyz").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.body["checks"]["alertmanager"], "ok");
}

#[tokio::test]
async fn a_service_back_clears_its_finding() {
    let (mut organ, monitor) = heart_down(None).await;
    organ.restart().await;
    let cleared = wait_until(WAIT, || async { monitor.state.board().all().is_empty() }).await;
    assert!(cleared, "{:?}", monitor.state.board().all());
}

#[tokio::test]
async fn a_service_back_resolves_its_alert_in_alertmanager() {
    let am = RealAlertmanager::start().await;
    let (mut organ, _monitor) = heart_down(Some(&am)).await;
    am.wait_for_one("ServiceDown").await;
    organ.restart().await;
    let gone = wait_until(WAIT, || async { am.active("ServiceDown").await.is_empty() }).await;
    assert!(gone, "ServiceDown still active in Alertmanager");
}

#[tokio::test]
async fn a_service_not_ready_for_its_database_is_alerted_with_the_dependency_and_no_restart() {
    let am = RealAlertmanager::start().await;
    let (organ, monitor) = heart_watched(Some(&am)).await;
    organ.db_down.store(true, Ordering::Relaxed);
    monitor.wait_for(FindingKind::ServiceNotReady).await;
    let a = am.wait_for_one("ServiceNotReady").await;
    assert_eq!(a.labels["dependency"], "database");
    assert!(!a.labels.contains_key("remediation"), "{:?}", a.labels);
    assert!(a.annotations["description"].contains("database (connection refused)"));
}

/// A monitor probing a dead `brain` and publishing to an Alertmanager nobody listens for.
fn publishing_nowhere() -> Monitor {
    let dead = format!("http://127.0.0.1:{}", testbed::free_port());
    let am = format!("http://127.0.0.1:{}", testbed::free_port());
    let target = LocalTarget {
        name: "brain".into(),
        url: dead,
    };
    Monitor::start(local_config(vec![target], Some(am)))
}

#[tokio::test]
async fn an_unreachable_alertmanager_fails_readiness() {
    let monitor = publishing_nowhere();
    let reply = monitor.app.get("/readyz").await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        reply.body["failing"][0]["check"], "alertmanager",
        "{}",
        reply.text
    );
}

#[tokio::test]
async fn findings_are_served_while_alertmanager_is_unreachable() {
    let monitor = publishing_nowhere();
    monitor.wait_for(FindingKind::ServiceDown).await;
    let reply = monitor.app.get("/api/v1/findings").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body["findings"][0]["finding"], "service-down");
}

#[tokio::test]
async fn failed_posts_to_an_unreachable_alertmanager_are_counted() {
    let monitor = publishing_nowhere();
    let labels = [("reason", "connect"), ("sink", "alertmanager")];
    let counted = wait_until(WAIT, || async {
        let metrics = monitor.app.metrics().await;
        metrics
            .value("health_monitor_publish_failures_total", &labels)
            .is_some_and(|n| n >= 1.0)
    })
    .await;
    assert!(counted);
}

#[tokio::test]
async fn a_bad_findings_filter_is_a_4xx_json_error() {
    let monitor = Monitor::start(local_config(Vec::new(), None));
    let reply = monitor
        .app
        .get("/api/v1/findings?severity=catastrophic")
        .await;
    assert!(reply.status.is_client_error(), "{}", reply.status);
    assert!(
        reply.body["error"]["message"].as_str().is_some(),
        "{}",
        reply.text
    );
}

/// A configuration file probing `heart` every 200 ms, read as the service reads it, with the
/// file polled every 100 ms.
fn file_config(path: &std::path::Path, organ: &Organ) -> Config {
    std::fs::write(
        path,
        format!(
            "local:\n  interval: 200ms\n  targets:\n    - {{name: heart, url: \"{}\"}}\n",
            organ.url()
        ),
    )
    .unwrap();
    let env: HashMap<&str, String> = HashMap::from([
        ("HEALTH_MONITOR_CONFIG", path.display().to_string()),
        ("HEALTH_MONITOR_MODE", "local".to_owned()),
        ("HEALTH_MONITOR_CONFIG_POLL", "100ms".to_owned()),
    ]);
    let env: HashMap<&str, &str> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut reader = EnvReader::new(&env);
    let config = Config::read(&mut reader);
    reader.finish().unwrap();
    config
}

#[tokio::test]
async fn the_config_file_is_read_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let organ = Organ::start().await;
    let config = file_config(&dir.path().join("health-monitor.yaml"), &organ);
    assert_eq!(config.file.local.interval, Duration::from_millis(200));
    assert_eq!(config.file.local.targets[0].name, "heart");
}

/// A monitor reading its configuration from a file (probing a live `heart`), once it has
/// probed: the file watcher has then taken the file's first modification time.
async fn monitor_of_a_file() -> (tempfile::TempDir, std::path::PathBuf, Organ, Monitor) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("health-monitor.yaml");
    let organ = Organ::start().await;
    let monitor = Monitor::start(file_config(&path, &organ));
    monitor.wait_for_probes("heart", "ready", 1.0).await;
    (dir, path, organ, monitor)
}

#[tokio::test]
async fn a_bad_edit_is_counted_and_the_last_good_config_stays() {
    let (_dir, path, _organ, monitor) = monitor_of_a_file().await;
    std::fs::write(&path, "local:\n  interval: often\n").unwrap();
    let rejected = wait_until(WAIT, || async {
        let metrics = monitor.app.metrics().await;
        metrics.value("health_monitor_config_reload_failures_total", &[]) == Some(1.0)
    })
    .await;
    assert!(rejected);
    let reply = monitor.app.get("/api/v1/config").await;
    assert_eq!(
        reply.body["local"]["targets"][0]["name"], "heart",
        "{}",
        reply.text
    );
}

#[tokio::test]
async fn a_good_edit_probes_the_new_targets() {
    let (_dir, path, _organ, monitor) = monitor_of_a_file().await;
    let dead = format!("http://127.0.0.1:{}", testbed::free_port());
    std::fs::write(
        &path,
        format!("local:\n  interval: 200ms\n  targets:\n    - {{name: brain, url: \"{dead}\"}}\n"),
    )
    .unwrap();
    let down =
        wait_until(WAIT, || async {
            monitor.state.board().all().iter().any(|f| {
                f.finding == FindingKind::ServiceDown && f.service.as_deref() == Some("brain")
            })
        })
        .await;
    assert!(down, "{:?}", monitor.state.board().all());
}

#[test]
fn a_bad_file_at_start_exits_2_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(
        &path,
        "checks:\n  - name: x\n    query: up\n    threshold: lots\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_health-monitor"))
        .env("HEALTH_MONITOR_CONFIG", &path)
        .env("HEALTH_MONITOR_MODE", "local")
        .env("LISTEN_ADDR", "127.0.0.1:0")
        .env_remove("ALERTMANAGER_URL")
        .env_remove("PROMETHEUS_URL")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("HEALTH_MONITOR_CONFIG") && stderr.contains("checks[0].threshold"),
        "{stderr}"
    );
}
