//! The pure core: Kubernetes objects + a clock + thresholds → [`Finding`]s.
//!
//! Nothing here does I/O. Each `classify_*` function looks at one object (or one Service's
//! EndpointSlices) and says what is wrong with it; [`classify_cluster`] runs them all over a
//! [`Cluster`] snapshot. The only memory between calls is the [`SinceTracker`], plain data that
//! remembers since when a condition without a timestamp of its own (a cordon, a StatefulSet
//! short of ready replicas) has been seen, so "for longer than X" rules work for those too.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, DeploymentCondition, StatefulSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{
    ContainerStatus, Event, Node, NodeCondition, Pod, PodCondition, PodStatus,
};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

use crate::config::{DependencyRules, NamespaceFilter, Thresholds};
use crate::finding::{Finding, FindingKind, ObjectRef, Remediation, Severity};

/// An OOM-killed container restarted at least this often (the kubelet's restart after the
/// first kill included) was killed again after a restart: `oom-killed` then carries
/// remediation `raise-memory`.
pub const OOM_RESTARTS_BEFORE_RAISE: i32 = 2;

/// The annotation the auto-healer puts on a node it cordons (value `auto-healer`) and removes
/// when it uncordons: only such a node, Ready again, is `node-recovered` (remediation
/// `uncordon`); a node a human cordoned is left alone.
pub const CORDONED_BY_ANNOTATION: &str = "organism.dev/cordoned-by";

/// Everything the classifier needs besides the objects: the clock, the thresholds, how to
/// recognise a dependency in a message, and which namespaces count.
#[derive(Debug, Clone, Copy)]
pub struct Ctx<'a> {
    /// Now, Unix seconds.
    pub now: i64,
    /// The thresholds from the configuration.
    pub thresholds: &'a Thresholds,
    /// Keywords that name a dependency in readiness messages.
    pub dependencies: &'a DependencyRules,
    /// Which namespaces are watched.
    pub namespaces: &'a NamespaceFilter,
}

/// Since when conditions without a timestamp of their own have been seen (Unix seconds),
/// keyed by a condition key. Keys not touched in a full sweep are forgotten.
#[derive(Debug, Clone, Default)]
pub struct SinceTracker {
    first_seen: HashMap<String, i64>,
    touched: HashSet<String>,
}

impl SinceTracker {
    /// Since when `key` holds: the first time it was seen (now, if this is the first time).
    pub fn since(&mut self, key: &str, now: i64) -> i64 {
        self.touched.insert(key.to_owned());
        *self.first_seen.entry(key.to_owned()).or_insert(now)
    }

    /// The condition `key` no longer holds.
    pub fn clear(&mut self, key: &str) {
        self.first_seen.remove(key);
    }

    /// Starts a full sweep: keys not seen until [`SinceTracker::end_sweep`] are forgotten.
    pub fn begin_sweep(&mut self) {
        self.touched.clear();
    }

    /// Ends a full sweep, forgetting conditions no longer seen.
    pub fn end_sweep(&mut self) {
        let touched = std::mem::take(&mut self.touched);
        self.first_seen.retain(|k, _| touched.contains(k));
    }

    /// How many conditions are tracked.
    pub fn len(&self) -> usize {
        self.first_seen.len()
    }

    /// Whether nothing is tracked.
    pub fn is_empty(&self) -> bool {
        self.first_seen.is_empty()
    }
}

/// A snapshot of the watched objects.
#[derive(Debug, Clone, Default)]
pub struct Cluster {
    /// Pods.
    pub pods: Vec<Arc<Pod>>,
    /// Nodes.
    pub nodes: Vec<Arc<Node>>,
    /// Deployments.
    pub deployments: Vec<Arc<Deployment>>,
    /// StatefulSets.
    pub statefulsets: Vec<Arc<StatefulSet>>,
    /// DaemonSets.
    pub daemonsets: Vec<Arc<DaemonSet>>,
    /// EndpointSlices.
    pub endpoint_slices: Vec<Arc<EndpointSlice>>,
    /// HorizontalPodAutoscalers (autoscaling/v2).
    pub hpas: Vec<Arc<HorizontalPodAutoscaler>>,
    /// Warning events.
    pub events: Vec<Arc<Event>>,
    /// Failing readiness checks seen by asking not-ready pods directly (see [`ReadinessIndex`]).
    pub readiness: ReadinessIndex,
}

/// Failing readiness checks observed by probing a pod's own readiness endpoint:
/// `(namespace, pod)` → `"check: reason"` lines (kubelet's events do not carry the body).
pub type ReadinessIndex = HashMap<(String, String), Vec<String>>;

/// Adds readiness observations to an event index, as messages about the pod.
pub fn merge_readiness<'a>(
    index: &mut EventIndex,
    readiness: impl IntoIterator<Item = (&'a (String, String), &'a Vec<String>)>,
) {
    for ((ns, pod), checks) in readiness {
        index
            .entry(("Pod".to_owned(), ns.clone(), pod.clone()))
            .or_default()
            .extend(
                checks
                    .iter()
                    .map(|c| format!("readiness check failing: {c}")),
            );
    }
}

/// Warning event messages by involved object `(kind, namespace, name)`.
pub type EventIndex = HashMap<(String, String, String), Vec<String>>;

/// Indexes the messages of Warning events by the object they are about.
pub fn index_events<'a>(events: impl IntoIterator<Item = &'a Event>) -> EventIndex {
    let mut index = EventIndex::new();
    for e in events {
        if e.type_.as_deref() != Some("Warning") {
            continue;
        }
        let o = &e.involved_object;
        let key = (
            o.kind.clone().unwrap_or_default(),
            o.namespace.clone().unwrap_or_default(),
            o.name.clone().unwrap_or_default(),
        );
        let message = format!(
            "{}: {}",
            e.reason.as_deref().unwrap_or(""),
            e.message.as_deref().unwrap_or("")
        );
        index.entry(key).or_default().push(message);
    }
    index
}

/// Runs every classifier over `cluster`: a full sweep.
pub fn classify_cluster(
    cluster: &Cluster,
    ctx: &Ctx<'_>,
    since: &mut SinceTracker,
) -> Vec<Finding> {
    since.begin_sweep();
    let mut events = index_events(cluster.events.iter().map(AsRef::as_ref));
    merge_readiness(&mut events, &cluster.readiness);
    let mut out = Vec::new();
    for pod in &cluster.pods {
        out.extend(classify_pod(pod, ctx, &events));
    }
    for node in &cluster.nodes {
        out.extend(classify_node(node, ctx, since));
    }
    let dependencies = dependency_of_pods(&out);
    for d in &cluster.deployments {
        let key = (
            d.metadata.namespace.clone().unwrap_or_default(),
            name(&d.metadata).to_owned(),
        );
        let dependency = dependencies.get(&key).map(String::as_str);
        out.extend(classify_deployment(d, ctx, since, dependency));
    }
    for s in &cluster.statefulsets {
        out.extend(classify_statefulset(s, ctx, since));
    }
    for d in &cluster.daemonsets {
        out.extend(classify_daemonset(d, ctx, since));
    }
    for h in &cluster.hpas {
        out.extend(classify_hpa(h, ctx));
    }
    for ((ns, service), slices) in group_slices(cluster.endpoint_slices.iter().map(AsRef::as_ref)) {
        out.extend(classify_service_endpoints(
            &ns, &service, &slices, ctx, since,
        ));
    }
    since.end_sweep();
    out
}

/// The dependency named by pod findings, by owning Deployment `(namespace, name)`.
pub fn dependency_of_pods(findings: &[Finding]) -> HashMap<(String, String), String> {
    let mut out = HashMap::new();
    for f in findings {
        if let (Some(dep), Some("Deployment"), Some(w)) = (
            &f.dependency,
            f.object.workload_kind.as_deref(),
            &f.object.workload,
        ) {
            out.entry((f.object.namespace.clone().unwrap_or_default(), w.clone()))
                .or_insert_with(|| dep.clone());
        }
    }
    out
}

/// EndpointSlices grouped by `(namespace, service)` from the `kubernetes.io/service-name` label.
pub fn group_slices<'a>(
    slices: impl IntoIterator<Item = &'a EndpointSlice>,
) -> BTreeMap<(String, String), Vec<&'a EndpointSlice>> {
    let mut groups: BTreeMap<(String, String), Vec<&EndpointSlice>> = BTreeMap::new();
    for s in slices {
        let Some(service) = label(&s.metadata, "kubernetes.io/service-name") else {
            continue;
        };
        let ns = s.metadata.namespace.clone().unwrap_or_default();
        groups.entry((ns, service.to_owned())).or_default().push(s);
    }
    groups
}

fn ts(t: &Time) -> i64 {
    t.0.as_second()
}

fn label<'m>(meta: &'m ObjectMeta, key: &str) -> Option<&'m str> {
    meta.labels.as_ref()?.get(key).map(String::as_str)
}

fn name(meta: &ObjectMeta) -> &str {
    meta.name.as_deref().unwrap_or("")
}

/// Our service's name from the standard labels (`app.kubernetes.io/name`, then `app`).
fn service_of(meta: &ObjectMeta) -> Option<String> {
    label(meta, "app.kubernetes.io/name")
        .or_else(|| label(meta, "app"))
        .map(str::to_owned)
}

fn age(now: i64, since: i64) -> String {
    let secs = (now - since).max(0) as u64;
    humantime::format_duration(std::time::Duration::from_secs(secs)).to_string()
}

fn pod_object(pod: &Pod) -> ObjectRef {
    let mut o = ObjectRef::new(
        "Pod",
        pod.metadata.namespace.as_deref(),
        name(&pod.metadata),
    );
    o.node = pod.spec.as_ref().and_then(|s| s.node_name.clone());
    if let Some(owner) = workloads::owner_from_metadata(pod) {
        o.workload_kind = Some(owner.kind);
        o.workload = Some(owner.name);
    }
    o
}

/// One pod being classified: what every finding about it shares.
struct PodCase<'p, 'c> {
    ctx: &'p Ctx<'c>,
    pod: &'p Pod,
    ns: &'p str,
    name: &'p str,
    object: ObjectRef,
    service: Option<String>,
    status: Option<&'p PodStatus>,
    /// Warning event messages about the pod.
    events: &'p [String],
}

impl<'p, 'c> PodCase<'p, 'c> {
    fn new(pod: &'p Pod, ctx: &'p Ctx<'c>, ns: &'p str, events: &'p EventIndex) -> Self {
        let name = name(&pod.metadata);
        Self {
            ctx,
            pod,
            ns,
            name,
            object: pod_object(pod),
            service: service_of(&pod.metadata),
            status: pod.status.as_ref(),
            events: events
                .get(&("Pod".to_owned(), ns.to_owned(), name.to_owned()))
                .map(Vec::as_slice)
                .unwrap_or(&[]),
        }
    }

    fn finding(
        &self,
        kind: FindingKind,
        severity: Severity,
        summary: String,
        description: String,
    ) -> Finding {
        Finding::new(kind, severity, self.object.clone(), summary, description)
            .with_service(self.service.clone())
    }

    fn phase(&self) -> &'p str {
        self.status.and_then(|s| s.phase.as_deref()).unwrap_or("")
    }

    fn condition(&self, type_: &str) -> Option<&'p PodCondition> {
        self.status
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == type_))
    }

    /// Being deleted past its grace period.
    fn stuck_terminating(&self, deleted: &Time) -> Option<Finding> {
        let (ns, pod_name, now) = (self.ns, self.name, self.ctx.now);
        let overdue = now - ts(deleted);
        (overdue > self.ctx.thresholds.stuck_terminating_after.as_secs() as i64).then(|| {
            self.finding(
                FindingKind::PodStuckTerminating,
                Severity::Warning,
                format!("Pod {ns}/{pod_name} is stuck terminating"),
                format!(
                    "The pod was due to be gone {} ago (deletionTimestamp plus grace period) and still exists; a finalizer or an unreachable node holds it.",
                    age(now, ts(deleted))
                ),
            )
            .with_remediation(Some(Remediation::Cleanup))
            .with_since(Some(ts(deleted)))
        })
    }

    /// A failed pod left behind longer than allowed.
    fn failed_lingering(&self) -> Option<Finding> {
        let (ns, pod_name, now, status) = (self.ns, self.name, self.ctx.now, self.status);
        let ended = status
            .into_iter()
            .flat_map(|s| s.container_statuses.iter().flatten())
            .filter_map(|c| c.state.as_ref()?.terminated.as_ref()?.finished_at.as_ref())
            .map(ts)
            .max()
            .or_else(|| status.and_then(|s| s.start_time.as_ref()).map(ts))
            .or_else(|| self.pod.metadata.creation_timestamp.as_ref().map(ts))
            .unwrap_or(now);
        if now - ended <= self.ctx.thresholds.lingering_failed_after.as_secs() as i64 {
            return None;
        }
        let reason = status.and_then(|s| s.reason.as_deref()).unwrap_or("Failed");
        let message = status.and_then(|s| s.message.as_deref()).unwrap_or("");
        Some(
            self.finding(
                FindingKind::PodFailedLingering,
                Severity::Info,
                format!("Failed pod {ns}/{pod_name} lingers ({reason})"),
                format!(
                    "The pod failed {} ago ({reason}: {message}) and was not cleaned up.",
                    age(now, ended)
                ),
            )
            .with_remediation(Some(Remediation::Cleanup))
            .with_since(Some(ended)),
        )
    }

    /// Init containers, then containers.
    fn containers(&self) -> Vec<&'p ContainerStatus> {
        self.status
            .into_iter()
            .flat_map(|s| {
                s.init_container_statuses
                    .iter()
                    .flatten()
                    .chain(s.container_statuses.iter().flatten())
            })
            .collect()
    }

    fn crash_looping(&self, t: &ContainerTrouble<'p>, in_events: Option<String>) -> Finding {
        let dependency = self
            .ctx
            .dependencies
            .find(t.dependency_texts.iter().copied())
            .or(in_events);
        self.finding(
            FindingKind::CrashLoopBackOff,
            Severity::Critical,
            format!("Pod {}/{} is crash looping", self.ns, self.name),
            format!("Containers in CrashLoopBackOff: {}.", t.crash.join("; ")),
        )
        .with_remediation(Some(Remediation::RestartPod))
        .with_dependency(dependency)
    }

    fn image_pull(&self, t: &ContainerTrouble<'p>) -> Finding {
        let deployment = self.object.workload_kind.as_deref() == Some("Deployment");
        self.finding(
            FindingKind::ImagePullBackOff,
            Severity::Critical,
            format!("Pod {}/{} cannot pull its image", self.ns, self.name),
            format!("{}.", t.pull.join("; ")),
        )
        .with_remediation(deployment.then_some(Remediation::Rollback))
    }

    fn config_error(&self, t: &ContainerTrouble<'p>) -> Finding {
        self.finding(
            FindingKind::CreateContainerConfigError,
            Severity::Critical,
            format!("Pod {}/{} cannot create its containers", self.ns, self.name),
            format!("{}.", t.config.join("; ")),
        )
    }

    fn oom_killed(&self, t: &ContainerTrouble<'p>) -> Finding {
        let oom = &t.oom;
        let latest = oom.iter().map(|(_, t, _)| *t).max();
        let names: Vec<&str> = oom.iter().map(|(n, _, _)| n.as_str()).collect();
        // The kubelet restarts an OOM-killed container itself: the first kill is answered by a
        // restart. Killed again after that (restartCount >= OOM_RESTARTS_BEFORE_RAISE) means
        // restarts did not help, and the healer may raise the memory limit.
        let repeated: Vec<&str> = oom
            .iter()
            .filter(|(_, _, restarts)| *restarts >= OOM_RESTARTS_BEFORE_RAISE)
            .map(|(n, _, _)| n.as_str())
            .collect();
        let mut f = self
            .finding(
                FindingKind::OomKilled,
                Severity::Warning,
                format!("Pod {}/{} was OOM-killed", self.ns, self.name),
                format!(
                    "Containers killed for exceeding their memory limit within the last {}: {}. {}",
                    humantime::format_duration(self.ctx.thresholds.restart_window),
                    names.join(", "),
                    if repeated.is_empty() {
                        "The kubelet restarted it; if it is killed again, the memory limit may be raised."
                    } else {
                        "Restarting did not help (killed again after a restart): raise the limit or fix the leak."
                    }
                ),
            )
            .with_since(latest);
        if let [container] = repeated.as_slice() {
            f.labels
                .insert("container".to_owned(), (*container).to_owned());
        }
        let workload_ok = matches!(
            self.object.workload_kind.as_deref(),
            Some("Deployment" | "StatefulSet" | "DaemonSet")
        );
        f.with_remediation(
            (!repeated.is_empty() && workload_ok).then_some(Remediation::RaiseMemory),
        )
    }

    fn restarting(&self, t: &ContainerTrouble<'p>) -> Finding {
        self.finding(
            FindingKind::PodRestarting,
            Severity::Warning,
            format!("Pod {}/{} keeps restarting", self.ns, self.name),
            format!("{}.", t.restarting.join("; ")),
        )
    }

    /// Pending because no node fits, for longer than allowed.
    fn unschedulable(&self) -> Option<Finding> {
        let c = self.condition("PodScheduled")?;
        if self.phase() != "Pending"
            || c.status != "False"
            || c.reason.as_deref() != Some("Unschedulable")
        {
            return None;
        }
        let now = self.ctx.now;
        let since = c.last_transition_time.as_ref().map(ts).unwrap_or(now);
        (now - since > self.ctx.thresholds.pending_after.as_secs() as i64).then(|| {
            self.finding(
                FindingKind::PodUnschedulable,
                Severity::Warning,
                format!("Pod {}/{} cannot be scheduled", self.ns, self.name),
                format!(
                    "Pending for {}: {}",
                    age(now, since),
                    c.message.as_deref().unwrap_or("no node fits")
                ),
            )
            .with_since(Some(since))
        })
    }

    /// Running but not ready for longer than allowed (only when no container trouble explains
    /// it), naming the dependency its readiness check or its events name.
    fn not_ready(&self, in_events: Option<String>) -> Option<Finding> {
        let c = self.condition("Ready")?;
        let now = self.ctx.now;
        let since = c.last_transition_time.as_ref().map(ts).unwrap_or(now);
        if c.status == "True" || now - since <= self.ctx.thresholds.not_ready_after.as_secs() as i64
        {
            return None;
        }
        let cond_msg = c.message.as_deref().unwrap_or("");
        let dependency = self
            .ctx
            .dependencies
            .find(std::iter::once(cond_msg))
            .or(in_events);
        let mut description = format!("Not ready for {}: {cond_msg}.", age(now, since));
        if let Some(last) = self.events.last() {
            description.push_str(&format!(" Last warning: {last}."));
        }
        if let Some(d) = &dependency {
            description.push_str(&format!(
                " The failing check names the dependency {d:?}; restarting the pod would not help."
            ));
        }
        Some(
            self.finding(
                FindingKind::PodNotReady,
                Severity::Warning,
                format!("Pod {}/{} is not ready", self.ns, self.name),
                description,
            )
            .with_remediation(Some(Remediation::RestartPod))
            .with_dependency(dependency)
            .with_since(Some(since)),
        )
    }
}

/// What a pod's containers show, gathered in one pass.
#[derive(Default)]
struct ContainerTrouble<'p> {
    crash: Vec<String>,
    pull: Vec<String>,
    config: Vec<String>,
    /// (container, killed at, restart count), killed within the restart window.
    oom: Vec<(String, i64, i32)>,
    restarting: Vec<String>,
    /// The last termination messages of crash-looping containers.
    dependency_texts: Vec<&'p str>,
}

impl<'p> ContainerTrouble<'p> {
    fn of(containers: &[&'p ContainerStatus], ctx: &Ctx<'_>) -> Self {
        let mut t = Self::default();
        for c in containers {
            t.note(c, ctx);
        }
        t
    }

    fn note(&mut self, c: &'p ContainerStatus, ctx: &Ctx<'_>) {
        let th = ctx.thresholds;
        let waiting = c.state.as_ref().and_then(|s| s.waiting.as_ref());
        let reason = waiting.and_then(|w| w.reason.as_deref()).unwrap_or("");
        let wmsg = waiting.and_then(|w| w.message.as_deref()).unwrap_or("");
        let last = c.last_state.as_ref().and_then(|s| s.terminated.as_ref());
        let current = c.state.as_ref().and_then(|s| s.terminated.as_ref());
        match reason {
            "CrashLoopBackOff" => {
                let last_desc = last
                    .map(|t| {
                        format!(
                            ", last exit {} ({})",
                            t.exit_code,
                            t.reason.as_deref().unwrap_or("Error")
                        )
                    })
                    .unwrap_or_default();
                if let Some(m) = last.and_then(|t| t.message.as_deref()) {
                    self.dependency_texts.push(m);
                }
                self.crash.push(format!(
                    "{} restarted {} times{last_desc}",
                    c.name, c.restart_count
                ));
            }
            "ErrImagePull" | "ImagePullBackOff" | "InvalidImageName" => {
                self.pull.push(format!(
                    "{} cannot pull {:?}: {reason}: {wmsg}",
                    c.name, c.image
                ));
            }
            "CreateContainerConfigError" | "CreateContainerError" => {
                self.config.push(format!("{}: {reason}: {wmsg}", c.name));
            }
            _ => {}
        }
        for t in [last, current].into_iter().flatten() {
            if t.reason.as_deref() == Some("OOMKilled") {
                let when = t.finished_at.as_ref().map(ts).unwrap_or(ctx.now);
                if ctx.now - when <= th.restart_window.as_secs() as i64 {
                    self.oom.push((c.name.clone(), when, c.restart_count));
                    break;
                }
            }
        }
        if reason != "CrashLoopBackOff"
            && c.restart_count >= th.restarts as i32
            && let Some(when) = last.and_then(|t| t.finished_at.as_ref()).map(ts)
            && ctx.now - when <= th.restart_window.as_secs() as i64
        {
            self.restarting.push(format!(
                "{} restarted {} times, last {} ago",
                c.name,
                c.restart_count,
                age(ctx.now, when)
            ));
        }
    }

    /// Whether a container cannot run at all (which explains a pod not being ready).
    fn blocks_start(&self) -> bool {
        !(self.crash.is_empty() && self.pull.is_empty() && self.config.is_empty())
    }
}

/// Classifies one pod. `events` holds Warning event messages (see [`index_events`]).
pub fn classify_pod(pod: &Pod, ctx: &Ctx<'_>, events: &EventIndex) -> Vec<Finding> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("");
    if !ctx.namespaces.allows(ns) {
        return Vec::new();
    }
    let case = PodCase::new(pod, ctx, ns, events);
    // Being deleted: only "stuck terminating" matters.
    if let Some(deleted) = &pod.metadata.deletion_timestamp {
        return case.stuck_terminating(deleted).into_iter().collect();
    }
    match case.phase() {
        "Failed" => return case.failed_lingering().into_iter().collect(),
        "Succeeded" => return Vec::new(),
        _ => {}
    }
    let trouble = ContainerTrouble::of(&case.containers(), ctx);
    let in_events = ctx
        .dependencies
        .find(case.events.iter().map(String::as_str));
    let mut out = Vec::new();
    if !trouble.crash.is_empty() {
        out.push(case.crash_looping(&trouble, in_events.clone()));
    }
    if !trouble.pull.is_empty() {
        out.push(case.image_pull(&trouble));
    }
    if !trouble.config.is_empty() {
        out.push(case.config_error(&trouble));
    }
    if !trouble.oom.is_empty() {
        out.push(case.oom_killed(&trouble));
    }
    if !trouble.restarting.is_empty() {
        out.push(case.restarting(&trouble));
    }
    out.extend(case.unschedulable());
    if case.phase() == "Running" && !trouble.blocks_start() {
        out.extend(case.not_ready(in_events));
    }
    out
}

/// Classifies one node.
pub fn classify_node(node: &Node, ctx: &Ctx<'_>, since: &mut SinceTracker) -> Vec<Finding> {
    let node_name = name(&node.metadata);
    let mut object = ObjectRef::new("Node", None, node_name);
    object.node = Some(node_name.to_owned());
    let conditions: &[NodeCondition] = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or_default();
    let mut out: Vec<Finding> = conditions
        .iter()
        .filter_map(|c| node_condition(c, &object, ctx))
        .collect();
    let key = format!("cordoned/{node_name}");
    if node.spec.as_ref().and_then(|s| s.unschedulable) == Some(true) {
        let since_t = cordoned_since(node).unwrap_or_else(|| since.since(&key, ctx.now));
        out.extend(cordoned(node, conditions, object, ctx, since_t));
    } else {
        since.clear(&key);
    }
    out
}

/// A node condition that is a finding: not Ready for longer than the threshold, or a
/// resource pressure.
fn node_condition(c: &NodeCondition, object: &ObjectRef, ctx: &Ctx<'_>) -> Option<Finding> {
    let node_name = &object.name;
    let since_t = c.last_transition_time.as_ref().map(ts).unwrap_or(ctx.now);
    let msg = c.message.as_deref().unwrap_or("");
    match (c.type_.as_str(), c.status.as_str()) {
        ("Ready", "False" | "Unknown")
            if ctx.now - since_t > ctx.thresholds.not_ready_after.as_secs() as i64 =>
        {
            Some(
                Finding::new(
                    FindingKind::NodeNotReady,
                    Severity::Critical,
                    object.clone(),
                    format!("Node {node_name} is not ready"),
                    format!(
                        "Ready={} for {} ({}: {msg}).",
                        c.status,
                        age(ctx.now, since_t),
                        c.reason.as_deref().unwrap_or("")
                    ),
                )
                .with_remediation(Some(Remediation::CordonDrain))
                .with_since(Some(since_t)),
            )
        }
        (kind @ ("MemoryPressure" | "DiskPressure" | "PIDPressure"), "True") => {
            let finding = match kind {
                "MemoryPressure" => FindingKind::NodeMemoryPressure,
                "DiskPressure" => FindingKind::NodeDiskPressure,
                _ => FindingKind::NodePidPressure,
            };
            Some(
                Finding::new(
                    finding,
                    Severity::Warning,
                    object.clone(),
                    format!("Node {node_name} has {kind}"),
                    format!("{kind} since {} ago: {msg}", age(ctx.now, since_t)),
                )
                .with_since(Some(since_t)),
            )
        }
        _ => None,
    }
}

/// When the node's unschedulable taint was added, if the taint says.
fn cordoned_since(node: &Node) -> Option<i64> {
    node.spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .and_then(|ts| {
            ts.iter()
                .find(|t| t.key == "node.kubernetes.io/unschedulable")
        })
        .and_then(|t| t.time_added.as_ref())
        .map(ts)
}

/// The finding of a node cordoned since `since_t`: recovered when the auto-healer cordoned it
/// and it has been Ready without pressure for long enough, cordoned too long otherwise.
fn cordoned(
    node: &Node,
    conditions: &[NodeCondition],
    object: ObjectRef,
    ctx: &Ctx<'_>,
    since_t: i64,
) -> Option<Finding> {
    let th = ctx.thresholds;
    let node_name = object.name.clone();
    let by_healer = node
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(CORDONED_BY_ANNOTATION))
        .is_some_and(|v| v == "auto-healer");
    let ready_since = conditions
        .iter()
        .find(|c| c.type_ == "Ready" && c.status == "True")
        .map(|c| c.last_transition_time.as_ref().map(ts).unwrap_or(ctx.now));
    let pressure = conditions.iter().any(|c| {
        matches!(
            c.type_.as_str(),
            "MemoryPressure" | "DiskPressure" | "PIDPressure"
        ) && c.status == "True"
    });
    if by_healer
        && !pressure
        && let Some(ready_t) = ready_since
        && ctx.now - ready_t > th.not_ready_after.as_secs() as i64
    {
        // Ready again for as long as it took to be cordoned: the healer's cordon is over.
        Some(
            Finding::new(
                FindingKind::NodeRecovered,
                Severity::Info,
                object,
                format!("Node {node_name}, cordoned by the auto-healer, is Ready again"),
                format!(
                    "Ready for {} and cordoned since {} ago by the auto-healer ({CORDONED_BY_ANNOTATION}); it can take pods again.",
                    age(ctx.now, ready_t),
                    age(ctx.now, since_t)
                ),
            )
            .with_remediation(Some(Remediation::Uncordon))
            .with_since(Some(ready_t)),
        )
    } else if ctx.now - since_t > th.cordoned_for.as_secs() as i64 {
        Some(
            Finding::new(
                FindingKind::NodeCordonedLong,
                Severity::Info,
                object,
                format!("Node {node_name} has been cordoned for {}", age(ctx.now, since_t)),
                "The node is unschedulable; uncordon it when the maintenance is over, or remove it.",
            )
            .with_since(Some(since_t)),
        )
    } else {
        None
    }
}

fn workload_object(kind: &str, meta: &ObjectMeta) -> ObjectRef {
    let mut o = ObjectRef::new(kind, meta.namespace.as_deref(), name(meta));
    o.workload_kind = Some(kind.to_owned());
    o.workload = Some(name(meta).to_owned());
    o
}

/// Classifies one Deployment.
///
/// `pods_dependency` is the dependency its pods' findings name (see [`dependency_of_pods`]):
/// unavailable replicas caused by a dependency get no restart remediation.
pub fn classify_deployment(
    d: &Deployment,
    ctx: &Ctx<'_>,
    since: &mut SinceTracker,
    pods_dependency: Option<&str>,
) -> Vec<Finding> {
    let ns = d.metadata.namespace.as_deref().unwrap_or("");
    if !ctx.namespaces.allows(ns) || d.spec.paused == Some(true) {
        return Vec::new();
    }
    let stuck = rollout_stuck(d);
    let desired = d.spec.replicas.unwrap_or(1);
    let available = d
        .status
        .as_ref()
        .and_then(|s| s.available_replicas)
        .unwrap_or(0);
    let key = format!("deployment-unavailable/{ns}/{}", name(&d.metadata));
    let unavailable = if desired > 0 && available < desired {
        let since_t = match deployment_condition(d, "Available") {
            Some(c) if c.status.as_deref() == Some("False") => c
                .last_transition_time
                .as_ref()
                .map(ts)
                .unwrap_or_else(|| since.since(&key, ctx.now)),
            _ => since.since(&key, ctx.now),
        };
        (ctx.now - since_t > ctx.thresholds.not_ready_after.as_secs() as i64)
            .then(|| replicas_unavailable(d, ctx, since_t, stuck.is_some(), pods_dependency))
    } else {
        since.clear(&key);
        None
    };
    stuck.into_iter().chain(unavailable).collect()
}

/// The Deployment's status condition of type `type_`.
fn deployment_condition<'a>(d: &'a Deployment, type_: &str) -> Option<&'a DeploymentCondition> {
    d.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_.as_deref() == Some(type_)))
}

/// `deployment-progress-deadline-exceeded` when the rollout stopped progressing.
fn rollout_stuck(d: &Deployment) -> Option<Finding> {
    let c = deployment_condition(d, "Progressing")?;
    if c.status.as_deref() != Some("False")
        || c.reason.as_deref() != Some("ProgressDeadlineExceeded")
    {
        return None;
    }
    let ns = d.metadata.namespace.as_deref().unwrap_or("");
    let n = name(&d.metadata);
    Some(
        Finding::new(
            FindingKind::DeploymentProgressDeadlineExceeded,
            Severity::Critical,
            workload_object("Deployment", &d.metadata),
            format!("Deployment {ns}/{n} rollout is stuck"),
            format!(
                "ProgressDeadlineExceeded: {}",
                c.message.as_deref().unwrap_or("")
            ),
        )
        .with_remediation(Some(Remediation::Rollback))
        .with_service(service_of(&d.metadata))
        .with_since(c.last_transition_time.as_ref().map(ts)),
    )
}

/// `deployment-replicas-unavailable` for replicas short since `since_t`; a rollout in
/// progress (or stuck) gets no restart remediation.
fn replicas_unavailable(
    d: &Deployment,
    ctx: &Ctx<'_>,
    since_t: i64,
    stuck: bool,
    pods_dependency: Option<&str>,
) -> Finding {
    let ns = d.metadata.namespace.as_deref().unwrap_or("");
    let n = name(&d.metadata);
    let desired = d.spec.replicas.unwrap_or(1);
    let status = d.status.as_ref();
    let available = status.and_then(|s| s.available_replicas).unwrap_or(0);
    let updated = status.and_then(|s| s.updated_replicas).unwrap_or(0);
    let rolling = updated < desired || stuck;
    Finding::new(
        FindingKind::DeploymentReplicasUnavailable,
        if available == 0 {
            Severity::Critical
        } else {
            Severity::Warning
        },
        workload_object("Deployment", &d.metadata),
        format!(
            "Deployment {ns}/{n} has {}/{desired} replicas available",
            available
        ),
        format!(
            "{} of {desired} replicas unavailable for {}{}.",
            desired - available,
            age(ctx.now, since_t),
            if rolling { " during a rollout" } else { "" }
        ),
    )
    .with_remediation((!rolling).then_some(Remediation::RolloutRestart))
    .with_dependency(pods_dependency.map(str::to_owned))
    .with_service(service_of(&d.metadata))
    .with_since(Some(since_t))
}

/// Since when the not-ready condition `key` has held, once it has held longer than the
/// not-ready threshold; `None` while it is younger, and when it does not hold (its start is then
/// forgotten).
fn not_ready_since(since: &mut SinceTracker, key: &str, holds: bool, ctx: &Ctx<'_>) -> Option<i64> {
    if !holds {
        since.clear(key);
        return None;
    }
    let since_t = since.since(key, ctx.now);
    (ctx.now - since_t > ctx.thresholds.not_ready_after.as_secs() as i64).then_some(since_t)
}

/// Classifies one StatefulSet.
pub fn classify_statefulset(
    s: &StatefulSet,
    ctx: &Ctx<'_>,
    since: &mut SinceTracker,
) -> Vec<Finding> {
    let ns = s.metadata.namespace.as_deref().unwrap_or("");
    if !ctx.namespaces.allows(ns) {
        return Vec::new();
    }
    let n = name(&s.metadata);
    let desired = s.spec.replicas.unwrap_or(1);
    let ready = s
        .status
        .as_ref()
        .and_then(|s| s.ready_replicas)
        .unwrap_or(0);
    let key = format!("statefulset-not-ready/{ns}/{n}");
    let Some(since_t) = not_ready_since(since, &key, desired > 0 && ready < desired, ctx) else {
        return Vec::new();
    };
    vec![
        Finding::new(
            FindingKind::StatefulsetNotReady,
            if ready == 0 {
                Severity::Critical
            } else {
                Severity::Warning
            },
            workload_object("StatefulSet", &s.metadata),
            format!("StatefulSet {ns}/{n} has {ready}/{desired} replicas ready"),
            format!(
                "{} of {desired} replicas not ready for at least {}.",
                desired - ready,
                age(ctx.now, since_t)
            ),
        )
        .with_service(service_of(&s.metadata))
        .with_since(Some(since_t)),
    ]
}

/// Classifies one DaemonSet.
pub fn classify_daemonset(d: &DaemonSet, ctx: &Ctx<'_>, since: &mut SinceTracker) -> Vec<Finding> {
    let ns = d.metadata.namespace.as_deref().unwrap_or("");
    if !ctx.namespaces.allows(ns) {
        return Vec::new();
    }
    let n = name(&d.metadata);
    let Some(status) = d.status.as_ref() else {
        return Vec::new();
    };
    let desired = status.desired_number_scheduled;
    let unavailable = status
        .number_unavailable
        .unwrap_or(0)
        .max(desired - status.number_ready);
    let key = format!("daemonset-not-ready/{ns}/{n}");
    let Some(since_t) = not_ready_since(since, &key, unavailable > 0, ctx) else {
        return Vec::new();
    };
    vec![
        Finding::new(
            FindingKind::DaemonsetNotReady,
            Severity::Warning,
            workload_object("DaemonSet", &d.metadata),
            format!("DaemonSet {ns}/{n} has {unavailable} unavailable pods"),
            format!(
                "{} of {desired} scheduled pods ready; {unavailable} unavailable for at least {}.",
                status.number_ready,
                age(ctx.now, since_t)
            ),
        )
        .with_service(service_of(&d.metadata))
        .with_since(Some(since_t)),
    ]
}

/// Classifies one HorizontalPodAutoscaler.
pub fn classify_hpa(h: &HorizontalPodAutoscaler, ctx: &Ctx<'_>) -> Vec<Finding> {
    let ns = h.metadata.namespace.as_deref().unwrap_or("");
    if !ctx.namespaces.allows(ns) {
        return Vec::new();
    }
    let n = name(&h.metadata);
    let spec = &h.spec;
    let Some(status) = h.status.as_ref() else {
        return Vec::new();
    };
    let max = spec.max_replicas;
    let current = status.current_replicas.unwrap_or(0);
    let limited = status.conditions.iter().flatten().find(|c| {
        c.type_ == "ScalingLimited"
            && c.status == "True"
            && c.reason.as_deref() == Some("TooManyReplicas")
    });
    let at_max = current >= max && (status.desired_replicas >= max || limited.is_some());
    if !at_max {
        return Vec::new();
    }
    let since_t = limited
        .and_then(|c| c.last_transition_time.as_ref())
        .or(status.last_scale_time.as_ref())
        .map(ts)
        .unwrap_or(ctx.now);
    if ctx.now - since_t < ctx.thresholds.hpa_at_max_for.as_secs() as i64 {
        return Vec::new();
    }
    let target = &spec.scale_target_ref;
    let mut object = ObjectRef::new("HorizontalPodAutoscaler", Some(ns), n);
    object.workload_kind = Some(target.kind.clone());
    object.workload = Some(target.name.clone());
    let message = limited.and_then(|c| c.message.as_deref()).unwrap_or("");
    vec![
        Finding::new(
            FindingKind::HpaAtMaxReplicas,
            Severity::Warning,
            object,
            format!("HPA {ns}/{n} is at its maximum of {max} replicas"),
            format!(
                "{} {} runs {current} replicas, the HPA's maximum, for {}; demand wants more. {message}",
                target.kind, target.name, age(ctx.now, since_t)
            ),
        )
        .with_remediation(Some(Remediation::ScaleUp))
        .with_service(Some(target.name.clone()))
        .with_since(Some(since_t)),
    ]
}

/// Classifies one Service from its EndpointSlices: a finding when none of its endpoints is
/// ready (a missing `ready` counts as ready, as the API defines).
pub fn classify_service_endpoints(
    ns: &str,
    service: &str,
    slices: &[&EndpointSlice],
    ctx: &Ctx<'_>,
    since: &mut SinceTracker,
) -> Vec<Finding> {
    if !ctx.namespaces.allows(ns) {
        return Vec::new();
    }
    let key = format!("no-ready-endpoints/{ns}/{service}");
    let endpoints: Vec<_> = slices
        .iter()
        .flat_map(|s| s.endpoints.iter().flatten())
        .collect();
    let ready = endpoints
        .iter()
        .filter(|e| e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true))
        .count();
    let Some(since_t) = not_ready_since(since, &key, ready == 0, ctx) else {
        return Vec::new();
    };
    let object = ObjectRef::new("Service", Some(ns), service);
    let pods: Vec<&str> = endpoints
        .iter()
        .filter_map(|e| e.target_ref.as_ref()?.name.as_deref())
        .collect();
    vec![
        Finding::new(
            FindingKind::ServiceNoReadyEndpoints,
            Severity::Critical,
            object,
            format!("Service {ns}/{service} has no ready endpoints"),
            if endpoints.is_empty() {
                format!("No pod backs the Service for at least {}; every request to it fails.", age(ctx.now, since_t))
            } else {
                format!(
                    "None of its {} endpoints ({}) is ready, for at least {}; every request to it fails.",
                    endpoints.len(),
                    pods.join(", "),
                    age(ctx.now, since_t)
                )
            },
        )
        .with_service(Some(service.to_owned()))
        .with_since(Some(since_t)),
    ]
}

/// One check of the API server's `/readyz?verbose` or `/livez?verbose` answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    /// The check's name, e.g. `etcd`, `poststarthook/rbac/bootstrap-roles`.
    pub name: String,
    /// Whether it passed.
    pub ok: bool,
    /// The text after the name (`ok`, `failed: reason withheld`).
    pub detail: String,
}

/// Parses the `[+]name ok` / `[-]name failed: reason` lines of a verbose health answer.
pub fn parse_health_checks(body: &str) -> Vec<HealthCheck> {
    body.lines()
        .filter_map(|line| {
            let line = line.trim();
            let (ok, rest) = if let Some(rest) = line.strip_prefix("[+]") {
                (true, rest)
            } else if let Some(rest) = line.strip_prefix("[-]") {
                (false, rest)
            } else {
                return None;
            };
            let (name, detail) = rest.split_once(' ').unwrap_or((rest, ""));
            Some(HealthCheck {
                name: name.to_owned(),
                ok,
                detail: detail.trim().to_owned(),
            })
        })
        .collect()
}

/// A control-plane finding about `component` (the API server's check name, or a Prometheus job).
pub fn control_plane_finding(component: &str, source: &str, detail: &str) -> Finding {
    let mut f = Finding::new(
        FindingKind::ControlPlaneUnhealthy,
        Severity::Critical,
        ObjectRef::new("ControlPlane", None, component),
        format!("Control plane component {component} is unhealthy"),
        format!("{source}: {detail}"),
    );
    f.labels
        .insert("component".to_owned(), component.to_owned());
    f
}

/// Findings from the API server's `/livez?verbose` and `/readyz?verbose` answers: each is
/// `Ok(body)` or `Err(why the request failed)`, status 200 or not.
pub fn classify_apiserver_health(
    livez: &Result<(u16, String), String>,
    readyz: &Result<(u16, String), String>,
) -> Vec<Finding> {
    let mut out: BTreeMap<String, Finding> = BTreeMap::new();
    for (endpoint, answer) in [("/livez", livez), ("/readyz", readyz)] {
        match answer {
            Err(why) => {
                out.entry("apiserver".to_owned())
                    .or_insert_with(|| control_plane_finding("apiserver", endpoint, why));
            }
            Ok((status, body)) => {
                let failing: Vec<HealthCheck> = parse_health_checks(body)
                    .into_iter()
                    .filter(|c| !c.ok)
                    .collect();
                for c in &failing {
                    out.entry(c.name.clone())
                        .or_insert_with(|| control_plane_finding(&c.name, endpoint, &c.detail));
                }
                if failing.is_empty() && *status != 200 {
                    out.entry("apiserver".to_owned()).or_insert_with(|| {
                        control_plane_finding(
                            "apiserver",
                            endpoint,
                            &format!("HTTP {status}: {}", body.trim()),
                        )
                    });
                }
            }
        }
    }
    out.into_values().collect()
}
