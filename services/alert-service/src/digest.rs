//! The digest: alerts fired and resolved, time to acknowledge and resolve, the noisiest alerts and
//! the auto-healer's actions over a window. Sent every `digest.interval` (aligned to the interval,
//! UTC) to `digest.channels` — one row per period and channel, so replicas send it once — and
//! served at `GET /api/v1/report?window=24h`.
//!
//! The healer's actions come from `{AUTO_HEALER_URL}/api/v1/actions` (a JSON list of actions with
//! `action` and `result`, or `{"actions": [...]}`, or counts `[{"action","result","count"}]`);
//! actions stamped with an RFC 3339 `at` outside the window are left out. If that route is
//! missing, they come from its `auto_healer_actions_total{action,result}` on `/metrics` (totals
//! since the healer started).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use serde::Deserialize;
use serde_json::Value;
use service_kit::ApiError;
use service_kit::CancellationToken;
use service_kit::extract::Query;
use telemetry::client::HttpClient;
use tokio::sync::Notify;

use crate::clock::now_ms;
use crate::delivery::Payload;
use crate::duration;
use crate::http_errors::database_unavailable;
use crate::settings::DigestSettings;
use crate::store::NewRow;
use crate::store::Store;
use crate::template_data::{
    DeliveryTotals, HealerCount, HealerSummary, NoisyAlert, Report, rfc3339,
};

fn time_of(ms: i64) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

/// Counts healer actions in any of the JSON shapes described in the module docs, leaving out
/// those stamped (`at`) outside `[from, to)` (ms since the epoch).
pub fn healer_from_json(v: &Value, from: i64, to: i64) -> Option<Vec<HealerCount>> {
    let list = match v {
        Value::Array(a) => a,
        Value::Object(o) => o
            .get("actions")
            .or_else(|| o.get("items"))
            .or_else(|| o.get("counts"))?
            .as_array()?,
        _ => return None,
    };
    let mut counts: BTreeMap<(String, String), f64> = BTreeMap::new();
    for item in list {
        let stamped = item["at"].as_str().and_then(|at| {
            time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339).ok()
        });
        if let Some(at) = stamped {
            let ms = (at.unix_timestamp_nanos() / 1_000_000) as i64;
            if ms < from || ms >= to {
                continue;
            }
        }
        let action = item["action"]
            .as_str()
            .or_else(|| item["kind"].as_str())
            .unwrap_or("unknown")
            .to_owned();
        let result = item["result"]
            .as_str()
            .or_else(|| item["outcome"].as_str())
            .unwrap_or("unknown")
            .to_owned();
        let n = item["count"].as_f64().unwrap_or(1.0);
        *counts.entry((action, result)).or_default() += n;
    }
    Some(
        counts
            .into_iter()
            .map(|((action, result), count)| HealerCount {
                action,
                result,
                count,
            })
            .collect(),
    )
}

/// Reads `auto_healer_actions_total{action="..",result=".."} N` lines of a Prometheus text body.
pub fn healer_from_metrics(text: &str) -> Vec<HealerCount> {
    let mut out = Vec::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("auto_healer_actions_total{") else {
            continue;
        };
        let Some((labels, value)) = rest.rsplit_once('}') else {
            continue;
        };
        let Ok(count) = value
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .parse::<f64>()
        else {
            continue;
        };
        let get = |name: &str| {
            labels
                .split(',')
                .filter_map(|kv| kv.split_once('='))
                .find(|(k, _)| k.trim() == name)
                .map(|(_, v)| v.trim().trim_matches('"').to_owned())
                .unwrap_or_default()
        };
        out.push(HealerCount {
            action: get("action"),
            result: get("result"),
            count,
        });
    }
    out
}

/// Where the digest reads the auto-healer's actions (`AUTO_HEALER_URL`), through the traced client.
#[derive(Debug)]
pub struct HealerSource {
    /// The healer's base URL.
    pub(crate) url: String,
    /// The traced client (3 s to connect, 3 s in all).
    pub(crate) http: HttpClient,
}

/// What the report and the digest read: the alert records and the healer's actions.
pub struct Reports {
    /// Alert records and the outbox.
    pub(crate) store: Store,
    /// The auto-healer, when `AUTO_HEALER_URL` is set.
    pub(crate) healer: Option<HealerSource>,
    /// The report's window when the request names none: `digest.interval`, else 24 h.
    pub(crate) default_window: Duration,
}

impl std::fmt::Debug for Reports {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reports")
            .field("healer", &self.healer.as_ref().map(|h| &h.url))
            .field("default_window", &self.default_window)
            .finish_non_exhaustive()
    }
}

async fn healer(source: Option<&HealerSource>, from: i64, to: i64) -> Option<HealerSummary> {
    let HealerSource { url: base, http } = source?;
    let fetch = async {
        let resp = http
            .send(http.get(&format!("{base}/api/v1/actions")))
            .await
            .map_err(|e| e.without_url().to_string())?;
        if resp.status().is_success() {
            let v: Value = resp
                .json()
                .await
                .map_err(|e| format!("api/v1/actions: {e}"))?;
            return healer_from_json(&v, from, to)
                .ok_or_else(|| "api/v1/actions: unexpected JSON shape".to_owned());
        }
        let status = resp.status();
        let m = http
            .send(http.get(&format!("{base}/metrics")))
            .await
            .map_err(|e| e.without_url().to_string())?;
        if !m.status().is_success() {
            return Err(format!(
                "api/v1/actions answered {status}, /metrics {}",
                m.status()
            ));
        }
        Ok(healer_from_metrics(
            &m.text().await.map_err(|e| e.to_string())?,
        ))
    };
    Some(match fetch.await {
        Ok(actions) => healer_answered(actions),
        Err(e) => HealerSummary {
            available: false,
            total: 0.0,
            actions: Vec::new(),
            error: Some(e),
        },
    })
}

/// The summary of a healer that answered with `actions`.
fn healer_answered(actions: Vec<HealerCount>) -> HealerSummary {
    HealerSummary {
        available: true,
        // A fold from +0.0: an empty f64 `sum()` is -0.0, which the digest printed as such.
        total: actions.iter().fold(0.0, |total, a| total + a.count),
        actions,
        error: None,
    }
}

impl Reports {
    /// The report for `[from, to)` (milliseconds since the epoch).
    pub async fn build(&self, from: i64, to: i64) -> Result<Report, crate::store::StoreError> {
        let c = self.store.report(from, to).await?;
        let window = duration::display(Duration::from_millis((to - from).max(0) as u64));
        let fmt = |ms: Option<f64>| {
            ms.map(|v| duration::display(Duration::from_millis(v.max(0.0) as u64)))
        };
        Ok(Report {
            title: format!(
                "Alert digest ({window}): {} fired, {} resolved, {} acknowledged",
                c.fired, c.resolved, c.acknowledged
            ),
            from: rfc3339(time_of(from)),
            to: rfc3339(time_of(to)),
            window,
            fired: c.fired,
            resolved: c.resolved,
            acknowledged: c.acknowledged,
            escalated: c.escalated,
            mean_time_to_ack: fmt(c.mean_ack_ms),
            mean_time_to_resolve: fmt(c.mean_resolve_ms),
            mean_time_to_ack_seconds: c.mean_ack_ms.map(|v| v / 1000.0),
            mean_time_to_resolve_seconds: c.mean_resolve_ms.map(|v| v / 1000.0),
            noisiest: c
                .noisiest
                .into_iter()
                .map(|(alertname, notifications, alerts)| NoisyAlert {
                    alertname,
                    notifications,
                    alerts,
                })
                .collect(),
            healer: healer(self.healer.as_ref(), from, to).await,
            deliveries: DeliveryTotals {
                sent: c.sent,
                dead: c.dead,
                pending: c.pending,
            },
        })
    }
}

/// What the digest task uses: its settings, the reports and the delivery worker's wake-up.
pub(crate) struct DigestWorker {
    pub(crate) settings: DigestSettings,
    pub(crate) reports: Arc<Reports>,
    pub(crate) wake: Arc<Notify>,
}

impl DigestWorker {
    /// Queues the digest of the period ending at `end` for each digest channel; returns how many
    /// rows were new (a replica that already queued it makes none).
    pub(crate) async fn send_period(&self, end: i64) -> Result<usize, crate::store::StoreError> {
        let interval = self.settings.interval.as_millis() as i64;
        let report = self.reports.build(end - interval, end).await?;
        let payload = serde_json::to_string(&Payload::Digest { report }).unwrap_or_default();
        let rows: Vec<NewRow> = self
            .settings
            .channels
            .iter()
            .map(|c| NewRow {
                idem_key: format!("d|{interval}|{end}|{c}"),
                kind: "digest",
                channel: c.clone(),
                group_key: format!("digest/{end}"),
                status: "digest".to_owned(),
                payload: payload.clone(),
                renotify_before: i64::MIN,
            })
            .collect();
        let r = self.reports.store.enqueue(now_ms(), &rows).await?;
        self.wake.notify_one();
        Ok(r.iter()
            .filter(|e| !matches!(e, crate::store::Enqueued::Duplicate))
            .count())
    }

    /// Runs until `cancel` fires, queueing each period's digest at its end (aligned to the
    /// interval, UTC).
    pub(crate) async fn run(self, cancel: CancellationToken) {
        let interval = self.settings.interval.as_millis() as i64;
        loop {
            let now = now_ms();
            let end = now - now.rem_euclid(interval);
            if let Err(e) = self.send_period(end).await {
                tracing::warn!(error = %e, "digest: cannot queue");
            }
            let next = end + interval;
            let wait = Duration::from_millis((next - now_ms()).max(0) as u64 + 50);
            tokio::select! {
                () = cancel.cancelled() => break,
                () = tokio::time::sleep(wait) => {}
            }
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportQuery {
    /// Window length, e.g. `24h` (default: the digest interval, else 24h).
    pub window: Option<String>,
}

/// `GET /api/v1/report?window=24h`.
pub async fn report(
    State(reports): State<Arc<Reports>>,
    Query(q): Query<ReportQuery>,
) -> Result<axum::Json<Report>, ApiError> {
    let window = match q.window.as_deref() {
        None => reports.default_window,
        Some(w) => duration::parse(w).map_err(|e| ApiError::bad_request(e).with_field("window"))?,
    };
    if window.is_zero() || window > Duration::from_secs(366 * 86400) {
        return Err(
            ApiError::bad_request("window must be between 1ms and 366d").with_field("window")
        );
    }
    let to = now_ms() + 1;
    let r = reports
        .build(to - window.as_millis() as i64, to)
        .await
        .map_err(database_unavailable)?;
    Ok(axum::Json(r))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_quiet_healer_did_zero_actions_not_minus_zero() {
        let total = healer_answered(Vec::new()).total;
        assert!(total == 0.0 && total.is_sign_positive(), "{total}");
        assert_eq!(format!("{total:.1}"), "0.0");
    }

    #[test]
    fn healer_shapes() {
        let list = json!([{"action": "restart-pod", "result": "success"}, {"action": "restart-pod", "result": "success"}, {"action": "rollback", "result": "refused"}]);
        let c = healer_from_json(&list, i64::MIN, i64::MAX).unwrap();
        assert_eq!(c.len(), 2);
        assert_eq!(
            c[0],
            HealerCount {
                action: "restart-pod".into(),
                result: "success".into(),
                count: 2.0
            }
        );
        let wrapped = json!({"actions": [{"action": "scale-up", "result": "success", "count": 3}]});
        assert_eq!(
            healer_from_json(&wrapped, i64::MIN, i64::MAX).unwrap()[0].count,
            3.0
        );
        assert!(healer_from_json(&json!("nope"), i64::MIN, i64::MAX).is_none());
        // The auto-healer's own shape: records stamped `at`, only those in the window count.
        let records = json!({"actions": [
            {"at": "2026-11-26T10:00:00Z", "action": "restart-pod", "result": "healed"},
            {"at": "2026-11-26T10:30:00.5Z", "action": "restart-pod", "result": "healed"},
            {"at": "2026-11-26T11:00:00Z", "action": "cordon-node", "result": "acted"},
            {"at": "2026-11-26T09:59:59Z", "action": "rollback", "result": "failed"}
        ], "dry_run": false});
        let ten = 1_795_687_200_000; // 2026-11-26T10:00:00Z
        let hour = 3_600_000;
        let c = healer_from_json(&records, ten, ten + hour).unwrap();
        assert_eq!(
            c,
            vec![HealerCount {
                action: "restart-pod".into(),
                result: "healed".into(),
                count: 2.0
            }]
        );
        let text = "# HELP auto_healer_actions_total x\nauto_healer_actions_total{action=\"restart-pod\",result=\"success\"} 4\nother 1\n";
        assert_eq!(
            healer_from_metrics(text),
            vec![HealerCount {
                action: "restart-pod".into(),
                result: "success".into(),
                count: 4.0
            }]
        );
    }
}
