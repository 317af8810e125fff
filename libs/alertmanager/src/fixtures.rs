//! Ready-made webhook payloads for tests, with the alert labels of `docs/CONTRACTS.md`.
//!
//! Enable with `alertmanager = { ..., features = ["fixtures"] }` in `[dev-dependencies]`.

use crate::webhook::{Alert, WebhookMessage};

/// A webhook body captured from a real Alertmanager 0.25 (Debian `prometheus-alertmanager`)
/// delivering a Prometheus alert to a webhook receiver.
pub const ALERTMANAGER_0_25_WEBHOOK: &str =
    include_str!("../tests/data/alertmanager-0.25-webhook.json");

/// A firing alert as health-monitor raises it for a crash-looping pod: remediable by the healer
/// (`remediation="restart-pod"`).
pub fn pod_crash_looping_alert(namespace: &str, pod: &str) -> Alert {
    Alert::firing([
        ("alertname", "PodCrashLooping"),
        ("severity", "critical"),
        ("namespace", namespace),
        ("pod", pod),
        ("finding", "crash_loop"),
        ("remediation", "restart-pod"),
    ])
    .with_annotation("summary", format!("Pod {namespace}/{pod} is crash-looping"))
    .with_annotation(
        "description",
        format!("{pod} restarted repeatedly in the last minutes"),
    )
    .with_annotation(
        "runbook_url",
        "https://runbooks.organism.dev/PodCrashLooping",
    )
}

/// A firing warning about a service's error rate: not remediable (no `remediation` label).
pub fn high_error_rate_alert(service: &str) -> Alert {
    Alert::firing([
        ("alertname", "HighErrorRate"),
        ("severity", "warning"),
        ("namespace", "organism"),
        ("service", service),
    ])
    .with_annotation("summary", format!("{service} answers more than 5% errors"))
    .with_annotation("runbook_url", "https://runbooks.organism.dev/HighErrorRate")
}

/// What Alertmanager sends `receiver` for one crash-looping pod, grouped by `alertname`.
pub fn pod_crash_looping(receiver: &str) -> WebhookMessage {
    WebhookMessage::builder(receiver)
        .group_by(["alertname"])
        .external_url("http://127.0.0.1:9093")
        .alert(pod_crash_looping_alert("organism", "heart-7d9c8b6f5-abcde"))
        .build()
}

/// The same group after the pod recovered.
pub fn pod_crash_looping_resolved(receiver: &str) -> WebhookMessage {
    WebhookMessage::builder(receiver)
        .group_by(["alertname"])
        .external_url("http://127.0.0.1:9093")
        .alert(pod_crash_looping_alert("organism", "heart-7d9c8b6f5-abcde").resolved_now())
        .build()
}

/// A group of two error-rate warnings (heart and brain).
pub fn high_error_rate(receiver: &str) -> WebhookMessage {
    WebhookMessage::builder(receiver)
        .group_by(["alertname"])
        .external_url("http://127.0.0.1:9093")
        .alerts([
            high_error_rate_alert("heart"),
            high_error_rate_alert("brain"),
        ])
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Fingerprint;
    use crate::webhook::Status;

    #[test]
    fn fixtures_are_valid_payloads() {
        for msg in [
            pod_crash_looping("r"),
            pod_crash_looping_resolved("r"),
            high_error_rate("r"),
        ] {
            let bytes = serde_json::to_vec(&msg).unwrap();
            assert_eq!(WebhookMessage::from_slice(&bytes).unwrap(), msg);
        }
        assert_eq!(pod_crash_looping_resolved("r").status, Status::Resolved);
        let group = high_error_rate("r");
        assert_eq!(group.common_labels.get("service"), None);
        assert_eq!(
            group.alerts[0].labels["service"], "brain",
            "sorted by label set"
        );
    }

    #[test]
    fn captured_payload_parses_and_its_fingerprints_match() {
        let msg = WebhookMessage::from_slice(ALERTMANAGER_0_25_WEBHOOK.as_bytes()).unwrap();
        assert!(!msg.alerts.is_empty());
        for alert in &msg.alerts {
            assert_eq!(alert.fingerprint, Fingerprint::of_labels(&alert.labels));
        }
    }
}
