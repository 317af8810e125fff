//! What is wrong, as plain data: [`Finding`], and its Alertmanager form ([`Finding::to_alert`]).
//!
//! A finding names the kind of problem ([`FindingKind`], kebab-case on the wire), how bad it is,
//! the object it is about (no Kubernetes type leaks in: [`ObjectRef`] is strings), what the
//! auto-healer may do about it ([`Remediation`]) and, when the cause is a dependency (a
//! database, say), that dependency — in which case there is never a restart remediation.

use std::collections::BTreeMap;
use std::fmt;

use alertmanager::{LabelSet, PostableAlert};
use serde::{Deserialize, Serialize};

/// The kinds of problem health-monitor reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FindingKind {
    /// A container waits in `CrashLoopBackOff`.
    CrashLoopBackOff,
    /// A container's last run ended `OOMKilled` recently.
    OomKilled,
    /// A container cannot pull its image (`ErrImagePull`, `ImagePullBackOff`, `InvalidImageName`).
    ImagePullBackOff,
    /// A container cannot be created from its spec (`CreateContainerConfigError`, `CreateContainerError`).
    CreateContainerConfigError,
    /// The scheduler cannot place a pod.
    PodUnschedulable,
    /// A running pod has been not ready for too long.
    PodNotReady,
    /// A pod restarted too often within the window.
    PodRestarting,
    /// A failed pod lingers.
    PodFailedLingering,
    /// A deleted pod has not gone away.
    PodStuckTerminating,
    /// A Deployment has unavailable replicas.
    DeploymentReplicasUnavailable,
    /// A Deployment's rollout exceeded its progress deadline.
    DeploymentProgressDeadlineExceeded,
    /// An HPA wants more replicas than its maximum.
    HpaAtMaxReplicas,
    /// A StatefulSet has fewer ready replicas than desired.
    StatefulsetNotReady,
    /// A DaemonSet has unavailable pods.
    DaemonsetNotReady,
    /// A node is not ready.
    NodeNotReady,
    /// A node reports memory pressure.
    NodeMemoryPressure,
    /// A node reports disk pressure.
    NodeDiskPressure,
    /// A node reports PID pressure.
    NodePidPressure,
    /// A node has been cordoned for too long.
    NodeCordonedLong,
    /// A node the auto-healer cordoned is Ready again (remediation `uncordon`).
    NodeRecovered,
    /// A Service has no ready endpoint.
    ServiceNoReadyEndpoints,
    /// A control-plane component is unhealthy.
    ControlPlaneUnhealthy,
    /// A configured PromQL check crossed its threshold.
    MetricCheck,
    /// A local service does not answer `/healthz`.
    ServiceDown,
    /// A local service answers `/readyz` with "not ready".
    ServiceNotReady,
}

impl FindingKind {
    /// Every kind, in declaration order.
    pub const ALL: [FindingKind; 25] = [
        FindingKind::CrashLoopBackOff,
        FindingKind::OomKilled,
        FindingKind::ImagePullBackOff,
        FindingKind::CreateContainerConfigError,
        FindingKind::PodUnschedulable,
        FindingKind::PodNotReady,
        FindingKind::PodRestarting,
        FindingKind::PodFailedLingering,
        FindingKind::PodStuckTerminating,
        FindingKind::DeploymentReplicasUnavailable,
        FindingKind::DeploymentProgressDeadlineExceeded,
        FindingKind::HpaAtMaxReplicas,
        FindingKind::StatefulsetNotReady,
        FindingKind::DaemonsetNotReady,
        FindingKind::NodeNotReady,
        FindingKind::NodeMemoryPressure,
        FindingKind::NodeDiskPressure,
        FindingKind::NodePidPressure,
        FindingKind::NodeCordonedLong,
        FindingKind::NodeRecovered,
        FindingKind::ServiceNoReadyEndpoints,
        FindingKind::ControlPlaneUnhealthy,
        FindingKind::MetricCheck,
        FindingKind::ServiceDown,
        FindingKind::ServiceNotReady,
    ];

    /// The kebab-case id, e.g. `crash-loop-back-off`.
    pub fn as_str(self) -> &'static str {
        match self {
            FindingKind::CrashLoopBackOff => "crash-loop-back-off",
            FindingKind::OomKilled => "oom-killed",
            FindingKind::ImagePullBackOff => "image-pull-back-off",
            FindingKind::CreateContainerConfigError => "create-container-config-error",
            FindingKind::PodUnschedulable => "pod-unschedulable",
            FindingKind::PodNotReady => "pod-not-ready",
            FindingKind::PodRestarting => "pod-restarting",
            FindingKind::PodFailedLingering => "pod-failed-lingering",
            FindingKind::PodStuckTerminating => "pod-stuck-terminating",
            FindingKind::DeploymentReplicasUnavailable => "deployment-replicas-unavailable",
            FindingKind::DeploymentProgressDeadlineExceeded => {
                "deployment-progress-deadline-exceeded"
            }
            FindingKind::HpaAtMaxReplicas => "hpa-at-max-replicas",
            FindingKind::StatefulsetNotReady => "statefulset-not-ready",
            FindingKind::DaemonsetNotReady => "daemonset-not-ready",
            FindingKind::NodeNotReady => "node-not-ready",
            FindingKind::NodeMemoryPressure => "node-memory-pressure",
            FindingKind::NodeDiskPressure => "node-disk-pressure",
            FindingKind::NodePidPressure => "node-pid-pressure",
            FindingKind::NodeCordonedLong => "node-cordoned-long",
            FindingKind::NodeRecovered => "node-recovered",
            FindingKind::ServiceNoReadyEndpoints => "service-no-ready-endpoints",
            FindingKind::ControlPlaneUnhealthy => "control-plane-unhealthy",
            FindingKind::MetricCheck => "metric-check",
            FindingKind::ServiceDown => "service-down",
            FindingKind::ServiceNotReady => "service-not-ready",
        }
    }

    /// The alert name: the id in CamelCase, e.g. `CrashLoopBackOff`, `HpaAtMaxReplicas`.
    pub fn alertname(self) -> String {
        camel_case(self.as_str())
    }
}

impl fmt::Display for FindingKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `crash-loop-back-off` → `CrashLoopBackOff`.
pub fn camel_case(kebab: &str) -> String {
    kebab
        .split(['-', '_'])
        .filter(|w| !w.is_empty())
        .map(|w| {
            let mut chars = w.chars();
            match chars.next() {
                Some(first) => first.to_ascii_uppercase().to_string() + chars.as_str(),
                None => String::new(),
            }
        })
        .collect()
}

/// How bad a finding is; the `severity` label.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth knowing.
    Info,
    /// Needs attention.
    #[default]
    Warning,
    /// Users are, or will soon be, affected.
    Critical,
}

impl Severity {
    /// `info`, `warning` or `critical`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }

    /// Every severity.
    pub const ALL: [Severity; 3] = [Severity::Info, Severity::Warning, Severity::Critical];
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the auto-healer may do about a finding; the `remediation` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Remediation {
    /// Delete the pod (its controller makes a new one), or restart the local process.
    RestartPod,
    /// `kubectl rollout restart` the workload.
    RolloutRestart,
    /// Roll the Deployment back to its previous revision.
    Rollback,
    /// Add capacity (replicas, or the HPA's maximum).
    ScaleUp,
    /// Raise the workload's memory limit (an OOM kill that restarts did not cure).
    RaiseMemory,
    /// Cordon and drain the node.
    CordonDrain,
    /// Make a node the healer cordoned schedulable again (it is Ready again).
    Uncordon,
    /// Delete what is left over (failed pods, pods stuck terminating).
    Cleanup,
}

impl Remediation {
    /// The label value, e.g. `restart-pod`.
    pub fn as_str(self) -> &'static str {
        match self {
            Remediation::RestartPod => "restart-pod",
            Remediation::RolloutRestart => "rollout-restart",
            Remediation::Rollback => "rollback",
            Remediation::ScaleUp => "scale-up",
            Remediation::RaiseMemory => "raise-memory",
            Remediation::CordonDrain => "cordon-drain",
            Remediation::Uncordon => "uncordon",
            Remediation::Cleanup => "cleanup",
        }
    }

    /// Whether this remediation restarts something (never offered when a dependency is the cause).
    pub fn is_restart(self) -> bool {
        matches!(self, Remediation::RestartPod | Remediation::RolloutRestart)
    }
}

impl fmt::Display for Remediation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The object a finding is about, as plain strings.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct ObjectRef {
    /// `Pod`, `Node`, `Deployment`, `Service`, `ControlPlane`, `Process`, `Metric`, ...
    pub kind: String,
    /// The namespace, for namespaced objects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The object's name.
    pub name: String,
    /// The node it runs on (a pod's node, or the node itself).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// The owning workload's kind (`Deployment`, `StatefulSet`, `DaemonSet`, `Job`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_kind: Option<String>,
    /// The owning workload's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<String>,
}

impl ObjectRef {
    /// An object of `kind` named `name`, in `namespace` when given.
    pub fn new(kind: &str, namespace: Option<&str>, name: &str) -> Self {
        Self {
            kind: kind.to_owned(),
            namespace: namespace.map(str::to_owned),
            name: name.to_owned(),
            ..Self::default()
        }
    }
}

/// One problem found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// The kind of problem.
    pub finding: FindingKind,
    /// How bad it is.
    pub severity: Severity,
    /// What it is about.
    pub object: ObjectRef,
    /// One line for humans.
    pub summary: String,
    /// The details: reasons, messages, numbers.
    pub description: String,
    /// What the auto-healer may do; `None` when it should leave it to a human.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remediation: Option<Remediation>,
    /// The dependency that causes it (e.g. `database`), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dependency: Option<String>,
    /// Our service's name (`heart`, `user-service`, ...), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// Unix seconds since when the condition holds, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<i64>,
    /// Further identifying labels (a PromQL check's name and series labels).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// Labels a finding sets itself; extra labels may not override them.
pub const RESERVED_LABELS: [&str; 11] = [
    "alertname",
    "severity",
    "namespace",
    "pod",
    "node",
    "workload_kind",
    "workload",
    "finding",
    "remediation",
    "dependency",
    "service",
];

impl Finding {
    /// A finding of `kind` about `object`, with no remediation, dependency or service yet.
    pub fn new(
        kind: FindingKind,
        severity: Severity,
        object: ObjectRef,
        summary: impl Into<String>,
        description: impl Into<String>,
    ) -> Self {
        Self {
            finding: kind,
            severity,
            object,
            summary: summary.into(),
            description: description.into(),
            remediation: None,
            dependency: None,
            service: None,
            since: None,
            labels: BTreeMap::new(),
        }
    }

    /// Sets the remediation (ignored when a dependency is already named and it is a restart).
    #[must_use]
    pub fn with_remediation(mut self, remediation: Option<Remediation>) -> Self {
        self.remediation = remediation;
        self.enforce_dependency_rule();
        self
    }

    /// Names the dependency at fault; a restart remediation is dropped (restarting a pod does
    /// not bring a database back).
    #[must_use]
    pub fn with_dependency(mut self, dependency: Option<String>) -> Self {
        self.dependency = dependency;
        self.enforce_dependency_rule();
        self
    }

    /// Sets our service's name.
    #[must_use]
    pub fn with_service(mut self, service: Option<String>) -> Self {
        self.service = service;
        self
    }

    /// Sets since when the condition holds (Unix seconds).
    #[must_use]
    pub fn with_since(mut self, since: Option<i64>) -> Self {
        self.since = since;
        self
    }

    fn enforce_dependency_rule(&mut self) {
        if self.dependency.is_some() && self.remediation.is_some_and(Remediation::is_restart) {
            self.remediation = None;
        }
    }

    /// The alert's identifying labels (empty values left out, as Alertmanager drops them).
    pub fn alert_labels(&self) -> LabelSet {
        let mut labels = LabelSet::new();
        let mut put = |k: &str, v: Option<&str>| {
            if let Some(v) = v.filter(|v| !v.is_empty()) {
                labels.insert(k.to_owned(), v.to_owned());
            }
        };
        let alertname = self.finding.alertname();
        put("alertname", Some(&alertname));
        put("severity", Some(self.severity.as_str()));
        put("finding", Some(self.finding.as_str()));
        put("namespace", self.object.namespace.as_deref());
        let pod = (self.object.kind == "Pod").then_some(self.object.name.as_str());
        put("pod", pod);
        put("node", self.object.node.as_deref());
        put("workload_kind", self.object.workload_kind.as_deref());
        put("workload", self.object.workload.as_deref());
        put("remediation", self.remediation.map(Remediation::as_str));
        put("dependency", self.dependency.as_deref());
        put("service", self.service.as_deref());
        for (k, v) in &self.labels {
            if !RESERVED_LABELS.contains(&k.as_str()) {
                put(k, Some(v));
            }
        }
        labels
    }

    /// A stable identity: the alert label set as text.
    pub fn key(&self) -> String {
        alertmanager::webhook::label_set_string(&self.alert_labels())
    }

    /// The annotations: `summary`, `description`, `runbook_url` (`runbook_base` + `#` + the
    /// lowercase alert name).
    pub fn annotations(&self, runbook_base: &str) -> LabelSet {
        let mut a = LabelSet::new();
        a.insert("summary".to_owned(), self.summary.clone());
        a.insert("description".to_owned(), self.description.clone());
        a.insert(
            "runbook_url".to_owned(),
            format!(
                "{}#{}",
                runbook_base,
                self.finding.alertname().to_ascii_lowercase()
            ),
        );
        a
    }

    /// The alert for `POST /api/v2/alerts`; `starts_at` and `ends_at` are set by the publisher.
    pub fn to_alert(&self, runbook_base: &str) -> PostableAlert {
        PostableAlert {
            labels: self.alert_labels(),
            annotations: self.annotations(runbook_base),
            starts_at: None,
            ends_at: None,
            generator_url: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alertnames_are_camel_case_of_the_ids() {
        assert_eq!(
            FindingKind::CrashLoopBackOff.alertname(),
            "CrashLoopBackOff"
        );
        assert_eq!(
            FindingKind::HpaAtMaxReplicas.alertname(),
            "HpaAtMaxReplicas"
        );
        assert_eq!(FindingKind::OomKilled.alertname(), "OomKilled");
        for kind in FindingKind::ALL {
            let json = serde_json::to_value(kind).unwrap();
            assert_eq!(json, kind.as_str(), "serde name = as_str for {kind:?}");
            assert!(!kind.alertname().contains('-'));
        }
    }

    /// A not-ready pod of a Deployment, blamed on the database, with a restart offered.
    fn not_ready_for_the_database() -> Finding {
        let mut object = ObjectRef::new("Pod", Some("organism"), "user-service-7d9-abc");
        object.node = Some("kind-worker".into());
        object.workload_kind = Some("Deployment".into());
        object.workload = Some("user-service".into());
        Finding::new(
            FindingKind::PodNotReady,
            Severity::Warning,
            object,
            "s",
            "d",
        )
        .with_remediation(Some(Remediation::RestartPod))
        .with_service(Some("user-service".into()))
        .with_dependency(Some("database".into()))
    }

    #[test]
    fn labels_follow_the_contract() {
        let alert = not_ready_for_the_database().to_alert("https://runbooks.example/RUNBOOKS.md");
        let l = &alert.labels;
        assert_eq!(l["alertname"], "PodNotReady");
        assert_eq!(l["severity"], "warning");
        assert_eq!(l["namespace"], "organism");
        assert_eq!(l["pod"], "user-service-7d9-abc");
        assert_eq!(l["node"], "kind-worker");
        assert_eq!(l["workload_kind"], "Deployment");
        assert_eq!(l["workload"], "user-service");
        assert_eq!(l["finding"], "pod-not-ready");
        assert_eq!(l["dependency"], "database");
        assert_eq!(l["service"], "user-service");
    }

    #[test]
    fn the_runbook_link_points_at_the_alert_section() {
        let alert = not_ready_for_the_database().to_alert("https://runbooks.example/RUNBOOKS.md");
        assert_eq!(
            alert.annotations["runbook_url"],
            "https://runbooks.example/RUNBOOKS.md#podnotready"
        );
    }

    #[test]
    fn a_dependency_at_fault_drops_the_restart() {
        let l = not_ready_for_the_database().alert_labels();
        assert!(
            !l.contains_key("remediation"),
            "no restart when a dependency is at fault"
        );
    }

    #[test]
    fn a_dependency_does_not_block_a_remediation_other_than_restart() {
        let g = not_ready_for_the_database().with_remediation(Some(Remediation::Cleanup));
        assert_eq!(g.alert_labels()["remediation"], "cleanup");
    }

    #[test]
    fn extra_labels_cannot_override_reserved_ones() {
        let mut f = Finding::new(
            FindingKind::MetricCheck,
            Severity::Info,
            ObjectRef::new("Metric", None, "x"),
            "s",
            "d",
        );
        f.labels.insert("severity".into(), "critical".into());
        f.labels.insert("check".into(), "x".into());
        let l = f.alert_labels();
        assert_eq!(l["severity"], "info");
        assert_eq!(l["check"], "x");
        assert!(!l.contains_key("pod"));
    }
}
