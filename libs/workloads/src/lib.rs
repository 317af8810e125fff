//! Kubernetes workload concepts shared by health-monitor and auto-healer.
//!
//! - [`WorkloadKind`]: the controllers the nervous system acts on (Deployment, StatefulSet,
//!   DaemonSet).
//! - [`dispatch`]: the one place a kind becomes a typed [`Api<K>`]; an operation written once
//!   as a [`WorkloadOp`] runs on whichever kind a target names. [`get`], [`patch`],
//!   [`get_scale`] and [`patch_scale`] are the operations the healer uses.
//! - [`owner_from_metadata`] and [`owner_through_api`]: which workload owns a pod, from the
//!   pod alone (labels and owner references) or by asking the API server for the ReplicaSet's
//!   owner.

use std::fmt::Debug;
use std::future::Future;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::autoscaling::v1::Scale;
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, Resource};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// A kind of workload controller the healer can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum WorkloadKind {
    /// apps/v1 Deployment.
    Deployment,
    /// apps/v1 StatefulSet.
    StatefulSet,
    /// apps/v1 DaemonSet.
    DaemonSet,
}

impl WorkloadKind {
    /// Parses a kind name such as the `workload_kind` alert label (case-insensitive).
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "deployment" => Some(Self::Deployment),
            "statefulset" => Some(Self::StatefulSet),
            "daemonset" => Some(Self::DaemonSet),
            _ => None,
        }
    }

    /// The Kubernetes kind.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Deployment => "Deployment",
            Self::StatefulSet => "StatefulSet",
            Self::DaemonSet => "DaemonSet",
        }
    }
}

/// A workload controller type: what every kind offers the operations.
pub trait Workload:
    Resource<Scope = NamespaceResourceScope, DynamicType = ()>
    + Clone
    + Debug
    + DeserializeOwned
    + Serialize
    + Send
    + Sync
    + 'static
{
    /// Which kind this type is.
    const KIND: WorkloadKind;
    /// The label selector of its pods.
    fn selector(&self) -> &LabelSelector;
    /// Its pod template.
    fn template(&self) -> &PodTemplateSpec;
    /// Whether the controller has observed the latest spec and every wanted replica runs it
    /// and is ready (as `kubectl rollout status` judges).
    fn rolled_out(&self) -> bool;
}

fn observed(meta: &ObjectMeta, observed_generation: Option<i64>) -> bool {
    observed_generation.unwrap_or(0) >= meta.generation.unwrap_or(0)
}

impl Workload for Deployment {
    const KIND: WorkloadKind = WorkloadKind::Deployment;
    fn selector(&self) -> &LabelSelector {
        &self.spec.selector
    }
    fn template(&self) -> &PodTemplateSpec {
        &self.spec.template
    }
    fn rolled_out(&self) -> bool {
        let st = self.status.clone().unwrap_or_default();
        let want = self.spec.replicas.unwrap_or(1);
        observed(&self.metadata, st.observed_generation)
            && st.updated_replicas.unwrap_or(0) >= want
            && st.available_replicas.unwrap_or(0) >= want
            && st.replicas.unwrap_or(0) == want
    }
}

impl Workload for StatefulSet {
    const KIND: WorkloadKind = WorkloadKind::StatefulSet;
    fn selector(&self) -> &LabelSelector {
        &self.spec.selector
    }
    fn template(&self) -> &PodTemplateSpec {
        &self.spec.template
    }
    fn rolled_out(&self) -> bool {
        let st = self.status.clone().unwrap_or_default();
        let want = self.spec.replicas.unwrap_or(1);
        observed(&self.metadata, st.observed_generation)
            && st.ready_replicas.unwrap_or(0) >= want
            && st.updated_replicas.unwrap_or(0) >= want
    }
}

impl Workload for DaemonSet {
    const KIND: WorkloadKind = WorkloadKind::DaemonSet;
    fn selector(&self) -> &LabelSelector {
        &self.spec.selector
    }
    fn template(&self) -> &PodTemplateSpec {
        &self.spec.template
    }
    fn rolled_out(&self) -> bool {
        let st = self.status.clone().unwrap_or_default();
        observed(&self.metadata, st.observed_generation)
            && st.number_ready >= st.desired_number_scheduled
            && st.updated_number_scheduled.unwrap_or(0) >= st.desired_number_scheduled
    }
}

/// An operation written once for every workload type; [`dispatch`] runs it on the right one.
pub trait WorkloadOp {
    /// What the operation returns.
    type Output;
    /// Runs the operation through the typed API of `W`.
    fn run<W: Workload>(self, api: Api<W>) -> impl Future<Output = Self::Output> + Send;
}

/// Runs `op` on the typed API of `kind` in `namespace`: the one place a [`WorkloadKind`]
/// becomes an [`Api<K>`].
pub async fn dispatch<O: WorkloadOp>(
    client: Client,
    namespace: &str,
    kind: WorkloadKind,
    op: O,
) -> O::Output {
    match kind {
        WorkloadKind::Deployment => {
            op.run(Api::<Deployment>::namespaced(client, namespace))
                .await
        }
        WorkloadKind::StatefulSet => {
            op.run(Api::<StatefulSet>::namespaced(client, namespace))
                .await
        }
        WorkloadKind::DaemonSet => {
            op.run(Api::<DaemonSet>::namespaced(client, namespace))
                .await
        }
    }
}

/// What the healer reads of a workload, whatever its kind.
#[derive(Debug, Clone)]
pub struct WorkloadState {
    /// Its metadata (annotations, revision, uid).
    pub metadata: ObjectMeta,
    /// The label selector of its pods.
    pub selector: LabelSelector,
    /// Its pod template.
    pub template: PodTemplateSpec,
    /// See [`Workload::rolled_out`].
    pub rolled_out: bool,
}

struct Get<'a>(&'a str);

impl WorkloadOp for Get<'_> {
    type Output = Result<WorkloadState, kube::Error>;
    async fn run<W: Workload>(self, api: Api<W>) -> Self::Output {
        let w = api.get(self.0).await?;
        Ok(WorkloadState {
            selector: w.selector().clone(),
            template: w.template().clone(),
            rolled_out: w.rolled_out(),
            metadata: w.meta().clone(),
        })
    }
}

/// Reads workload `name` of `kind` in `namespace`.
pub async fn get(
    client: Client,
    namespace: &str,
    kind: WorkloadKind,
    name: &str,
) -> Result<WorkloadState, kube::Error> {
    dispatch(client, namespace, kind, Get(name)).await
}

struct PatchOp<'a, P: Serialize> {
    name: &'a str,
    params: &'a PatchParams,
    patch: &'a Patch<P>,
    scale: bool,
}

impl<P: Serialize + Debug + Sync> WorkloadOp for PatchOp<'_, P> {
    type Output = Result<(), kube::Error>;
    async fn run<W: Workload>(self, api: Api<W>) -> Self::Output {
        if self.scale {
            api.patch_scale(self.name, self.params, self.patch)
                .await
                .map(drop)
        } else {
            api.patch(self.name, self.params, self.patch)
                .await
                .map(drop)
        }
    }
}

/// Patches workload `name` of `kind` in `namespace`.
pub async fn patch<P: Serialize + Debug + Sync>(
    client: Client,
    namespace: &str,
    kind: WorkloadKind,
    name: &str,
    params: &PatchParams,
    patch: &Patch<P>,
) -> Result<(), kube::Error> {
    let op = PatchOp {
        name,
        params,
        patch,
        scale: false,
    };
    dispatch(client, namespace, kind, op).await
}

/// Patches the `scale` subresource of workload `name` (a DaemonSet has none: the API server
/// answers 404).
pub async fn patch_scale<P: Serialize + Debug + Sync>(
    client: Client,
    namespace: &str,
    kind: WorkloadKind,
    name: &str,
    params: &PatchParams,
    patch: &Patch<P>,
) -> Result<(), kube::Error> {
    let op = PatchOp {
        name,
        params,
        patch,
        scale: true,
    };
    dispatch(client, namespace, kind, op).await
}

struct GetScale<'a>(&'a str);

impl WorkloadOp for GetScale<'_> {
    type Output = Result<Scale, kube::Error>;
    async fn run<W: Workload>(self, api: Api<W>) -> Self::Output {
        api.get_scale(self.0).await
    }
}

/// Reads the `scale` subresource of workload `name` (a DaemonSet has none: the API server
/// answers 404).
pub async fn get_scale(
    client: Client,
    namespace: &str,
    kind: WorkloadKind,
    name: &str,
) -> Result<Scale, kube::Error> {
    dispatch(client, namespace, kind, GetScale(name)).await
}

/// The workload that owns a pod, as named by the pod's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    /// The controller's kind (`Deployment`, `StatefulSet`, `DaemonSet`, `Job`, ...).
    pub kind: String,
    /// The controller's name.
    pub name: String,
}

/// The workload that owns a pod, from the pod alone (no API call): its controller owner
/// reference, where a ReplicaSet stands for its Deployment, named by cutting the
/// `pod-template-hash` label off the ReplicaSet's name (or, without that label, the last
/// `-suffix`). `None` for a pod without a controller.
pub fn owner_from_metadata(pod: &Pod) -> Option<Owner> {
    let owner = pod
        .metadata
        .owner_references
        .as_ref()?
        .iter()
        .find(|o| o.controller == Some(true))?;
    if owner.kind == "ReplicaSet" {
        let hash = pod
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("pod-template-hash"));
        let deployment = match hash.and_then(|h| owner.name.strip_suffix(&format!("-{h}"))) {
            Some(base) => base,
            None => owner
                .name
                .rsplit_once('-')
                .map_or(owner.name.as_str(), |(base, _)| base),
        };
        return Some(Owner {
            kind: "Deployment".to_owned(),
            name: deployment.to_owned(),
        });
    }
    Some(Owner {
        kind: owner.kind.clone(),
        name: owner.name.clone(),
    })
}

/// The workload of a kind the healer acts on that owns a pod, asking the API server: the
/// first owner reference that is a StatefulSet or a DaemonSet, or a ReplicaSet whose own
/// owner is a Deployment (`GET` of the ReplicaSet in the pod's namespace). `None` for a pod
/// none of them owns.
pub async fn owner_through_api(
    client: Client,
    pod: &Pod,
) -> Result<Option<(WorkloadKind, String)>, kube::Error> {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    for o in pod.metadata.owner_references.iter().flatten() {
        match o.kind.as_str() {
            "StatefulSet" => return Ok(Some((WorkloadKind::StatefulSet, o.name.clone()))),
            "DaemonSet" => return Ok(Some((WorkloadKind::DaemonSet, o.name.clone()))),
            "ReplicaSet" => {
                let rs = Api::<ReplicaSet>::namespaced(client.clone(), &ns)
                    .get(&o.name)
                    .await?;
                if let Some(d) = rs
                    .metadata
                    .owner_references
                    .iter()
                    .flatten()
                    .find(|o| o.kind == "Deployment")
                {
                    return Ok(Some((WorkloadKind::Deployment, d.name.clone())));
                }
            }
            _ => {}
        }
    }
    Ok(None)
}

/// `matchLabels` as a label selector string (`k=v,k=v`), for list calls.
pub fn selector_string(selector: &LabelSelector) -> String {
    selector
        .match_labels
        .iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}
