//! The classifiers on real Kubernetes JSON (`kubectl get -o json` Lists under tests/fixtures/):
//! every finding type, and a healthy cluster with none.

use std::sync::Arc;

use health_monitor::classify::{
    Cluster, Ctx, SinceTracker, classify_apiserver_health, classify_cluster, classify_node,
};
use health_monitor::config::{DependencyRules, NamespaceFilter, Thresholds};
use health_monitor::finding::{Finding, FindingKind, Remediation, Severity};
use k8s_openapi::api::core::v1::Node;
use serde_json::Value;
use time::macros::datetime;

mod support;
use support::fixture;

/// The fixtures' "now": 2026-11-22T10:00:00Z.
fn now() -> i64 {
    datetime!(2026-11-22 10:00:00 UTC).unix_timestamp()
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

/// The findings of the unhealthy fixtures at the fixtures' "now" (first sight).
fn findings_now() -> Vec<Finding> {
    let env = Env::new();
    classify_cluster(
        &unhealthy_cluster(),
        &env.ctx(now()),
        &mut SinceTracker::default(),
    )
}

/// The findings of the unhealthy fixtures seen at "now" and again `not_ready_after` (120 s)
/// and a second later: conditions without a timestamp of their own have lasted long enough.
fn findings_later() -> Vec<Finding> {
    let cluster = unhealthy_cluster();
    let env = Env::new();
    let mut since = SinceTracker::default();
    classify_cluster(&cluster, &env.ctx(now()), &mut since);
    classify_cluster(&cluster, &env.ctx(now() + 121), &mut since)
}

#[test]
fn a_crash_looping_pod_is_critical_with_a_restart_and_the_contract_labels() {
    let findings = findings_now();
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
}

#[test]
fn a_first_oom_kill_has_no_remediation_and_dates_from_the_kill() {
    let findings = findings_now();
    let f = find(&findings, FindingKind::OomKilled, "brain-7c8d9f6b5-q9w8e");
    assert_eq!(
        f.remediation, None,
        "one OOM kill (restartCount 1): the kubelet's restart may be enough"
    );
    assert_eq!(
        f.since,
        Some(datetime!(2026-11-22 09:55:01 UTC).unix_timestamp())
    );
}

#[test]
fn an_image_that_cannot_be_pulled_asks_for_a_rollback_naming_the_image() {
    let findings = findings_now();
    let f = find(
        &findings,
        FindingKind::ImagePullBackOff,
        "api-gateway-5f6b7c8d9-l4k3j",
    );
    assert_eq!(f.remediation, Some(Remediation::Rollback));
    assert!(f.description.contains("0.1.1-typo"), "{}", f.description);
}

#[test]
fn a_missing_secret_is_a_config_error_without_remediation() {
    let findings = findings_now();
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
}

#[test]
fn an_unschedulable_pod_says_why_and_has_no_node() {
    let findings = findings_now();
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
}

/// Not ready because of the database (named by the readiness probe's failing check): the
/// dependency is set and there is no restart remediation.
#[test]
fn a_pod_not_ready_for_its_database_names_it_and_gets_no_restart() {
    let findings = findings_now();
    let f = find(
        &findings,
        FindingKind::PodNotReady,
        "user-service-6c7d8e9f0-r5t6y",
    );
    assert_eq!(f.dependency.as_deref(), Some("database"));
    assert_eq!(f.remediation, None);
    assert_eq!(f.alert_labels()["dependency"], "database");
    assert!(!f.alert_labels().contains_key("remediation"));
}

#[test]
fn a_pod_not_ready_for_no_named_reason_may_be_restarted() {
    let findings = findings_now();
    let f = find(&findings, FindingKind::PodNotReady, "brain-7c8d9f6b5-p0o9i");
    assert_eq!(f.dependency, None);
    assert_eq!(f.remediation, Some(Remediation::RestartPod));
}

#[test]
fn a_pod_restarting_often_says_how_often() {
    let findings = findings_now();
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
}

#[test]
fn an_evicted_pod_lingering_is_info_to_clean_up() {
    let findings = findings_now();
    let f = find(
        &findings,
        FindingKind::PodFailedLingering,
        "heart-6d5f7c9b8-e3v4i",
    );
    assert_eq!(f.remediation, Some(Remediation::Cleanup));
    assert_eq!(f.severity, Severity::Info);
    assert!(f.summary.contains("Evicted"), "{}", f.summary);
}

#[test]
fn a_pod_stuck_terminating_is_cleaned_up() {
    let findings = findings_now();
    let f = find(
        &findings,
        FindingKind::PodStuckTerminating,
        "brain-7c8d9f6b5-t5r4e",
    );
    assert_eq!(f.remediation, Some(Remediation::Cleanup));
}

#[test]
fn a_node_not_ready_is_cordoned_and_drained_and_labelled_by_node_only() {
    let findings = findings_now();
    let f = find(&findings, FindingKind::NodeNotReady, "kind-worker3");
    assert_eq!(f.remediation, Some(Remediation::CordonDrain));
    assert_eq!(f.alert_labels()["node"], "kind-worker3");
    assert!(!f.alert_labels().contains_key("pod"));
}

#[test]
fn node_pressures_are_findings_of_their_own_kind() {
    let findings = findings_now();
    find(&findings, FindingKind::NodeMemoryPressure, "kind-worker2");
    find(&findings, FindingKind::NodeDiskPressure, "kind-worker4");
    find(&findings, FindingKind::NodePidPressure, "kind-worker5");
}

#[test]
fn a_node_the_healer_cordoned_and_ready_again_is_to_be_uncordoned() {
    let findings = findings_now();
    let f = find(&findings, FindingKind::NodeRecovered, "kind-worker8");
    assert_eq!(f.remediation, Some(Remediation::Uncordon));
    assert_eq!(f.alert_labels()["node"], "kind-worker8");
    assert_eq!(f.alert_labels()["remediation"], "uncordon");
}

#[test]
fn a_node_a_human_cordoned_is_only_reported_as_cordoned_long() {
    let findings = findings_now();
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
}

#[test]
fn a_stuck_rollout_asks_for_a_rollback() {
    let findings = findings_now();
    let f = find(
        &findings,
        FindingKind::DeploymentProgressDeadlineExceeded,
        "api-gateway",
    );
    assert_eq!(f.remediation, Some(Remediation::Rollback));
    assert_eq!(f.alert_labels()["workload"], "api-gateway");
}

#[test]
fn a_deployment_unavailable_for_its_database_names_it_and_gets_no_restart() {
    let findings = findings_now();
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
}

#[test]
fn an_hpa_at_its_maximum_asks_to_scale_up() {
    let findings = findings_now();
    let f = find(&findings, FindingKind::HpaAtMaxReplicas, "heart");
    assert_eq!(f.remediation, Some(Remediation::ScaleUp));
    assert_eq!(f.alert_labels()["workload"], "heart");
    assert!(
        findings
            .iter()
            .all(|f| !(f.finding == FindingKind::HpaAtMaxReplicas
                && f.object.name == "user-service"))
    );
}

#[test]
fn the_healthy_objects_among_the_unhealthy_have_no_findings() {
    let findings = findings_now();
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
}

#[test]
fn conditions_without_a_timestamp_are_not_findings_at_first_sight() {
    let findings = findings_now();
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
}

#[test]
fn a_statefulset_short_of_ready_replicas_for_long_enough_is_critical_since_first_sight() {
    let later = findings_later();
    let f = find(
        &later,
        FindingKind::StatefulsetNotReady,
        "organism-postgres",
    );
    assert_eq!(f.severity, Severity::Critical);
    assert_eq!(f.since, Some(now()));
}

#[test]
fn a_daemonset_not_ready_for_long_enough_is_a_finding_in_its_namespace() {
    let later = findings_later();
    let f = find(
        &later,
        FindingKind::DaemonsetNotReady,
        "prometheus-node-exporter",
    );
    assert_eq!(f.object.namespace.as_deref(), Some("monitoring"));
}

#[test]
fn a_service_without_ready_endpoints_for_long_enough_names_its_pods() {
    let later = findings_later();
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
}

#[test]
fn the_fixtures_cover_every_kind_the_kubernetes_classifiers_produce() {
    let mut kinds: Vec<FindingKind> = findings_later()
        .iter()
        .chain(findings_now().iter())
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
}

#[test]
fn an_oom_kill_outside_the_restart_window_is_history() {
    let env = Env::new();
    let pod = oom_killed_twice();
    let later = health_monitor::classify::classify_pod(
        &pod,
        &env.ctx(now() + 3600),
        &health_monitor::classify::EventIndex::new(),
    );
    assert!(later.iter().all(|f| f.finding != FindingKind::OomKilled));
}

/// kind-worker8 of the fixture: cordoned by the healer, Ready since 09:40.
fn healer_cordoned_node() -> Node {
    let mut cluster = Cluster::default();
    load(&mut cluster, "nodes.json");
    (**cluster
        .nodes
        .iter()
        .find(|n| n.metadata.name.as_deref() == Some("kind-worker8"))
        .unwrap())
    .clone()
}

#[test]
fn a_healer_cordoned_node_ready_for_too_short_a_time_is_not_recovered() {
    let env = Env::new();
    // Ready since 09:40; not_ready_after is 2 minutes: at 09:41 it is too early.
    let early = datetime!(2026-11-22 09:41:00 UTC).unix_timestamp();
    assert!(
        classify_node(
            &healer_cordoned_node(),
            &env.ctx(early),
            &mut SinceTracker::default()
        )
        .iter()
        .all(|f| f.finding != FindingKind::NodeRecovered)
    );
}

#[test]
fn a_healer_cordoned_node_ready_long_enough_is_to_be_uncordoned() {
    let env = Env::new();
    let node = healer_cordoned_node();
    let f = classify_node(&node, &env.ctx(now()), &mut SinceTracker::default());
    assert_eq!(f.len(), 1, "{f:#?}");
    assert_eq!(f[0].finding, FindingKind::NodeRecovered);
    assert_eq!(f[0].remediation, Some(Remediation::Uncordon));
}

/// Not Ready: no uncordon (the healer's node-not-ready path owns it).
#[test]
fn a_healer_cordoned_node_not_ready_is_not_recovered() {
    let env = Env::new();
    let mut sick = healer_cordoned_node();
    for c in sick.status.as_mut().unwrap().conditions.as_mut().unwrap() {
        if c.type_ == "Ready" {
            c.status = "False".into();
        }
    }
    assert!(
        classify_node(&sick, &env.ctx(now()), &mut SinceTracker::default())
            .iter()
            .all(|f| f.finding != FindingKind::NodeRecovered)
    );
}

/// Uncordoned (the healer removed its annotation with the cordon): nothing left to do.
#[test]
fn an_uncordoned_node_has_no_findings() {
    let env = Env::new();
    let mut done = healer_cordoned_node();
    done.spec.as_mut().unwrap().unschedulable = Some(false);
    done.metadata
        .annotations
        .as_mut()
        .unwrap()
        .remove("organism.dev/cordoned-by");
    assert!(classify_node(&done, &env.ctx(now()), &mut SinceTracker::default()).is_empty());
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
fn an_included_namespace_is_the_only_one_classified_besides_nodes() {
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
}

#[test]
fn an_excluded_namespace_is_not_classified() {
    let cluster = unhealthy_cluster();
    let mut env = Env::new();
    env.namespaces = NamespaceFilter {
        include: vec![],
        exclude: vec!["organism".into()],
    };
    let mut since = SinceTracker::default();
    classify_cluster(&cluster, &env.ctx(now()), &mut since);
    let f = classify_cluster(&cluster, &env.ctx(now() + 200), &mut since);
    assert!(!f.is_empty());
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
}

#[test]
fn a_healthy_apiserver_has_no_findings() {
    let livez = Ok((200, fixture("livez-ok.txt")));
    assert!(classify_apiserver_health(&livez, &Ok((200, fixture("livez-ok.txt")))).is_empty());
}

#[test]
fn an_unreachable_apiserver_is_one_finding_about_the_apiserver() {
    let down = classify_apiserver_health(
        &Err("connection refused".into()),
        &Err("connection refused".into()),
    );
    assert_eq!(down.len(), 1);
    assert_eq!(down[0].object.name, "apiserver");
}
