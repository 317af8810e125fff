//! HTTP: `POST /webhook/alertmanager` (intake) and `GET /api/v1/actions` (recent decisions).

use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::json;
use service_kit::ApiError;
use service_kit::extract::Query;
use tokio::sync::mpsc::error::TrySendError;

use std::collections::BTreeSet;

use time::OffsetDateTime;

use crate::AppState;
use crate::core::{AlertFacts, Guard};
use crate::engine::Metrics;
use crate::policy::Policy;

/// `POST /webhook/alertmanager`: validates an Alertmanager webhook v4 payload and queues its
/// firing alerts; 202 at once, acting happens in the background.
pub async fn webhook(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    if let Err(e) =
        service_kit::auth::webhook_guard(&headers, state.inner.token.as_ref(), "AUTO_HEALER_TOKEN")
    {
        return e.into_response();
    }
    let message = match body_within_limit(body, state.inner.max_body).and_then(|b| message_of(&b)) {
        Ok(m) => m,
        Err(refused) => return refused.into_response(),
    };
    if !state.inner.engine.leader.is_leader() {
        return ApiError::unavailable(
            "this auto-healer instance is not the leader; retry",
            Some(5),
        )
        .into_response();
    }
    let engine = &state.inner.engine;
    let intake = Intake::from_message(&message, &engine.policy(), OffsetDateTime::now_utc());
    intake.count_ignored(&engine.metrics);
    if let Err(refused) = enqueue(&state, &intake.firing) {
        return refused.into_response();
    }
    let resolved = message.alerts.iter().filter(|a| !a.is_firing()).count();
    (
        StatusCode::ACCEPTED,
        axum::Json(json!({
            "accepted": intake.firing.len(),
            "ignored_resolved": resolved,
            "ignored_duplicate": intake.duplicates,
            "ignored_not_actionable": intake.not_actionable,
            "starts_at_clamped": intake.clamped,
            "group_key": message.group_key,
        })),
    )
        .into_response()
}

/// The body, or 413 when it is larger than `max_body` (400 when it cannot be read).
fn body_within_limit(
    body: Result<Bytes, BytesRejection>,
    max_body: usize,
) -> Result<Bytes, ApiError> {
    body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("the webhook body is larger than {max_body} bytes"),
            )
        } else {
            ApiError::bad_request(rejection.body_text())
        }
    })
}

/// The webhook message, or 400 `invalid_webhook` naming the field that is wrong.
fn message_of(body: &[u8]) -> Result<alertmanager::WebhookMessage, ApiError> {
    alertmanager::WebhookMessage::from_slice(body).map_err(|e| {
        let err = ApiError::new(StatusCode::BAD_REQUEST, "invalid_webhook", e.to_string());
        if e.path().is_empty() {
            err
        } else {
            err.with_field(e.path())
        }
    })
}

/// A message's firing alerts sorted at intake: the ones to queue, and how many were left out.
struct Intake {
    /// To be queued, `startsAt` clamped.
    firing: Vec<AlertFacts>,
    /// The same alert again in the message (handled once).
    duplicates: usize,
    /// No rule would act on it: accepted, skipped, and it takes no queue room.
    not_actionable: usize,
    /// Queued with `startsAt` clamped (see [`clamp_starts_at`]).
    clamped: usize,
}

impl Intake {
    /// Sorts `message`'s firing alerts: duplicates and alerts no rule of `policy` acts on are
    /// left out, the others queued with `startsAt` clamped against `now`.
    fn from_message(
        message: &alertmanager::WebhookMessage,
        policy: &Policy,
        now: OffsetDateTime,
    ) -> Self {
        let mut intake = Intake {
            firing: Vec::new(),
            duplicates: 0,
            not_actionable: 0,
            clamped: 0,
        };
        let mut seen = BTreeSet::new();
        for a in message.firing_alerts() {
            if !seen.insert(&a.labels) {
                intake.duplicates += 1;
                continue;
            }
            if policy.rule_for(&a.labels).is_none() {
                intake.not_actionable += 1;
                continue;
            }
            let starts_at = clamp_starts_at(a.starts_at, now);
            if starts_at != a.starts_at {
                intake.clamped += 1;
                tracing::warn!(
                    alertname = a.labels.get("alertname").map(String::as_str).unwrap_or(""),
                    starts_at = %a.starts_at,
                    clamped_to = %starts_at,
                    "startsAt is in the future or more than {} h in the past: clamped",
                    MAX_ALERT_AGE.whole_hours()
                );
            }
            intake.firing.push(AlertFacts {
                labels: a.labels.clone(),
                starts_at,
            });
        }
        intake
    }

    /// Counts the alerts left out (`auto_healer_alerts_ignored_total`), and the ones no rule
    /// acts on as `no-rule` skips.
    fn count_ignored(&self, metrics: &Metrics) {
        metrics
            .ignored
            .with_label_values(&["duplicate"])
            .inc_by(self.duplicates as u64);
        metrics
            .ignored
            .with_label_values(&["not-actionable"])
            .inc_by(self.not_actionable as u64);
        if self.not_actionable > 0 {
            metrics
                .skips
                .with_label_values(&[Guard::NoRule.as_str()])
                .inc_by(self.not_actionable as u64);
        }
    }
}

/// Queues every alert of `firing`, or none: Alertmanager retries the whole notification on 503.
fn enqueue(state: &AppState, firing: &[AlertFacts]) -> Result<(), ApiError> {
    if firing.is_empty() {
        return Ok(());
    }
    let queue = &state.inner.queue;
    match queue.try_reserve_many(firing.len()) {
        Ok(permits) => {
            for (permit, alert) in permits.zip(firing.iter().cloned()) {
                permit.send(alert);
            }
        }
        Err(TrySendError::Full(())) => {
            return Err(ApiError::unavailable(
                "the remediation queue is full; retry later",
                Some(10),
            ));
        }
        Err(TrySendError::Closed(())) => {
            return Err(ApiError::unavailable(
                "the auto-healer is shutting down",
                Some(10),
            ));
        }
    }
    let depth = queue.max_capacity() - queue.capacity();
    state.inner.engine.metrics.queue_depth.set(depth as i64);
    Ok(())
}

/// How far in the past an alert's `startsAt` may lie (older is clamped to this age).
pub const MAX_ALERT_AGE: time::Duration = time::Duration::days(7);
/// How far in the future `startsAt` may lie (clock skew); later is clamped to now.
pub const MAX_CLOCK_SKEW: time::Duration = time::Duration::minutes(1);

/// `startsAt` as the healer uses it (time to heal): a time in the future becomes now, one
/// older than [`MAX_ALERT_AGE`] becomes that age.
pub fn clamp_starts_at(starts_at: OffsetDateTime, now: OffsetDateTime) -> OffsetDateTime {
    if starts_at > now + MAX_CLOCK_SKEW {
        now
    } else if starts_at < now - MAX_ALERT_AGE {
        now - MAX_ALERT_AGE
    } else {
        starts_at
    }
}

/// Query of `GET /api/v1/actions`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionsQuery {
    /// At most this many records (default 50, at most the history's size).
    pub limit: Option<usize>,
}

/// `GET /api/v1/actions`: recent decisions, newest first.
pub async fn actions(State(state): State<AppState>, Query(q): Query<ActionsQuery>) -> Response {
    let limit = q.limit.unwrap_or(50);
    if limit == 0 || limit > state.inner.history_size {
        return ApiError::bad_request(format!(
            "limit must be between 1 and {}",
            state.inner.history_size
        ))
        .with_field("limit")
        .into_response();
    }
    let records = state.inner.engine.history.recent(limit);
    axum::Json(json!({"actions": records, "dry_run": state.inner.engine.dry_run()})).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-11-01 12:00 UTC);

    #[test]
    fn a_start_in_the_future_becomes_now() {
        assert_eq!(clamp_starts_at(NOW + time::Duration::days(1), NOW), NOW);
    }

    #[test]
    fn a_start_older_than_the_maximum_age_becomes_that_age() {
        assert_eq!(
            clamp_starts_at(NOW - time::Duration::days(30), NOW),
            NOW - MAX_ALERT_AGE
        );
    }

    #[test]
    fn a_recent_start_or_one_within_the_clock_skew_is_kept() {
        let recent = NOW - time::Duration::minutes(5);
        assert_eq!(clamp_starts_at(recent, NOW), recent);
        let skewed = NOW + time::Duration::seconds(30);
        assert_eq!(clamp_starts_at(skewed, NOW), skewed);
    }
}
