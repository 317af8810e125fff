//! What templates see: one message per Alertmanager group ([`MessageView`]) or a digest
//! ([`Report`]), with the links (acknowledge, runbook, Grafana Explore) and the enrichment
//! already worked out.

use alertmanager::{Alert, LabelSet, Status, WebhookMessage};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::enrich::Enrichment;
use crate::settings::GrafanaLinks;

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

/// The Loki index labels a log link may select on, by the alert label that fills each: Loki
/// turns the OTLP resource attributes `k8s.namespace.name`, `k8s.pod.name` (the chart sets
/// both in `OTEL_RESOURCE_ATTRIBUTES`) and `service.name` (`OTEL_SERVICE_NAME`) into the index
/// labels `k8s_namespace_name`, `k8s_pod_name` and `service_name`.
pub const LOKI_OTLP_LABELS: [(&str, &str); 3] = [
    ("namespace", "k8s_namespace_name"),
    ("pod", "k8s_pod_name"),
    ("service", "service_name"),
];

/// The LogQL stream selector of an alert's logs: `{k8s_namespace_name, k8s_pod_name}` for a
/// pod, else `{service_name}` (with `k8s_namespace_name` when known), else the namespace's;
/// `None` when the alert names none of them.
pub fn logql_selector(labels: &LabelSet) -> Option<String> {
    let q = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
    fn label(alert_label: &str) -> &str {
        LOKI_OTLP_LABELS
            .iter()
            .find(|(a, _)| *a == alert_label)
            .map_or(alert_label, |(_, l)| *l)
    }
    let pick: &[&str] = match (
        labels.contains_key("namespace"),
        labels.contains_key("pod"),
        labels.contains_key("service"),
    ) {
        (true, true, _) => &["namespace", "pod"],
        (true, false, true) => &["namespace", "service"],
        (false, _, true) => &["service"],
        (true, false, false) => &["namespace"],
        _ => return None,
    };
    let matchers: Vec<String> = pick
        .iter()
        .map(|k| format!("{}=\"{}\"", label(k), q(&labels[*k])))
        .collect();
    Some(format!("{{{}}}", matchers.join(", ")))
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
                signer.sign(fingerprint, crate::clock::now_ms() / 1000)
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

    /// Grafana Explore on Loki: the pod's logs, else the service's, else the namespace's.
    ///
    /// The stream selector uses the index labels Loki's OTLP ingestion makes from the resource
    /// attributes every service sends ([`LOKI_OTLP_LABELS`]), not Prometheus' `namespace`/`pod`.
    pub fn logs_url(&self, labels: &LabelSet, starts_at: OffsetDateTime) -> Option<String> {
        let g = self.grafana.as_ref()?;
        let expr = logql_selector(labels)?;
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
            "{k8s_namespace_name=\"organism\", k8s_pod_name=\"heart-1\"}"
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

    fn repo_file(rel: &str) -> String {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../..")
            .join(rel);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    fn yaml(rel: &str) -> serde_json::Value {
        serde_yaml_ng::from_str(&repo_file(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
    }

    /// The Loki stream labels our services' logs get in the cluster, derived from the files
    /// that decide them: the resource attributes the chart gives every container
    /// (`OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES` in the Deployment template), the
    /// collector's logs pipeline (which must reach Loki's native `/otlp` endpoint through
    /// processors that keep resource attributes) and Loki's OTLP index-label configuration.
    fn loki_labels_from_config() -> std::collections::BTreeSet<String> {
        let collector = yaml("k8s/values/opentelemetry-collector.yaml");
        let config = &collector["config"];
        let pipeline = &config["service"]["pipelines"]["logs"];
        let exporters: Vec<&str> = pipeline["exporters"]
            .as_array()
            .expect("the collector has a logs pipeline with exporters")
            .iter()
            .filter_map(|e| e.as_str())
            .collect();
        let to_loki = exporters.iter().any(|e| {
            e.starts_with("otlphttp")
                && config["exporters"][*e]["endpoint"]
                    .as_str()
                    .is_some_and(|u| {
                        u.contains("loki") && u.trim_end_matches('/').ends_with("/otlp")
                    })
        });
        assert!(
            to_loki,
            "the logs pipeline must export to Loki's native OTLP endpoint (otlphttp .../otlp): {exporters:?}"
        );
        for p in pipeline["processors"].as_array().into_iter().flatten() {
            let p = p.as_str().unwrap_or_default();
            assert!(
                p == "memory_limiter"
                    || p == "batch"
                    || p.starts_with("memory_limiter/")
                    || p.starts_with("batch/"),
                "logs processor {p:?} may rename or drop resource attributes: teach this test what it does"
            );
        }
        let loki = yaml("k8s/values/loki.yaml");
        assert!(
            loki["loki"]["limits_config"]["otlp_config"].is_null(),
            "loki.yaml sets otlp_config: derive the index labels from it here"
        );
        let template = repo_file("k8s/charts/organism/templates/deployments.yaml");
        assert!(
            template.contains("OTEL_SERVICE_NAME"),
            "the chart sets OTEL_SERVICE_NAME"
        );
        let mut sent: Vec<String> = vec!["service.name".to_owned()];
        let attr =
            regex::Regex::new(r#"\b((?:k8s|service|deployment|cloud|container)\.[a-z_.]+)="#)
                .unwrap();
        for line in template.lines().filter(|l| l.contains("$attrs")) {
            for c in attr.captures_iter(line) {
                sent.push(c[1].to_owned());
            }
        }
        sent.into_iter()
            .filter(|a| testbed::LOKI_DEFAULT_INDEX_ATTRIBUTES.contains(&a.as_str()))
            .map(|a| a.replace('.', "_"))
            .collect()
    }

    /// Every Grafana Explore link in a rendered message: `(datasource, query)`.
    fn explore_exprs(v: &serde_json::Value, out: &mut Vec<(String, String)>) {
        match v {
            serde_json::Value::String(s) => {
                // Bare, or inside Slack mrkdwn `<url|text>` / Markdown `[text](url)`.
                let mut rest = s.as_str();
                while let Some(at) = rest.find("http") {
                    let tail = &rest[at..];
                    let end = tail
                        .find(['|', '>', ')', ' ', '"', '\n'])
                        .unwrap_or(tail.len());
                    let candidate = &tail[..end];
                    rest = &tail[end..];
                    if !candidate.contains("/explore?") {
                        continue;
                    }
                    let url = reqwest::Url::parse(candidate).unwrap();
                    let panes: serde_json::Value = serde_json::from_str(
                        &url.query_pairs().find(|(k, _)| k == "panes").unwrap().1,
                    )
                    .unwrap();
                    let pane = &panes["alert"];
                    let q = &pane["queries"][0];
                    let text = q["expr"]
                        .as_str()
                        .or(q["query"].as_str())
                        .unwrap_or_default();
                    out.push((
                        pane["datasource"].as_str().unwrap_or_default().to_owned(),
                        text.to_owned(),
                    ));
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|x| explore_exprs(x, out)),
            serde_json::Value::Object(o) => o.values().for_each(|x| explore_exprs(x, out)),
            _ => {}
        }
    }

    #[test]
    fn rendered_log_links_select_labels_the_collector_and_loki_produce() {
        let produced = loki_labels_from_config();
        for needed in ["service_name", "k8s_namespace_name", "k8s_pod_name"] {
            assert!(
                produced.contains(needed),
                "{needed} not produced: {produced:?}"
            );
        }
        // Datasource UIDs the links use exist in Grafana's provisioning.
        let stack = yaml("k8s/values/kube-prometheus-stack.yaml");
        let uids: Vec<&str> = stack["grafana"]["additionalDataSources"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|d| d["uid"].as_str())
            .collect();
        let grafana = crate::settings::GrafanaLinks {
            url: "http://localhost:3000".into(),
            loki_uid: "loki".into(),
            tempo_uid: "tempo".into(),
        };
        assert!(uids.contains(&grafana.loki_uid.as_str()), "{uids:?}");
        assert!(uids.contains(&grafana.tempo_uid.as_str()), "{uids:?}");

        let kinds = std::collections::BTreeMap::from([(
            "slack".to_owned(),
            crate::settings::ChannelKind::Slack,
        )]);
        let templates =
            crate::templates::Templates::compile(&kinds, &std::collections::BTreeMap::new())
                .unwrap();
        let matcher = regex::Regex::new(r#"([A-Za-z_][A-Za-z0-9_]*)\s*=~?\s*""#).unwrap();
        let cases: [&[(&str, &str)]; 3] = [
            &[
                ("alertname", "PodCrashLooping"),
                ("namespace", "organism"),
                ("pod", "heart-7d9-abc"),
                ("service", "heart"),
            ],
            &[
                ("alertname", "ServiceDown"),
                ("service", "heart"),
                ("instance", "10.0.0.1:8081"),
            ],
            &[
                ("alertname", "DeploymentReplicasUnavailable"),
                ("namespace", "organism"),
                ("service", "user-service"),
            ],
        ];
        for labels in cases {
            let mut view = sample::message("slack");
            let alert = Alert::firing(labels.iter().copied());
            let links = Links {
                public_url: "http://alert-service:8086".into(),
                grafana: Some(grafana.clone()),
                signer: None,
            };
            view.alerts = vec![links.alert_view(&alert, None)];
            let out = templates
                .render("slack", "message", crate::templates::message_context(&view))
                .unwrap();
            let json: serde_json::Value = serde_json::from_str(&out).unwrap();
            let mut found = Vec::new();
            explore_exprs(&json, &mut found);
            let logs: Vec<&String> = found
                .iter()
                .filter(|(ds, _)| ds == "loki")
                .map(|(_, e)| e)
                .collect();
            assert_eq!(
                logs.len(),
                1,
                "one log link in the rendered message: {found:?}"
            );
            let selector = logs[0];
            let used: Vec<String> = matcher
                .captures_iter(selector)
                .map(|c| c[1].to_owned())
                .collect();
            assert!(!used.is_empty(), "{selector}");
            for l in &used {
                assert!(
                    produced.contains(l),
                    "the log link {selector} selects on {l:?}, a label Loki never gets from the collector (it gets {produced:?})"
                );
            }
            assert!(
                found
                    .iter()
                    .any(|(ds, q)| ds == "tempo" && q.contains("resource.service.name")),
                "{found:?}"
            );
        }
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
