//! PromQL checks against a real Prometheus (testbed) scraping a real target whose value the
//! test controls; the control-plane `up` query against a real scrape failure.

use std::sync::Arc;
use std::time::{Duration, Instant};

use health_monitor::board::CurrentFindings;
use health_monitor::config::{Comparison, FileConfig, PromCheck};
use health_monitor::finding::{FindingKind, Severity};
use health_monitor::metrics::Metrics;
use health_monitor::promql::{PromClient, QueryError, run_checks};
use http::StatusCode;
use service_kit::Context;
use testbed::{HttpSink, Prometheus, PrometheusOptions, wait_until};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

fn set_value(target: &HttpSink, v: f64) {
    target.set_response(
        StatusCode::OK,
        "text/plain; version=0.0.4",
        format!("# TYPE organ_queue_depth gauge\norgan_queue_depth{{queue=\"beats\"}} {v}\n"),
    );
}

#[tokio::test]
async fn a_check_fires_after_for_and_clears_when_the_series_goes_back() {
    let target = HttpSink::start().await;
    set_value(&target, 3.0);
    let dead_port = testbed::free_port();
    let prometheus = Prometheus::start(PrometheusOptions {
        scrape_targets: vec![
            ("heart".into(), target.addr().to_string()),
            ("etcd".into(), format!("127.0.0.1:{dead_port}")),
        ],
        ..PrometheusOptions::default()
    })
    .await;
    let ctx = Context::for_tests(health_monitor::SERVICE);
    let client = PromClient::new(&prometheus.url(), ctx.http_client());
    let file = FileConfig {
        checks: vec![PromCheck {
            name: "queue-deep".into(),
            query: "organ_queue_depth".into(),
            threshold: 10.0,
            comparison: Comparison::Greater,
            for_: Duration::from_secs(3),
            severity: Severity::Critical,
            labels: [("team".to_owned(), "organs".to_owned())].into(),
            summary: None,
            remediation: None,
            dependency: None,
        }],
        ..FileConfig::default()
    };
    let (_tx, rx) = watch::channel(Arc::new(file));
    let board = CurrentFindings::new();
    let registry = prometheus::Registry::new();
    let metrics = Metrics::new(&registry).unwrap();
    let shutdown = CancellationToken::new();
    tokio::spawn(run_checks(
        client.clone(),
        rx,
        board.clone(),
        metrics,
        shutdown.clone(),
        Some(Duration::from_millis(250)),
    ));

    // The etcd job's scrape fails: up == 0 → control-plane-unhealthy.
    let cp = wait_until(Duration::from_secs(30), || async {
        board
            .all()
            .iter()
            .any(|f| f.finding == FindingKind::ControlPlaneUnhealthy && f.object.name == "etcd")
    })
    .await;
    assert!(
        cp,
        "no control-plane finding; {:?}; log:\n{}",
        board.all(),
        prometheus.log_tail()
    );

    // Below the threshold: nothing.
    let scraped = wait_until(Duration::from_secs(30), || async {
        client
            .query("organ_queue_depth")
            .await
            .is_ok_and(|s| s.first().is_some_and(|s| s.value == 3.0))
    })
    .await;
    assert!(scraped);
    assert!(
        board
            .all()
            .iter()
            .all(|f| f.finding != FindingKind::MetricCheck)
    );

    // Crosses: pending for `for` (3 s), then fires.
    set_value(&target, 25.0);
    let crossed = wait_until(Duration::from_secs(10), || async {
        client
            .query("organ_queue_depth")
            .await
            .is_ok_and(|s| s.first().is_some_and(|s| s.value == 25.0))
    })
    .await;
    assert!(crossed);
    let crossed_at = Instant::now();
    let fired = wait_until(Duration::from_secs(10), || async {
        board
            .all()
            .iter()
            .any(|f| f.finding == FindingKind::MetricCheck)
    })
    .await;
    assert!(fired, "the check never fired");
    assert!(
        crossed_at.elapsed() >= Duration::from_millis(2500),
        "fired before `for` elapsed: {:?}",
        crossed_at.elapsed()
    );
    let f = board
        .all()
        .into_iter()
        .find(|f| f.finding == FindingKind::MetricCheck)
        .unwrap();
    let labels = f.alert_labels();
    assert_eq!(labels["alertname"], "MetricCheck");
    assert_eq!(labels["check"], "queue-deep");
    assert_eq!(labels["severity"], "critical");
    assert_eq!(labels["team"], "organs");
    assert_eq!(labels["queue"], "beats");
    assert_eq!(labels["job"], "heart");
    assert_eq!(labels["service"], "heart");
    assert!(f.description.contains("25"), "{}", f.description);

    // Back below: cleared.
    set_value(&target, 1.0);
    let cleared = wait_until(Duration::from_secs(10), || async {
        board
            .all()
            .iter()
            .all(|f| f.finding != FindingKind::MetricCheck)
    })
    .await;
    assert!(cleared);
    shutdown.cancel();

    // Bad PromQL is a clear error, not a panic.
    let err = client.query("sum(").await.unwrap_err();
    assert!(
        matches!(err, QueryError::Rejected(ref m) if m.contains("parse error")),
        "{err}"
    );
    assert!(client.ready().await.is_ok());
    let dead = PromClient::new(&format!("http://127.0.0.1:{dead_port}"), ctx.http_client());
    assert!(matches!(
        dead.query("up").await,
        Err(QueryError::Unreachable(_))
    ));
    assert!(dead.ready().await.is_err());
}
