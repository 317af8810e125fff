//! Escalation: firing, unacknowledged alerts at or above `escalation.min_severity` go to the next
//! tier's channels once the tier's delay (since the alert was first received) has passed.
//!
//! "Acknowledged" = an ack recorded here, or a silence in Alertmanager muting the alert (looked up
//! on each check when `ALERTMANAGER_URL` is set; an alert Alertmanager no longer has counts as
//! resolved). With two replicas both may check: the outbox key
//! `e|{fingerprint}|{start}|{tier}|{channel}` makes one row, so one message.

use std::sync::Arc;
use std::time::Duration;

use alertmanager::{Alert, AlertmanagerClient, LabelSet, Matcher, WebhookMessage};
use service_kit::CancellationToken;
use tokio::sync::Notify;

use crate::channels::Channels;
use crate::clock::now_ms;
use crate::delivery::Payload;
use crate::metrics::Metrics;
use crate::settings::EscalationSettings;
use crate::store::{AlertRecord, Enqueued, NewRow, Store};
use crate::template_data::EscalationView;

/// What the escalation task uses.
pub(crate) struct EscalationWorker {
    pub(crate) settings: EscalationSettings,
    /// Alert records and the outbox.
    pub(crate) store: Store,
    /// To skip tier channels that are not configured.
    pub(crate) channels: Arc<Channels>,
    /// Silences muting an alert count as an acknowledgement.
    pub(crate) alertmanager: Option<AlertmanagerClient>,
    pub(crate) metrics: Metrics,
    /// Wakes the delivery worker when rows are written.
    pub(crate) wake: Arc<Notify>,
}

enum AlertmanagerState {
    Silenced,
    Gone,
    Active,
}

async fn alertmanager_state(
    alertmanager: Option<&AlertmanagerClient>,
    labels: &LabelSet,
    fp: &str,
) -> Option<AlertmanagerState> {
    let am = alertmanager?;
    let filter: Vec<Matcher> = labels.iter().map(|(k, v)| Matcher::equal(k, v)).collect();
    match am.alerts(&filter).await {
        Ok(alerts) => Some(
            match alerts.iter().find(|a| a.fingerprint.to_string() == fp) {
                None => AlertmanagerState::Gone,
                Some(a) if !a.status.silenced_by.is_empty() => AlertmanagerState::Silenced,
                Some(_) => AlertmanagerState::Active,
            },
        ),
        Err(e) => {
            // Cannot tell: escalate rather than stay quiet.
            tracing::warn!(error = %e, "escalation: Alertmanager unavailable; escalating without checking silences");
            None
        }
    }
}

fn message_of(rec: &AlertRecord, labels: LabelSet) -> WebhookMessage {
    let annotations: LabelSet = serde_json::from_str(&rec.annotations).unwrap_or_default();
    let starts =
        time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(rec.starts_at) * 1_000_000)
            .unwrap_or_else(|_| time::OffsetDateTime::now_utc());
    let mut msg = WebhookMessage::builder("alert-service")
        .alert(Alert::new(labels, annotations, starts, None, ""))
        .build();
    msg.group_key = rec.group_key.clone();
    msg
}

impl EscalationWorker {
    /// Runs until `cancel` fires, checking every `escalation.check_interval`.
    pub(crate) async fn run(self, cancel: CancellationToken) {
        loop {
            if let Err(e) = self.check().await {
                tracing::warn!(error = %e, "escalation check failed");
            }
            tokio::select! {
                () = cancel.cancelled() => break,
                () = tokio::time::sleep(self.settings.check_interval) => {}
            }
        }
    }

    /// One pass: queues the escalations that are due; returns how many rows were queued.
    pub(crate) async fn check(&self) -> Result<usize, crate::store::StoreError> {
        let settings = &self.settings;
        let Some(first) = settings.tiers.first() else {
            return Ok(0);
        };
        let now = now_ms();
        let severities = settings.min_severity.at_or_above();
        let store = &self.store;
        let candidates = store
            .escalation_candidates(
                &severities,
                now - first.after.as_millis() as i64,
                settings.tiers.len() as i64,
            )
            .await?;
        let mut queued = 0;
        for rec in candidates {
            let age = Duration::from_millis((now - rec.first_seen).max(0) as u64);
            let Some(tier_idx) = settings.tiers.iter().rposition(|t| age >= t.after) else {
                continue;
            };
            let level = tier_idx as i64 + 1;
            if rec.escalation_level >= level {
                continue;
            }
            let labels: LabelSet = serde_json::from_str(&rec.labels).unwrap_or_default();
            match alertmanager_state(self.alertmanager.as_ref(), &labels, &rec.fingerprint).await {
                Some(AlertmanagerState::Silenced) => {
                    store
                        .record_ack(
                            &rec.fingerprint,
                            now,
                            "alertmanager",
                            "silenced in Alertmanager",
                            None,
                        )
                        .await?;
                    continue;
                }
                Some(AlertmanagerState::Gone) => {
                    store
                        .mark_resolved(&rec.fingerprint, rec.starts_at, now)
                        .await?;
                    continue;
                }
                Some(AlertmanagerState::Active) | None => {}
            }
            queued += self.queue_tier(&rec, labels, tier_idx, now).await?;
        }
        if queued > 0 {
            self.wake.notify_one();
        }
        Ok(queued)
    }

    /// Queues tier `tier_idx` of `rec` on the tier's channels (or the alert's own) and records
    /// the level; returns how many rows were new.
    async fn queue_tier(
        &self,
        rec: &AlertRecord,
        labels: LabelSet,
        tier_idx: usize,
        now: i64,
    ) -> Result<usize, crate::store::StoreError> {
        let store = &self.store;
        let level = tier_idx as i64 + 1;
        let tier = &self.settings.tiers[tier_idx];
        let channels: Vec<String> = if tier.channels.is_empty() {
            serde_json::from_str(&rec.channels).unwrap_or_default()
        } else {
            tier.channels.clone()
        };
        let escalation = EscalationView {
            tier: tier_idx + 1,
            after: crate::duration::display(tier.after),
        };
        let payload = serde_json::to_string(&Payload::Escalation {
            message: message_of(rec, labels),
            escalation,
        })
        .unwrap_or_default();
        let rows: Vec<NewRow> = channels
            .iter()
            .filter(|c| self.channels.kind(c).is_some())
            .map(|c| NewRow {
                idem_key: format!("e|{}|{}|{}|{c}", rec.fingerprint, rec.starts_at, level),
                kind: "escalation",
                channel: c.clone(),
                group_key: rec.group_key.clone(),
                status: "firing".to_owned(),
                payload: payload.clone(),
                renotify_before: i64::MIN,
            })
            .collect();
        let results = store.enqueue(now, &rows).await?;
        store
            .set_escalation_level(&rec.fingerprint, rec.starts_at, level)
            .await?;
        let new = results
            .iter()
            .filter(|r| !matches!(r, Enqueued::Duplicate))
            .count();
        if new > 0 {
            self.metrics
                .escalations
                .with_label_values(&[&level.to_string()])
                .inc();
            tracing::info!(fingerprint = %rec.fingerprint, tier = level, channels = ?channels, "alert escalated");
        }
        Ok(new)
    }
}
