//! The pure core: (alert, policy, guard state, cluster snapshot, now) → [`Decision`].
//!
//! Plain data in, a decision out: no I/O, no clock, no Kubernetes types. The adapters build a
//! [`ClusterSnapshot`] from whatever platform they talk to and carry the decision out.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use crate::policy::{Action, GuardConfig, Policy, Rule};

/// Alert labels.
pub type Labels = BTreeMap<String, String>;

/// What the core needs to know about an alert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertFacts {
    /// The alert's labels.
    pub labels: Labels,
    /// When the alert started firing (for time-to-heal).
    pub starts_at: OffsetDateTime,
}

/// Where the healer runs: what a target can be and which actions exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PlatformKind {
    /// A Kubernetes cluster.
    Kubernetes,
    /// Local processes under the launcher.
    Local,
}

pub use workloads::WorkloadKind;

/// What an action is applied to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Target {
    /// One pod.
    Pod {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
    },
    /// A workload controller.
    Workload {
        /// Namespace.
        namespace: String,
        /// Kind.
        kind: WorkloadKind,
        /// Name.
        name: String,
    },
    /// A node.
    Node {
        /// Name.
        name: String,
    },
    /// Everything (of a kind) in a namespace.
    Namespace {
        /// Name.
        name: String,
    },
    /// A local service process.
    Service {
        /// Service name (CONTRACTS.md).
        name: String,
    },
}

impl Target {
    /// The namespace the target lives in (nodes and local services have none).
    pub fn namespace(&self) -> Option<&str> {
        match self {
            Target::Pod { namespace, .. } | Target::Workload { namespace, .. } => Some(namespace),
            Target::Namespace { name } => Some(name),
            Target::Node { .. } | Target::Service { .. } => None,
        }
    }

    /// A stable text form, e.g. `deployment/organism/heart`.
    pub fn key(&self) -> String {
        match self {
            Target::Pod { namespace, name } => format!("pod/{namespace}/{name}"),
            Target::Workload {
                namespace,
                kind,
                name,
            } => format!("{}/{namespace}/{name}", kind.as_str().to_ascii_lowercase()),
            Target::Node { name } => format!("node/{name}"),
            Target::Namespace { name } => format!("namespace/{name}"),
            Target::Service { name } => format!("service/{name}"),
        }
    }
}

/// The local services and their ports (the one table, [`topology::SERVICES`]), to map
/// `instance` labels to names.
pub const LOCAL_SERVICES: [topology::Service; 7] = topology::SERVICES;

/// The local service an alert is about: its `service` label, else `job`, else the port of
/// `instance`.
pub fn local_service(labels: &Labels) -> Option<String> {
    let known = |n: &str| topology::service(n).is_some();
    for key in ["service", "job"] {
        if let Some(v) = labels.get(key).filter(|v| known(v)) {
            return Some(v.clone());
        }
    }
    let port: u16 = labels.get("instance")?.rsplit(':').next()?.parse().ok()?;
    LOCAL_SERVICES
        .iter()
        .find(|s| s.port == port)
        .map(|s| s.name.to_owned())
}

fn label<'a>(labels: &'a Labels, key: &str) -> Option<&'a str> {
    labels
        .get(key)
        .map(String::as_str)
        .filter(|v| !v.is_empty())
}

/// The workload an alert names (`namespace` + `workload` or `service`, `workload_kind`).
pub fn workload_of(labels: &Labels) -> Option<Target> {
    let namespace = label(labels, "namespace")?;
    let name = label(labels, "workload").or_else(|| label(labels, "service"))?;
    let kind = match label(labels, "workload_kind") {
        Some(k) => WorkloadKind::parse(k)?,
        None => WorkloadKind::Deployment,
    };
    Some(Target::Workload {
        namespace: namespace.to_owned(),
        kind,
        name: name.to_owned(),
    })
}

/// The alert's subject: the key under which repairs, cooldowns and flaps are counted. The
/// workload when named, else the pod, the node, the service, or the alert name and namespace.
pub fn subject_of(labels: &Labels, platform: PlatformKind) -> String {
    if platform == PlatformKind::Local
        && let Some(s) = local_service(labels)
    {
        return format!("service/{s}");
    }
    if let Some(w) = workload_of(labels) {
        return w.key();
    }
    if let (Some(ns), Some(pod)) = (label(labels, "namespace"), label(labels, "pod")) {
        return format!("pod/{ns}/{pod}");
    }
    if let Some(node) = label(labels, "node") {
        return format!("node/{node}");
    }
    format!(
        "alert/{}/{}",
        label(labels, "namespace").unwrap_or("-"),
        label(labels, "alertname").unwrap_or("-")
    )
}

/// The target `action` applies to, from the alert's labels, or why there is none.
pub fn target_for(
    action: &Action,
    labels: &Labels,
    platform: PlatformKind,
) -> Result<Target, String> {
    if platform == PlatformKind::Local {
        return match action {
            Action::RestartService => local_service(labels)
                .map(|name| Target::Service { name })
                .ok_or_else(|| {
                    "the alert names no local service (service, job or instance label)".to_owned()
                }),
            other => Err(format!("{} has no local equivalent", other.name())),
        };
    }
    let need = |key: &str| {
        label(labels, key)
            .map(str::to_owned)
            .ok_or_else(|| format!("the alert has no `{key}` label"))
    };
    match action {
        Action::DeletePod => Ok(Target::Pod {
            namespace: need("namespace")?,
            name: need("pod")?,
        }),
        Action::RolloutRestart
        | Action::ScaleUp { .. }
        | Action::RaiseHpaMin { .. }
        | Action::RaiseMemoryLimit { .. } => {
            need("namespace")?;
            workload_of(labels).ok_or_else(|| {
                "the alert names no workload (workload or service label, workload_kind Deployment|StatefulSet|DaemonSet)".to_owned()
            })
        }
        Action::Rollback => match workload_of(labels) {
            Some(
                t @ Target::Workload {
                    kind: WorkloadKind::Deployment,
                    ..
                },
            ) => Ok(t),
            Some(_) => Err("rollback works on Deployments only".to_owned()),
            None => Err("the alert names no Deployment (workload label)".to_owned()),
        },
        Action::Cordon | Action::Drain { .. } | Action::Uncordon => Ok(Target::Node {
            name: need("node")?,
        }),
        Action::Cleanup { .. } => Ok(Target::Namespace {
            name: need("namespace")?,
        }),
        Action::RestartService => {
            workload_of(labels).ok_or_else(|| "the alert names no workload or service".to_owned())
        }
        Action::Notify => Err("notify has no target".to_owned()),
    }
}

/// In local mode, what a Kubernetes action means for a process: deleting the pod or restarting
/// the workload both become restarting the service.
pub fn effective_action(action: &Action, platform: PlatformKind) -> Action {
    match (platform, action) {
        (PlatformKind::Local, Action::DeletePod | Action::RolloutRestart) => Action::RestartService,
        (PlatformKind::Kubernetes, Action::RestartService) => Action::RolloutRestart,
        _ => action.clone(),
    }
}

// ---------------------------------------------------------------------------------------------
// Guard state

/// How an attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Acting or verifying.
    Pending,
    /// Verified healthy.
    Healed,
    /// The action failed or the target did not become healthy in time.
    Failed,
    /// A dry run decided it; nothing was done.
    #[serde(rename = "dry-run")]
    DryRun,
}

/// One remediation attempt on a subject.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    /// When it was decided.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// The rule.
    pub rule: String,
    /// The escalation step.
    pub step: usize,
    /// The action's name.
    pub action: String,
    /// What it acted on.
    pub target: Target,
    /// How it ended.
    pub outcome: Outcome,
}

/// Per-subject guard state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SubjectRecord {
    /// Attempts, oldest first.
    #[serde(default)]
    pub attempts: Vec<Attempt>,
    /// A new alert for this subject is left alone until then.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub cooldown_until: Option<OffsetDateTime>,
    /// The healer stopped acting on this subject and handed it to people (once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<Stop>,
}

/// A stop: the subject is left alone until `until`, and people were told once (a
/// `RemediationFailed` alert). Kept in the guard state so a restart or a new leader neither acts
/// nor notifies again while it holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stop {
    /// The guard that stopped it (`flap`, `exhausted`), or none for a `notify` step.
    pub guard: Option<Guard>,
    /// Why, for people.
    pub reason: String,
    /// The rule.
    pub rule: String,
    /// When the healer stopped.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// When the subject may be acted on again: the moment neither the attempt count (flap
    /// guard) nor the escalation window would stop it any more.
    #[serde(with = "time::serde::rfc3339")]
    pub until: OffsetDateTime,
    /// `RemediationFailed` was posted (or there is nowhere to post it); while false, the next
    /// alert about the subject posts it again.
    pub notified: bool,
}

impl Stop {
    /// Whether the stop holds at `now`.
    pub fn holds(&self, now: OffsetDateTime) -> bool {
        now < self.until
    }
}

/// Guard state that must survive restarts and leader changes (kept in a ConfigMap or a file).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GuardState {
    /// By subject key.
    #[serde(default)]
    pub subjects: BTreeMap<String, SubjectRecord>,
    /// When each recent action was taken (for the global rate limit).
    #[serde(default)]
    pub actions: Vec<Timestamp>,
    /// What a dry run decided, kept apart: a dry run advances its own escalation, cooldowns and
    /// counts exactly as the real run would, and never blocks or counts toward real actions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dry_run: Option<Box<GuardState>>,
}

/// An RFC 3339 timestamp in the serialized state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Timestamp(#[serde(with = "time::serde::rfc3339")] pub OffsetDateTime);

impl GuardState {
    /// Records that `plan` is being carried out for `subject` at `now`.
    pub fn record_act(
        &mut self,
        subject: &str,
        plan: &Plan,
        now: OffsetDateTime,
        cooldown: std::time::Duration,
    ) {
        let rec = self.subjects.entry(subject.to_owned()).or_default();
        rec.attempts.push(Attempt {
            at: now,
            rule: plan.rule.clone(),
            step: plan.step,
            action: plan.action.name().to_owned(),
            target: plan.target.clone(),
            outcome: Outcome::Pending,
        });
        rec.cooldown_until = Some(now + span(cooldown));
        self.actions.push(Timestamp(now));
    }

    /// Sets the outcome of `subject`'s attempt decided at `at`.
    pub fn set_outcome(&mut self, subject: &str, at: OffsetDateTime, outcome: Outcome) {
        if let Some(a) = self
            .subjects
            .get_mut(subject)
            .and_then(|r| r.attempts.iter_mut().rev().find(|a| a.at == at))
        {
            a.outcome = outcome;
        }
    }

    /// Records that the healer stopped acting on `subject` (and is about to tell people).
    pub fn record_stop(&mut self, subject: &str, stop: Stop) {
        self.subjects.entry(subject.to_owned()).or_default().stop = Some(stop);
    }

    /// Marks `subject`'s stop taken at `at` as notified.
    pub fn set_notified(&mut self, subject: &str, at: OffsetDateTime) {
        if let Some(stop) = self
            .subjects
            .get_mut(subject)
            .and_then(|r| r.stop.as_mut())
            .filter(|s| s.at == at)
        {
            stop.notified = true;
        }
    }

    /// The state a run decides on: the real one, or the dry run's own.
    pub fn view(&self, dry_run: bool) -> GuardState {
        if dry_run {
            self.dry_run.as_deref().cloned().unwrap_or_default()
        } else {
            GuardState {
                dry_run: None,
                ..self.clone()
            }
        }
    }

    /// The part of the state a run records into: the real one, or the dry run's own.
    pub fn view_mut(&mut self, dry_run: bool) -> &mut GuardState {
        if dry_run {
            self.dry_run.get_or_insert_default()
        } else {
            self
        }
    }

    /// Forgets what is older than `keep_secs`, cooldowns and stops that ended, and subjects
    /// left empty.
    pub fn prune(&mut self, now: OffsetDateTime, keep_secs: u64) {
        let horizon = now - span(std::time::Duration::from_secs(keep_secs));
        self.actions.retain(|t| t.0 >= horizon);
        for rec in self.subjects.values_mut() {
            rec.attempts.retain(|a| a.at >= horizon);
            if rec.cooldown_until.is_some_and(|c| c < now) {
                rec.cooldown_until = None;
            }
            if rec.stop.as_ref().is_some_and(|s| !s.holds(now)) {
                rec.stop = None;
            }
        }
        self.subjects.retain(|_, r| {
            !r.attempts.is_empty() || r.cooldown_until.is_some() || r.stop.is_some()
        });
        if let Some(d) = self.dry_run.as_deref_mut() {
            d.prune(now, keep_secs);
        }
    }
}

/// A configured span as a `time` duration (an absurdly long one is capped at 100 years).
fn span(d: std::time::Duration) -> Duration {
    Duration::try_from(d).map_or(Duration::days(36_500), |s| s.min(Duration::days(36_500)))
}

// ---------------------------------------------------------------------------------------------
// Cluster snapshot

/// The pods of the target's workload, as far as disruption goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PodCounts {
    /// All pods of the workload.
    pub total: u32,
    /// Pods other than the target that are not ready or are terminating.
    pub disrupted_others: u32,
}

/// A node, as far as node guards go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// Name.
    pub name: String,
    /// The Ready condition is True.
    pub ready: bool,
    /// `spec.unschedulable`.
    pub unschedulable: bool,
}

/// What the platform looks like around a target, in plain data.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ClusterSnapshot {
    /// Annotations of the target and of the objects it belongs to, by object (`pod/ns/name`).
    pub annotations: Vec<(String, Labels)>,
    /// The target workload's pods (pod and workload targets).
    pub workload_pods: Option<PodCounts>,
    /// Every node (node actions).
    pub nodes: Vec<NodeInfo>,
}

// ---------------------------------------------------------------------------------------------
// Decision

/// A guard, or another reason not to act; its name is what audit records and metrics show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Guard {
    /// No rule matches the alert.
    NoRule,
    /// The alert does not name what the action needs. No longer decided by the core (such a step
    /// is passed over, see [`plan`]); kept so stored records and metric labels still parse.
    NoTarget,
    /// This subject is already being remediated.
    InProgress,
    /// The namespace is denied or not allowed.
    Namespace,
    /// The target carries the opt-out annotation.
    OptOut,
    /// The alert names a failing dependency; restarting would not help.
    Dependency,
    /// The subject was acted on too recently.
    Cooldown,
    /// Too many actions in the window.
    RateLimit,
    /// Too many actions executing.
    Concurrency,
    /// The action would disrupt too large a share of the workload.
    BlastRadius,
    /// Another node is already cordoned.
    OneNode,
    /// The target is the last schedulable node.
    LastNode,
    /// Too many nodes are unhealthy for node actions.
    Storm,
    /// The subject was repaired too often: left alone and escalated.
    Flap,
    /// Every step of the escalation was taken.
    Exhausted,
    /// This instance is not the leader.
    Leader,
    /// The node to uncordon is not Ready yet.
    NodeNotReady,
    /// The subject was handed to people (a stop holds); left alone until the stop ends.
    Escalated,
    /// Alertmanager does not confirm the alert as active with these labels.
    Unconfirmed,
}

impl Guard {
    /// The guard's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Guard::NoRule => "no-rule",
            Guard::NoTarget => "no-target",
            Guard::InProgress => "in-progress",
            Guard::Namespace => "namespace",
            Guard::OptOut => "opt-out",
            Guard::Dependency => "dependency",
            Guard::Cooldown => "cooldown",
            Guard::RateLimit => "rate-limit",
            Guard::Concurrency => "concurrency",
            Guard::BlastRadius => "blast-radius",
            Guard::OneNode => "one-node",
            Guard::LastNode => "last-node",
            Guard::Storm => "storm",
            Guard::Flap => "flap",
            Guard::Exhausted => "exhausted",
            Guard::Leader => "leader",
            Guard::NodeNotReady => "node-not-ready",
            Guard::Escalated => "escalated",
            Guard::Unconfirmed => "unconfirmed",
        }
    }
}

/// What to do: rule, step, action, target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// The matching rule's name.
    pub rule: String,
    /// The escalation step (0-based).
    pub step: usize,
    /// The action, already translated for the platform.
    pub action: Action,
    /// What it acts on.
    pub target: Target,
    /// Earlier steps passed over on the way to this one (no target, no local equivalent), each
    /// with why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub passed_over: Vec<String>,
}

/// The core's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "kebab-case")]
pub enum Decision {
    /// Carry out the plan.
    Act(Plan),
    /// Dry run: the plan would be carried out; record it, change nothing.
    DryRun(Plan),
    /// Leave it alone; `guard` says why.
    Skip {
        /// The guard that blocked.
        guard: Guard,
        /// Why, for people.
        reason: String,
        /// What would have been acted on, when known.
        target: Option<Target>,
    },
    /// Stop acting and tell people (post RemediationFailed); record the stop so it is told
    /// once.
    Escalate {
        /// The guard that stopped it (`flap`, `exhausted`) or none for a `notify` step.
        guard: Option<Guard>,
        /// Why.
        reason: String,
        /// The rule.
        rule: String,
        /// Until when the subject is left alone.
        until: OffsetDateTime,
        /// A stop recorded earlier whose notification did not go out: post it again, do not
        /// record a new stop.
        again: Option<OffsetDateTime>,
    },
}

/// Why the core is asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// An alert fired (a new episode, or a repeat).
    Alert,
    /// Step `after` did not verify healthy: take a later one (no cooldown, no in-progress),
    /// whatever the escalation window says — a retry never repeats the step that just failed.
    Retry {
        /// The step that was just taken.
        after: usize,
    },
}

impl Trigger {
    /// The step a retry must go beyond.
    pub fn retry_after(self) -> Option<usize> {
        match self {
            Trigger::Alert => None,
            Trigger::Retry { after } => Some(after),
        }
    }
}

/// Everything the decision depends on.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    /// The alert.
    pub alert: &'a AlertFacts,
    /// The policy.
    pub policy: &'a Policy,
    /// Guard state.
    pub state: &'a GuardState,
    /// The platform around the target.
    pub cluster: &'a ClusterSnapshot,
    /// Subjects being remediated right now.
    pub in_flight: &'a BTreeSet<String>,
    /// The time.
    pub now: OffsetDateTime,
    /// Why the core is asked.
    pub trigger: Trigger,
    /// Where the healer runs.
    pub platform: PlatformKind,
    /// Dry run (decide and record, never mutate).
    pub dry_run: bool,
}

/// Whether `a` counts toward the flap guard: every attempt does, whatever its outcome — a
/// repair whose verification failed or timed out is as much a restart as one that healed.
fn counts_toward_flap(a: &Attempt) -> bool {
    #[cfg(test)]
    if mutation::healed_only() {
        return a.outcome == Outcome::Healed;
    }
    let _ = a;
    true
}

/// A deliberate mutation for the property test to catch (test builds only): count only healed
/// attempts toward the flap guard, as the healer once did.
#[cfg(test)]
pub(crate) mod mutation {
    use std::cell::Cell;

    thread_local! {
        static HEALED_ONLY: Cell<bool> = const { Cell::new(false) };
    }

    /// Whether the mutation is on for this thread.
    pub(crate) fn healed_only() -> bool {
        HEALED_ONLY.with(Cell::get)
    }

    /// Turns the mutation on or off for this thread.
    pub(crate) fn set_healed_only(on: bool) {
        HEALED_ONLY.with(|c| c.set(on));
    }
}

/// Whether an attempt at `at` is inside a window of `window_secs` ending at `now`: the window is
/// half-open, `(now - window, now]`, so an attempt stops counting exactly `window` after it.
fn within(at: OffsetDateTime, now: OffsetDateTime, window: std::time::Duration) -> bool {
    at > now - span(window) && at <= now
}

/// The plan the policy alone gives for an alert (no guards), or the early decision: no rule, a
/// stop that holds, an escalation (notify step, steps exhausted, flap guard).
///
/// The next step is the one after the last step this rule took on the subject within the
/// escalation window (step 0 when there is none). A step with no target in the alert or no
/// equivalent on this platform is passed over (and said), so an escalation never stalls.
#[allow(clippy::result_large_err)] // built once per alert; boxing buys nothing
pub fn plan(
    alert: &AlertFacts,
    policy: &Policy,
    state: &GuardState,
    now: OffsetDateTime,
    platform: PlatformKind,
    trigger: Trigger,
) -> Result<Plan, Decision> {
    let labels = &alert.labels;
    let Some(rule) = policy.rule_for(labels) else {
        return Err(skip(
            Guard::NoRule,
            "no policy rule matches the alert",
            None,
        ));
    };
    let subject = subject_of(labels, platform);
    let record = state.subjects.get(&subject);
    if let Some(held) = held_by_stop(record, now) {
        return Err(held);
    }
    let position = escalation_position(record, rule, now, trigger);
    let walk = walk_steps(rule, position.next, labels, platform, &subject);
    let flap = flap_guard(record, &policy.guards, &subject, now);
    let (guard, reason, until) = match (walk, flap) {
        (StepWalk::Ends { guard, reason }, flap) => {
            let until = flap.map_or(position.window_end, |f| position.window_end.max(f.until));
            (guard, reason, until)
        }
        (StepWalk::Found(_), Some(flap)) => (Some(Guard::Flap), flap.reason, flap.until.max(now)),
        (StepWalk::Found(plan), None) => return Ok(plan),
    };
    Err(Decision::Escalate {
        guard,
        reason,
        rule: rule.name.clone(),
        until: until.max(now + Duration::SECOND),
        again: None,
    })
}

/// What a stop that still holds at `now` decides: people are told again when they were not
/// told yet, else the subject is left alone. `None` when there is no such stop.
fn held_by_stop(record: Option<&SubjectRecord>, now: OffsetDateTime) -> Option<Decision> {
    let stop = record?.stop.as_ref().filter(|s| s.holds(now))?;
    if !stop.notified {
        return Some(Decision::Escalate {
            guard: stop.guard,
            reason: stop.reason.clone(),
            rule: stop.rule.clone(),
            until: stop.until,
            again: Some(stop.at),
        });
    }
    Some(skip(
        stop.guard.unwrap_or(Guard::Escalated),
        format!(
            "left alone until {}: {} (handed to people at {})",
            rfc3339(stop.until),
            stop.reason,
            rfc3339(stop.at)
        ),
        None,
    ))
}

/// Where a rule's escalation stands on a subject.
struct EscalationPosition {
    /// The first step that may be taken now.
    next: usize,
    /// When the escalation window of the last step taken ends (now when none was taken).
    window_end: OffsetDateTime,
}

/// The step after the last one `rule` took on the subject within its escalation window, and
/// after the step a retry must go beyond.
fn escalation_position(
    record: Option<&SubjectRecord>,
    rule: &Rule,
    now: OffsetDateTime,
    trigger: Trigger,
) -> EscalationPosition {
    let last = record.and_then(|r| {
        r.attempts
            .iter()
            .filter(|a| a.rule == rule.name && within(a.at, now, rule.escalation_window))
            .max_by_key(|a| (a.at, a.step))
    });
    EscalationPosition {
        next: last
            .map_or(0, |a| a.step + 1)
            .max(trigger.retry_after().map_or(0, |s| s + 1)),
        window_end: last.map_or(now, |a| a.at) + span(rule.escalation_window),
    }
}

/// What walking a rule's steps from the next one found.
enum StepWalk {
    /// A step that can be taken.
    Found(Plan),
    /// The escalation ends: at a notify step (no guard) or with every step taken or passed over
    /// (`exhausted`). The reason says which steps were passed over on the way.
    Ends {
        guard: Option<Guard>,
        reason: String,
    },
}

/// Walks `rule`'s steps from `next`: the first one with a target on this platform is the plan;
/// steps without one are passed over and said.
fn walk_steps(
    rule: &Rule,
    next: usize,
    labels: &Labels,
    platform: PlatformKind,
    subject: &str,
) -> StepWalk {
    let mut passed_over = Vec::new();
    let mut end = None;
    for (step, action) in rule.actions.iter().enumerate().skip(next) {
        if *action == Action::Notify {
            end = Some((None, format!("step {step} of rule {} is notify", rule.name)));
            break;
        }
        let action = effective_action(action, platform);
        match target_for(&action, labels, platform) {
            Ok(target) => {
                return StepWalk::Found(Plan {
                    rule: rule.name.clone(),
                    step,
                    action,
                    target,
                    passed_over,
                });
            }
            Err(reason) => passed_over.push(format!(
                "step {step} ({}) passed over: {reason}",
                action.name()
            )),
        }
    }
    let (guard, mut reason) = end.unwrap_or_else(|| {
        (
            Some(Guard::Exhausted),
            format!(
                "all {} steps of rule {} were taken or passed over for {subject}",
                rule.actions.len(),
                rule.name
            ),
        )
    });
    if !passed_over.is_empty() {
        reason.push_str(&format!(" ({})", passed_over.join("; ")));
    }
    StepWalk::Ends { guard, reason }
}

/// The flap guard's verdict: the subject had too many attempts in the window.
struct Flap {
    /// Why, for people.
    reason: String,
    /// When the count falls below the limit.
    until: OffsetDateTime,
}

/// The flap guard: every attempt on the subject in the window counts, whatever its outcome.
fn flap_guard(
    record: Option<&SubjectRecord>,
    guards: &GuardConfig,
    subject: &str,
    now: OffsetDateTime,
) -> Option<Flap> {
    let mut counted: Vec<OffsetDateTime> = record
        .map(|r| {
            r.attempts
                .iter()
                .filter(|a| within(a.at, now, guards.flap_window) && counts_toward_flap(a))
                .map(|a| a.at)
                .collect()
        })
        .unwrap_or_default();
    counted.sort();
    let k = guards.flap_max_repairs as usize;
    (k > 0 && counted.len() >= k).then(|| Flap {
        reason: format!(
            "{subject} had {} remediation attempts in {} (limit {}, whatever their outcome): left alone",
            counted.len(),
            humantime::format_duration(guards.flap_window),
            guards.flap_max_repairs
        ),
        // The count falls below K when the (n-K)-th attempt leaves the window.
        until: counted[counted.len() - k] + span(guards.flap_window),
    })
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

fn skip(guard: Guard, reason: impl Into<String>, target: Option<&Target>) -> Decision {
    Decision::Skip {
        guard,
        reason: reason.into(),
        target: target.cloned(),
    }
}

/// The largest number of a workload's `total` pods that may be disrupted at once under `share`
/// (at least one).
pub fn disruption_allowance(total: u32, share: f64) -> u32 {
    ((f64::from(total) * share).floor() as u32).max(1)
}

/// Decides what to do about one alert: the plan (see [`plan`]) if every guard lets it pass.
pub fn decide(input: Input<'_>) -> Decision {
    let Input {
        alert,
        policy,
        state,
        now,
        trigger,
        platform,
        dry_run,
        ..
    } = input;
    let subject = subject_of(&alert.labels, platform);
    if let Err(busy) = in_progress_guard(&input, &subject) {
        return busy.skip(None);
    }
    let plan = match plan(alert, policy, state, now, platform, trigger) {
        Ok(p) => p,
        Err(d) => return d,
    };
    match guards(&input, &subject, &plan) {
        Err(refused) => refused.skip(Some(&plan.target)),
        Ok(()) if dry_run => Decision::DryRun(plan),
        Ok(()) => Decision::Act(plan),
    }
}

/// A guard's refusal: which guard and why.
struct Refusal {
    guard: Guard,
    reason: String,
}

impl Refusal {
    fn new(guard: Guard, reason: impl Into<String>) -> Self {
        Self {
            guard,
            reason: reason.into(),
        }
    }

    fn skip(self, target: Option<&Target>) -> Decision {
        skip(self.guard, self.reason, target)
    }
}

/// A remediation in progress is left to finish (its own retries escalate) before anything
/// else is decided about the subject.
fn in_progress_guard(input: &Input<'_>, subject: &str) -> Result<(), Refusal> {
    if input.trigger == Trigger::Alert
        && input.in_flight.contains(subject)
        && input.policy.rule_for(&input.alert.labels).is_some()
    {
        return Err(Refusal::new(
            Guard::InProgress,
            format!("{subject} is being remediated"),
        ));
    }
    Ok(())
}

/// Every guard a plan must pass, in order; the first that refuses decides the skip.
fn guards(input: &Input<'_>, subject: &str, plan: &Plan) -> Result<(), Refusal> {
    namespace_guard(input, &plan.target)?;
    opt_out_guard(input)?;
    dependency_guard(input, plan)?;
    cooldown_guard(input, subject)?;
    rate_limit_guard(input)?;
    concurrency_guard(input)?;
    blast_radius_guard(input, plan)?;
    if plan.action.is_node_action() {
        node_guards(input, plan)?;
    }
    Ok(())
}

fn namespace_guard(input: &Input<'_>, target: &Target) -> Result<(), Refusal> {
    let g = &input.policy.guards;
    let Some(ns) = target
        .namespace()
        .or_else(|| label(&input.alert.labels, "namespace"))
    else {
        return Ok(());
    };
    if g.namespaces_deny.iter().any(|d| d == ns) {
        return Err(Refusal::new(
            Guard::Namespace,
            format!("namespace {ns} is denied"),
        ));
    }
    if !g.namespaces_allow.is_empty() && !g.namespaces_allow.iter().any(|a| a == ns) {
        return Err(Refusal::new(
            Guard::Namespace,
            format!("namespace {ns} is not in the allow list"),
        ));
    }
    Ok(())
}

fn opt_out_guard(input: &Input<'_>) -> Result<(), Refusal> {
    let annotation = &input.policy.guards.opt_out_annotation;
    for (object, annotations) in &input.cluster.annotations {
        if annotations
            .get(annotation)
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("false"))
        {
            return Err(Refusal::new(
                Guard::OptOut,
                format!("{object} has {annotation}=\"false\""),
            ));
        }
    }
    Ok(())
}

fn dependency_guard(input: &Input<'_>, plan: &Plan) -> Result<(), Refusal> {
    if plan.action.restarts()
        && let Some(dep) = label(&input.alert.labels, "dependency")
    {
        return Err(Refusal::new(
            Guard::Dependency,
            format!(
                "dependency {dep} is failing; restarting {} would not help",
                plan.target.key()
            ),
        ));
    }
    Ok(())
}

fn cooldown_guard(input: &Input<'_>, subject: &str) -> Result<(), Refusal> {
    let now = input.now;
    if input.trigger == Trigger::Alert
        && let Some(until) = input
            .state
            .subjects
            .get(subject)
            .and_then(|r| r.cooldown_until)
        && until > now
    {
        return Err(Refusal::new(
            Guard::Cooldown,
            format!(
                "{subject} was acted on recently; cooling down for {} s more",
                (until - now).whole_seconds()
            ),
        ));
    }
    Ok(())
}

fn rate_limit_guard(input: &Input<'_>) -> Result<(), Refusal> {
    let (g, now) = (&input.policy.guards, input.now);
    let window_start = now - span(g.rate_limit_window);
    let recent = input
        .state
        .actions
        .iter()
        .filter(|t| t.0 > window_start && t.0 <= now)
        .count();
    if recent >= g.rate_limit_max_actions as usize {
        return Err(Refusal::new(
            Guard::RateLimit,
            format!(
                "{recent} actions in the last {} (limit {})",
                humantime::format_duration(g.rate_limit_window),
                g.rate_limit_max_actions
            ),
        ));
    }
    Ok(())
}

fn concurrency_guard(input: &Input<'_>) -> Result<(), Refusal> {
    let (max, in_flight) = (input.policy.guards.max_concurrent_actions, input.in_flight);
    if in_flight.len() >= max as usize {
        return Err(Refusal::new(
            Guard::Concurrency,
            format!("{} actions in progress (limit {max})", in_flight.len()),
        ));
    }
    Ok(())
}

fn blast_radius_guard(input: &Input<'_>, plan: &Plan) -> Result<(), Refusal> {
    let share = input.policy.guards.max_workload_disruption;
    if plan.action == Action::DeletePod
        && let Some(pods) = input.cluster.workload_pods
    {
        let allowed = disruption_allowance(pods.total, share);
        if pods.disrupted_others + 1 > allowed {
            return Err(Refusal::new(
                Guard::BlastRadius,
                format!(
                    "{} of {} pods are already disrupted; at most {allowed} at once ({:.0}%)",
                    pods.disrupted_others,
                    pods.total,
                    share * 100.0
                ),
            ));
        }
    }
    Ok(())
}

/// Node actions: not in a storm of unhealthy nodes, uncordon only a Ready node, cordon or
/// drain one node at a time and never the last schedulable one.
fn node_guards(input: &Input<'_>, plan: &Plan) -> Result<(), Refusal> {
    let (nodes, target) = (&input.cluster.nodes, &plan.target);
    let max_share = input.policy.guards.max_unhealthy_node_share;
    let total = nodes.len();
    let unhealthy = nodes.iter().filter(|n| !n.ready).count();
    if total > 0 && unhealthy as f64 / total as f64 > max_share {
        return Err(Refusal::new(
            Guard::Storm,
            format!(
                "{unhealthy} of {total} nodes are unhealthy (more than {:.0}%): no node actions",
                max_share * 100.0
            ),
        ));
    }
    if let (Action::Uncordon, Target::Node { name }) = (&plan.action, target)
        && !nodes.iter().any(|n| &n.name == name && n.ready)
    {
        return Err(Refusal::new(
            Guard::NodeNotReady,
            format!("node {name} is not Ready; uncordon waits until it is healthy"),
        ));
    }
    if let (Action::Cordon | Action::Drain { .. }, Target::Node { name }) = (&plan.action, target) {
        let others = nodes.iter().filter(|n| &n.name != name);
        if let Some(n) = others.clone().find(|n| n.unschedulable) {
            return Err(Refusal::new(
                Guard::OneNode,
                format!("node {} is already cordoned; one node at a time", n.name),
            ));
        }
        if !others.clone().any(|n| n.ready && !n.unschedulable) {
            return Err(Refusal::new(
                Guard::LastNode,
                format!("{name} is the last schedulable node"),
            ));
        }
    }
    Ok(())
}

/// The next replica count: `current + step`, capped at `max`; `None` when already at the cap.
pub fn next_replicas(current: u32, step: u32, max: u32) -> Option<u32> {
    (current < max).then(|| current.saturating_add(step).min(max))
}

/// The next memory limit: `current × factor`, capped at `max`; `None` when already at the cap.
pub fn next_memory_limit(current: u64, factor: f64, max: u64) -> Option<u64> {
    (current < max).then(|| ((current as f64 * factor).ceil() as u64).clamp(current + 1, max))
}

#[cfg(test)]
mod tests;
