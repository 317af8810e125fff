//! Kubernetes mode: a not-ready pod is asked for its own readiness answer (kubelet's events do
//! not carry the body), so a failing `database` check makes the finding name the dependency and
//! drop the restart. The pod is a real HTTP server on 127.0.0.1.

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
use serde_json::json;
use testbed::{Served, wait_until};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

mod support;
use support::fixture_item;

fn brain_pod(port: u16) -> Pod {
    let mut pod = fixture_item("pods-unhealthy.json", "brain-7c8d9f6b5-p0o9i");
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

/// The pod's own server: `/readyz` answers 503 with a failing `database` check.
async fn brain_serving() -> Served {
    let app = Router::new().route(
        "/readyz",
        get(|| async {
            (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(json!({"status": "not ready", "failing": [{"check": "database", "reason": "pool timed out"}]})),
            )
        }),
    );
    Served::start(app).await
}

fn http_client() -> telemetry::client::HttpClient {
    let metrics = telemetry::client::ClientMetrics::new(&prometheus::Registry::new()).unwrap();
    telemetry::client::HttpClient::new(metrics)
}

/// A reflector store holding `pod`.
fn store_of(pod: Pod) -> reflector::Store<Pod> {
    let (store, mut writer) = reflector::store::<Pod>();
    writer.apply_watcher_event(&watcher::Event::Init);
    writer.apply_watcher_event(&watcher::Event::InitApply(pod));
    writer.apply_watcher_event(&watcher::Event::InitDone);
    store
}

/// An evaluator over `store` using `reports`, writing to a fresh board.
fn evaluator(
    store: reflector::Store<Pod>,
    reports: &ReadinessReports,
) -> (Evaluator, CurrentFindings) {
    let board = CurrentFindings::new();
    let metrics = Metrics::new(&prometheus::Registry::new()).unwrap();
    let stores = Stores {
        pods: vec![store],
        ..Stores::default()
    };
    let evaluator = Evaluator::new(stores, board.clone(), metrics).with_readiness(reports.clone());
    (evaluator, board)
}

#[test]
fn the_readiness_url_resolves_the_named_port() {
    let pod = brain_pod(8123);
    assert_eq!(
        kube_watch::readiness_url(&pod).as_deref(),
        Some("http://127.0.0.1:8123/readyz"),
    );
}

#[tokio::test]
async fn probing_a_pod_reads_its_failing_checks() {
    let server = brain_serving().await;
    let pod = brain_pod(server.addr().port());
    let url = kube_watch::readiness_url(&pod).unwrap();
    let checks = kube_watch::probe_readiness(&http_client(), &url)
        .await
        .unwrap();
    assert_eq!(checks, vec!["database: pool timed out".to_owned()]);
}

#[test]
fn a_not_ready_pod_not_yet_asked_may_be_restarted() {
    let reports = ReadinessReports::default();
    let (mut evaluator, board) = evaluator(store_of(brain_pod(8123)), &reports);
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    evaluator.sweep(&FileConfig::default(), now);
    let f = board.all();
    assert_eq!(f.len(), 1, "{f:#?}");
    assert_eq!(f[0].finding, FindingKind::PodNotReady);
    assert_eq!(f[0].remediation, Some(Remediation::RestartPod));
}

/// The prober asks the pod; the changed report re-classifies it.
#[tokio::test]
async fn a_failing_database_check_reported_by_the_pod_names_the_dependency() {
    let server = brain_serving().await;
    let store = store_of(brain_pod(server.addr().port()));
    let reports = ReadinessReports::default();
    let (evaluator, board) = evaluator(store.clone(), &reports);
    let (tx, rx) = mpsc::channel::<Change>(10);
    let (_cfg_tx, cfg_rx) = watch::channel(Arc::new(FileConfig::default()));
    let shutdown = CancellationToken::new();
    tokio::spawn(kube_watch::run_readiness_probes(
        vec![store],
        reports.clone(),
        tx,
        http_client(),
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
    let named = wait_until(Duration::from_secs(20), || async {
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
}
