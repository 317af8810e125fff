//! Kubernetes mode: a not-ready pod is asked for its own readiness answer (kubelet's events do
//! not carry the body), so a failing `database` check makes the finding name the dependency and
//! drop the restart. The pod is a real HTTP server on 127.0.0.1.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use health_monitor::board::CurrentFindings;
use health_monitor::config::FileConfig;
use health_monitor::finding::{FindingKind, Remediation};
use health_monitor::kube_watch::{self, Change, Evaluator, ReadinessReports, Stores};
use health_monitor::metrics::Metrics;
use http::StatusCode;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::{reflector, watcher};
use serde_json::{Value, json};
use testbed::wait_until;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

fn brain_pod(port: u16) -> Pod {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pods-unhealthy.json");
    let list: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut pod = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["metadata"]["name"] == "brain-7c8d9f6b5-p0o9i")
        .unwrap()
        .clone();
    // Not ready for ten minutes (by the wall clock), reachable on 127.0.0.1:port.
    let since = (time::OffsetDateTime::now_utc() - time::Duration::minutes(10))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    for c in pod["status"]["conditions"].as_array_mut().unwrap() {
        if c["type"] == "Ready" || c["type"] == "ContainersReady" {
            c["lastTransitionTime"] = json!(since);
        }
    }
    pod["status"]["podIP"] = json!("127.0.0.1");
    pod["spec"]["containers"][0]["ports"][0]["containerPort"] = json!(port);
    serde_json::from_value(pod).unwrap()
}

#[tokio::test]
async fn a_failing_database_check_reported_by_the_pod_names_the_dependency() {
    let app = Router::new().route(
        "/readyz",
        get(|| async {
            (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(json!({"status": "not ready", "failing": [{"check": "database", "reason": "pool timed out"}]})),
            )
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });

    let pod = brain_pod(port);
    assert_eq!(
        kube_watch::readiness_url(&pod).as_deref(),
        Some(format!("http://127.0.0.1:{port}/readyz").as_str()),
        "the named port `http` is resolved"
    );
    let metrics = telemetry::client::ClientMetrics::new(&prometheus::Registry::new()).unwrap();
    let http = telemetry::client::HttpClient::new(metrics);
    let checks = kube_watch::probe_readiness(&http, &kube_watch::readiness_url(&pod).unwrap())
        .await
        .unwrap();
    assert_eq!(checks, vec!["database: pool timed out".to_owned()]);

    let (store, mut writer) = reflector::store::<Pod>();
    writer.apply_watcher_event(&watcher::Event::Init);
    writer.apply_watcher_event(&watcher::Event::InitApply(pod.clone()));
    writer.apply_watcher_event(&watcher::Event::InitDone);

    let registry = prometheus::Registry::new();
    let metrics = Metrics::new(&registry).unwrap();
    let board = CurrentFindings::new();
    let reports = ReadinessReports::default();
    let cfg = FileConfig::default();
    let mut evaluator = Evaluator::new(
        Stores {
            pods: vec![store.clone()],
            ..Stores::default()
        },
        board.clone(),
        metrics,
    )
    .with_readiness(reports.clone());

    // Before the pod was asked: an unexplained not-ready pod, restart allowed.
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    evaluator.sweep(&cfg, now);
    let f = board.all();
    assert_eq!(f.len(), 1, "{f:#?}");
    assert_eq!(f[0].finding, FindingKind::PodNotReady);
    assert_eq!(f[0].remediation, Some(Remediation::RestartPod));

    // The prober asks it; the changed report re-classifies the pod.
    let (tx, rx) = mpsc::channel::<Change>(10);
    let (_cfg_tx, cfg_rx) = watch::channel(Arc::new(cfg));
    let shutdown = CancellationToken::new();
    tokio::spawn(kube_watch::run_readiness_probes(
        vec![store],
        reports.clone(),
        tx,
        http,
        cfg_rx.clone(),
        Duration::from_millis(200),
        shutdown.clone(),
    ));
    tokio::spawn(kube_watch::run_evaluator(
        evaluator,
        rx,
        cfg_rx,
        shutdown.clone(),
    ));
    let named = wait_until(Duration::from_secs(5), || async {
        board
            .all()
            .first()
            .is_some_and(|f| f.dependency.as_deref() == Some("database"))
    })
    .await;
    assert!(named, "{:#?}", board.all());
    let f = &board.all()[0];
    assert_eq!(f.remediation, None, "no restart for a database outage");
    assert!(f.description.contains("database"), "{}", f.description);
    assert_eq!(
        reports.get("organism", "brain-7c8d9f6b5-p0o9i"),
        Some(vec!["database: pool timed out".to_owned()])
    );
    shutdown.cancel();
    server.abort();
}
