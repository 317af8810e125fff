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
    let body = match body {
        Ok(b) => b,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!(
                    "the webhook body is larger than {} bytes",
                    state.inner.max_body
                ),
            )
            .into_response();
        }
        Err(rejection) => return ApiError::bad_request(rejection.body_text()).into_response(),
    };
    let message = match alertmanager::WebhookMessage::from_slice(&body) {
        Ok(m) => m,
        Err(e) => {
            let mut err = ApiError::new(StatusCode::BAD_REQUEST, "invalid_webhook", e.to_string());
            if !e.path().is_empty() {
                err = err.with_field(e.path());
            }
            return err.into_response();
        }
    };
    if !state.inner.engine.leader.is_leader() {
        return ApiError::unavailable(
            "this auto-healer instance is not the leader; retry",
            Some(5),
        )
        .into_response();
    }
    let engine = &state.inner.engine;
    let policy = engine.policy();
    let now = OffsetDateTime::now_utc();
    let mut firing: Vec<AlertFacts> = Vec::new();
    let mut seen = BTreeSet::new();
    let (mut duplicates, mut not_actionable, mut clamped) = (0usize, 0usize, 0usize);
    for a in message.firing_alerts() {
        // The same alert twice in one message is handled once.
        if !seen.insert(&a.labels) {
            duplicates += 1;
            continue;
        }
        // No rule would act on it: accepted, skipped, and it takes no queue room.
        if policy.rule_for(&a.labels).is_none() {
            not_actionable += 1;
            continue;
        }
        let starts_at = clamp_starts_at(a.starts_at, now);
        if starts_at != a.starts_at {
            clamped += 1;
            tracing::warn!(
                alertname = a.labels.get("alertname").map(String::as_str).unwrap_or(""),
                starts_at = %a.starts_at,
                clamped_to = %starts_at,
                "startsAt is in the future or more than {} h in the past: clamped",
                MAX_ALERT_AGE.whole_hours()
            );
        }
        firing.push(AlertFacts {
            labels: a.labels.clone(),
            starts_at,
        });
    }
    engine
        .metrics
        .ignored
        .with_label_values(&["duplicate"])
        .inc_by(duplicates as u64);
    engine
        .metrics
        .ignored
        .with_label_values(&["not-actionable"])
        .inc_by(not_actionable as u64);
    if not_actionable > 0 {
        engine
            .metrics
            .skips
            .with_label_values(&[Guard::NoRule.as_str()])
            .inc_by(not_actionable as u64);
    }
    let resolved = message.alerts.iter().filter(|a| !a.is_firing()).count();
    if !firing.is_empty() {
        // All or nothing: Alertmanager retries the whole notification on 503.
        match state.inner.queue.try_reserve_many(firing.len()) {
            Ok(permits) => {
                for (permit, alert) in permits.zip(firing.iter().cloned()) {
                    permit.send(alert);
                }
            }
            Err(TrySendError::Full(())) => {
                return ApiError::unavailable(
                    "the remediation queue is full; retry later",
                    Some(10),
                )
                .into_response();
            }
            Err(TrySendError::Closed(())) => {
                return ApiError::unavailable("the auto-healer is shutting down", Some(10))
                    .into_response();
            }
        }
        let depth = state.inner.queue.max_capacity() - state.inner.queue.capacity();
        state.inner.engine.metrics.queue_depth.set(depth as i64);
    }
    (
        StatusCode::ACCEPTED,
        axum::Json(json!({
            "accepted": firing.len(),
            "ignored_resolved": resolved,
            "ignored_duplicate": duplicates,
            "ignored_not_actionable": not_actionable,
            "starts_at_clamped": clamped,
            "group_key": message.group_key,
        })),
    )
        .into_response()
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
