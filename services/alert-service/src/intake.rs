//! `POST /webhook/alertmanager`: validate, route, write to the outbox (one row per group key,
//! status and channel) and answer 202; delivery happens in the background.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use alertmanager::{Status, WebhookMessage};
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode};
use secrecy::SecretString;
use serde_json::json;
use service_kit::ApiError;
use tokio::sync::Notify;

use crate::clock::now_ms;
use crate::delivery::Payload;
use crate::http_errors::database_unavailable;
use crate::metrics::Metrics;
use crate::routing::Routes;
use crate::store::{AlertUpsert, Enqueued, NewRow, Store};

/// What the webhook handler uses: the token it checks, the routes, the outbox and the delivery
/// worker's wake-up.
pub struct Intake {
    /// `ALERT_SERVICE_TOKEN`: closed (403) when unset.
    pub(crate) token: Option<SecretString>,
    /// Where each alert goes.
    pub(crate) routes: Arc<Routes>,
    /// `delivery.dedup_window`: an identical notification within it is a duplicate.
    pub(crate) dedup_window: Duration,
    /// The outbox and the alert records.
    pub(crate) store: Store,
    /// Webhook and notification counters.
    pub(crate) metrics: Metrics,
    /// Wakes the delivery worker when rows are written.
    pub(crate) wake: Arc<Notify>,
}

impl std::fmt::Debug for Intake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Intake")
            .field("token", &self.token.as_ref().map(|_| "[redacted]"))
            .field("routes", &self.routes)
            .field("dedup_window", &self.dedup_window)
            .finish_non_exhaustive()
    }
}

/// FNV-1a 64: a stable hash for idempotency keys (the same on every replica and version).
pub fn fnv64(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for &b in *part {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        h ^= 0xff;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The idempotency key of a notification: channel, status, group key and the alert set (each
/// alert's fingerprint, status, start and end) — equal for a re-delivered webhook.
pub fn notification_key(channel: &str, msg: &WebhookMessage) -> String {
    let mut alerts: Vec<String> = msg
        .alerts
        .iter()
        .map(|a| {
            format!(
                "{}/{}/{}/{}",
                alertmanager::Fingerprint::of_labels(&a.labels),
                a.status.as_str(),
                a.starts_at.unix_timestamp_nanos(),
                a.ends_at
                    .map(|t| t.unix_timestamp_nanos())
                    .unwrap_or_default()
            )
        })
        .collect();
    alerts.sort();
    let set = alerts.join(",");
    let truncated = msg.truncated_alerts.to_string();
    format!(
        "n|{channel}|{}|{:016x}|{:016x}",
        msg.status.as_str(),
        fnv64(&[msg.group_key.as_bytes()]),
        fnv64(&[set.as_bytes(), truncated.as_bytes()])
    )
}

fn unix_ms(t: time::OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

/// Splits a message by channel (each alert goes where the routes send it): one message per
/// channel holding that channel's alerts, with its own status.
pub fn route(
    routes: &Routes,
    msg: &WebhookMessage,
) -> (BTreeMap<String, WebhookMessage>, Vec<Vec<String>>) {
    let per_alert: Vec<Vec<String>> = msg
        .alerts
        .iter()
        .map(|a| routes.channels_for(&a.labels))
        .collect();
    let mut by_channel: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, chans) in per_alert.iter().enumerate() {
        for c in chans {
            by_channel.entry(c.clone()).or_default().push(i);
        }
    }
    let out = by_channel
        .into_iter()
        .map(|(channel, idx)| {
            let mut m = msg.clone();
            m.alerts = idx.iter().map(|&i| msg.alerts[i].clone()).collect();
            m.status = if m.alerts.iter().any(|a| a.is_firing()) {
                Status::Firing
            } else {
                Status::Resolved
            };
            (channel, m)
        })
        .collect();
    (out, per_alert)
}

/// The webhook handler.
pub async fn webhook(
    State(intake): State<Arc<Intake>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let m = &intake.metrics;
    if let Err(e) =
        service_kit::auth::webhook_guard(&headers, intake.token.as_ref(), "ALERT_SERVICE_TOKEN")
    {
        m.webhook_messages
            .with_label_values(&["unauthorized"])
            .inc();
        return e.into_response();
    }
    let body = match body {
        Ok(b) => b,
        Err(rejection) => {
            m.webhook_messages.with_label_values(&["rejected"]).inc();
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                return ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    "the webhook body is larger than this service accepts (REQUEST_BODY_LIMIT_BYTES); lower max_alerts in the Alertmanager receiver",
                )
                .into_response();
            }
            return ApiError::bad_request(rejection.body_text()).into_response();
        }
    };
    let msg = match WebhookMessage::from_slice(&body) {
        Ok(msg) => msg,
        Err(e) => {
            m.webhook_messages.with_label_values(&["rejected"]).inc();
            let mut err =
                ApiError::bad_request(format!("invalid Alertmanager webhook payload: {e}"));
            if !e.path().is_empty() {
                err = err.with_field(e.path());
            }
            return err.into_response();
        }
    };
    if let Err(e) = check_labels(&msg) {
        m.webhook_messages.with_label_values(&["rejected"]).inc();
        return e.into_response();
    }
    match intake.accept(&msg).await {
        Ok(notifications) => {
            m.webhook_messages.with_label_values(&["accepted"]).inc();
            m.webhook_alerts.inc_by(msg.alerts.len() as u64);
            intake.wake.notify_one();
            (
                StatusCode::ACCEPTED,
                axum::Json(json!({
                    "status": "accepted",
                    "alerts": msg.alerts.len(),
                    "truncated_alerts": msg.truncated_alerts,
                    "notifications": notifications,
                })),
            )
                .into_response()
        }
        Err(e) => {
            m.webhook_messages.with_label_values(&["unavailable"]).inc();
            tracing::info!(group_key = %msg.group_key, "the webhook was not written to the outbox");
            database_unavailable(e).into_response()
        }
    }
}

/// Whether `name` is a label name Alertmanager accepts: `[a-zA-Z_][a-zA-Z0-9_]*`, not empty.
pub fn valid_label_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Refuses a message with a label Alertmanager would reject (a silence on it could never be
/// created), naming the alert and the label: 422 now, not a 503 at acknowledgement.
pub fn check_labels(msg: &WebhookMessage) -> Result<(), ApiError> {
    for (i, a) in msg.alerts.iter().enumerate() {
        if a.labels.is_empty() {
            return Err(ApiError::invalid_field(
                format!("alerts[{i}].labels"),
                "an alert needs at least one label",
            ));
        }
        for (name, value) in &a.labels {
            if !valid_label_name(name) {
                return Err(ApiError::invalid_field(
                    format!("alerts[{i}].labels"),
                    format!(
                        "label name {name:?} is not valid: Alertmanager accepts [a-zA-Z_][a-zA-Z0-9_]*"
                    ),
                ));
            }
            if value.is_empty() {
                return Err(ApiError::invalid_field(
                    format!("alerts[{i}].labels.{name}"),
                    "a label value may not be empty (Alertmanager drops such labels)",
                ));
            }
        }
    }
    Ok(())
}

impl Intake {
    /// Records the alerts and writes one outbox row per channel, in one transaction.
    pub async fn accept(
        &self,
        msg: &WebhookMessage,
    ) -> Result<Vec<serde_json::Value>, crate::store::StoreError> {
        let now = now_ms();
        let (by_channel, per_alert) = route(&self.routes, msg);
        let mut seen = BTreeSet::new();
        let mut alerts = Vec::with_capacity(msg.alerts.len());
        for (a, chans) in msg.alerts.iter().zip(&per_alert) {
            // The identity is recomputed from the labels, never taken from the payload.
            let fp = alertmanager::Fingerprint::of_labels(&a.labels).to_string();
            let starts = unix_ms(a.starts_at);
            if !seen.insert((fp.clone(), starts)) {
                continue;
            }
            alerts.push(AlertUpsert {
                fingerprint: fp,
                starts_at: starts,
                alertname: a.alertname().unwrap_or_default().to_owned(),
                severity: a.labels.get("severity").cloned().unwrap_or_default(),
                labels: serde_json::to_string(&a.labels).unwrap_or_default(),
                annotations: serde_json::to_string(&a.annotations).unwrap_or_default(),
                group_key: msg.group_key.clone(),
                channels: serde_json::to_string(chans).unwrap_or_default(),
                status: a.status.as_str().to_owned(),
                resolved_at: if a.is_firing() {
                    None
                } else {
                    a.ends_at.map(unix_ms)
                },
            });
        }
        let window = self.dedup_window.as_millis() as i64;
        let rows: Vec<NewRow> = by_channel
            .iter()
            .map(|(channel, m)| NewRow {
                idem_key: notification_key(channel, m),
                kind: "notification",
                channel: channel.clone(),
                group_key: m.group_key.clone(),
                status: m.status.as_str().to_owned(),
                payload: serde_json::to_string(&Payload::Notification { message: m.clone() })
                    .unwrap_or_default(),
                renotify_before: now - window,
            })
            .collect();
        let results = self.store.ingest(now, &alerts, &rows).await?;
        Ok(rows
            .iter()
            .zip(results)
            .map(|(row, r)| {
                let (result, id) = match r {
                    Enqueued::New(id) => ("queued", Some(id)),
                    Enqueued::Again(id) => ("queued_again", Some(id)),
                    Enqueued::Duplicate => {
                        self.metrics
                            .notifications
                            .with_label_values(&[&row.channel, "duplicate"])
                            .inc();
                        ("duplicate", None)
                    }
                };
                json!({"channel": row.channel, "status": row.status, "result": result, "id": id})
            })
            .collect())
    }
}

/// `GET /api/v1/outbox`: counts by state and the 50 latest rows.
pub async fn outbox(State(store): State<Store>) -> Result<axum::Json<serde_json::Value>, ApiError> {
    let counts = store.outbox_counts().await.map_err(database_unavailable)?;
    let rows = store.recent_rows(50).await.map_err(database_unavailable)?;
    Ok(axum::Json(json!({"counts": counts, "rows": rows})))
}

#[cfg(test)]
mod tests {
    use super::*;
    use alertmanager::Alert;

    #[test]
    fn key_is_stable_and_depends_on_the_alert_set() {
        let a = Alert::firing([("alertname", "A"), ("pod", "1")]);
        let b = Alert::firing([("alertname", "A"), ("pod", "2")]);
        let m1 = WebhookMessage::builder("r")
            .alerts([a.clone(), b.clone()])
            .build();
        let m2 = WebhookMessage::builder("r")
            .alerts([b.clone(), a.clone()])
            .build();
        assert_eq!(
            notification_key("slack", &m1),
            notification_key("slack", &m2)
        );
        assert_ne!(
            notification_key("slack", &m1),
            notification_key("email", &m1)
        );
        let m3 = WebhookMessage::builder("r").alerts([a.clone()]).build();
        assert_ne!(
            notification_key("slack", &m1),
            notification_key("slack", &m3)
        );
        let m4 = WebhookMessage::builder("r")
            .alerts([a.resolved_now(), b])
            .build();
        assert_ne!(
            notification_key("slack", &m1),
            notification_key("slack", &m4)
        );
    }
}

#[cfg(test)]
mod label_tests {
    use super::*;
    use alertmanager::Alert;

    #[test]
    fn labels_alertmanager_rejects_are_refused() {
        for good in ["alertname", "_x", "a1_B"] {
            assert!(valid_label_name(good), "{good}");
        }
        for bad in ["", "1a", "a-b", "a.b", "a b", "\u{200b}", "caf\u{e9}"] {
            assert!(!valid_label_name(bad), "{bad:?}");
        }
        let ok = WebhookMessage::builder("r")
            .alerts([Alert::firing([("alertname", "A")])])
            .build();
        assert!(check_labels(&ok).is_ok());
        let bad = WebhookMessage::builder("r")
            .alerts([Alert::firing([("alertname", "A"), ("bad-name", "x")])])
            .build();
        let e = check_labels(&bad).unwrap_err();
        assert_eq!(e.status(), 422);
        assert!(e.message().contains("bad-name"), "{e}");
    }
}
