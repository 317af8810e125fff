//! Table-driven tests of every guard, and property tests of the blast-radius and rate-limit
//! invariants over random clusters and alert storms.

use super::*;
use crate::policy::{GuardConfig, Policy};
use proptest::prelude::*;
use time::macros::datetime;

const NOW: OffsetDateTime = datetime!(2026-11-01 12:00 UTC);

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn pod_alert(extra: &[(&str, &str)]) -> AlertFacts {
    let mut l = labels(&[
        ("alertname", "PodCrashLooping"),
        ("namespace", "organism"),
        ("pod", "heart-7d9-abc"),
        ("workload", "heart"),
        ("workload_kind", "Deployment"),
        ("remediation", "restart-pod"),
        ("severity", "warning"),
    ]);
    l.extend(labels(extra));
    AlertFacts {
        labels: l,
        starts_at: NOW - Duration::minutes(2),
    }
}

fn node_alert(node: &str) -> AlertFacts {
    AlertFacts {
        labels: labels(&[
            ("alertname", "NodeNotReady"),
            ("node", node),
            ("remediation", "cordon-drain"),
        ]),
        starts_at: NOW,
    }
}

fn healthy_cluster() -> ClusterSnapshot {
    ClusterSnapshot {
        annotations: vec![("pod/organism/heart-7d9-abc".into(), Labels::new())],
        workload_pods: Some(PodCounts {
            total: 3,
            disrupted_others: 0,
        }),
        nodes: (1..=4)
            .map(|i| NodeInfo {
                name: format!("n{i}"),
                ready: true,
                unschedulable: false,
            })
            .collect(),
    }
}

struct Case {
    name: &'static str,
    alert: AlertFacts,
    cluster: ClusterSnapshot,
    state: GuardState,
    in_flight: BTreeSet<String>,
    trigger: Trigger,
    dry_run: bool,
    policy: Policy,
}

impl Case {
    fn new(name: &'static str, alert: AlertFacts) -> Self {
        Self {
            name,
            alert,
            cluster: healthy_cluster(),
            state: GuardState::default(),
            in_flight: BTreeSet::new(),
            trigger: Trigger::Alert,
            dry_run: false,
            policy: Policy::default_policy(),
        }
    }
    fn decide(&self) -> Decision {
        decide(Input {
            alert: &self.alert,
            policy: &self.policy,
            state: &self.state,
            cluster: &self.cluster,
            in_flight: &self.in_flight,
            now: NOW,
            trigger: self.trigger,
            platform: PlatformKind::Kubernetes,
            dry_run: self.dry_run,
        })
    }
}

fn attempt(at: OffsetDateTime, rule: &str, outcome: Outcome) -> Attempt {
    attempt_at_step(at, rule, 0, outcome)
}

fn attempt_at_step(at: OffsetDateTime, rule: &str, step: usize, outcome: Outcome) -> Attempt {
    Attempt {
        at,
        rule: rule.into(),
        step,
        action: "delete-pod".into(),
        target: Target::Pod {
            namespace: "organism".into(),
            name: "heart-7d9-abc".into(),
        },
        outcome,
    }
}

fn state_with(
    subject: &str,
    attempts: Vec<Attempt>,
    cooldown_until: Option<OffsetDateTime>,
) -> GuardState {
    let mut s = GuardState::default();
    s.subjects.insert(
        subject.into(),
        SubjectRecord {
            attempts,
            cooldown_until,
            stop: None,
        },
    );
    s
}

const SUBJECT: &str = "deployment/organism/heart";

/// Asserts that `case` is skipped by `guard` with a reason containing `reason`.
#[track_caller]
fn assert_skipped_by(case: &Case, guard: Guard, reason: &str) {
    match case.decide() {
        Decision::Skip {
            guard: g,
            reason: r,
            ..
        } => {
            assert_eq!(g, guard, "{}: {r}", case.name);
            assert!(
                r.contains(reason),
                "{}: reason {r:?} lacks {reason:?}",
                case.name
            );
        }
        other => panic!("{}: expected a skip by {guard:?}, got {other:?}", case.name),
    }
}

#[test]
fn an_alert_no_rule_matches_is_skipped() {
    let c = Case::new(
        "no rule",
        AlertFacts {
            labels: labels(&[("alertname", "Whatever")]),
            starts_at: NOW,
        },
    );
    assert_skipped_by(&c, Guard::NoRule, "no policy rule");
}

#[test]
fn kube_system_is_denied_by_default() {
    let mut c = Case::new(
        "kube-system denied by default",
        pod_alert(&[("namespace", "kube-system")]),
    );
    c.cluster.annotations.clear();
    assert_skipped_by(&c, Guard::Namespace, "namespace kube-system is denied");
}

#[test]
fn a_namespace_outside_the_allow_list_is_skipped() {
    let mut c = Case::new("allow list", pod_alert(&[]));
    c.policy.guards.namespaces_allow = vec!["other".into()];
    assert_skipped_by(&c, Guard::Namespace, "not in the allow list");
}

#[test]
fn the_opt_out_annotation_on_the_workload_is_honoured() {
    let mut c = Case::new("opt-out annotation on the workload", pod_alert(&[]));
    c.cluster.annotations.push((
        SUBJECT.into(),
        labels(&[("organism.dev/auto-heal", "false")]),
    ));
    assert_skipped_by(
        &c,
        Guard::OptOut,
        "deployment/organism/heart has organism.dev/auto-heal=\"false\"",
    );
}

#[test]
fn a_failing_dependency_is_not_remediated_downstream() {
    let c = Case::new("dependency", pod_alert(&[("dependency", "postgres")]));
    assert_skipped_by(&c, Guard::Dependency, "dependency postgres is failing");
}

#[test]
fn a_subject_cooling_down_is_skipped() {
    let mut c = Case::new("cooldown", pod_alert(&[]));
    c.state = state_with(SUBJECT, vec![], Some(NOW + Duration::seconds(30)));
    assert_skipped_by(&c, Guard::Cooldown, "cooling down for 30 s");
}

#[test]
fn a_subject_being_remediated_is_skipped() {
    let mut c = Case::new("in progress", pod_alert(&[]));
    c.in_flight.insert(SUBJECT.into());
    assert_skipped_by(&c, Guard::InProgress, "being remediated");
}

#[test]
fn the_rate_limit_is_applied() {
    let mut c = Case::new("rate limit", pod_alert(&[]));
    c.state.actions = (0..10)
        .map(|i| Timestamp(NOW - Duration::seconds(10 * i)))
        .collect();
    assert_skipped_by(
        &c,
        Guard::RateLimit,
        "10 actions in the last 10m (limit 10)",
    );
}

#[test]
fn the_concurrency_limit_is_applied() {
    let mut c = Case::new("concurrency", pod_alert(&[]));
    c.in_flight = ["a".to_owned(), "b".to_owned()].into();
    assert_skipped_by(&c, Guard::Concurrency, "2 actions in progress (limit 2)");
}

#[test]
fn the_blast_radius_limit_is_applied() {
    let mut c = Case::new("blast radius", pod_alert(&[]));
    c.cluster.workload_pods = Some(PodCounts {
        total: 3,
        disrupted_others: 1,
    });
    assert_skipped_by(
        &c,
        Guard::BlastRadius,
        "1 of 3 pods are already disrupted; at most 1 at once (34%)",
    );
}

#[test]
fn only_one_node_is_cordoned_at_a_time() {
    let mut c = Case::new("one node at a time", node_alert("n1"));
    c.cluster.nodes[2].unschedulable = true;
    assert_skipped_by(&c, Guard::OneNode, "node n3 is already cordoned");
}

#[test]
fn the_last_schedulable_node_is_not_cordoned() {
    let mut c = Case::new("last schedulable node", node_alert("n1"));
    c.cluster.nodes.truncate(2);
    c.cluster.nodes[1].ready = false;
    assert_skipped_by(&c, Guard::LastNode, "n1 is the last schedulable node");
}

#[test]
fn no_node_is_acted_on_in_a_storm() {
    let mut c = Case::new("storm", node_alert("n1"));
    for n in &mut c.cluster.nodes[..3] {
        n.ready = false;
    }
    assert_skipped_by(&c, Guard::Storm, "3 of 4 nodes are unhealthy");
}

#[test]
fn uncordon_waits_for_the_node_to_be_ready() {
    let mut c = Case::new(
        "uncordon waits for Ready",
        AlertFacts {
            labels: labels(&[
                ("alertname", "NodeRecovered"),
                ("node", "n2"),
                ("remediation", "uncordon"),
            ]),
            starts_at: NOW,
        },
    );
    c.cluster.nodes[1].ready = false;
    assert_skipped_by(&c, Guard::NodeNotReady, "node n2 is not Ready");
}

fn clean_plan() -> Plan {
    Plan {
        rule: "crashing-pod".into(),
        step: 0,
        action: Action::DeletePod,
        target: Target::Pod {
            namespace: "organism".into(),
            name: "heart-7d9-abc".into(),
        },
        passed_over: vec![],
    }
}

#[test]
fn a_clean_alert_acts() {
    let c = Case::new("clean", pod_alert(&[]));
    assert_eq!(c.decide(), Decision::Act(clean_plan()));
}

#[test]
fn a_dry_run_decides_the_same_plan_and_only_records_it() {
    let mut c = Case::new("clean dry run", pod_alert(&[]));
    c.dry_run = true;
    assert_eq!(c.decide(), Decision::DryRun(clean_plan()));
}

#[test]
fn a_dry_run_still_applies_the_guards() {
    let mut c = Case::new(
        "guarded dry run",
        pod_alert(&[("namespace", "kube-system")]),
    );
    c.dry_run = true;
    assert_skipped_by(&c, Guard::Namespace, "namespace kube-system is denied");
}

/// Failed attempts of the `crashing-pod` rule at steps `0..steps`, one a minute, the last
/// `minutes_ago - steps + 1` minutes before now.
fn failed_steps(steps: usize, minutes_ago: i64) -> Vec<Attempt> {
    (0..steps)
        .map(|k| {
            attempt_at_step(
                NOW - Duration::minutes(minutes_ago - k as i64),
                "crashing-pod",
                k,
                Outcome::Failed,
            )
        })
        .collect()
}

/// A case where only the escalation decides: the flap guard out of the way.
fn escalation_case(attempts: Vec<Attempt>) -> Case {
    let mut c = Case::new("escalation", pod_alert(&[]));
    c.policy.guards.flap_max_repairs = 100;
    c.state = state_with(SUBJECT, attempts, None);
    c
}

#[test]
fn repeats_within_the_window_take_the_next_step() {
    let steps = [Action::DeletePod, Action::RolloutRestart, Action::Rollback];
    for (i, expected) in steps.iter().enumerate() {
        match escalation_case(failed_steps(i, 20)).decide() {
            Decision::Act(p) => {
                assert_eq!(p.step, i);
                assert_eq!(&p.action, expected);
            }
            other => panic!("step {i}: {other:?}"),
        }
    }
}

#[test]
fn the_notify_step_escalates_to_people() {
    let c = escalation_case(failed_steps(3, 12));
    assert!(
        matches!(c.decide(), Decision::Escalate { guard: None, .. }),
        "{:?}",
        c.decide()
    );
}

#[test]
fn attempts_older_than_the_window_start_over_at_step_0() {
    let c = escalation_case(
        (0..3)
            .map(|k| {
                attempt(
                    NOW - Duration::minutes(31 + k),
                    "crashing-pod",
                    Outcome::Failed,
                )
            })
            .collect(),
    );
    assert!(matches!(c.decide(), Decision::Act(Plan { step: 0, .. })));
}

#[test]
fn rollback_targets_the_deployment() {
    let c = escalation_case(failed_steps(2, 6));
    assert!(matches!(
        c.decide(),
        Decision::Act(Plan {
            action: Action::Rollback,
            target: Target::Workload {
                kind: WorkloadKind::Deployment,
                ..
            },
            ..
        })
    ));
}

#[test]
fn running_out_of_steps_escalates_as_exhausted() {
    let mut c = Case::new("exhausted", pod_alert(&[]));
    c.policy.rules[0].actions.pop(); // no trailing notify: running out escalates
    c.state = state_with(SUBJECT, failed_steps(3, 3), None);
    assert!(matches!(
        c.decide(),
        Decision::Escalate {
            guard: Some(Guard::Exhausted),
            ..
        }
    ));
}

#[test]
fn flapping_escalates_with_the_flap_guard_named() {
    let mut c = Case::new("flap", pod_alert(&[]));
    c.state = state_with(
        SUBJECT,
        (0..3)
            .map(|k| attempt(NOW - Duration::minutes(50 - k), "old-rule", Outcome::Healed))
            .collect(),
        None,
    );
    match c.decide() {
        Decision::Escalate {
            guard: Some(Guard::Flap),
            reason,
            ..
        } => assert!(reason.contains("had 3 remediation attempts"), "{reason}"),
        other => panic!("{other:?}"),
    }
}

/// Step 0 failed 20 s ago: the subject is cooling down and still in flight.
fn retry_case() -> Case {
    let mut c = Case::new("retry", pod_alert(&[]));
    c.state = state_with(
        SUBJECT,
        vec![attempt(
            NOW - Duration::seconds(20),
            "crashing-pod",
            Outcome::Failed,
        )],
        Some(NOW + Duration::seconds(100)),
    );
    c.in_flight.insert(SUBJECT.into());
    c
}

#[test]
fn a_retry_takes_the_next_step_despite_cooldown_and_in_progress() {
    let mut c = retry_case();
    c.trigger = Trigger::Retry { after: 0 };
    assert!(matches!(
        c.decide(),
        Decision::Act(Plan {
            step: 1,
            action: Action::RolloutRestart,
            ..
        })
    ));
}

#[test]
fn a_new_alert_during_the_remediation_is_left_to_it() {
    let c = retry_case();
    assert_skipped_by(&c, Guard::InProgress, "being remediated");
}

#[test]
fn a_retry_is_still_refused_by_the_other_guards() {
    let mut c = retry_case();
    c.trigger = Trigger::Retry { after: 0 };
    c.cluster.annotations.push((
        SUBJECT.into(),
        labels(&[("organism.dev/auto-heal", "false")]),
    ));
    assert_skipped_by(&c, Guard::OptOut, "organism.dev/auto-heal=\"false\"");
}

fn local_alert(labels_: &[(&str, &str)]) -> AlertFacts {
    AlertFacts {
        labels: labels(labels_),
        starts_at: NOW,
    }
}

/// `decide` on the local platform with nothing in flight.
fn decide_locally(alert: &AlertFacts, policy: &Policy, state: &GuardState) -> Decision {
    decide(Input {
        alert,
        policy,
        state,
        cluster: &ClusterSnapshot::default(),
        in_flight: &BTreeSet::new(),
        now: NOW,
        trigger: Trigger::Alert,
        platform: PlatformKind::Local,
        dry_run: false,
    })
}

fn heart_down() -> AlertFacts {
    local_alert(&[
        ("alertname", "ServiceDown"),
        ("instance", "127.0.0.1:8081"),
        ("remediation", "restart-pod"),
    ])
}

#[test]
fn locally_a_restart_pod_alert_restarts_the_service() {
    let d = decide_locally(
        &heart_down(),
        &Policy::default_policy(),
        &GuardState::default(),
    );
    assert_eq!(
        d,
        Decision::Act(Plan {
            rule: "crashing-pod".into(),
            step: 0,
            action: Action::RestartService,
            target: Target::Service {
                name: "heart".into()
            },
            passed_over: vec![],
        })
    );
}

#[test]
fn locally_the_subject_is_the_service_its_port_names() {
    assert_eq!(
        subject_of(&heart_down().labels, PlatformKind::Local),
        "service/heart"
    );
}

#[test]
fn replicas_grow_by_the_step_up_to_the_cap() {
    assert_eq!(next_replicas(2, 1, 4), Some(3));
    assert_eq!(next_replicas(3, 5, 4), Some(4));
    assert_eq!(next_replicas(4, 1, 4), None);
}

#[test]
fn the_memory_limit_grows_by_the_factor_up_to_the_cap() {
    assert_eq!(next_memory_limit(256, 1.5, 1000), Some(384));
    assert_eq!(next_memory_limit(900, 1.5, 1000), Some(1000));
    assert_eq!(next_memory_limit(1000, 1.5, 1000), None);
}

#[test]
fn the_disruption_allowance_is_the_share_rounded_down_but_at_least_one() {
    assert_eq!(disruption_allowance(3, 0.34), 1);
    assert_eq!(disruption_allowance(10, 0.34), 3);
    assert_eq!(disruption_allowance(1, 0.34), 1);
}

/// A state with an attempt three hours old on [`SUBJECT`] and a healed one now on `node/n`.
fn state_with_an_old_and_a_new_attempt() -> GuardState {
    let mut s = state_with(
        SUBJECT,
        vec![attempt(NOW - Duration::hours(3), "r", Outcome::Healed)],
        None,
    );
    let plan = Plan {
        rule: "r".into(),
        step: 0,
        action: Action::DeletePod,
        target: Target::Node { name: "n".into() },
        passed_over: vec![],
    };
    s.record_act("node/n", &plan, NOW, std::time::Duration::from_secs(60));
    s.set_outcome("node/n", NOW, Outcome::Healed);
    s
}

#[test]
fn the_state_round_trips_through_json() {
    let s = state_with_an_old_and_a_new_attempt();
    let text = serde_json::to_string(&s).unwrap();
    let back: GuardState = serde_json::from_str(&text).unwrap();
    assert_eq!(back, s);
}

#[test]
fn prune_forgets_what_is_older_than_it_keeps() {
    let mut s = state_with_an_old_and_a_new_attempt();
    s.prune(NOW, 3600);
    assert!(!s.subjects.contains_key(SUBJECT));
    assert_eq!(s.subjects["node/n"].attempts[0].outcome, Outcome::Healed);
}

/// A crash alert for the subject whose earlier attempts (by another rule) were each
/// `(how long ago, outcome)`.
fn flap_case(attempts: &[(Duration, Outcome)]) -> Case {
    let attempts = attempts
        .iter()
        .map(|&(ago, outcome)| attempt_at_step(NOW - ago, "other", 0, outcome))
        .collect();
    let mut c = Case::new("flap on failures", pod_alert(&[]));
    c.state = state_with(SUBJECT, attempts, None);
    c
}

#[test]
fn every_attempt_counts_toward_the_flap_guard_whatever_its_outcome() {
    // Issue 19: a restart whose verification failed or timed out is as much a restart as one
    // that healed. Two failed attempts and a pending one are three attempts.
    let c = flap_case(&[
        (Duration::minutes(50), Outcome::Failed),
        (Duration::minutes(40), Outcome::Failed),
        (Duration::minutes(30), Outcome::Pending),
    ]);
    match c.decide() {
        Decision::Escalate {
            guard: Some(Guard::Flap),
            reason,
            until,
            again: None,
            ..
        } => {
            assert!(reason.contains("whatever their outcome"), "{reason}");
            // The count falls below 3 when the oldest attempt leaves the 3600 s window.
            assert_eq!(until, NOW - Duration::minutes(50) + Duration::hours(1));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn attempts_below_the_flap_limit_are_allowed() {
    let c = flap_case(&[
        (Duration::minutes(40), Outcome::Failed),
        (Duration::minutes(30), Outcome::Pending),
    ]);
    assert!(matches!(c.decide(), Decision::Act(_)), "{:?}", c.decide());
}

#[test]
fn the_flap_window_is_half_open() {
    // An attempt exactly one window old no longer counts.
    let c = flap_case(&[
        (Duration::hours(1), Outcome::Failed),
        (Duration::minutes(40), Outcome::Failed),
        (Duration::minutes(30), Outcome::Failed),
    ]);
    assert!(matches!(c.decide(), Decision::Act(_)), "{:?}", c.decide());
}

/// A flap stop taken 5 minutes ago, holding 5 more minutes, people told.
fn flap_stop() -> Stop {
    Stop {
        guard: Some(Guard::Flap),
        reason: "too many".into(),
        rule: "crashing-pod".into(),
        at: NOW - Duration::minutes(5),
        until: NOW + Duration::minutes(5),
        notified: true,
    }
}

fn stopped_case(stop: Stop) -> Case {
    let mut c = Case::new("stop", pod_alert(&[]));
    c.state = state_with(SUBJECT, vec![], None);
    c.state.record_stop(SUBJECT, stop);
    c
}

#[test]
fn a_stop_that_holds_leaves_the_subject_alone() {
    let c = stopped_case(flap_stop());
    assert_skipped_by(&c, Guard::Flap, "left alone until");
}

#[test]
fn a_stop_people_were_not_told_of_is_escalated_again() {
    // Alertmanager was down: the next alert posts it again, same stop.
    let stop = Stop {
        notified: false,
        ..flap_stop()
    };
    let c = stopped_case(stop.clone());
    assert!(matches!(
        c.decide(),
        Decision::Escalate { again: Some(at), .. } if at == stop.at
    ));
}

#[test]
fn once_a_stop_ended_the_subject_is_acted_on_again() {
    let c = stopped_case(Stop {
        until: NOW,
        ..flap_stop()
    });
    assert!(matches!(c.decide(), Decision::Act(_)));
}

#[test]
fn prune_forgets_ended_stops() {
    let mut c = stopped_case(Stop {
        until: NOW,
        ..flap_stop()
    });
    c.state.prune(NOW, 3600);
    assert!(!c.state.subjects.contains_key(SUBJECT));
}

#[test]
fn a_step_without_a_target_is_passed_over_and_said() {
    // No `pod` label: delete-pod cannot run, rollout-restart can.
    let mut c = Case::new("no pod label", pod_alert(&[]));
    c.alert.labels.remove("pod");
    match c.decide() {
        Decision::Act(p) => {
            assert_eq!(p.step, 1);
            assert_eq!(p.action, Action::RolloutRestart);
            assert_eq!(p.passed_over.len(), 1);
            assert!(
                p.passed_over[0]
                    .contains("step 0 (delete-pod) passed over: the alert has no `pod` label"),
                "{:?}",
                p.passed_over
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn with_no_usable_step_the_escalation_goes_to_notify_saying_why() {
    let mut c = Case::new("no pod or workload label", pod_alert(&[]));
    c.alert.labels.remove("pod");
    c.alert.labels.remove("workload");
    match c.decide() {
        Decision::Escalate {
            guard: None,
            reason,
            until,
            ..
        } => {
            assert!(
                reason.contains("step 3 of rule crashing-pod is notify"),
                "{reason}"
            );
            assert!(reason.contains("step 2 (rollback) passed over"), "{reason}");
            assert_eq!(until, NOW + Duration::seconds(1800));
        }
        other => panic!("{other:?}"),
    }
}

/// Two failed restarts of the gateway (steps 0 and 1), locally.
fn gateway_restarted_twice() -> (AlertFacts, Policy, GuardState) {
    let alert = local_alert(&[
        ("alertname", "ServiceDown"),
        ("service", "api-gateway"),
        ("remediation", "restart-pod"),
    ]);
    let mut policy = Policy::default_policy();
    policy.guards.flap_max_repairs = 10;
    let mut state = GuardState::default();
    for k in 0..2 {
        state
            .subjects
            .entry("service/api-gateway".into())
            .or_default()
            .attempts
            .push(Attempt {
                at: NOW - Duration::minutes(10 - k),
                rule: "crashing-pod".into(),
                step: k as usize,
                action: "restart-service".into(),
                target: Target::Service {
                    name: "api-gateway".into(),
                },
                outcome: Outcome::Failed,
            });
    }
    (alert, policy, state)
}

#[test]
fn locally_rollback_is_passed_over_and_the_escalation_ends_in_notify() {
    // Issue 17: two restarts of the gateway, then rollback has no local equivalent: the healer
    // moves on to notify instead of skipping "no-target" forever.
    let (alert, policy, state) = gateway_restarted_twice();
    match decide_locally(&alert, &policy, &state) {
        Decision::Escalate {
            guard: None,
            reason,
            until,
            ..
        } => {
            assert!(
                reason.contains("step 2 (rollback) passed over: rollback has no local equivalent"),
                "{reason}"
            );
            assert_eq!(until, NOW - Duration::minutes(9) + Duration::seconds(1800));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn locally_without_a_trailing_notify_running_out_is_exhausted() {
    let (alert, mut policy, state) = gateway_restarted_twice();
    policy.rules[0].actions.pop();
    assert!(matches!(
        decide_locally(&alert, &policy, &state),
        Decision::Escalate {
            guard: Some(Guard::Exhausted),
            ..
        }
    ));
}

// ---------------------------------------------------------------------------------------------
// Property: over random clusters and alert storms, the blast radius, node and rate limits hold.

#[derive(Debug, Clone)]
struct Sim {
    /// Pods per workload.
    workloads: Vec<u32>,
    /// Pods per workload already not ready (other causes).
    down: Vec<u32>,
    nodes: usize,
    unhealthy_nodes: Vec<bool>,
    /// (seconds since start, workload or node index, pod index, is node alert, action length in s)
    storm: Vec<(u32, usize, u32, bool, u32)>,
    guards: (u32, u64, u32, f64),
}

fn sim_strategy() -> impl Strategy<Value = Sim> {
    (
        prop::collection::vec(1u32..12, 1..6),
        prop::collection::vec(0u32..4, 6),
        2usize..8,
        prop::collection::vec(any::<bool>(), 8),
        prop::collection::vec(
            (0u32..1800, 0usize..8, 0u32..12, any::<bool>(), 1u32..400),
            1..150,
        ),
        (1u32..8, 60u64..900, 1u32..4, 0.1f64..0.9),
    )
        .prop_map(
            |(workloads, down, nodes, unhealthy_nodes, mut storm, guards)| {
                storm.sort_by_key(|s| s.0);
                Sim {
                    workloads,
                    down,
                    nodes,
                    unhealthy_nodes,
                    storm,
                    guards,
                }
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn blast_radius_node_and_rate_limits_are_never_exceeded(sim in sim_strategy()) {
        let (rate_max, rate_window, max_conc, share) = sim.guards;
        let mut policy = Policy::from_yaml(
            "rules:\n- name: pods\n  match: {remediation: restart-pod}\n  escalation_window: 0s\n  actions: [{kind: delete-pod}]\n\
             - name: nodes\n  match: {remediation: cordon-drain}\n  escalation_window: 0s\n  actions: [{kind: cordon}]\n",
        ).unwrap();
        policy.guards = GuardConfig {
            rate_limit_max_actions: rate_max,
            rate_limit_window: std::time::Duration::from_secs(rate_window),
            max_concurrent_actions: max_conc,
            max_workload_disruption: share,
            cooldown: std::time::Duration::ZERO,
            flap_max_repairs: u32::MAX,
            ..GuardConfig::default()
        };
        let start = NOW;
        let mut state = GuardState::default();
        // (ends at, subject, workload, node): disruptions in progress.
        let mut running: Vec<(OffsetDateTime, String, Option<usize>, Option<usize>)> = Vec::new();
        let mut cordoned: BTreeSet<usize> = BTreeSet::new();
        let mut acted_at: Vec<OffsetDateTime> = Vec::new();
        for &(t, idx, pod, is_node, len) in &sim.storm {
            let now = start + Duration::seconds(i64::from(t));
            running.retain(|r| r.0 > now);
            let (alert, wl, node) = if is_node {
                let n = idx % sim.nodes;
                (node_alert(&format!("n{n}")), None, Some(n))
            } else {
                let w = idx % sim.workloads.len();
                let p = pod % sim.workloads[w];
                (AlertFacts {
                    labels: labels(&[("alertname", "PodCrashLooping"), ("namespace", "app"), ("pod", &format!("w{w}-p{p}")),
                        ("workload", &format!("w{w}")), ("remediation", "restart-pod")]),
                    starts_at: now,
                }, Some(w), None)
            };
            let disrupted = running.iter().filter(|r| r.2 == wl && wl.is_some()).count() as u32
                + wl.map_or(0, |w| sim.down[w].min(sim.workloads[w] - 1));
            let cluster = ClusterSnapshot {
                annotations: vec![],
                workload_pods: wl.map(|w| PodCounts { total: sim.workloads[w], disrupted_others: disrupted }),
                nodes: (0..sim.nodes).map(|n| NodeInfo {
                    name: format!("n{n}"),
                    ready: !sim.unhealthy_nodes[n],
                    unschedulable: cordoned.contains(&n),
                }).collect(),
            };
            let in_flight: BTreeSet<String> = running.iter().map(|r| r.1.clone()).collect();
            let d = decide(Input { alert: &alert, policy: &policy, state: &state, cluster: &cluster,
                in_flight: &in_flight, now, trigger: Trigger::Alert, platform: PlatformKind::Kubernetes, dry_run: false });
            if let Decision::Act(plan) = d {
                let subject = subject_of(&alert.labels, PlatformKind::Kubernetes);
                // Invariants at the moment of acting.
                prop_assert!(running.len() < max_conc as usize, "concurrency exceeded");
                if let Some(w) = wl {
                    prop_assert!(disrupted < disruption_allowance(sim.workloads[w], share),
                        "blast radius: {disrupted} of {} disrupted, acting again", sim.workloads[w]);
                }
                if let Some(n) = node {
                    prop_assert!(cordoned.iter().all(|c| *c == n), "two nodes cordoned at once");
                    prop_assert!((0..sim.nodes).any(|o| o != n && !sim.unhealthy_nodes[o] && !cordoned.contains(&o)), "last node cordoned");
                    let unhealthy = sim.unhealthy_nodes[..sim.nodes].iter().filter(|u| **u).count();
                    prop_assert!(unhealthy as f64 / sim.nodes as f64 <= 0.5, "node action in a storm");
                    cordoned.insert(n);
                }
                state.record_act(&subject, &plan, now, std::time::Duration::ZERO);
                running.push((now + Duration::seconds(i64::from(len)), subject, wl, node));
                acted_at.push(now);
                // Rate limit: no window of rate_window seconds ending now holds more than rate_max.
                let in_window = acted_at.iter().filter(|a| **a > now - Duration::seconds(rate_window as i64)).count();
                prop_assert!(in_window <= rate_max as usize, "rate limit: {in_window} > {rate_max}");
            }
            // Cordoned nodes are uncordoned when their action ends (the node recovered).
            cordoned.retain(|n| running.iter().any(|r| r.3 == Some(*n)));
        }
    }
}
