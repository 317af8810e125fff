//! The delivery worker: claims due outbox rows, enriches, renders and sends them, and records the
//! outcome (sent; retry later with exponential backoff and jitter; or `dead` after the last
//! attempt or a permanent failure). It runs beside intake and never blocks it.

use std::time::{Duration, Instant};

use alertmanager::WebhookMessage;
use futures::StreamExt as _;
use rand::Rng as _;
use serde::{Deserialize, Serialize};

use crate::AppState;
use crate::channels::{self, SendError};
use crate::config::DeliverySettings;
use crate::store::Claimed;
use crate::templates::{digest_context, message_context};
use crate::view::{EscalationView, Report};

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

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp_nanos() as i64 / 1_000_000
}

/// The delay before attempt `attempts + 1`: `initial * 2^(attempts-1)`, capped, with jitter
/// (uniform in the upper half).
pub fn backoff(settings: &DeliverySettings, attempts: i64) -> Duration {
    let exp = attempts.saturating_sub(1).clamp(0, 30) as u32;
    let base = settings
        .initial_backoff
        .saturating_mul(1u32 << exp.min(20))
        .min(settings.max_backoff);
    let ms = base.as_millis() as u64;
    if ms < 2 {
        return base;
    }
    Duration::from_millis(rand::rng().random_range(ms / 2..=ms))
}

/// Runs until the state's cancellation token fires.
pub(crate) async fn run(state: AppState) {
    let inner = &state.inner;
    let settings = &inner.settings.delivery;
    let lease_ms = settings.lease.as_millis() as i64;
    let batch = (settings.concurrency * 4) as i64;
    let mut last_depth: Option<Instant> = None;
    loop {
        if inner.cancel.is_cancelled() {
            break;
        }
        if last_depth.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
            if let Ok(d) = inner.store.depth().await {
                inner.metrics.outbox_depth.set(d);
            }
            last_depth = Some(Instant::now());
        }
        match inner
            .store
            .claim(&inner.config.instance, now_ms(), lease_ms, batch)
            .await
        {
            Ok(rows) if !rows.is_empty() => {
                futures::stream::iter(rows)
                    .for_each_concurrent(settings.concurrency, |row| deliver(&state, row))
                    .await;
                continue;
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "outbox: cannot claim rows"),
        }
        tokio::select! {
            () = inner.cancel.cancelled() => break,
            () = inner.wake.notified() => {}
            () = tokio::time::sleep(settings.poll_interval) => {}
        }
    }
}

async fn render_and_send(state: &AppState, row: &Claimed) -> Result<(), SendError> {
    let inner = &state.inner;
    let permanent = |message: String| SendError {
        permanent: true,
        message,
    };
    let payload: Payload = serde_json::from_str(&row.payload)
        .map_err(|e| permanent(format!("unreadable payload: {e}")))?;
    let kind = inner
        .channels
        .kind(&row.channel)
        .ok_or_else(|| permanent(format!("channel {:?} is no longer configured", row.channel)))?;
    let (ctx, digest) = match payload {
        Payload::Notification { message } => {
            let enrichment = state.enrich(&message).await;
            (
                message_context(&inner.links.message_view(
                    &message,
                    &row.channel,
                    enrichment,
                    None,
                )),
                false,
            )
        }
        Payload::Escalation {
            message,
            escalation,
        } => {
            let enrichment = state.enrich(&message).await;
            (
                message_context(&inner.links.message_view(
                    &message,
                    &row.channel,
                    enrichment,
                    Some(escalation),
                )),
                false,
            )
        }
        Payload::Digest { report } => (digest_context(&report), true),
    };
    let content = channels::render(&inner.settings.templates, &row.channel, kind, digest, ctx)
        .map_err(|e| permanent(e.0))?;
    inner
        .channels
        .send(&row.channel, content, inner.settings.delivery.send_timeout)
        .await
}

async fn deliver(state: &AppState, row: Claimed) {
    let inner = &state.inner;
    let settings = &inner.settings.delivery;
    let started = Instant::now();
    let result = render_and_send(state, &row).await;
    inner
        .metrics
        .delivery_duration
        .with_label_values(&[&row.channel])
        .observe(started.elapsed().as_secs_f64());
    let now = now_ms();
    let owner = &inner.config.instance;
    let recorded = match &result {
        Ok(()) => {
            inner
                .metrics
                .notifications
                .with_label_values(&[&row.channel, "sent"])
                .inc();
            tracing::info!(id = %row.id, channel = %row.channel, kind = %row.kind, attempts = row.attempts, "notification sent");
            inner.store.mark_sent(&row.id, owner, now).await
        }
        Err(e) => {
            let dead = e.permanent || row.attempts >= i64::from(settings.max_attempts);
            let result = if dead { "dead" } else { "failed" };
            inner
                .metrics
                .notifications
                .with_label_values(&[&row.channel, result])
                .inc();
            let delay = backoff(settings, row.attempts);
            if dead {
                tracing::error!(id = %row.id, channel = %row.channel, attempts = row.attempts, error = %e, "notification given up");
            } else {
                tracing::warn!(id = %row.id, channel = %row.channel, attempts = row.attempts, retry_in_ms = delay.as_millis() as u64, error = %e, "notification failed; will retry");
            }
            inner
                .store
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
