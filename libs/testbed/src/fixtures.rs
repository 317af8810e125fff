//! Alerts for tests: one home for the label sets every crate's tests build by hand.
//!
//! [`alert`] starts a [`TestAlert`] (an `alertname` and the labels of `docs/CONTRACTS.md`:
//! `severity`, `namespace`, `service`, `pod`, …) that becomes a webhook [`Alert`], an API v2
//! [`PostableAlert`] or a bare label set; [`webhook`] starts a payload grouped as Alertmanager
//! groups it. The named payloads below are what the organs' alerts look like on the wire.
//!
//! ```
//! use testbed::fixtures::{alert, webhook};
//! let msg = webhook("alert-service")
//!     .alert(alert("HeartDown").critical().service("heart").summary("heart is down").firing())
//!     .build();
//! assert_eq!(msg.alerts[0].labels["severity"], "critical");
//! ```

use alertmanager::{Alert, LabelSet, PostableAlert, WebhookMessage, WebhookMessageBuilder};

/// A webhook body captured from a real Alertmanager 0.25 (Debian `prometheus-alertmanager`)
/// delivering a Prometheus alert to a webhook receiver.
pub const ALERTMANAGER_0_25_WEBHOOK: &str =
    include_str!("../../alertmanager/tests/data/alertmanager-0.25-webhook.json");

/// The namespace the organs run in.
pub const NAMESPACE: &str = "organism";

/// The `externalURL` of the payloads [`webhook`] starts: an Alertmanager on its default port.
pub const EXTERNAL_URL: &str = "http://127.0.0.1:9093";

/// An alert's labels and annotations, built one label at a time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestAlert {
    labels: LabelSet,
    annotations: LabelSet,
}

/// An alert named `alertname` with no other label yet.
pub fn alert(alertname: &str) -> TestAlert {
    TestAlert {
        labels: LabelSet::from([("alertname".to_owned(), alertname.to_owned())]),
        annotations: LabelSet::new(),
    }
}

impl TestAlert {
    /// Adds (or replaces) a label.
    #[must_use]
    pub fn label(mut self, name: &str, value: impl Into<String>) -> Self {
        self.labels.insert(name.to_owned(), value.into());
        self
    }

    /// Adds (or replaces) an annotation.
    #[must_use]
    pub fn annotation(mut self, name: &str, value: impl Into<String>) -> Self {
        self.annotations.insert(name.to_owned(), value.into());
        self
    }

    /// `severity`.
    #[must_use]
    pub fn severity(self, severity: &str) -> Self {
        self.label("severity", severity)
    }

    /// `severity="critical"`.
    #[must_use]
    pub fn critical(self) -> Self {
        self.severity("critical")
    }

    /// `severity="warning"`.
    #[must_use]
    pub fn warning(self) -> Self {
        self.severity("warning")
    }

    /// `namespace`.
    #[must_use]
    pub fn namespace(self, namespace: &str) -> Self {
        self.label("namespace", namespace)
    }

    /// `namespace="organism"` and `service`.
    #[must_use]
    pub fn service(self, service: &str) -> Self {
        self.namespace(NAMESPACE).label("service", service)
    }

    /// `pod`.
    #[must_use]
    pub fn pod(self, pod: &str) -> Self {
        self.label("pod", pod)
    }

    /// The `summary` annotation.
    #[must_use]
    pub fn summary(self, summary: impl Into<String>) -> Self {
        self.annotation("summary", summary)
    }

    /// The `runbook_url` annotation, `https://runbooks.organism.dev/<alertname>`.
    #[must_use]
    pub fn runbook(self) -> Self {
        let url = format!("https://runbooks.organism.dev/{}", self.labels["alertname"]);
        self.annotation("runbook_url", url)
    }

    /// The labels so far.
    pub fn labels(&self) -> &LabelSet {
        &self.labels
    }

    /// A webhook alert firing since now.
    pub fn firing(self) -> Alert {
        let mut alert = Alert::firing(self.labels);
        alert.annotations = self.annotations;
        alert
    }

    /// A webhook alert resolved now.
    pub fn resolved(self) -> Alert {
        self.firing().resolved_now()
    }

    /// The alert as posted to Alertmanager's API v2.
    pub fn postable(self) -> PostableAlert {
        let mut alert = PostableAlert::new(self.labels);
        alert.annotations = self.annotations;
        alert
    }
}

/// A payload for `receiver` grouped by `alertname`, from the Alertmanager at [`EXTERNAL_URL`];
/// add alerts and `build()`.
pub fn webhook(receiver: &str) -> WebhookMessageBuilder {
    WebhookMessage::builder(receiver)
        .group_by(["alertname"])
        .external_url(EXTERNAL_URL)
}

/// A firing alert as health-monitor raises it for a crash-looping pod: remediable by the healer
/// (`remediation="restart-pod"`).
pub fn pod_crash_looping_alert(namespace: &str, pod: &str) -> Alert {
    alert("PodCrashLooping")
        .critical()
        .namespace(namespace)
        .pod(pod)
        .label("finding", "crash_loop")
        .label("remediation", "restart-pod")
        .summary(format!("Pod {namespace}/{pod} is crash-looping"))
        .annotation(
            "description",
            format!("{pod} restarted repeatedly in the last minutes"),
        )
        .runbook()
        .firing()
}

/// A firing warning about a service's error rate: not remediable (no `remediation` label).
pub fn high_error_rate_alert(service: &str) -> Alert {
    alert("HighErrorRate")
        .warning()
        .service(service)
        .summary(format!("{service} answers more than 5% errors"))
        .runbook()
        .firing()
}

/// The pod [`pod_crash_looping`] is about.
pub const CRASH_LOOPING_POD: &str = "heart-7d9c8b6f5-abcde";

/// What Alertmanager sends `receiver` for one crash-looping pod ([`CRASH_LOOPING_POD`]).
pub fn pod_crash_looping(receiver: &str) -> WebhookMessage {
    webhook(receiver)
        .alert(pod_crash_looping_alert(NAMESPACE, CRASH_LOOPING_POD))
        .build()
}

/// The same group after the pod recovered.
pub fn pod_crash_looping_resolved(receiver: &str) -> WebhookMessage {
    webhook(receiver)
        .alert(pod_crash_looping_alert(NAMESPACE, CRASH_LOOPING_POD).resolved_now())
        .build()
}

/// A group of two error-rate warnings (heart and brain).
pub fn high_error_rate(receiver: &str) -> WebhookMessage {
    webhook(receiver)
        .alerts([
            high_error_rate_alert("heart"),
            high_error_rate_alert("brain"),
        ])
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use alertmanager::{Fingerprint, Status};

    #[test]
    fn the_named_payloads_survive_a_round_trip() {
        for msg in [
            pod_crash_looping("r"),
            pod_crash_looping_resolved("r"),
            high_error_rate("r"),
        ] {
            let bytes = serde_json::to_vec(&msg).unwrap();
            assert_eq!(WebhookMessage::from_slice(&bytes).unwrap(), msg);
        }
    }

    #[test]
    fn the_resolved_payload_is_resolved() {
        assert_eq!(pod_crash_looping_resolved("r").status, Status::Resolved);
    }

    #[test]
    fn a_group_keeps_only_the_labels_its_alerts_share() {
        let group = high_error_rate("r");
        assert_eq!(group.common_labels.get("service"), None);
        assert_eq!(group.common_labels["alertname"], "HighErrorRate");
        assert_eq!(
            group.alerts[0].labels["service"], "brain",
            "sorted by label set"
        );
    }

    #[test]
    fn the_captured_payload_parses_and_its_fingerprints_match() {
        let msg = WebhookMessage::from_slice(ALERTMANAGER_0_25_WEBHOOK.as_bytes()).unwrap();
        assert!(!msg.alerts.is_empty());
        for alert in &msg.alerts {
            assert_eq!(alert.fingerprint, Fingerprint::of_labels(&alert.labels));
        }
    }

    #[test]
    fn a_test_alert_is_the_same_alert_in_every_form() {
        let spec = alert("HeartDown")
            .critical()
            .service("heart")
            .summary("heart is down");
        let labels = spec.labels().clone();
        assert_eq!(labels["namespace"], "organism");
        let firing = spec.clone().firing();
        assert_eq!(firing.labels, labels);
        assert_eq!(firing.annotations["summary"], "heart is down");
        assert_eq!(firing.status, Status::Firing);
        assert_eq!(spec.clone().resolved().status, Status::Resolved);
        let postable = spec.postable();
        assert_eq!(postable.labels, labels);
        assert_eq!(postable.fingerprint(), firing.fingerprint);
    }
}
