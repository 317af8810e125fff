//! The delivery worker: claims due outbox rows, enriches, renders and sends them, and records the
//! outcome (sent; retry later with exponential backoff and jitter; or `dead` after the last
//! attempt or a permanent failure). It runs beside intake and never blocks it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use alertmanager::WebhookMessage;
use futures::StreamExt as _;
use serde::{Deserialize, Serialize};
use service_kit::CancellationToken;
use service_kit::backoff::{ExponentialBackoff, Jitter};
use tokio::sync::Notify;

use crate::channels::{self, Channels, SendError};
use crate::clock::now_ms;
use crate::enrich::Enricher;
use crate::metrics::Metrics;
use crate::settings::DeliverySettings;
use crate::store::{Claimed, Store};
use crate::template_data::{EscalationView, Links, Report};
use crate::templates::{Templates, digest_context, message_context};

/// What an outbox row carries.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Payload {
    /// An Alertmanager group (the alerts routed to this channel).
    Notification {
        /// The message.
        message: WebhookMessage,
    },
    /// An unacknowledged alert, escalated.
    Escalation {
        /// A message holding the alert.
        message: WebhookMessage,
        /// The tier.
        escalation: EscalationView,
    },
    /// A digest.
    Digest {
        /// The report.
        report: Report,
    },
}

/// The delay before attempt `attempts + 1`: the workspace's one backoff
/// ([`ExponentialBackoff`]), `initial * 2^(attempts-1)`, capped, jittered in the upper half.
pub fn backoff(settings: &DeliverySettings, attempts: i64) -> Duration {
    let retry = u32::try_from(attempts.saturating_sub(1).max(0)).unwrap_or(u32::MAX);
    ExponentialBackoff::new(settings.initial_backoff, settings.max_backoff)
        .with_jitter(Jitter::UpperHalf)
        .delay(retry)
}

/// What the delivery worker uses.
pub(crate) struct DeliveryWorker {
    /// The outbox.
    pub(crate) store: Store,
    /// Where rows are sent.
    pub(crate) channels: Arc<Channels>,
    /// Every channel's compiled templates.
    pub(crate) templates: Arc<Templates>,
    /// Attempts, backoff, lease, concurrency, send timeout.
    pub(crate) settings: DeliverySettings,
    /// Kubernetes lookups for the alerts of a message (off outside Kubernetes).
    pub(crate) enricher: Enricher,
    /// Acknowledge and Grafana links in messages.
    pub(crate) links: Links,
    pub(crate) metrics: Metrics,
    /// This replica's name: the owner of its claims on outbox rows.
    pub(crate) instance: String,
    /// Intake, escalation and digest wake the worker when they write rows.
    pub(crate) wake: Arc<Notify>,
}

impl DeliveryWorker {
    /// Runs until `cancel` fires: claims due rows (leased to this replica), sends them with
    /// `delivery.concurrency` at once, and sleeps until woken or `delivery.poll_interval`.
    pub(crate) async fn run(self, cancel: CancellationToken) {
        let settings = &self.settings;
        let lease_ms = settings.lease.as_millis() as i64;
        let batch = (settings.concurrency * 4) as i64;
        let mut last_depth: Option<Instant> = None;
        loop {
            if cancel.is_cancelled() {
                break;
            }
            if last_depth.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                if let Ok(d) = self.store.depth().await {
                    self.metrics.outbox_depth.set(d);
                }
                last_depth = Some(Instant::now());
            }
            match self
                .store
                .claim(&self.instance, now_ms(), lease_ms, batch)
                .await
            {
                Ok(rows) if !rows.is_empty() => {
                    futures::stream::iter(rows)
                        .for_each_concurrent(settings.concurrency, |row| self.deliver(row))
                        .await;
                    continue;
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "outbox: cannot claim rows"),
            }
            tokio::select! {
                () = cancel.cancelled() => break,
                () = self.wake.notified() => {}
                () = tokio::time::sleep(settings.poll_interval) => {}
            }
        }
    }

    async fn render_and_send(&self, row: &Claimed) -> Result<(), SendError> {
        let permanent = |message: String| SendError {
            permanent: true,
            message,
        };
        let payload: Payload = serde_json::from_str(&row.payload)
            .map_err(|e| permanent(format!("unreadable payload: {e}")))?;
        let kind = self.channels.kind(&row.channel).ok_or_else(|| {
            permanent(format!("channel {:?} is no longer configured", row.channel))
        })?;
        let (ctx, digest) = match payload {
            Payload::Notification { message } => {
                let enrichment = self.enricher.enrich_message(&message).await;
                let view = self
                    .links
                    .message_view(&message, &row.channel, enrichment, None);
                (message_context(&view), false)
            }
            Payload::Escalation {
                message,
                escalation,
            } => {
                let enrichment = self.enricher.enrich_message(&message).await;
                let view =
                    self.links
                        .message_view(&message, &row.channel, enrichment, Some(escalation));
                (message_context(&view), false)
            }
            Payload::Digest { report } => (digest_context(&report), true),
        };
        let content = channels::render(&self.templates, &row.channel, kind, digest, ctx)
            .map_err(|e| permanent(e.0))?;
        self.channels
            .send(&row.channel, content, self.settings.send_timeout)
            .await
    }

    async fn deliver(&self, row: Claimed) {
        let settings = &self.settings;
        let started = Instant::now();
        let result = self.render_and_send(&row).await;
        self.metrics
            .delivery_duration
            .with_label_values(&[&row.channel])
            .observe(started.elapsed().as_secs_f64());
        let now = now_ms();
        let owner = &self.instance;
        let recorded = match &result {
            Ok(()) => {
                self.metrics
                    .notifications
                    .with_label_values(&[&row.channel, "sent"])
                    .inc();
                tracing::info!(id = %row.id, channel = %row.channel, kind = %row.kind, attempts = row.attempts, "notification sent");
                self.store.mark_sent(&row.id, owner, now).await
            }
            Err(e) => {
                let dead = e.permanent || row.attempts >= i64::from(settings.max_attempts);
                let result = if dead { "dead" } else { "failed" };
                self.metrics
                    .notifications
                    .with_label_values(&[&row.channel, result])
                    .inc();
                let delay = backoff(settings, row.attempts);
                if dead {
                    tracing::error!(id = %row.id, channel = %row.channel, attempts = row.attempts, error = %e, "notification given up");
                } else {
                    tracing::warn!(id = %row.id, channel = %row.channel, attempts = row.attempts, retry_in_ms = delay.as_millis() as u64, error = %e, "notification failed; will retry");
                }
                self.store
                    .mark_failed(
                        &row.id,
                        owner,
                        now,
                        now + delay.as_millis() as i64,
                        dead,
                        &e.message,
                    )
                    .await
            }
        };
        match recorded {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(id = %row.id, "outbox lease lost before the result was recorded")
            }
            Err(e) => {
                tracing::error!(id = %row.id, error = %e, "cannot record the delivery result; the row will be retried after its lease")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_caps_and_jitters() {
        let s = DeliverySettings {
            max_attempts: 5,
            initial_backoff: Duration::from_secs(2),
            max_backoff: Duration::from_secs(60),
            lease: Duration::from_secs(60),
            poll_interval: Duration::from_secs(1),
            concurrency: 1,
            dedup_window: Duration::from_secs(1),
            send_timeout: Duration::from_secs(1),
        };
        for _ in 0..50 {
            let d1 = backoff(&s, 1);
            assert!(
                d1 >= Duration::from_secs(1) && d1 <= Duration::from_secs(2),
                "{d1:?}"
            );
            let d3 = backoff(&s, 3);
            assert!(
                d3 >= Duration::from_secs(4) && d3 <= Duration::from_secs(8),
                "{d3:?}"
            );
            let d20 = backoff(&s, 20);
            assert!(
                d20 >= Duration::from_secs(30) && d20 <= Duration::from_secs(60),
                "{d20:?}"
            );
        }
    }
}
