//! PromQL checks against a real Prometheus (testbed) scraping a real target whose value the
//! test controls; the control-plane `up` query against a real scrape failure.

use std::sync::Arc;
use std::time::{Duration, Instant};

use health_monitor::board::CurrentFindings;
use health_monitor::config::{Comparison, FileConfig, PromCheck};
use health_monitor::finding::{Finding, FindingKind, Severity};
use health_monitor::metrics::Metrics;
use health_monitor::promql::{PromClient, QueryError, run_checks};
use http::StatusCode;
use service_kit::Context;
use testbed::{HttpSink, Prometheus, PrometheusOptions, wait_until};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

mod support;
use support::scrape;

fn set_value(target: &HttpSink, v: f64) {
    target.set_response(
        StatusCode::OK,
        "text/plain; version=0.0.4",
        format!("# TYPE organ_queue_depth gauge\norgan_queue_depth{{queue=\"beats\"}} {v}\n"),
    );
}

/// A bound for waits on scrapes and evaluations: a test gone wrong, not a timing requirement.
const WAIT: Duration = Duration::from_secs(30);

fn queue_deep() -> PromCheck {
    PromCheck {
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
    }
}

/// A real Prometheus scraping `heart` (a gauge the test sets, 3 at first) and `etcd` (a dead
/// port), with health-monitor's `queue-deep` check running against it every 250 ms.
struct Checked {
    target: HttpSink,
    prometheus: Prometheus,
    client: PromClient,
    board: CurrentFindings,
    registry: prometheus::Registry,
    shutdown: CancellationToken,
    _config: watch::Sender<Arc<FileConfig>>,
}

impl Checked {
    async fn start() -> Self {
        let target = HttpSink::start().await;
        set_value(&target, 3.0);
        let prometheus = Prometheus::start(PrometheusOptions {
            scrape_targets: vec![
                ("heart".into(), target.addr().to_string()),
                ("etcd".into(), format!("127.0.0.1:{}", testbed::free_port())),
            ],
            ..PrometheusOptions::default()
        })
        .await;
        let ctx = Context::for_tests(health_monitor::SERVICE);
        let client = PromClient::new(&prometheus.url(), ctx.http_client());
        let file = FileConfig {
            checks: vec![queue_deep()],
            ..FileConfig::default()
        };
        let (config, rx) = watch::channel(Arc::new(file));
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
        Self {
            target,
            prometheus,
            client,
            board,
            registry,
            shutdown,
            _config: config,
        }
    }

    /// PromQL queries answered or failed so far.
    fn queries(&self) -> f64 {
        scrape(&self.registry).sum("health_monitor_prometheus_queries_total", &[])
    }

    fn metric_check(&self) -> Option<Finding> {
        self.board
            .all()
            .into_iter()
            .find(|f| f.finding == FindingKind::MetricCheck)
    }

    /// Sets the gauge to `v` and waits until Prometheus has scraped it.
    async fn set_and_scrape(&self, v: f64) {
        set_value(&self.target, v);
        let scraped = wait_until(WAIT, || async {
            self.client
                .query("organ_queue_depth")
                .await
                .is_ok_and(|s| s.first().is_some_and(|s| s.value == v))
        })
        .await;
        assert!(
            scraped,
            "{v} never scraped; log:\n{}",
            self.prometheus.log_tail()
        );
    }

    /// Waits until the check has fired and returns its finding.
    async fn fired(&self) -> Finding {
        let fired = wait_until(WAIT, || async { self.metric_check().is_some() }).await;
        assert!(fired, "the check never fired");
        self.metric_check().unwrap()
    }
}

impl Drop for Checked {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

#[tokio::test]
async fn a_failed_scrape_of_a_control_plane_job_is_control_plane_unhealthy() {
    let checked = Checked::start().await;
    let cp = wait_until(WAIT, || async {
        checked
            .board
            .all()
            .iter()
            .any(|f| f.finding == FindingKind::ControlPlaneUnhealthy && f.object.name == "etcd")
    })
    .await;
    assert!(
        cp,
        "no control-plane finding; {:?}; log:\n{}",
        checked.board.all(),
        checked.prometheus.log_tail()
    );
}

#[tokio::test]
async fn a_series_below_the_threshold_is_no_finding() {
    let checked = Checked::start().await;
    checked.set_and_scrape(3.0).await;
    // A round is the check's query, the control-plane query, then the board: four more queries
    // include a whole round that began after the scrape.
    let before = checked.queries();
    let evaluated = wait_until(WAIT, || async { checked.queries() >= before + 4.0 }).await;
    assert!(evaluated);
    assert!(checked.metric_check().is_none());
}

#[tokio::test]
async fn a_check_fires_only_after_for_has_elapsed() {
    let checked = Checked::start().await;
    checked.set_and_scrape(25.0).await;
    let crossed_at = Instant::now();
    checked.fired().await;
    assert!(
        crossed_at.elapsed() >= Duration::from_millis(2500),
        "fired before `for` elapsed: {:?}",
        crossed_at.elapsed()
    );
}

#[tokio::test]
async fn a_fired_check_carries_its_labels_and_the_series_labels() {
    let checked = Checked::start().await;
    checked.set_and_scrape(25.0).await;
    let f = checked.fired().await;
    let labels = f.alert_labels();
    assert_eq!(labels["alertname"], "MetricCheck");
    assert_eq!(labels["check"], "queue-deep");
    assert_eq!(labels["severity"], "critical");
    assert_eq!(labels["team"], "organs");
    assert_eq!(labels["queue"], "beats");
    assert_eq!(labels["job"], "heart");
    assert_eq!(labels["service"], "heart");
    assert!(f.description.contains("25"), "{}", f.description);
}

#[tokio::test]
async fn a_fired_check_clears_when_the_series_goes_back() {
    let checked = Checked::start().await;
    checked.set_and_scrape(25.0).await;
    checked.fired().await;
    set_value(&checked.target, 1.0);
    let cleared = wait_until(WAIT, || async { checked.metric_check().is_none() }).await;
    assert!(cleared);
}

#[tokio::test]
async fn bad_promql_is_rejected_with_prometheus_parse_error() {
    let prometheus = Prometheus::start(PrometheusOptions::default()).await;
    let ctx = Context::for_tests(health_monitor::SERVICE);
    let client = PromClient::new(&prometheus.url(), ctx.http_client());
    let err = client.query("sum(").await.unwrap_err();
    assert!(
        matches!(err, QueryError::Rejected(ref m) if m.contains("parse error")),
        "{err}"
    );
}

#[tokio::test]
async fn a_running_prometheus_is_ready() {
    let prometheus = Prometheus::start(PrometheusOptions::default()).await;
    let ctx = Context::for_tests(health_monitor::SERVICE);
    let client = PromClient::new(&prometheus.url(), ctx.http_client());
    assert!(client.ready().await.is_ok());
}

#[tokio::test]
async fn an_unreachable_prometheus_is_an_error_and_not_ready() {
    let ctx = Context::for_tests(health_monitor::SERVICE);
    let dead = format!("http://127.0.0.1:{}", testbed::free_port());
    let dead = PromClient::new(&dead, ctx.http_client());
    assert!(matches!(
        dead.query("up").await,
        Err(QueryError::Unreachable(_))
    ));
    assert!(dead.ready().await.is_err());
}
