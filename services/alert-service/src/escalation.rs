//! Escalation: firing, unacknowledged alerts at or above `escalation.min_severity` go to the next
//! tier's channels once the tier's delay (since the alert was first received) has passed.
//!
//! "Acknowledged" = an ack recorded here, or a silence in Alertmanager muting the alert (looked up
//! on each check when `ALERTMANAGER_URL` is set; an alert Alertmanager no longer has counts as
//! resolved). With two replicas both may check: the outbox key
//! `e|{fingerprint}|{start}|{tier}|{channel}` makes one row, so one message.

use std::time::Duration;

use alertmanager::{Alert, LabelSet, Matcher, WebhookMessage};

use crate::AppState;
use crate::delivery::{Payload, now_ms};
use crate::store::{AlertRecord, Enqueued, NewRow};
use crate::view::EscalationView;

/// Runs until cancelled, checking every `escalation.check_interval`.
pub(crate) async fn run(state: AppState) {
    let Some(settings) = state.inner.settings.escalation.clone() else {
        return;
    };
    loop {
        if let Err(e) = check(&state).await {
            tracing::warn!(error = %e, "escalation check failed");
        }
        tokio::select! {
            () = state.inner.cancel.cancelled() => break,
            () = tokio::time::sleep(settings.check_interval) => {}
        }
    }
}

enum AmView {
    Silenced,
    Gone,
    Active,
}

async fn alertmanager_view(state: &AppState, labels: &LabelSet, fp: &str) -> Option<AmView> {
    let am = state.inner.alertmanager.as_ref()?;
    let filter: Vec<Matcher> = labels.iter().map(|(k, v)| Matcher::equal(k, v)).collect();
    match am.alerts(&filter).await {
        Ok(alerts) => Some(
            match alerts.iter().find(|a| a.fingerprint.to_string() == fp) {
                None => AmView::Gone,
                Some(a) if !a.status.silenced_by.is_empty() => AmView::Silenced,
                Some(_) => AmView::Active,
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

/// One pass: queues the escalations that are due; returns how many rows were queued.
pub async fn check(state: &AppState) -> Result<usize, crate::store::StoreError> {
    let Some(settings) = state.inner.settings.escalation.as_ref() else {
        return Ok(0);
    };
    let Some(first) = settings.tiers.first() else {
        return Ok(0);
    };
    let now = now_ms();
    let severities = settings.min_severity.at_or_above();
    let store = &state.inner.store;
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
        match alertmanager_view(state, &labels, &rec.fingerprint).await {
            Some(AmView::Silenced) => {
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
            Some(AmView::Gone) => {
                store
                    .mark_resolved(&rec.fingerprint, rec.starts_at, now)
                    .await?;
                continue;
            }
            Some(AmView::Active) | None => {}
        }
        let tier = &settings.tiers[tier_idx];
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
            message: message_of(&rec, labels),
            escalation,
        })
        .unwrap_or_default();
        let rows: Vec<NewRow> = channels
            .iter()
            .filter(|c| state.inner.channels.kind(c).is_some())
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
            state
                .inner
                .metrics
                .escalations
                .with_label_values(&[&level.to_string()])
                .inc();
            tracing::info!(fingerprint = %rec.fingerprint, tier = level, channels = ?channels, "alert escalated");
        }
        queued += new;
    }
    if queued > 0 {
        state.inner.wake.notify_one();
    }
    Ok(queued)
}
