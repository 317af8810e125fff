//! Real servers for integration tests, started on 127.0.0.1 and torn down on drop.
//!
//! - [`Prometheus`] (Debian `prometheus`) with scrape targets, rule files and an Alertmanager.
//! - [`Alertmanager`] (Debian `prometheus-alertmanager`), single node, with
//!   [`AlertmanagerConfig`] for webhook receivers with 1 s grouping.
//! - [`Postgres`] (Debian PostgreSQL), a throwaway cluster that can be stopped and started again
//!   on the same data for outage tests.
//! - [`SmtpSink`] (PyPI `aiosmtpd`), a real SMTP server writing a maildir; [`SmtpSink::messages`]
//!   parses what arrived.
//! - [`promtool_check_metrics`]: `promtool check metrics` on a `/metrics` body.
//! - [`HttpSink`], a local axum server recording every request and answering a chosen status:
//!   the far end of webhook, Slack and Teams deliveries.
//! - [`TestRouter`] calls a service's router without a socket (a [`Reply`] with status, headers,
//!   text and JSON), [`Served`] serves one on 127.0.0.1:0, and [`Metrics`] reads a `/metrics`
//!   body sample by sample: the one test-support surface of the organs' and libs' tests.
//! - [`http_client`] (and [`http_client_builder`]): the bounded plain client tests call servers
//!   with, built after installing the process's crypto provider (reqwest needs one).
//! - [`fixtures`]: alerts as the organs raise them (a label-set builder and ready-made
//!   Alertmanager webhook payloads), the one home of the label sets tests build.
//! - [`LOKI_DEFAULT_INDEX_ATTRIBUTES`]: what Loki's OTLP ingestion indexes, for tests that check
//!   log links and Explore queries against the labels Loki really has.
//!
//! Every server runs in its own temp dir on a free port, is waited for (bounded; a failure panics
//! with the server's log tail), and is killed with its process group when dropped. Servers are
//! also started under `setpriv --pdeathsig KILL`, so they die with the thread that started them
//! even if the test process is killed; keep a server on the test's own task, not in a `static`.
//!
//! Start functions are `async` and need a Tokio runtime (`#[tokio::test]`). A missing binary
//! panics with "X not found: run `bash ci/install-test-deps.sh` (cargo xtask test does)".

mod alertmanager;
pub mod fixtures;
mod http_sink;
#[cfg(feature = "kube-mock")]
pub mod kube_mock;
pub mod metrics;
mod postgres;
mod process;
mod prometheus;
mod promtool;
pub mod router;
mod smtp;

/// Resource attributes Loki 3 turns into index labels by default (`distributor.otlp_config`
/// `default_resource_attributes_as_index_labels`; grafana.com/docs/loki/latest/get-started/labels/
/// #default-labels-for-opentelemetry), dots becoming underscores in the label name; every other
/// resource attribute becomes structured metadata.
pub const LOKI_DEFAULT_INDEX_ATTRIBUTES: &[&str] = &[
    "cloud.availability_zone",
    "cloud.region",
    "container.name",
    "deployment.environment",
    "deployment.environment.name",
    "k8s.cluster.name",
    "k8s.container.name",
    "k8s.cronjob.name",
    "k8s.daemonset.name",
    "k8s.deployment.name",
    "k8s.job.name",
    "k8s.namespace.name",
    "k8s.pod.name",
    "k8s.replicaset.name",
    "k8s.statefulset.name",
    "service.instance.id",
    "service.name",
    "service.namespace",
];

use std::future::Future;
use std::net::{Ipv4Addr, TcpListener};
use std::time::{Duration, Instant};

pub use crate::alertmanager::{
    Alertmanager, AlertmanagerConfig, WebhookReceiver, alertmanager_client,
};
pub use crate::http_sink::{HttpSink, RecordedRequest};
pub use crate::metrics::{MetricSample, Metrics};
pub use crate::postgres::Postgres;
pub use crate::process::{http_client, http_client_builder};
pub use crate::prometheus::{Prometheus, PrometheusOptions, QueryError, RuleFile, Sample};
pub use crate::promtool::promtool_check_metrics;
pub use crate::router::{Reply, Served, TestRouter};
pub use crate::smtp::{Email, SmtpSink};

/// A TCP port on 127.0.0.1 that was free a moment ago (the OS picks it). Servers that lose the
/// race for it are restarted on another port.
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

/// Polls `condition` every 50 ms until it returns `true` (then `true`) or `timeout` passes (then
/// `false`). The condition is always tried at least once.
///
/// ```no_run
/// # async fn f(sink: &testbed::HttpSink) {
/// use std::time::Duration;
/// let arrived = testbed::wait_until(Duration::from_secs(10), || async {
///     !sink.requests().is_empty()
/// })
/// .await;
/// assert!(arrived, "no request within 10 s");
/// # }
/// ```
pub async fn wait_until<F, Fut>(timeout: Duration, mut condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if condition().await {
            return true;
        }
        if start.elapsed() >= timeout {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_port_can_be_bound() {
        let port = free_port();
        assert_ne!(port, 0);
        TcpListener::bind((Ipv4Addr::LOCALHOST, port)).expect("the port is free");
    }

    #[tokio::test]
    async fn wait_until_reports_success_and_timeout() {
        let mut calls = 0;
        assert!(
            wait_until(Duration::from_secs(5), || {
                calls += 1;
                let done = calls >= 3;
                async move { done }
            })
            .await
        );
        assert_eq!(calls, 3);
        let start = Instant::now();
        assert!(!wait_until(Duration::from_millis(200), || async { false }).await);
        assert!(start.elapsed() >= Duration::from_millis(200));
    }

    #[test]
    fn workspace_root_holds_the_install_script() {
        assert!(
            process::workspace_root()
                .join("ci/install-test-deps.sh")
                .is_file()
        );
    }
}
