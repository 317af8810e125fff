//! The Kubernetes adapter (kube-rs): snapshots, actions, verification and Events, plus the
//! guard state ConfigMap ([`state`]) and Lease leader election ([`lease`]).

pub mod lease;
pub mod state;
#[cfg(test)]
mod tests;

use std::time::Duration;

use futures::future::BoxFuture;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::policy::v1::Eviction;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Client;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use time::OffsetDateTime;
use workloads::{WorkloadState, selector_string};

use crate::core::{self, ClusterSnapshot, Labels, NodeInfo, PodCounts, Target, WorkloadKind};
use crate::platform::{AdapterError, AuditRecord, Platform};
use crate::policy::{self, Action};

/// The field manager and Event reporting controller name.
pub const MANAGER: &str = "auto-healer";
/// The Event `reportingController`.
pub const REPORTING_CONTROLLER: &str = "organism.dev/auto-healer";
/// The annotation on a node the healer cordoned (value `auto-healer`), removed on uncordon.
pub const CORDONED_BY: &str = "organism.dev/cordoned-by";

/// The annotation `kubectl rollout restart` sets.
pub const RESTARTED_AT: &str = "kubectl.kubernetes.io/restartedAt";
/// The ReplicaSet/Deployment revision annotation.
pub const REVISION: &str = "deployment.kubernetes.io/revision";

/// Timings of the adapter (tests shorten them).
#[derive(Debug, Clone, Copy)]
pub struct Timings {
    /// Between polls while verifying.
    pub poll: Duration,
    /// Between retries of an eviction a PodDisruptionBudget refused (429).
    pub eviction_retry: Duration,
}

impl Default for Timings {
    fn default() -> Self {
        Self {
            poll: Duration::from_secs(2),
            eviction_retry: Duration::from_secs(5),
        }
    }
}

/// Acts on a cluster through the Kubernetes API.
#[derive(Clone)]
pub struct KubePlatform {
    client: Client,
    identity: String,
    timings: Timings,
}

impl std::fmt::Debug for KubePlatform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubePlatform")
            .field("identity", &self.identity)
            .finish()
    }
}

fn api_err(e: kube::Error) -> AdapterError {
    match &e {
        kube::Error::Api(s) if s.is_not_found() => {
            AdapterError::new("not-found", s.message.clone())
        }
        kube::Error::Api(s) if s.is_conflict() => AdapterError::new("conflict", s.message.clone()),
        kube::Error::Api(s) => AdapterError::new("api", format!("{} ({})", s.message, s.code)),
        other => AdapterError::new("transport", other.to_string()),
    }
}

fn is_status(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == code)
}

/// `time` → the Kubernetes timestamp type.
pub fn micro_time(t: OffsetDateTime) -> MicroTime {
    MicroTime(
        k8s_openapi::jiff::Timestamp::from_nanosecond(t.unix_timestamp_nanos())
            .unwrap_or(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
    )
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn pod_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn node_ready(n: &Node) -> bool {
    n.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Whether a pod is left alone by a drain: DaemonSet pods (their controller ignores
/// unschedulable) and mirror pods (the kubelet owns them).
pub fn drain_skips(p: &Pod) -> Option<&'static str> {
    let meta = &p.metadata;
    if meta
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key("kubernetes.io/config.mirror"))
    {
        return Some("mirror pod");
    }
    if meta
        .owner_references
        .iter()
        .flatten()
        .any(|o| o.kind == "DaemonSet")
    {
        return Some("DaemonSet pod");
    }
    if matches!(
        p.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    ) {
        return Some("finished pod");
    }
    None
}

/// Among `(revision, name)` pairs, the highest revision below `current`.
pub fn previous_revision(revisions: &[(u64, String)], current: u64) -> Option<&(u64, String)> {
    revisions
        .iter()
        .filter(|(r, _)| *r < current)
        .max_by_key(|(r, _)| *r)
}

fn revision_of(meta: &ObjectMeta) -> Option<u64> {
    meta.annotations.as_ref()?.get(REVISION)?.parse().ok()
}

fn annotations_of(meta: &ObjectMeta) -> Labels {
    meta.annotations.clone().unwrap_or_default()
}

impl KubePlatform {
    /// An adapter over `client`; `identity` names this instance in Events.
    pub fn new(client: Client, identity: impl Into<String>, timings: Timings) -> Self {
        Self {
            client,
            identity: identity.into(),
            timings,
        }
    }

    async fn workload(
        &self,
        ns: &str,
        kind: WorkloadKind,
        name: &str,
    ) -> Result<WorkloadState, AdapterError> {
        workloads::get(self.client.clone(), ns, kind, name)
            .await
            .map_err(api_err)
    }

    async fn pod_counts(
        &self,
        ns: &str,
        selector: &str,
        except: Option<&str>,
    ) -> Result<PodCounts, AdapterError> {
        let pods = Api::<Pod>::namespaced(self.client.clone(), ns)
            .list(&ListParams::default().labels(selector))
            .await
            .map_err(api_err)?;
        let total = pods.items.len() as u32;
        let disrupted_others = pods
            .items
            .iter()
            .filter(|p| p.metadata.name.as_deref() != except)
            .filter(|p| p.metadata.deletion_timestamp.is_some() || !pod_ready(p))
            .count() as u32;
        Ok(PodCounts {
            total,
            disrupted_others,
        })
    }

    async fn nodes(&self) -> Result<Vec<NodeInfo>, AdapterError> {
        let nodes = Api::<Node>::all(self.client.clone())
            .list(&ListParams::default())
            .await
            .map_err(api_err)?;
        Ok(nodes
            .items
            .iter()
            .map(|n| NodeInfo {
                name: n.metadata.name.clone().unwrap_or_default(),
                ready: node_ready(n),
                unschedulable: n
                    .spec
                    .as_ref()
                    .and_then(|s| s.unschedulable)
                    .unwrap_or(false),
            })
            .collect())
    }

    async fn take_snapshot(&self, target: &Target) -> Result<ClusterSnapshot, AdapterError> {
        let mut snap = ClusterSnapshot::default();
        match target {
            Target::Pod { namespace, name } => {
                let pod = Api::<Pod>::namespaced(self.client.clone(), namespace)
                    .get(name)
                    .await
                    .map_err(api_err)?;
                snap.annotations
                    .push((target.key(), annotations_of(&pod.metadata)));
                if let Some((kind, wname)) = workloads::owner_through_api(self.client.clone(), &pod)
                    .await
                    .map_err(api_err)?
                {
                    let w = self.workload(namespace, kind, &wname).await?;
                    let key = Target::Workload {
                        namespace: namespace.clone(),
                        kind,
                        name: wname,
                    }
                    .key();
                    snap.annotations.push((key, annotations_of(&w.metadata)));
                    snap.workload_pods = Some(
                        self.pod_counts(namespace, &selector_string(&w.selector), Some(name))
                            .await?,
                    );
                }
            }
            Target::Workload {
                namespace,
                kind,
                name,
            } => {
                let w = self.workload(namespace, *kind, name).await?;
                snap.annotations
                    .push((target.key(), annotations_of(&w.metadata)));
                snap.workload_pods = Some(
                    self.pod_counts(namespace, &selector_string(&w.selector), None)
                        .await?,
                );
            }
            Target::Node { name } => {
                let node = Api::<Node>::all(self.client.clone())
                    .get(name)
                    .await
                    .map_err(api_err)?;
                snap.annotations
                    .push((target.key(), annotations_of(&node.metadata)));
                snap.nodes = self.nodes().await?;
            }
            Target::Namespace { .. } | Target::Service { .. } => {}
        }
        Ok(snap)
    }

    /// Patches workload `name` of `kind` in `ns` with the default patch parameters.
    async fn patch_workload(
        &self,
        ns: &str,
        kind: WorkloadKind,
        name: &str,
        patch: &Patch<&serde_json::Value>,
    ) -> Result<(), AdapterError> {
        workloads::patch(
            self.client.clone(),
            ns,
            kind,
            name,
            &PatchParams::default(),
            patch,
        )
        .await
        .map_err(api_err)
    }

    async fn rollout_restart(
        &self,
        ns: &str,
        kind: WorkloadKind,
        name: &str,
    ) -> Result<String, AdapterError> {
        let now = rfc3339(OffsetDateTime::now_utc());
        let patch =
            json!({"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: now}}}}});
        self.patch_workload(ns, kind, name, &Patch::Merge(&patch))
            .await?;
        Ok(format!(
            "restarted {} {ns}/{name} (restartedAt {now})",
            kind.as_str()
        ))
    }

    async fn rollback(&self, ns: &str, name: &str) -> Result<String, AdapterError> {
        let deployments = Api::<Deployment>::namespaced(self.client.clone(), ns);
        let d = deployments.get(name).await.map_err(api_err)?;
        let uid = d.metadata.uid.clone().unwrap_or_default();
        let current = revision_of(&d.metadata).ok_or_else(|| {
            AdapterError::new(
                "refused",
                format!("Deployment {ns}/{name} has no revision annotation"),
            )
        })?;
        let selector = selector_string(&d.spec.selector);
        let sets = Api::<ReplicaSet>::namespaced(self.client.clone(), ns)
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(api_err)?;
        let owned: Vec<&ReplicaSet> = sets
            .items
            .iter()
            .filter(|rs| {
                rs.metadata
                    .owner_references
                    .iter()
                    .flatten()
                    .any(|o| o.uid == uid && o.kind == "Deployment")
            })
            .collect();
        let revisions: Vec<(u64, String)> = owned
            .iter()
            .filter_map(|rs| Some((revision_of(&rs.metadata)?, rs.metadata.name.clone()?)))
            .collect();
        let (rev, rs_name) = previous_revision(&revisions, current)
            .ok_or_else(|| {
                AdapterError::new(
                    "refused",
                    format!("Deployment {ns}/{name} has no revision before {current}"),
                )
            })?
            .clone();
        let rs = owned
            .iter()
            .find(|rs| rs.metadata.name.as_deref() == Some(&rs_name))
            .ok_or_else(|| AdapterError::new("api", "ReplicaSet vanished"))?;
        let mut template = rs.spec.template.clone().unwrap_or_default();
        if let Some(labels) = template.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
            labels.remove("pod-template-hash");
        }
        let mut template =
            serde_json::to_value(&template).map_err(|e| AdapterError::new("api", e.to_string()))?;
        // Strategic merge `$patch: replace` replaces the template as a whole, as `kubectl
        // rollout undo` does with its JSON patch.
        template["$patch"] = json!("replace");
        let patch = json!({"spec": {"template": template}});
        deployments
            .patch(name, &PatchParams::default(), &Patch::Strategic(&patch))
            .await
            .map_err(api_err)?;
        Ok(format!(
            "rolled Deployment {ns}/{name} back from revision {current} to {rev} ({rs_name})"
        ))
    }

    async fn scale_up(
        &self,
        ns: &str,
        kind: WorkloadKind,
        name: &str,
        step: u32,
        max: u32,
    ) -> Result<String, AdapterError> {
        if kind == WorkloadKind::DaemonSet {
            return Err(AdapterError::new(
                "unsupported",
                "a DaemonSet does not scale",
            ));
        }
        let scale = workloads::get_scale(self.client.clone(), ns, kind, name)
            .await
            .map_err(api_err)?;
        let current = scale.spec.and_then(|s| s.replicas).unwrap_or(0).max(0) as u32;
        let next = core::next_replicas(current, step, max).ok_or_else(|| {
            AdapterError::new(
                "at-cap",
                format!("{ns}/{name} already has {current} replicas (max {max})"),
            )
        })?;
        let patch = json!({"spec": {"replicas": next}});
        workloads::patch_scale(
            self.client.clone(),
            ns,
            kind,
            name,
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
        .map_err(api_err)?;
        Ok(format!(
            "scaled {} {ns}/{name} from {current} to {next} replicas",
            kind.as_str()
        ))
    }

    async fn raise_hpa_min(
        &self,
        ns: &str,
        kind: WorkloadKind,
        name: &str,
        step: u32,
        max: u32,
    ) -> Result<String, AdapterError> {
        let hpas = Api::<HorizontalPodAutoscaler>::namespaced(self.client.clone(), ns);
        let list = hpas.list(&ListParams::default()).await.map_err(api_err)?;
        let hpa = list
            .items
            .iter()
            .find(|h| {
                h.spec.scale_target_ref.kind == kind.as_str()
                    && h.spec.scale_target_ref.name == name
            })
            .ok_or_else(|| {
                AdapterError::new(
                    "not-found",
                    format!(
                        "no HorizontalPodAutoscaler targets {} {ns}/{name}",
                        kind.as_str()
                    ),
                )
            })?;
        let spec = hpa.spec.clone();
        let current = spec.min_replicas.unwrap_or(1).max(0) as u32;
        let cap = max.min(spec.max_replicas.max(0) as u32);
        let next = core::next_replicas(current, step, cap).ok_or_else(|| {
            AdapterError::new(
                "at-cap",
                format!("minReplicas is already {current} (cap {cap})"),
            )
        })?;
        let hpa_name = hpa.metadata.name.clone().unwrap_or_default();
        hpas.patch(
            &hpa_name,
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"minReplicas": next}})),
        )
        .await
        .map_err(api_err)?;
        Ok(format!(
            "raised HorizontalPodAutoscaler {ns}/{hpa_name} minReplicas from {current} to {next}"
        ))
    }

    async fn raise_memory(
        &self,
        ns: &str,
        kind: WorkloadKind,
        name: &str,
        factor: f64,
        max_bytes: u64,
        container: Option<&str>,
    ) -> Result<String, AdapterError> {
        let w = self.workload(ns, kind, name).await?;
        let containers = w.template.spec.map(|s| s.containers).unwrap_or_default();
        let c = match container {
            Some(n) => containers.iter().find(|c| c.name == n),
            None => containers.first(),
        }
        .ok_or_else(|| {
            AdapterError::new(
                "not-found",
                format!("no container {container:?} in {ns}/{name}"),
            )
        })?;
        let current = c
            .resources
            .as_ref()
            .and_then(|r| r.limits.as_ref())
            .and_then(|l| l.get("memory"))
            .ok_or_else(|| {
                AdapterError::new(
                    "refused",
                    format!("container {} has no memory limit to raise", c.name),
                )
            })?;
        let current = policy::parse_memory(&current.0).map_err(|m| AdapterError::new("api", m))?;
        let next = core::next_memory_limit(current, factor, max_bytes).ok_or_else(|| {
            AdapterError::new(
                "at-cap",
                format!(
                    "memory limit of {} is already at the cap {}",
                    c.name,
                    policy::format_memory(max_bytes)
                ),
            )
        })?;
        let next_q = policy::format_memory(next);
        let patch = json!({"spec": {"template": {"spec": {"containers": [
            {"name": c.name, "resources": {"limits": {"memory": next_q}}}
        ]}}}});
        self.patch_workload(ns, kind, name, &Patch::Strategic(&patch))
            .await?;
        Ok(format!(
            "raised the memory limit of {ns}/{name} container {} from {} to {next_q}",
            c.name,
            policy::format_memory(current)
        ))
    }

    async fn set_unschedulable(&self, node: &str, value: bool) -> Result<(), AdapterError> {
        Api::<Node>::all(self.client.clone())
            .patch(
                node,
                &PatchParams::default(),
                // The annotation says who cordoned: health-monitor offers `uncordon` only for
                // nodes the healer cordoned (a human's cordon is left alone); null removes it.
                &Patch::Merge(&json!({
                    "metadata": {"annotations": {CORDONED_BY: if value { json!("auto-healer") } else { serde_json::Value::Null }}},
                    "spec": {"unschedulable": value},
                })),
            )
            .await
            .map(drop)
            .map_err(api_err)
    }

    async fn pods_on(&self, node: &str) -> Result<Vec<Pod>, AdapterError> {
        Ok(Api::<Pod>::all(self.client.clone())
            .list(&ListParams::default().fields(&format!("spec.nodeName={node}")))
            .await
            .map_err(api_err)?
            .items)
    }

    async fn drain(&self, node: &str, timeout: Duration) -> Result<String, AdapterError> {
        self.set_unschedulable(node, true).await?;
        let deadline = tokio::time::Instant::now() + timeout;
        let mut evicted = 0;
        let mut skipped = 0;
        for pod in self.pods_on(node).await? {
            if drain_skips(&pod).is_some() {
                skipped += 1;
                continue;
            }
            let ns = pod.metadata.namespace.clone().unwrap_or_default();
            let name = pod.metadata.name.clone().unwrap_or_default();
            let api = Api::<Pod>::namespaced(self.client.clone(), &ns);
            loop {
                // A full policy/v1 Eviction (kind, apiVersion, namespace), as kubectl drain sends.
                let eviction = Eviction {
                    metadata: ObjectMeta {
                        name: Some(name.clone()),
                        namespace: Some(ns.clone()),
                        ..ObjectMeta::default()
                    },
                    delete_options: None,
                };
                match api
                    .create_subresource::<_, kube::core::Status>(
                        "eviction",
                        &name,
                        &PostParams::default(),
                        &eviction,
                    )
                    .await
                {
                    Ok(_) => {
                        evicted += 1;
                        break;
                    }
                    Err(e) if is_status(&e, 404) => break,
                    Err(e) if is_status(&e, 429) => {
                        if tokio::time::Instant::now() + self.timings.eviction_retry > deadline {
                            return Err(AdapterError::new(
                                "timeout",
                                format!(
                                    "a PodDisruptionBudget kept refusing to evict {ns}/{name} for {} s",
                                    timeout.as_secs()
                                ),
                            ));
                        }
                        tokio::time::sleep(self.timings.eviction_retry).await;
                    }
                    Err(e) => return Err(api_err(e)),
                }
            }
        }
        Ok(format!(
            "cordoned {node}, evicted {evicted} pods, left {skipped} (DaemonSet, mirror or finished)"
        ))
    }

    async fn cleanup(&self, ns: &str, ttl: Duration) -> Result<String, AdapterError> {
        let now = k8s_openapi::jiff::Timestamp::now();
        let older = |t: Option<&k8s_openapi::jiff::Timestamp>| {
            t.is_some_and(|t| now.duration_since(*t).as_secs() >= ttl.as_secs() as i64)
        };
        let pods = Api::<Pod>::namespaced(self.client.clone(), ns);
        let failed = pods
            .list(&ListParams::default().fields("status.phase=Failed"))
            .await
            .map_err(api_err)?;
        let mut deleted_pods = 0;
        for p in &failed.items {
            let started = p
                .status
                .as_ref()
                .and_then(|s| s.start_time.as_ref())
                .map(|t| &t.0);
            let created = p.metadata.creation_timestamp.as_ref().map(|t| &t.0);
            if older(started.or(created)) {
                let name = p.metadata.name.clone().unwrap_or_default();
                match pods.delete(&name, &DeleteParams::default()).await {
                    Ok(_) => deleted_pods += 1,
                    Err(e) if is_status(&e, 404) => {}
                    Err(e) => return Err(api_err(e)),
                }
            }
        }
        let jobs = Api::<Job>::namespaced(self.client.clone(), ns);
        let mut deleted_jobs = 0;
        for j in jobs
            .list(&ListParams::default())
            .await
            .map_err(api_err)?
            .items
        {
            let finished = j
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .and_then(|c| {
                    c.iter()
                        .find(|c| {
                            (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True"
                        })
                        .and_then(|c| c.last_transition_time.as_ref().map(|t| t.0))
                });
            let completion = j
                .status
                .as_ref()
                .and_then(|s| s.completion_time.as_ref())
                .map(|t| t.0);
            if older(completion.or(finished).as_ref()) {
                let name = j.metadata.name.clone().unwrap_or_default();
                match jobs.delete(&name, &DeleteParams::background()).await {
                    Ok(_) => deleted_jobs += 1,
                    Err(e) if is_status(&e, 404) => {}
                    Err(e) => return Err(api_err(e)),
                }
            }
        }
        Ok(format!(
            "deleted {deleted_pods} failed pods and {deleted_jobs} finished Jobs older than {} s in {ns}",
            ttl.as_secs()
        ))
    }

    async fn run(
        &self,
        action: &Action,
        target: &Target,
        alert: &Labels,
    ) -> Result<String, AdapterError> {
        let wrong = || {
            AdapterError::new(
                "unsupported",
                format!("{} cannot act on {}", action.name(), target.key()),
            )
        };
        match (action, target) {
            (Action::DeletePod, Target::Pod { namespace, name }) => {
                Api::<Pod>::namespaced(self.client.clone(), namespace)
                    .delete(name, &DeleteParams::default())
                    .await
                    .map_err(api_err)?;
                Ok(format!("deleted pod {namespace}/{name}"))
            }
            (
                Action::RolloutRestart | Action::RestartService,
                Target::Workload {
                    namespace,
                    kind,
                    name,
                },
            ) => self.rollout_restart(namespace, *kind, name).await,
            (
                Action::Rollback,
                Target::Workload {
                    namespace,
                    kind: WorkloadKind::Deployment,
                    name,
                },
            ) => self.rollback(namespace, name).await,
            (
                Action::ScaleUp { step, max_replicas },
                Target::Workload {
                    namespace,
                    kind,
                    name,
                },
            ) => {
                self.scale_up(namespace, *kind, name, *step, *max_replicas)
                    .await
            }
            (
                Action::RaiseHpaMin { step, max_replicas },
                Target::Workload {
                    namespace,
                    kind,
                    name,
                },
            ) => {
                self.raise_hpa_min(namespace, *kind, name, *step, *max_replicas)
                    .await
            }
            (
                Action::RaiseMemoryLimit {
                    factor,
                    max_bytes,
                    container,
                },
                Target::Workload {
                    namespace,
                    kind,
                    name,
                },
            ) => {
                let container = container
                    .as_deref()
                    .or_else(|| alert.get("container").map(String::as_str));
                self.raise_memory(namespace, *kind, name, *factor, *max_bytes, container)
                    .await
            }
            (Action::Cordon, Target::Node { name }) => {
                self.set_unschedulable(name, true).await?;
                Ok(format!("cordoned node {name}"))
            }
            (Action::Drain { timeout }, Target::Node { name }) => self.drain(name, *timeout).await,
            (Action::Uncordon, Target::Node { name }) => {
                self.set_unschedulable(name, false).await?;
                Ok(format!("uncordoned node {name}"))
            }
            (Action::Cleanup { ttl }, Target::Namespace { name }) => self.cleanup(name, *ttl).await,
            _ => Err(wrong()),
        }
    }

    /// One verification probe: `Ok(true)` when healthy.
    async fn healthy(&self, action: &Action, target: &Target) -> Result<bool, AdapterError> {
        match (action, target) {
            (
                _,
                Target::Workload {
                    namespace,
                    kind,
                    name,
                },
            ) => Ok(self.workload(namespace, *kind, name).await?.rolled_out),
            (_, Target::Pod { namespace, name }) => {
                match Api::<Pod>::namespaced(self.client.clone(), namespace)
                    .get_opt(name)
                    .await
                    .map_err(api_err)?
                {
                    None => Ok(true),
                    Some(p) => Ok(p.metadata.deletion_timestamp.is_none() && pod_ready(&p)),
                }
            }
            (Action::Cordon, Target::Node { name }) => {
                let n = Api::<Node>::all(self.client.clone())
                    .get(name)
                    .await
                    .map_err(api_err)?;
                Ok(n.spec.and_then(|s| s.unschedulable).unwrap_or(false))
            }
            (Action::Drain { .. }, Target::Node { name }) => Ok(self
                .pods_on(name)
                .await?
                .iter()
                .all(|p| drain_skips(p).is_some())),
            (_, Target::Node { name }) => {
                let n = Api::<Node>::all(self.client.clone())
                    .get(name)
                    .await
                    .map_err(api_err)?;
                Ok(node_ready(&n) && !n.spec.and_then(|s| s.unschedulable).unwrap_or(false))
            }
            (_, Target::Namespace { .. }) => Ok(true),
            (_, Target::Service { .. }) => Err(AdapterError::new(
                "unsupported",
                "local services are not in the cluster",
            )),
        }
    }

    async fn emit(&self, r: &AuditRecord) -> Result<(), AdapterError> {
        let Some(target) = &r.target else {
            return Ok(());
        };
        let (api_version, kind, namespace, name) = match target {
            Target::Pod { namespace, name } => ("v1", "Pod", Some(namespace.clone()), name.clone()),
            Target::Workload {
                namespace,
                kind,
                name,
            } => (
                "apps/v1",
                kind.as_str(),
                Some(namespace.clone()),
                name.clone(),
            ),
            Target::Node { name } => ("v1", "Node", None, name.clone()),
            Target::Namespace { name } => ("v1", "Namespace", None, name.clone()),
            Target::Service { .. } => return Ok(()),
        };
        let event_ns = namespace.clone().unwrap_or_else(|| "default".to_owned());
        let warning = matches!(r.result.as_str(), "failed" | "escalated");
        let reason = match r.result.as_str() {
            "acted" => "Remediating",
            "healed" => "Remediated",
            "failed" => "RemediationStepFailed",
            "skipped" => "RemediationSkipped",
            "dry-run" => "RemediationDryRun",
            "escalated" => "RemediationFailed",
            _ => "Remediation",
        };
        let mut note = r.message.clone();
        if let Some(g) = &r.guard {
            note = format!("[guard {g}] {note}");
        }
        note.truncate(1000);
        let event = Event {
            metadata: ObjectMeta {
                generate_name: Some(format!("{}.", name.to_ascii_lowercase())),
                namespace: Some(event_ns.clone()),
                ..ObjectMeta::default()
            },
            event_time: Some(micro_time(r.at)),
            action: Some(r.action.clone().unwrap_or_else(|| "Decide".to_owned())),
            reason: Some(reason.to_owned()),
            note: Some(note),
            type_: Some(if warning { "Warning" } else { "Normal" }.to_owned()),
            reporting_controller: Some(REPORTING_CONTROLLER.to_owned()),
            reporting_instance: Some(self.identity.clone()),
            regarding: Some(ObjectReference {
                api_version: Some(api_version.to_owned()),
                kind: Some(kind.to_owned()),
                name: Some(name),
                namespace,
                ..ObjectReference::default()
            }),
            ..Event::default()
        };
        Api::<Event>::namespaced(self.client.clone(), &event_ns)
            .create(&PostParams::default(), &event)
            .await
            .map(drop)
            .map_err(api_err)
    }
}

impl Platform for KubePlatform {
    fn kind(&self) -> core::PlatformKind {
        core::PlatformKind::Kubernetes
    }

    fn snapshot<'a>(
        &'a self,
        target: &'a Target,
    ) -> BoxFuture<'a, Result<ClusterSnapshot, AdapterError>> {
        Box::pin(self.take_snapshot(target))
    }

    fn execute<'a>(
        &'a self,
        action: &'a Action,
        target: &'a Target,
        alert: &'a Labels,
    ) -> BoxFuture<'a, Result<String, AdapterError>> {
        Box::pin(self.run(action, target, alert))
    }

    fn verify<'a>(
        &'a self,
        action: &'a Action,
        target: &'a Target,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<(), AdapterError>> {
        Box::pin(async move {
            let deadline = tokio::time::Instant::now() + timeout;
            loop {
                match self.healthy(action, target).await {
                    Ok(true) => return Ok(()),
                    Ok(false) => {}
                    Err(e) if e.kind == "transport" => {}
                    Err(e) => return Err(e),
                }
                if tokio::time::Instant::now() + self.timings.poll > deadline {
                    return Err(AdapterError::new(
                        "timeout",
                        format!(
                            "{} was not healthy within {} s",
                            target.key(),
                            timeout.as_secs()
                        ),
                    ));
                }
                tokio::time::sleep(self.timings.poll).await;
            }
        })
    }

    fn record<'a>(&'a self, record: &'a AuditRecord) -> BoxFuture<'a, Result<(), AdapterError>> {
        Box::pin(self.emit(record))
    }
}
