//! health-monitor's own metrics, registered on the process registry.

use prometheus::core::Collector;
use prometheus::{
    Gauge, GaugeVec, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
};

use crate::finding::Finding;

/// Every metric health-monitor exports besides the shared HTTP and process ones.
#[derive(Debug, Clone)]
pub struct Metrics {
    /// `health_monitor_findings{finding,severity,namespace}`.
    pub findings: GaugeVec,
    /// `health_monitor_cluster_health_score`.
    pub health_score: Gauge,
    /// `health_monitor_watch_events_total{resource}`.
    pub watch_events: IntCounterVec,
    /// `health_monitor_watch_errors_total{resource}`.
    pub watch_errors: IntCounterVec,
    /// `health_monitor_sweep_duration_seconds`.
    pub sweep_duration: Histogram,
    /// `health_monitor_last_sweep_timestamp_seconds`.
    pub last_sweep: Gauge,
    /// `health_monitor_alerts_published_total{sink,status}`.
    pub published: IntCounterVec,
    /// `health_monitor_publish_failures_total{sink,reason}`.
    pub publish_failures: IntCounterVec,
    /// `health_monitor_publish_dropped_total`.
    pub publish_dropped: IntCounter,
    /// `health_monitor_publish_queue_depth`.
    pub queue_depth: IntGauge,
    /// `health_monitor_probes_total{target,result}`.
    pub probes: IntCounterVec,
    /// `health_monitor_prometheus_queries_total{result}`.
    pub prom_queries: IntCounterVec,
    /// `health_monitor_config_reload_failures_total`.
    pub config_reload_failures: IntCounter,
}

impl Metrics {
    /// Creates the metrics and registers them on `registry`.
    pub fn new(registry: &Registry) -> prometheus::Result<Self> {
        let r = Registering(registry);
        let m = Self {
            findings: r.add(GaugeVec::new(
                Opts::new(
                    "health_monitor_findings",
                    "Current findings by kind, severity and namespace.",
                ),
                &["finding", "severity", "namespace"],
            )?)?,
            health_score: r.add(Gauge::new(
                "health_monitor_cluster_health_score",
                "Share of watched things without a critical or warning finding (0..1).",
            )?)?,
            watch_events: r.counters(
                "health_monitor_watch_events_total",
                "Kubernetes watch events received, by resource.",
                &["resource"],
            )?,
            watch_errors: r.counters(
                "health_monitor_watch_errors_total",
                "Kubernetes watch errors (re-lists included), by resource.",
                &["resource"],
            )?,
            sweep_duration: r.add(Histogram::with_opts(
                HistogramOpts::new(
                    "health_monitor_sweep_duration_seconds",
                    "Duration of a full classification sweep.",
                )
                .buckets(vec![
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                ]),
            )?)?,
            last_sweep: r.add(Gauge::new(
                "health_monitor_last_sweep_timestamp_seconds",
                "Unix time of the last completed full sweep.",
            )?)?,
            published: r.counters(
                "health_monitor_alerts_published_total",
                "Alerts delivered, by sink and status.",
                &["sink", "status"],
            )?,
            publish_failures: r.counters(
                "health_monitor_publish_failures_total",
                "Failed deliveries (retried), by sink and reason.",
                &["sink", "reason"],
            )?,
            publish_dropped: r.add(IntCounter::new(
                "health_monitor_publish_dropped_total",
                "Alerts dropped because the retry queue was full.",
            )?)?,
            queue_depth: r.add(IntGauge::new(
                "health_monitor_publish_queue_depth",
                "Alerts waiting for (re)delivery.",
            )?)?,
            probes: r.counters(
                "health_monitor_probes_total",
                "Local probes, by target and result.",
                &["target", "result"],
            )?,
            prom_queries: r.counters(
                "health_monitor_prometheus_queries_total",
                "PromQL queries, by result.",
                &["result"],
            )?,
            config_reload_failures: r.add(IntCounter::new(
                "health_monitor_config_reload_failures_total",
                "Configuration file changes rejected as invalid.",
            )?)?,
        };
        m.health_score.set(1.0);
        Ok(m)
    }

    /// Sets the findings gauge from the current findings.
    pub fn set_findings(&self, findings: &[Finding]) {
        self.findings.reset();
        for f in findings {
            self.findings
                .with_label_values(&[
                    f.finding.as_str(),
                    f.severity.as_str(),
                    f.object.namespace.as_deref().unwrap_or(""),
                ])
                .inc();
        }
    }
}

/// Registers each metric as it is created.
struct Registering<'a>(&'a Registry);

impl Registering<'_> {
    /// Registers `metric` and hands it back.
    fn add<M: Collector + Clone + 'static>(&self, metric: M) -> prometheus::Result<M> {
        self.0.register(Box::new(metric.clone()))?;
        Ok(metric)
    }

    /// A counter family `name` with `labels`, registered.
    fn counters(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
    ) -> prometheus::Result<IntCounterVec> {
        self.add(IntCounterVec::new(Opts::new(name, help), labels)?)
    }
}
