//! Local mode end to end: health-monitor probes a real HTTP server (in-process axum on a free
//! port) and publishes to a real Alertmanager; the server is stopped, started, made not ready.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use alertmanager::{AlertmanagerClient, Matcher};
use axum::Router;
use axum::body::Body;
use axum::routing::get;
use health_monitor::config::{FileConfig, LocalTarget};
use health_monitor::finding::FindingKind;
use health_monitor::{AppState, Config, Environment};
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use service_kit::{Context, EnvReader};
use testbed::{Alertmanager, AlertmanagerConfig, HttpSink, wait_until};
use tokio::task::JoinHandle;
use tower::ServiceExt;

/// A stand-in organ: the service-kit health endpoints' shapes, readiness switchable.
struct Organ {
    addr: SocketAddr,
    db_down: Arc<AtomicBool>,
    task: Option<JoinHandle<()>>,
}

impl Organ {
    async fn start_on(addr: SocketAddr, db_down: Arc<AtomicBool>) -> Self {
        let flag = db_down.clone();
        let app = Router::new()
            .route("/healthz", get(|| async { axum::Json(serde_json::json!({"status": "alive"})) }))
            .route(
                "/readyz",
                get(move || {
                    let down = flag.load(Ordering::Relaxed);
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
            );
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .expect("bind the organ's port");
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            addr,
            db_down,
            task: Some(task),
        }
    }

    async fn start() -> Self {
        Self::start_on(
            SocketAddr::from(([127, 0, 0, 1], 0)),
            Arc::new(AtomicBool::new(false)),
        )
        .await
    }

    async fn stop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
            let _ = t.await;
        }
    }

    async fn restart(&mut self) {
        self.stop().await;
        let mut again = Self::start_on(self.addr, self.db_down.clone()).await;
        self.task = again.task.take();
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Organ {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
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

async fn get_json(router: &Router, uri: &str) -> (StatusCode, serde_json::Value) {
    let resp = router
        .clone()
        .oneshot(Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
    )
}

async fn get_text(router: &Router, uri: &str) -> String {
    let resp = router
        .clone()
        .oneshot(Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    String::from_utf8(
        resp.into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap()
}

#[tokio::test]
async fn a_stopped_service_is_a_finding_within_two_seconds_and_resolves_when_back() {
    let receiver = HttpSink::start().await;
    let am = Alertmanager::start(
        &AlertmanagerConfig::new()
            .webhook("auto-healer", format!("{}/hook", receiver.url()))
            .to_yaml(),
    )
    .await;
    let mut organ = Organ::start().await;
    let ctx = Context::for_tests(health_monitor::SERVICE);
    let config = local_config(
        vec![LocalTarget {
            name: "heart".into(),
            url: organ.url(),
        }],
        Some(am.url()),
    );
    let state = AppState::with_kube_client(&ctx, config, None).unwrap();
    let router = service_kit::assemble(&ctx, health_monitor::app(state.clone()));
    let am_client = AlertmanagerClient::new(
        am.url(),
        telemetry::client::HttpClient::new(telemetry::client::ClientMetrics::unregistered()),
    )
    .unwrap();

    // Healthy first.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let (status, body) = get_json(&router, "/api/v1/findings").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["count"], 0, "{body}");
    assert_eq!(body["mode"], "local");

    // Kill it: service-down within 2 s.
    organ.stop().await;
    let stopped = Instant::now();
    let seen = wait_until(Duration::from_secs(2), || async {
        state
            .board()
            .all()
            .iter()
            .any(|f| f.finding == FindingKind::ServiceDown)
    })
    .await;
    let took = stopped.elapsed();
    assert!(seen, "no service-down within 2 s");
    println!("service-down after {took:?}");
    let (_, body) = get_json(&router, "/api/v1/findings?finding=service-down").await;
    assert_eq!(body["findings"][0]["service"], "heart");
    assert_eq!(body["findings"][0]["remediation"], "restart-pod");

    // ...and in Alertmanager with the contract labels.
    let in_am = wait_until(Duration::from_secs(5), || async {
        am_client
            .alerts(&[Matcher::equal("alertname", "ServiceDown")])
            .await
            .is_ok_and(|a| a.len() == 1)
    })
    .await;
    assert!(in_am, "ServiceDown not in Alertmanager");
    let a = &am_client
        .alerts(&[Matcher::equal("alertname", "ServiceDown")])
        .await
        .unwrap()[0];
    assert_eq!(a.labels["service"], "heart");
    assert_eq!(a.labels["finding"], "service-down");
    assert_eq!(a.labels["severity"], "critical");
    assert_eq!(a.labels["remediation"], "restart-pod");

    // /metrics: the gauge, promtool-clean; /readyz: Alertmanager reachable.
    let metrics = get_text(&router, "/metrics").await;
    assert!(
        metrics.contains("health_monitor_findings{finding=\"service-down\",namespace=\"\",severity=\"critical\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("health_monitor_cluster_health_score 0"),
        "one target, down"
    );
    promtool_check(&metrics);
    let (status, ready) = get_json(&router, "/readyz").await;
    assert_eq!(status, StatusCode::OK, "{ready}");
    assert_eq!(ready["checks"]["alertmanager"], "ok");

    // Back: resolved on the board and in Alertmanager.
    organ.restart().await;
    let cleared = wait_until(Duration::from_secs(3), || async {
        state.board().all().is_empty()
    })
    .await;
    assert!(cleared, "{:?}", state.board().all());
    let gone = wait_until(Duration::from_secs(5), || async {
        am_client
            .alerts(&[Matcher::equal("alertname", "ServiceDown")])
            .await
            .is_ok_and(|a| a.is_empty())
    })
    .await;
    assert!(gone, "ServiceDown still active in Alertmanager");

    // Not ready because of the database: named, and no restart.
    organ.db_down.store(true, Ordering::Relaxed);
    let not_ready = wait_until(Duration::from_secs(3), || async {
        state
            .board()
            .all()
            .iter()
            .any(|f| f.finding == FindingKind::ServiceNotReady)
    })
    .await;
    assert!(not_ready);
    let in_am = wait_until(Duration::from_secs(5), || async {
        am_client
            .alerts(&[Matcher::equal("alertname", "ServiceNotReady")])
            .await
            .is_ok_and(|a| a.len() == 1)
    })
    .await;
    assert!(in_am);
    let a = &am_client
        .alerts(&[Matcher::equal("alertname", "ServiceNotReady")])
        .await
        .unwrap()[0];
    assert_eq!(a.labels["dependency"], "database");
    assert!(!a.labels.contains_key("remediation"), "{:?}", a.labels);
    assert!(a.annotations["description"].contains("database (connection refused)"));
    ctx.shutdown.cancel();
}

#[tokio::test]
async fn an_unreachable_alertmanager_degrades_readiness_but_findings_are_served() {
    let port = testbed::free_port();
    let ctx = Context::for_tests(health_monitor::SERVICE);
    let dead = format!("http://127.0.0.1:{}", testbed::free_port());
    let config = local_config(
        vec![LocalTarget {
            name: "brain".into(),
            url: dead,
        }],
        Some(format!("http://127.0.0.1:{port}")),
    );
    let state = AppState::with_kube_client(&ctx, config, None).unwrap();
    let router = service_kit::assemble(&ctx, health_monitor::app(state.clone()));
    let seen = wait_until(Duration::from_secs(3), || async {
        !state.board().all().is_empty()
    })
    .await;
    assert!(seen);
    let (status, ready) = get_json(&router, "/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ready["failing"][0]["check"], "alertmanager", "{ready}");
    let (status, body) = get_json(&router, "/api/v1/findings").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["findings"][0]["finding"], "service-down");
    let failures = wait_until(Duration::from_secs(3), || async {
        get_text(&router, "/metrics").await.contains(
            "health_monitor_publish_failures_total{reason=\"connect\",sink=\"alertmanager\"}",
        )
    })
    .await;
    assert!(failures);
    // Bad query parameters are a 4xx JSON error, not a panic.
    let (status, body) = get_json(&router, "/api/v1/findings?severity=catastrophic").await;
    assert!(status.is_client_error(), "{status}");
    assert!(body["error"]["message"].as_str().is_some(), "{body}");
    ctx.shutdown.cancel();
}

#[tokio::test]
async fn the_config_file_reloads_and_a_bad_edit_keeps_the_last_good_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("health-monitor.yaml");
    let organ = Organ::start().await;
    std::fs::write(
        &path,
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
    assert_eq!(config.file.local.interval, Duration::from_millis(200));
    let ctx = Context::for_tests(health_monitor::SERVICE);
    let state = AppState::with_kube_client(&ctx, config, None).unwrap();
    let router = service_kit::assemble(&ctx, health_monitor::app(state.clone()));
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(state.board().all().is_empty());

    // A bad edit: rejected, counted, the old targets still probed.
    std::fs::write(&path, "local:\n  interval: often\n").unwrap();
    let rejected = wait_until(Duration::from_secs(3), || async {
        get_text(&router, "/metrics")
            .await
            .contains("health_monitor_config_reload_failures_total 1")
    })
    .await;
    assert!(rejected);
    let (_, cfg) = get_json(&router, "/api/v1/config").await;
    assert_eq!(cfg["local"]["targets"][0]["name"], "heart", "{cfg}");

    // A good edit: a new (down) target is probed.
    let dead = format!("http://127.0.0.1:{}", testbed::free_port());
    std::fs::write(
        &path,
        format!("local:\n  interval: 200ms\n  targets:\n    - {{name: brain, url: \"{dead}\"}}\n"),
    )
    .unwrap();
    let down =
        wait_until(Duration::from_secs(4), || async {
            state.board().all().iter().any(|f| {
                f.finding == FindingKind::ServiceDown && f.service.as_deref() == Some("brain")
            })
        })
        .await;
    assert!(down, "{:?}", state.board().all());
    ctx.shutdown.cancel();
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

fn promtool_check(metrics: &str) {
    let report = testbed::promtool_check_metrics(metrics);
    let ours: Vec<&str> = report
        .lines()
        .filter(|l| l.contains("health_monitor"))
        .collect();
    assert!(ours.is_empty(), "promtool check metrics: {report}");
}
