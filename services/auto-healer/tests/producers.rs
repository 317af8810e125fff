//! Every healer action has a producer: the alerts health-monitor and the chart's Prometheus
//! rules send for "raise the memory limit" and "uncordon" are decided, under the chart's own
//! policy (`services.auto-healer.config.data` in k8s/charts/organism/values.yaml), into exactly
//! those actions on the right targets. The labels are the ones health-monitor's tests assert for
//! its `oom-killed` and `node-recovered` findings, and the ones the rule file gives
//! `ServiceMemoryLeakPersists` (read from the file, templates filled for job `heart`).

use std::collections::BTreeSet;
use std::path::Path;

use auto_healer::core::{
    AlertFacts, ClusterSnapshot, Decision, GuardState, Input, Labels, NodeInfo, PlatformKind,
    PodCounts, Target, Trigger, WorkloadKind, decide,
};
use auto_healer::policy::{Action, Policy};
use serde_json::Value;
use time::OffsetDateTime;

fn repo_file(rel: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn chart_policy() -> Policy {
    let values: Value =
        serde_yaml_ng::from_str(&repo_file("k8s/charts/organism/values.yaml")).unwrap();
    let data = &values["services"]["auto-healer"]["config"]["data"];
    Policy::from_yaml(&serde_yaml_ng::to_string(data).unwrap()).expect("the chart's policy parses")
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn cluster() -> ClusterSnapshot {
    ClusterSnapshot {
        annotations: vec![],
        workload_pods: Some(PodCounts {
            total: 1,
            disrupted_others: 0,
        }),
        nodes: vec![
            NodeInfo {
                name: "kind-worker".into(),
                ready: true,
                unschedulable: false,
            },
            NodeInfo {
                name: "kind-worker2".into(),
                ready: true,
                unschedulable: true,
            },
        ],
    }
}

fn decide_k8s(policy: &Policy, l: Labels) -> Decision {
    let alert = AlertFacts {
        labels: l,
        starts_at: OffsetDateTime::now_utc(),
    };
    decide(Input {
        alert: &alert,
        policy,
        state: &GuardState::default(),
        cluster: &cluster(),
        in_flight: &BTreeSet::new(),
        now: OffsetDateTime::now_utc(),
        trigger: Trigger::Alert,
        platform: PlatformKind::Kubernetes,
        dry_run: false,
    })
}

fn brain_deployment() -> Target {
    Target::Workload {
        namespace: "organism".into(),
        kind: WorkloadKind::Deployment,
        name: "brain".into(),
    }
}

/// `d` is the `oom-killed` rule's memory-limit raise on brain's Deployment.
fn assert_raises_brains_memory_limit(d: Decision) {
    let Decision::Act(plan) = d else {
        panic!("expected an action, got {d:?}")
    };
    assert_eq!(plan.rule, "oom-killed");
    assert!(
        matches!(plan.action, Action::RaiseMemoryLimit { .. }),
        "{plan:?}"
    );
    assert_eq!(plan.target, brain_deployment());
}

#[test]
fn health_monitors_oom_killed_finding_raises_the_memory_limit() {
    let policy = chart_policy();
    // health-monitor's alert for a container OOM-killed again after a restart.
    let d = decide_k8s(
        &policy,
        labels(&[
            ("alertname", "OomKilled"),
            ("severity", "warning"),
            ("finding", "oom-killed"),
            ("namespace", "organism"),
            ("pod", "brain-7c8d9f6b5-q9w8e"),
            ("node", "kind-worker"),
            ("workload_kind", "Deployment"),
            ("workload", "brain"),
            ("service", "brain"),
            ("container", "brain"),
            ("remediation", "raise-memory"),
        ]),
    );
    assert_raises_brains_memory_limit(d);
}

#[test]
fn the_memory_leak_persists_rule_raises_the_memory_limit() {
    let policy = chart_policy();
    let rules: Value = serde_yaml_ng::from_str(&repo_file(
        "k8s/charts/organism/files/prometheus-rules.yaml",
    ))
    .unwrap();
    let rule = rules["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap())
        .find(|r| r["alert"] == "ServiceMemoryLeakPersists")
        .expect("the rule file has ServiceMemoryLeakPersists");
    // What Prometheus sends: the rule's labels (templates filled) plus the series' labels.
    let mut l = labels(&[
        ("alertname", "ServiceMemoryLeakPersists"),
        ("job", "brain"),
        ("instance", "10.244.1.17:8082"),
        ("namespace", "organism"),
        ("pod", "brain-7c8d9f6b5-q9w8e"),
    ]);
    for (k, v) in rule["labels"].as_object().unwrap() {
        l.insert(
            k.clone(),
            v.as_str().unwrap().replace("{{ $labels.job }}", "brain"),
        );
    }
    let d = decide_k8s(&policy, l);
    assert_raises_brains_memory_limit(d);
}

#[test]
fn health_monitors_node_recovered_finding_uncordons() {
    let policy = chart_policy();
    let d = decide_k8s(
        &policy,
        labels(&[
            ("alertname", "NodeRecovered"),
            ("severity", "info"),
            ("finding", "node-recovered"),
            ("node", "kind-worker2"),
            ("remediation", "uncordon"),
        ]),
    );
    let Decision::Act(plan) = d else {
        panic!("expected an action, got {d:?}")
    };
    assert_eq!(plan.rule, "node-recovered");
    assert_eq!(plan.action, Action::Uncordon);
    assert_eq!(
        plan.target,
        Target::Node {
            name: "kind-worker2".into()
        }
    );
}
