//! health-monitor's own metrics, registered on the process registry.

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
        let m = Self {
            findings: GaugeVec::new(
                Opts::new(
                    "health_monitor_findings",
                    "Current findings by kind, severity and namespace.",
                ),
                &["finding", "severity", "namespace"],
            )?,
            health_score: Gauge::new(
                "health_monitor_cluster_health_score",
                "Share of watched things without a critical or warning finding (0..1).",
            )?,
            watch_events: IntCounterVec::new(
                Opts::new(
                    "health_monitor_watch_events_total",
                    "Kubernetes watch events received, by resource.",
                ),
                &["resource"],
            )?,
            watch_errors: IntCounterVec::new(
                Opts::new(
                    "health_monitor_watch_errors_total",
                    "Kubernetes watch errors (re-lists included), by resource.",
                ),
                &["resource"],
            )?,
            sweep_duration: Histogram::with_opts(
                HistogramOpts::new(
                    "health_monitor_sweep_duration_seconds",
                    "Duration of a full classification sweep.",
                )
                .buckets(vec![
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                ]),
            )?,
            last_sweep: Gauge::new(
                "health_monitor_last_sweep_timestamp_seconds",
                "Unix time of the last completed full sweep.",
            )?,
            published: IntCounterVec::new(
                Opts::new(
                    "health_monitor_alerts_published_total",
                    "Alerts delivered, by sink and status.",
                ),
                &["sink", "status"],
            )?,
            publish_failures: IntCounterVec::new(
                Opts::new(
                    "health_monitor_publish_failures_total",
                    "Failed deliveries (retried), by sink and reason.",
                ),
                &["sink", "reason"],
            )?,
            publish_dropped: IntCounter::new(
                "health_monitor_publish_dropped_total",
                "Alerts dropped because the retry queue was full.",
            )?,
            queue_depth: IntGauge::new(
                "health_monitor_publish_queue_depth",
                "Alerts waiting for (re)delivery.",
            )?,
            probes: IntCounterVec::new(
                Opts::new(
                    "health_monitor_probes_total",
                    "Local probes, by target and result.",
                ),
                &["target", "result"],
            )?,
            prom_queries: IntCounterVec::new(
                Opts::new(
                    "health_monitor_prometheus_queries_total",
                    "PromQL queries, by result.",
                ),
                &["result"],
            )?,
            config_reload_failures: IntCounter::new(
                "health_monitor_config_reload_failures_total",
                "Configuration file changes rejected as invalid.",
            )?,
        };
        registry.register(Box::new(m.findings.clone()))?;
        registry.register(Box::new(m.health_score.clone()))?;
        registry.register(Box::new(m.watch_events.clone()))?;
        registry.register(Box::new(m.watch_errors.clone()))?;
        registry.register(Box::new(m.sweep_duration.clone()))?;
        registry.register(Box::new(m.last_sweep.clone()))?;
        registry.register(Box::new(m.published.clone()))?;
        registry.register(Box::new(m.publish_failures.clone()))?;
        registry.register(Box::new(m.publish_dropped.clone()))?;
        registry.register(Box::new(m.queue_depth.clone()))?;
        registry.register(Box::new(m.probes.clone()))?;
        registry.register(Box::new(m.prom_queries.clone()))?;
        registry.register(Box::new(m.config_reload_failures.clone()))?;
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
