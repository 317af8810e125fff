//! What templates see: one message per Alertmanager group ([`MessageView`]) or a digest
//! ([`Report`]), with the links (acknowledge, runbook, Grafana Explore) and the enrichment
//! already worked out.

use alertmanager::{Alert, LabelSet, Status, WebhookMessage};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::config::GrafanaLinks;
use crate::enrich::Enrichment;

/// Alerts shown in full per message; the rest are counted.
pub const MAX_ALERTS_SHOWN: usize = 10;

/// The link bases for messages.
#[derive(Debug, Clone)]
pub struct Links {
    /// This service's public URL (acknowledge links).
    pub public_url: String,
    /// Grafana, for Explore links.
    pub grafana: Option<GrafanaLinks>,
    /// Signs acknowledge links (`ACK_SIGNING_KEY`); without it links are unsigned and refused.
    pub signer: Option<crate::ack_link::Signer>,
}

/// One alert as templates see it.
#[derive(Debug, Clone, Serialize)]
pub struct AlertView {
    /// `firing` / `resolved`.
    pub status: &'static str,
    /// `alertname` label.
    pub alertname: String,
    /// `severity` label (or empty).
    pub severity: String,
    /// `summary` annotation, else the alert name.
    pub summary: String,
    /// `description` annotation (or empty).
    pub description: String,
    /// `runbook_url` annotation.
    pub runbook_url: Option<String>,
    /// All labels.
    pub labels: LabelSet,
    /// All annotations.
    pub annotations: LabelSet,
    /// Label-set fingerprint.
    pub fingerprint: String,
    /// RFC 3339.
    pub starts_at: String,
    /// RFC 3339, when resolved.
    pub ends_at: Option<String>,
    /// Where the alert came from (may be empty).
    pub generator_url: String,
    /// `{PUBLIC_URL}/api/v1/alerts/{fingerprint}/ack?exp=…&nonce=…&sig=…`: signed, expiring,
    /// single use.
    pub ack_url: String,
    /// Grafana Explore: Loki logs of the pod (or service).
    pub logs_url: Option<String>,
    /// Grafana Explore: Tempo search for the service.
    pub traces_url: Option<String>,
    /// Logs, events and owner from Kubernetes (Kubernetes mode only).
    pub enrichment: Option<Enrichment>,
}

/// An escalation, as templates see it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct EscalationView {
    /// 1 for the first tier.
    pub tier: usize,
    /// The tier's delay, e.g. `15m`.
    pub after: String,
}

/// One notification (one Alertmanager group, for one channel).
#[derive(Debug, Clone, Serialize)]
pub struct MessageView {
    /// `firing` / `resolved`.
    pub status: &'static str,
    /// `[FIRING:2] HeartDown — heart`.
    pub title: String,
    /// One line: counts, receiver, group.
    pub context_line: String,
    /// Alertmanager group key.
    pub group_key: String,
    /// Alertmanager receiver.
    pub receiver: String,
    /// Group labels.
    pub group_labels: LabelSet,
    /// Labels common to all alerts.
    pub common_labels: LabelSet,
    /// Annotations common to all alerts.
    pub common_annotations: LabelSet,
    /// Alertmanager's URL.
    pub external_url: String,
    /// Alertmanager's silences page (empty without an external URL).
    pub silences_url: String,
    /// Alerts Alertmanager left out (`max_alerts`).
    pub truncated_alerts: u64,
    /// Alerts not shown (beyond [`MAX_ALERTS_SHOWN`]) plus truncated ones.
    pub more_alerts: u64,
    /// Firing alerts in the group.
    pub firing: usize,
    /// Resolved alerts in the group.
    pub resolved: usize,
    /// The alerts shown (at most [`MAX_ALERTS_SHOWN`]).
    pub alerts: Vec<AlertView>,
    /// Set when this is an escalation.
    pub escalation: Option<EscalationView>,
    /// The channel's name.
    pub channel: String,
}

/// RFC 3339 text of a time.
pub fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

impl Links {
    /// The acknowledge link of an alert: signed, expiring and single use when a signer is
    /// configured (a fresh nonce per call).
    pub fn ack_url(&self, fingerprint: &str) -> String {
        let base = format!("{}/api/v1/alerts/{fingerprint}/ack", self.public_url);
        match &self.signer {
            Some(signer) => format!(
                "{base}?{}",
                signer.sign(fingerprint, crate::delivery::now_ms() / 1000)
            ),
            None => base,
        }
    }

    fn explore(&self, pane: serde_json::Value) -> Option<String> {
        let g = self.grafana.as_ref()?;
        let panes = serde_json::json!({ "alert": pane }).to_string();
        reqwest::Url::parse_with_params(
            &format!("{}/explore", g.url),
            [
                ("schemaVersion", "1"),
                ("orgId", "1"),
                ("panes", panes.as_str()),
            ],
        )
        .ok()
        .map(String::from)
    }

    fn range(starts_at: OffsetDateTime) -> serde_json::Value {
        let from = (starts_at - time::Duration::minutes(15)).unix_timestamp() * 1000;
        serde_json::json!({"from": from.to_string(), "to": "now"})
    }

    /// Grafana Explore on Loki: the pod's logs (`{namespace, pod}`), else the service's.
    pub fn logs_url(&self, labels: &LabelSet, starts_at: OffsetDateTime) -> Option<String> {
        let g = self.grafana.as_ref()?;
        let q = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
        let expr = match (
            labels.get("namespace"),
            labels.get("pod"),
            labels.get("service"),
        ) {
            (Some(ns), Some(pod), _) => format!("{{namespace=\"{}\", pod=\"{}\"}}", q(ns), q(pod)),
            (_, _, Some(svc)) => format!("{{service_name=\"{}\"}}", q(svc)),
            (Some(ns), None, None) => format!("{{namespace=\"{}\"}}", q(ns)),
            _ => return None,
        };
        self.explore(serde_json::json!({
            "datasource": g.loki_uid,
            "queries": [{"refId": "A", "datasource": {"type": "loki", "uid": g.loki_uid}, "expr": expr}],
            "range": Self::range(starts_at),
        }))
    }

    /// Grafana Explore on Tempo: a TraceQL search for the service's traces.
    pub fn traces_url(&self, labels: &LabelSet, starts_at: OffsetDateTime) -> Option<String> {
        let g = self.grafana.as_ref()?;
        let svc = labels.get("service").or_else(|| labels.get("workload"))?;
        let query = format!("{{resource.service.name=\"{}\"}}", svc.replace('"', "\\\""));
        self.explore(serde_json::json!({
            "datasource": g.tempo_uid,
            "queries": [{"refId": "A", "datasource": {"type": "tempo", "uid": g.tempo_uid}, "queryType": "traceql", "query": query, "limit": 20}],
            "range": Self::range(starts_at),
        }))
    }

    /// The view of one alert.
    pub fn alert_view(&self, a: &Alert, enrichment: Option<Enrichment>) -> AlertView {
        let get = |m: &LabelSet, k: &str| m.get(k).cloned().unwrap_or_default();
        // Recomputed from the labels: the payload's own fingerprint is not trusted.
        let fingerprint = alertmanager::Fingerprint::of_labels(&a.labels).to_string();
        AlertView {
            status: a.status.as_str(),
            alertname: a.alertname().unwrap_or_default().to_owned(),
            severity: get(&a.labels, "severity"),
            summary: a
                .annotations
                .get("summary")
                .filter(|s| !s.is_empty())
                .cloned()
                .unwrap_or_else(|| a.alertname().unwrap_or_default().to_owned()),
            description: get(&a.annotations, "description"),
            runbook_url: a
                .annotations
                .get("runbook_url")
                .filter(|s| !s.is_empty())
                .cloned(),
            labels: a.labels.clone(),
            annotations: a.annotations.clone(),
            ack_url: self.ack_url(&fingerprint),
            fingerprint,
            starts_at: rfc3339(a.starts_at),
            ends_at: a.ends_at.map(rfc3339),
            generator_url: a.generator_url.clone(),
            logs_url: self.logs_url(&a.labels, a.starts_at),
            traces_url: self.traces_url(&a.labels, a.starts_at),
            enrichment,
        }
    }

    /// The view of a message for `channel`; `enrichment[i]` belongs to `msg.alerts[i]`.
    pub fn message_view(
        &self,
        msg: &WebhookMessage,
        channel: &str,
        mut enrichment: Vec<Option<Enrichment>>,
        escalation: Option<EscalationView>,
    ) -> MessageView {
        enrichment.resize(msg.alerts.len(), None);
        let firing = msg.firing_alerts().count();
        let resolved = msg.alerts.len() - firing;
        let name = msg
            .common_labels
            .get("alertname")
            .or_else(|| msg.group_labels.get("alertname"))
            .cloned()
            .unwrap_or_else(|| {
                let mut names: Vec<&str> = msg.alerts.iter().filter_map(Alert::alertname).collect();
                names.dedup();
                names.join(", ")
            });
        let total = msg.alerts.len() as u64 + msg.truncated_alerts;
        let mut title = match msg.status {
            Status::Firing => format!("[FIRING:{}] {name}", firing as u64 + msg.truncated_alerts),
            Status::Resolved => format!("[RESOLVED] {name}"),
        };
        if let Some(svc) = msg.common_labels.get("service") {
            title.push_str(&format!(" — {svc}"));
        }
        if let Some(e) = &escalation {
            title = format!("[ESCALATED tier {}] {title}", e.tier);
        }
        let mut context_line = format!("{firing} firing, {resolved} resolved");
        if msg.truncated_alerts > 0 {
            context_line.push_str(&format!(
                " ({} more not sent by Alertmanager)",
                msg.truncated_alerts
            ));
        }
        if let Some(sev) = msg.common_labels.get("severity") {
            context_line.push_str(&format!(" · severity {sev}"));
        }
        if let Some(ns) = msg.common_labels.get("namespace") {
            context_line.push_str(&format!(" · namespace {ns}"));
        }
        if let Some(e) = &escalation {
            context_line.push_str(&format!(" · not acknowledged after {}", e.after));
        }
        let alerts = msg
            .alerts
            .iter()
            .zip(enrichment)
            .take(MAX_ALERTS_SHOWN)
            .map(|(a, e)| self.alert_view(a, e))
            .collect::<Vec<_>>();
        let silences_url = if msg.external_url.is_empty() {
            String::new()
        } else {
            format!("{}/#/silences", msg.external_url.trim_end_matches('/'))
        };
        MessageView {
            status: msg.status.as_str(),
            title,
            context_line,
            group_key: msg.group_key.clone(),
            receiver: msg.receiver.clone(),
            group_labels: msg.group_labels.clone(),
            common_labels: msg.common_labels.clone(),
            common_annotations: msg.common_annotations.clone(),
            external_url: msg.external_url.clone(),
            silences_url,
            truncated_alerts: msg.truncated_alerts,
            more_alerts: total - alerts.len() as u64,
            firing,
            resolved,
            alerts,
            escalation,
            channel: channel.to_owned(),
        }
    }
}

/// One alert name in the digest's noisiest list.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NoisyAlert {
    /// `alertname`.
    pub alertname: String,
    /// Webhook notifications received for it.
    pub notifications: i64,
    /// Distinct alerts (fingerprint + start) with that name.
    pub alerts: i64,
}

/// Count of healer actions with one action and result.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct HealerCount {
    /// `action` label.
    pub action: String,
    /// `result` label.
    pub result: String,
    /// How many.
    pub count: f64,
}

/// What the auto-healer did, as read from it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct HealerSummary {
    /// Whether the healer answered.
    pub available: bool,
    /// Sum of all counts.
    pub total: f64,
    /// By action and result.
    pub actions: Vec<HealerCount>,
    /// Why it did not answer.
    pub error: Option<String>,
}

/// Outbox totals for the window.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct DeliveryTotals {
    /// Rows sent.
    pub sent: i64,
    /// Rows given up.
    pub dead: i64,
    /// Rows waiting now (all time).
    pub pending: i64,
}

/// The digest: what happened in a window.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Report {
    /// Digest title.
    pub title: String,
    /// Window start (RFC 3339).
    pub from: String,
    /// Window end (RFC 3339).
    pub to: String,
    /// Window length, e.g. `24h`.
    pub window: String,
    /// Alerts that started firing (first received) in the window.
    pub fired: i64,
    /// Alerts resolved in the window.
    pub resolved: i64,
    /// Alerts acknowledged in the window.
    pub acknowledged: i64,
    /// Alerts escalated (first tier) that fired in the window.
    pub escalated: i64,
    /// Mean time from start to acknowledgement, e.g. `4m10s`.
    pub mean_time_to_ack: Option<String>,
    /// Mean time from start to resolution.
    pub mean_time_to_resolve: Option<String>,
    /// Mean time to acknowledge in seconds.
    pub mean_time_to_ack_seconds: Option<f64>,
    /// Mean time to resolve in seconds.
    pub mean_time_to_resolve_seconds: Option<f64>,
    /// Top alert names by notifications.
    pub noisiest: Vec<NoisyAlert>,
    /// The healer's actions (when `AUTO_HEALER_URL` is set).
    pub healer: Option<HealerSummary>,
    /// Delivery totals.
    pub deliveries: DeliveryTotals,
}

/// Sample data the templates are test-rendered with at load time (and in tests).
pub mod sample {
    use super::*;
    use crate::enrich::{Enrichment, EventSummary};

    /// A firing + resolved group with every optional field set.
    pub fn message(channel: &str) -> MessageView {
        let start = OffsetDateTime::now_utc() - time::Duration::minutes(5);
        let a = Alert::new(
            [
                ("alertname", "PodCrashLooping"),
                ("severity", "critical"),
                ("namespace", "organism"),
                ("pod", "heart-1"),
                ("service", "heart"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
            [
                ("summary", "heart-1 <crash> & loops"),
                ("description", "restarted \"5\" times"),
                (
                    "runbook_url",
                    "https://runbooks.organism.dev/PodCrashLooping",
                ),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
            start,
            None,
            "http://prometheus:9090/graph",
        );
        let b = a.clone().with_label("pod", "heart-2").resolved_now();
        let msg = WebhookMessage::builder("alert-service")
            .group_by(["alertname"])
            .external_url("http://alertmanager:9093")
            .alerts([a, b])
            .build();
        let links = Links {
            public_url: "http://alert-service:8086".to_owned(),
            grafana: Some(GrafanaLinks {
                url: "http://grafana".to_owned(),
                loki_uid: "loki".to_owned(),
                tempo_uid: "tempo".to_owned(),
            }),
            signer: None,
        };
        let enrichment = Enrichment {
            logs: vec!["line 1".to_owned(), "panic: \"boom\"".to_owned()],
            events: vec![EventSummary {
                kind: "Warning".to_owned(),
                reason: "BackOff".to_owned(),
                message: "Back-off restarting failed container".to_owned(),
                count: 5,
                last_seen: Some(rfc3339(start)),
            }],
            owner: Some("Deployment/heart".to_owned()),
            errors: vec!["events: timed out".to_owned()],
        };
        links.message_view(
            &msg,
            channel,
            vec![Some(enrichment)],
            Some(EscalationView {
                tier: 1,
                after: "15m".to_owned(),
            }),
        )
    }

    /// A digest with every optional field set.
    pub fn report() -> Report {
        Report {
            title: "Alert digest: 3 fired, 1 resolved".to_owned(),
            from: "2026-11-01T10:00:00Z".to_owned(),
            to: "2026-11-02T10:00:00Z".to_owned(),
            window: "24h".to_owned(),
            fired: 3,
            resolved: 1,
            acknowledged: 1,
            escalated: 1,
            mean_time_to_ack: Some("4m".to_owned()),
            mean_time_to_resolve: Some("12m".to_owned()),
            mean_time_to_ack_seconds: Some(240.0),
            mean_time_to_resolve_seconds: Some(720.0),
            noisiest: vec![NoisyAlert {
                alertname: "PodCrashLooping".to_owned(),
                notifications: 7,
                alerts: 2,
            }],
            healer: Some(HealerSummary {
                available: true,
                total: 2.0,
                actions: vec![HealerCount {
                    action: "restart-pod".to_owned(),
                    result: "success".to_owned(),
                    count: 2.0,
                }],
                error: None,
            }),
            deliveries: DeliveryTotals {
                sent: 9,
                dead: 0,
                pending: 1,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_links_and_counts() {
        let v = sample::message("slack");
        assert_eq!(
            v.title,
            "[ESCALATED tier 1] [FIRING:1] PodCrashLooping — heart"
        );
        assert_eq!(v.firing, 1);
        assert_eq!(v.resolved, 1);
        let a = &v.alerts[0];
        assert_eq!(
            a.ack_url,
            format!(
                "http://alert-service:8086/api/v1/alerts/{}/ack",
                a.fingerprint
            )
        );
        let logs = a.logs_url.as_deref().unwrap();
        let url = reqwest::Url::parse(logs).unwrap();
        assert_eq!(url.path(), "/explore");
        let panes: serde_json::Value =
            serde_json::from_str(&url.query_pairs().find(|(k, _)| k == "panes").unwrap().1)
                .unwrap();
        assert_eq!(
            panes["alert"]["queries"][0]["expr"],
            "{namespace=\"organism\", pod=\"heart-1\"}"
        );
        assert_eq!(panes["alert"]["datasource"], "loki");
        let traces = reqwest::Url::parse(a.traces_url.as_deref().unwrap()).unwrap();
        let panes: serde_json::Value =
            serde_json::from_str(&traces.query_pairs().find(|(k, _)| k == "panes").unwrap().1)
                .unwrap();
        assert_eq!(
            panes["alert"]["queries"][0]["query"],
            "{resource.service.name=\"heart\"}"
        );
        assert_eq!(v.silences_url, "http://alertmanager:9093/#/silences");
    }

    #[test]
    fn no_grafana_no_explore_links() {
        let links = Links {
            public_url: "http://x".into(),
            grafana: None,
            signer: None,
        };
        let a = Alert::firing([("alertname", "A"), ("pod", "p"), ("namespace", "n")]);
        let v = links.alert_view(&a, None);
        assert!(v.logs_url.is_none() && v.traces_url.is_none());
        assert_eq!(v.summary, "A");
    }
}
