//! The classifiers on real Kubernetes JSON (`kubectl get -o json` Lists under tests/fixtures/):
//! every finding type, and a healthy cluster with none.

use std::path::PathBuf;
use std::sync::Arc;

use health_monitor::classify::{
    Cluster, Ctx, SinceTracker, classify_apiserver_health, classify_cluster, classify_node,
};
use health_monitor::config::{DependencyRules, NamespaceFilter, Thresholds};
use health_monitor::finding::{Finding, FindingKind, Remediation, Severity};
use k8s_openapi::api::core::v1::Node;
use serde_json::Value;
use time::macros::datetime;

/// The fixtures' "now": 2026-11-22T10:00:00Z.
fn now() -> i64 {
    datetime!(2026-11-22 10:00:00 UTC).unix_timestamp()
}

fn fixture(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Loads a `kind: List` into a cluster snapshot, by each item's kind.
fn load(cluster: &mut Cluster, name: &str) {
    let list: Value = serde_json::from_str(&fixture(name)).unwrap();
    assert_eq!(list["kind"], "List", "{name} is a kubectl List");
    for item in list["items"].as_array().unwrap() {
        let item = item.clone();
        match item["kind"].as_str().unwrap() {
            "Pod" => cluster
                .pods
                .push(Arc::new(serde_json::from_value(item).unwrap())),
            "Node" => cluster
                .nodes
                .push(Arc::new(serde_json::from_value(item).unwrap())),
            "Deployment" => cluster
                .deployments
                .push(Arc::new(serde_json::from_value(item).unwrap())),
            "StatefulSet" => cluster
                .statefulsets
                .push(Arc::new(serde_json::from_value(item).unwrap())),
            "DaemonSet" => cluster
                .daemonsets
                .push(Arc::new(serde_json::from_value(item).unwrap())),
            "HorizontalPodAutoscaler" => cluster
                .hpas
                .push(Arc::new(serde_json::from_value(item).unwrap())),
            "EndpointSlice" => cluster
                .endpoint_slices
                .push(Arc::new(serde_json::from_value(item).unwrap())),
            "Event" => cluster
                .events
                .push(Arc::new(serde_json::from_value(item).unwrap())),
            other => panic!("unexpected kind {other} in {name}"),
        }
    }
}

fn unhealthy_cluster() -> Cluster {
    let mut c = Cluster::default();
    for f in [
        "pods-unhealthy.json",
        "events-warning.json",
        "nodes.json",
        "deployments.json",
        "statefulsets.json",
        "daemonsets.json",
        "hpas.json",
        "endpointslices.json",
    ] {
        load(&mut c, f);
    }
    c
}

struct Env {
    thresholds: Thresholds,
    dependencies: DependencyRules,
    namespaces: NamespaceFilter,
}

impl Env {
    fn new() -> Self {
        Self {
            thresholds: Thresholds::default(),
            dependencies: DependencyRules::default(),
            namespaces: NamespaceFilter::default(),
        }
    }
    fn ctx(&self, now: i64) -> Ctx<'_> {
        Ctx {
            now,
            thresholds: &self.thresholds,
            dependencies: &self.dependencies,
            namespaces: &self.namespaces,
        }
    }
}

fn find<'a>(findings: &'a [Finding], kind: FindingKind, name: &str) -> &'a Finding {
    findings
        .iter()
        .find(|f| f.finding == kind && f.object.name == name)
        .unwrap_or_else(|| {
            let have: Vec<String> = findings
                .iter()
                .map(|f| format!("{} {}", f.finding, f.object.name))
                .collect();
            panic!("no {kind} for {name}; findings: {have:#?}")
        })
}

#[test]
fn every_pod_node_and_workload_finding_from_real_objects() {
    let cluster = unhealthy_cluster();
    let env = Env::new();
    let mut since = SinceTracker::default();
    let findings = classify_cluster(&cluster, &env.ctx(now()), &mut since);

    let f = find(
        &findings,
        FindingKind::CrashLoopBackOff,
        "heart-6d5f7c9b8-x2x4p",
    );
    assert_eq!(f.severity, Severity::Critical);
    assert_eq!(f.remediation, Some(Remediation::RestartPod));
    assert!(
        f.description.contains("restarted 7 times, last exit 101"),
        "{}",
        f.description
    );
    let labels = f.alert_labels();
    assert_eq!(labels["alertname"], "CrashLoopBackOff");
    assert_eq!(labels["namespace"], "organism");
    assert_eq!(labels["pod"], "heart-6d5f7c9b8-x2x4p");
    assert_eq!(labels["node"], "kind-worker2");
    assert_eq!(labels["workload_kind"], "Deployment");
    assert_eq!(labels["workload"], "heart");
    assert_eq!(labels["service"], "heart");
    assert_eq!(labels["finding"], "crash-loop-back-off");
    assert_eq!(labels["remediation"], "restart-pod");

    let f = find(&findings, FindingKind::OomKilled, "brain-7c8d9f6b5-q9w8e");
    assert_eq!(
        f.remediation, None,
        "one OOM kill (restartCount 1): the kubelet's restart may be enough"
    );
    assert_eq!(
        f.since,
        Some(datetime!(2026-11-22 09:55:01 UTC).unix_timestamp())
    );

    let f = find(
        &findings,
        FindingKind::ImagePullBackOff,
        "api-gateway-5f6b7c8d9-l4k3j",
    );
    assert_eq!(f.remediation, Some(Remediation::Rollback));
    assert!(f.description.contains("0.1.1-typo"), "{}", f.description);

    let f = find(
        &findings,
        FindingKind::CreateContainerConfigError,
        "alert-service-8b9c7d6f5-m2n3b",
    );
    assert!(
        f.description
            .contains("secret \"organism-alert-service\" not found"),
        "{}",
        f.description
    );
    assert_eq!(f.remediation, None);

    let f = find(
        &findings,
        FindingKind::PodUnschedulable,
        "user-service-6c7d8e9f0-z1x2c",
    );
    assert!(
        f.description.contains("Insufficient memory"),
        "{}",
        f.description
    );
    assert_eq!(f.object.node, None);

    // Not ready because of the database (named by the readiness probe's failing check): the
    // dependency is set and there is no restart remediation.
    let f = find(
        &findings,
        FindingKind::PodNotReady,
        "user-service-6c7d8e9f0-r5t6y",
    );
    assert_eq!(f.dependency.as_deref(), Some("database"));
    assert_eq!(f.remediation, None);
    assert_eq!(f.alert_labels()["dependency"], "database");
    assert!(!f.alert_labels().contains_key("remediation"));
    // Not ready for no named reason: restart allowed.
    let f = find(&findings, FindingKind::PodNotReady, "brain-7c8d9f6b5-p0o9i");
    assert_eq!(f.dependency, None);
    assert_eq!(f.remediation, Some(Remediation::RestartPod));

    let f = find(
        &findings,
        FindingKind::PodRestarting,
        "auto-healer-9d8c7b6a5-k8j7h",
    );
    assert!(
        f.description.contains("restarted 5 times"),
        "{}",
        f.description
    );

    let f = find(
        &findings,
        FindingKind::PodFailedLingering,
        "heart-6d5f7c9b8-e3v4i",
    );
    assert_eq!(f.remediation, Some(Remediation::Cleanup));
    assert_eq!(f.severity, Severity::Info);
    assert!(f.summary.contains("Evicted"), "{}", f.summary);

    let f = find(
        &findings,
        FindingKind::PodStuckTerminating,
        "brain-7c8d9f6b5-t5r4e",
    );
    assert_eq!(f.remediation, Some(Remediation::Cleanup));

    let f = find(&findings, FindingKind::NodeNotReady, "kind-worker3");
    assert_eq!(f.remediation, Some(Remediation::CordonDrain));
    assert_eq!(f.alert_labels()["node"], "kind-worker3");
    assert!(!f.alert_labels().contains_key("pod"));
    find(&findings, FindingKind::NodeMemoryPressure, "kind-worker2");
    find(&findings, FindingKind::NodeDiskPressure, "kind-worker4");
    find(&findings, FindingKind::NodePidPressure, "kind-worker5");
    let f = find(&findings, FindingKind::NodeRecovered, "kind-worker8");
    assert_eq!(f.remediation, Some(Remediation::Uncordon));
    assert_eq!(f.alert_labels()["node"], "kind-worker8");
    assert_eq!(f.alert_labels()["remediation"], "uncordon");
    assert!(
        findings
            .iter()
            .all(|f| !(f.object.name == "kind-worker6" && f.finding == FindingKind::NodeRecovered)),
        "kind-worker6 was cordoned by a human: never uncordoned by the healer"
    );
    let f = find(&findings, FindingKind::NodeCordonedLong, "kind-worker6");
    assert_eq!(
        f.since,
        Some(datetime!(2026-11-20 09:00:00 UTC).unix_timestamp())
    );

    let f = find(
        &findings,
        FindingKind::DeploymentProgressDeadlineExceeded,
        "api-gateway",
    );
    assert_eq!(f.remediation, Some(Remediation::Rollback));
    assert_eq!(f.alert_labels()["workload"], "api-gateway");
    let f = find(
        &findings,
        FindingKind::DeploymentReplicasUnavailable,
        "user-service",
    );
    assert_eq!(f.severity, Severity::Critical, "no replica available");
    assert_eq!(
        f.dependency.as_deref(),
        Some("database"),
        "its pods name the database"
    );
    assert_eq!(
        f.remediation, None,
        "no rollout restart for a database outage"
    );

    let f = find(&findings, FindingKind::HpaAtMaxReplicas, "heart");
    assert_eq!(f.remediation, Some(Remediation::ScaleUp));
    assert_eq!(f.alert_labels()["workload"], "heart");

    // Nothing about the healthy objects.
    for healthy in [
        "heart-6d5f7c9b8-h7k2m",
        "db-migrate-29381-abcde",
        "kind-worker",
    ] {
        assert!(
            findings.iter().all(|f| f.object.name != healthy),
            "{healthy} is healthy: {:?}",
            findings
                .iter()
                .filter(|f| f.object.name == healthy)
                .collect::<Vec<_>>()
        );
    }
    assert!(
        findings
            .iter()
            .all(|f| !(f.finding == FindingKind::HpaAtMaxReplicas
                && f.object.name == "user-service"))
    );

    // Conditions without a timestamp of their own are not findings at first sight...
    for kind in [
        FindingKind::StatefulsetNotReady,
        FindingKind::DaemonsetNotReady,
        FindingKind::ServiceNoReadyEndpoints,
    ] {
        assert!(
            findings.iter().all(|f| f.finding != kind),
            "{kind} must wait for not_ready_after"
        );
    }
    // ...but are once they have lasted longer than not_ready_after.
    let later = classify_cluster(&cluster, &env.ctx(now() + 121), &mut since);
    let f = find(
        &later,
        FindingKind::StatefulsetNotReady,
        "organism-postgres",
    );
    assert_eq!(f.severity, Severity::Critical);
    assert_eq!(f.since, Some(now()));
    let f = find(
        &later,
        FindingKind::DaemonsetNotReady,
        "prometheus-node-exporter",
    );
    assert_eq!(f.object.namespace.as_deref(), Some("monitoring"));
    let f = find(&later, FindingKind::ServiceNoReadyEndpoints, "user-service");
    assert!(
        f.description.contains("user-service-6c7d8e9f0-r5t6y"),
        "{}",
        f.description
    );
    find(&later, FindingKind::ServiceNoReadyEndpoints, "brain");
    assert!(
        later
            .iter()
            .all(|f| !(f.finding == FindingKind::ServiceNoReadyEndpoints
                && f.object.name == "heart"))
    );

    // Every kind the Kubernetes classifiers can produce was produced.
    let mut kinds: Vec<FindingKind> = later
        .iter()
        .chain(findings.iter())
        .map(|f| f.finding)
        .collect();
    kinds.sort();
    kinds.dedup();
    for k in FindingKind::ALL {
        if matches!(
            k,
            FindingKind::MetricCheck
                | FindingKind::ServiceDown
                | FindingKind::ServiceNotReady
                | FindingKind::ControlPlaneUnhealthy
        ) {
            continue;
        }
        assert!(kinds.contains(&k), "{k} not covered by the fixtures");
    }
}

/// The brain pod of the fixture, OOM-killed again after the kubelet restarted it once.
fn oom_killed_twice() -> k8s_openapi::api::core::v1::Pod {
    let list: Value = serde_json::from_str(&fixture("pods-unhealthy.json")).unwrap();
    let mut pod = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["metadata"]["name"] == "brain-7c8d9f6b5-q9w8e")
        .unwrap()
        .clone();
    pod["status"]["containerStatuses"][0]["restartCount"] = serde_json::json!(2);
    serde_json::from_value(pod).unwrap()
}

#[test]
fn an_oom_kill_after_a_restart_asks_for_more_memory() {
    let env = Env::new();
    let pod = oom_killed_twice();
    let findings = health_monitor::classify::classify_pod(
        &pod,
        &env.ctx(now()),
        &health_monitor::classify::EventIndex::new(),
    );
    let f = find(&findings, FindingKind::OomKilled, "brain-7c8d9f6b5-q9w8e");
    assert_eq!(f.remediation, Some(Remediation::RaiseMemory));
    let l = f.alert_labels();
    // Exactly what the auto-healer's `oom-killed` rule matches and its raise-memory-limit
    // action needs: remediation, finding =~ "oom.*", namespace, the Deployment and container.
    assert_eq!(l["remediation"], "raise-memory");
    assert_eq!(l["finding"], "oom-killed");
    assert_eq!(l["namespace"], "organism");
    assert_eq!(l["workload_kind"], "Deployment");
    assert_eq!(l["workload"], "brain");
    assert_eq!(l["container"], "brain");
    assert!(
        f.description.contains("Restarting did not help"),
        "{}",
        f.description
    );

    // Outside the restart window it is history, not a finding.
    let later = health_monitor::classify::classify_pod(
        &pod,
        &env.ctx(now() + 3600),
        &health_monitor::classify::EventIndex::new(),
    );
    assert!(later.iter().all(|f| f.finding != FindingKind::OomKilled));
}

#[test]
fn a_healer_cordoned_node_is_uncordoned_only_when_ready_long_enough() {
    let mut cluster = Cluster::default();
    load(&mut cluster, "nodes.json");
    let node: Node = (**cluster
        .nodes
        .iter()
        .find(|n| n.metadata.name.as_deref() == Some("kind-worker8"))
        .unwrap())
    .clone();
    let env = Env::new();
    let mut since = SinceTracker::default();
    // Ready since 09:40; not_ready_after is 2 minutes: at 09:41 it is too early.
    let early = datetime!(2026-11-22 09:41:00 UTC).unix_timestamp();
    assert!(
        classify_node(&node, &env.ctx(early), &mut since)
            .iter()
            .all(|f| f.finding != FindingKind::NodeRecovered)
    );
    let f = classify_node(&node, &env.ctx(now()), &mut since);
    assert_eq!(f.len(), 1, "{f:#?}");
    assert_eq!(f[0].finding, FindingKind::NodeRecovered);
    assert_eq!(f[0].remediation, Some(Remediation::Uncordon));

    // Not Ready: no uncordon (the healer's node-not-ready path owns it).
    let mut sick = node.clone();
    for c in sick.status.as_mut().unwrap().conditions.as_mut().unwrap() {
        if c.type_ == "Ready" {
            c.status = "False".into();
        }
    }
    assert!(
        classify_node(&sick, &env.ctx(now()), &mut since)
            .iter()
            .all(|f| f.finding != FindingKind::NodeRecovered)
    );
    // Uncordoned (the healer removed its annotation with the cordon): nothing left to do.
    let mut done = node.clone();
    done.spec.as_mut().unwrap().unschedulable = Some(false);
    done.metadata
        .annotations
        .as_mut()
        .unwrap()
        .remove("organism.dev/cordoned-by");
    assert!(classify_node(&done, &env.ctx(now()), &mut since).is_empty());
}

#[test]
fn a_cordon_without_a_timestamp_is_timed_from_first_sight() {
    let mut cluster = Cluster::default();
    load(&mut cluster, "nodes.json");
    let node: &Node = cluster
        .nodes
        .iter()
        .find(|n| n.metadata.name.as_deref() == Some("kind-worker7"))
        .unwrap();
    let env = Env::new();
    let mut since = SinceTracker::default();
    assert!(classify_node(node, &env.ctx(now()), &mut since).is_empty());
    assert!(classify_node(node, &env.ctx(now() + 23 * 3600), &mut since).is_empty());
    let f = classify_node(node, &env.ctx(now() + 24 * 3600 + 1), &mut since);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].finding, FindingKind::NodeCordonedLong);
    assert_eq!(f[0].severity, Severity::Info);
    assert_eq!(f[0].remediation, None);
}

#[test]
fn namespace_filter_include_and_exclude() {
    let cluster = unhealthy_cluster();
    let mut env = Env::new();
    env.namespaces.include = vec!["monitoring".into()];
    let mut since = SinceTracker::default();
    classify_cluster(&cluster, &env.ctx(now()), &mut since);
    let later = classify_cluster(&cluster, &env.ctx(now() + 121), &mut since);
    assert!(
        later
            .iter()
            .all(|f| f.object.namespace.as_deref() != Some("organism")),
        "{later:#?}"
    );
    assert!(
        later
            .iter()
            .any(|f| f.finding == FindingKind::DaemonsetNotReady)
    );
    assert!(
        later.iter().any(|f| f.finding == FindingKind::NodeNotReady),
        "nodes are cluster-scoped"
    );

    env.namespaces = NamespaceFilter {
        include: vec![],
        exclude: vec!["organism".into()],
    };
    let f = classify_cluster(&cluster, &env.ctx(now() + 200), &mut since);
    assert!(
        f.iter()
            .all(|f| f.object.namespace.as_deref() != Some("organism"))
    );
}

#[test]
fn thresholds_come_from_config() {
    let cluster = unhealthy_cluster();
    let mut env = Env::new();
    env.thresholds.not_ready_after = std::time::Duration::from_secs(3600);
    env.thresholds.lingering_failed_after = std::time::Duration::from_secs(6 * 3600);
    let findings = classify_cluster(&cluster, &env.ctx(now()), &mut SinceTracker::default());
    assert!(
        findings
            .iter()
            .all(|f| f.finding != FindingKind::PodNotReady)
    );
    assert!(
        findings
            .iter()
            .all(|f| f.finding != FindingKind::NodeNotReady)
    );
    assert!(
        findings
            .iter()
            .all(|f| f.finding != FindingKind::PodFailedLingering)
    );
    assert!(
        findings
            .iter()
            .any(|f| f.finding == FindingKind::CrashLoopBackOff)
    );
}

#[test]
fn a_healthy_cluster_has_no_findings_now_or_later() {
    let mut cluster = Cluster::default();
    load(&mut cluster, "healthy-cluster.json");
    assert!(
        cluster.pods.len() >= 5 && cluster.nodes.len() == 2 && !cluster.endpoint_slices.is_empty()
    );
    let env = Env::new();
    let mut since = SinceTracker::default();
    for t in [now(), now() + 3600, now() + 48 * 3600] {
        let findings = classify_cluster(&cluster, &env.ctx(t), &mut since);
        assert!(findings.is_empty(), "at {t}: {findings:#?}");
    }
    assert!(since.is_empty(), "nothing pending either");
}

#[test]
fn apiserver_health_names_the_failing_check() {
    let readyz = Ok((500, fixture("readyz-etcd-failed.txt")));
    let livez = Ok((200, fixture("livez-ok.txt")));
    let f = classify_apiserver_health(&livez, &readyz);
    assert_eq!(f.len(), 1, "{f:#?}");
    assert_eq!(f[0].finding, FindingKind::ControlPlaneUnhealthy);
    assert_eq!(f[0].object.name, "etcd");
    assert_eq!(f[0].alert_labels()["component"], "etcd");
    assert_eq!(f[0].alert_labels()["alertname"], "ControlPlaneUnhealthy");
    assert!(classify_apiserver_health(&livez, &Ok((200, fixture("livez-ok.txt")))).is_empty());
    let down = classify_apiserver_health(
        &Err("connection refused".into()),
        &Err("connection refused".into()),
    );
    assert_eq!(down.len(), 1);
    assert_eq!(down[0].object.name, "apiserver");
}
