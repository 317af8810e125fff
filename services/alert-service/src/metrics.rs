//! alert-service's own metrics (Prometheus naming; registered on the process registry).

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry};

/// The service's metrics.
#[derive(Debug, Clone)]
pub struct Metrics {
    /// `alert_service_notifications_total{channel,result}`: `result` = `sent`, `failed` (will
    /// retry), `dead` (gave up), `duplicate` (dedup window).
    pub notifications: IntCounterVec,
    /// `alert_service_delivery_duration_seconds{channel}`: render + send of one attempt.
    pub delivery_duration: HistogramVec,
    /// `alert_service_outbox_depth`: rows waiting to be sent.
    pub outbox_depth: IntGauge,
    /// `alert_service_webhook_messages_total{result}`: `accepted`, `rejected`, `unauthorized`,
    /// `unavailable`.
    pub webhook_messages: IntCounterVec,
    /// `alert_service_webhook_alerts_total`: alerts in accepted webhook messages.
    pub webhook_alerts: prometheus::IntCounter,
    /// `alert_service_escalations_total{tier}`.
    pub escalations: IntCounterVec,
    /// `alert_service_acks_total{result}`.
    pub acks: IntCounterVec,
}

impl Metrics {
    /// Creates and registers the metrics.
    pub fn new(registry: &Registry) -> prometheus::Result<Self> {
        let m = Self {
            notifications: IntCounterVec::new(
                Opts::new(
                    "alert_service_notifications_total",
                    "Notification delivery attempts by channel and result.",
                ),
                &["channel", "result"],
            )?,
            delivery_duration: HistogramVec::new(
                HistogramOpts::new(
                    "alert_service_delivery_duration_seconds",
                    "Time to render and send one notification attempt.",
                )
                .buckets(vec![
                    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                ]),
                &["channel"],
            )?,
            outbox_depth: IntGauge::new(
                "alert_service_outbox_depth",
                "Notifications waiting in the outbox.",
            )?,
            webhook_messages: IntCounterVec::new(
                Opts::new(
                    "alert_service_webhook_messages_total",
                    "Alertmanager webhook messages received, by result.",
                ),
                &["result"],
            )?,
            webhook_alerts: prometheus::IntCounter::new(
                "alert_service_webhook_alerts_total",
                "Alerts in accepted webhook messages.",
            )?,
            escalations: IntCounterVec::new(
                Opts::new(
                    "alert_service_escalations_total",
                    "Escalations queued, by tier.",
                ),
                &["tier"],
            )?,
            acks: IntCounterVec::new(
                Opts::new("alert_service_acks_total", "Acknowledgements, by result."),
                &["result"],
            )?,
        };
        registry.register(Box::new(m.notifications.clone()))?;
        registry.register(Box::new(m.delivery_duration.clone()))?;
        registry.register(Box::new(m.outbox_depth.clone()))?;
        registry.register(Box::new(m.webhook_messages.clone()))?;
        registry.register(Box::new(m.webhook_alerts.clone()))?;
        registry.register(Box::new(m.escalations.clone()))?;
        registry.register(Box::new(m.acks.clone()))?;
        Ok(m)
    }
}
