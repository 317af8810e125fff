//! Kubernetes mode: kube-runtime watchers and reflectors (no polling) on pods, nodes,
//! Deployments, StatefulSets, DaemonSets, EndpointSlices, HPAs and Warning events, cluster-wide
//! or per configured namespace; every change re-classifies the object it touches, and a
//! periodic sweep (plus one after every (re-)list) re-classifies everything. The control plane
//! is checked through the API server's `/livez?verbose` and `/readyz?verbose`.
//!
//! A watch that fails (including `410 Gone`, resource version too old) is restarted by the
//! watcher with backoff, which re-lists and replaces the reflector's store.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use http_body_util::BodyExt;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{Event, Node, Pod};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::Api;
use kube::runtime::reflector::{self, ObjectRef as KubeRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource};
use serde::de::DeserializeOwned;
use service_kit::ReadyFlag;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::board::{CurrentFindings, Source};
use crate::classify::{self, Cluster, Ctx, SinceTracker};
use crate::config::{FileConfig, NamespaceFilter};
use crate::finding::{Finding, ObjectRef};
use crate::metrics::Metrics;

/// The watched resource kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Pods.
    Pod,
    /// Nodes.
    Node,
    /// Deployments.
    Deployment,
    /// StatefulSets.
    StatefulSet,
    /// DaemonSets.
    DaemonSet,
    /// EndpointSlices.
    EndpointSlice,
    /// HorizontalPodAutoscalers.
    Hpa,
    /// Warning events.
    Event,
}

impl Kind {
    /// The `resource` label value.
    pub fn resource(self) -> &'static str {
        match self {
            Kind::Pod => "pods",
            Kind::Node => "nodes",
            Kind::Deployment => "deployments",
            Kind::StatefulSet => "statefulsets",
            Kind::DaemonSet => "daemonsets",
            Kind::EndpointSlice => "endpointslices",
            Kind::Hpa => "horizontalpodautoscalers",
            Kind::Event => "events",
        }
    }
}

/// What a change touched, for re-classification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// An object of `kind` in `namespace` (empty for cluster-scoped) named `name`; for an
    /// EndpointSlice its Service, for an event the object it is about.
    Object {
        /// The kind to re-classify.
        kind: Kind,
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
    },
    /// A watcher finished a (re-)list of `kind`.
    Resynced(Kind),
}

/// The reflectors' stores (one per namespace for namespaced kinds when namespaces are listed).
#[derive(Debug, Clone, Default)]
pub struct Stores {
    /// Pods.
    pub pods: Vec<Store<Pod>>,
    /// Nodes.
    pub nodes: Vec<Store<Node>>,
    /// Deployments.
    pub deployments: Vec<Store<Deployment>>,
    /// StatefulSets.
    pub statefulsets: Vec<Store<StatefulSet>>,
    /// DaemonSets.
    pub daemonsets: Vec<Store<DaemonSet>>,
    /// EndpointSlices.
    pub endpoint_slices: Vec<Store<EndpointSlice>>,
    /// HPAs.
    pub hpas: Vec<Store<HorizontalPodAutoscaler>>,
    /// Warning events.
    pub events: Vec<Store<Event>>,
}

fn all<K: Resource<DynamicType = ()> + Clone + 'static>(stores: &[Store<K>]) -> Vec<Arc<K>> {
    stores.iter().flat_map(Store::state).collect()
}

fn get<K: Resource<DynamicType = ()> + Clone + 'static>(
    stores: &[Store<K>],
    ns: &str,
    name: &str,
) -> Option<Arc<K>> {
    let mut r = KubeRef::<K>::new(name);
    if !ns.is_empty() {
        r = r.within(ns);
    }
    stores.iter().find_map(|s| s.get(&r))
}

impl Stores {
    /// A snapshot of every store.
    pub fn snapshot(&self) -> Cluster {
        Cluster {
            pods: all(&self.pods),
            nodes: all(&self.nodes),
            deployments: all(&self.deployments),
            statefulsets: all(&self.statefulsets),
            daemonsets: all(&self.daemonsets),
            endpoint_slices: all(&self.endpoint_slices),
            hpas: all(&self.hpas),
            events: all(&self.events),
            readiness: classify::ReadinessIndex::new(),
        }
    }
}

/// The board key of the object a finding is about.
pub fn object_key(o: &ObjectRef) -> String {
    format!(
        "{}/{}/{}",
        o.kind,
        o.namespace.as_deref().unwrap_or(""),
        o.name
    )
}

fn key_of(kind: &str, ns: &str, name: &str) -> String {
    format!("{kind}/{ns}/{name}")
}

/// Classifies changed objects and sweeps; owns the [`SinceTracker`].
#[derive(Debug)]
pub struct Evaluator {
    stores: Stores,
    since: SinceTracker,
    board: CurrentFindings,
    metrics: Metrics,
    readiness: ReadinessReports,
}

impl Evaluator {
    /// An evaluator over `stores` publishing to `board`.
    pub fn new(stores: Stores, board: CurrentFindings, metrics: Metrics) -> Self {
        Self {
            stores,
            since: SinceTracker::default(),
            board,
            metrics,
            readiness: ReadinessReports::default(),
        }
    }

    /// Uses the failing readiness checks `reports` holds (see [`run_readiness_probes`]).
    #[must_use]
    pub fn with_readiness(mut self, reports: ReadinessReports) -> Self {
        self.readiness = reports;
        self
    }

    /// A full sweep: every object classified, the board's Kubernetes findings replaced.
    pub fn sweep(&mut self, cfg: &FileConfig, now: i64) -> Duration {
        let start = Instant::now();
        let mut cluster = self.stores.snapshot();
        cluster.readiness = self.readiness.snapshot();
        let filter = cfg.namespace_filter();
        let ctx = Ctx {
            now,
            thresholds: &cfg.thresholds,
            dependencies: &cfg.dependencies,
            namespaces: &filter,
        };
        let findings = classify::classify_cluster(&cluster, &ctx, &mut self.since);
        let mut grouped: HashMap<String, Vec<Finding>> = HashMap::new();
        for f in findings {
            grouped.entry(object_key(&f.object)).or_default().push(f);
        }
        let population = cluster.pods.len()
            + cluster.nodes.len()
            + cluster.deployments.len()
            + cluster.statefulsets.len()
            + cluster.daemonsets.len()
            + classify::group_slices(cluster.endpoint_slices.iter().map(AsRef::as_ref)).len();
        self.board.set_population(Source::Kubernetes, population);
        self.board.replace(Source::Kubernetes, grouped);
        let took = start.elapsed();
        self.metrics.sweep_duration.observe(took.as_secs_f64());
        self.metrics
            .last_sweep
            .set(time::OffsetDateTime::now_utc().unix_timestamp() as f64);
        took
    }

    /// Re-classifies what `change` touched.
    pub fn apply(&mut self, change: &Change, cfg: &FileConfig, now: i64) {
        let Change::Object {
            kind,
            namespace: ns,
            name,
        } = change
        else {
            return;
        };
        let filter: NamespaceFilter = cfg.namespace_filter();
        let ctx = Ctx {
            now,
            thresholds: &cfg.thresholds,
            dependencies: &cfg.dependencies,
            namespaces: &filter,
        };
        let (key, findings) = match kind {
            Kind::Pod | Kind::Event => (key_of("Pod", ns, name), self.pod(ns, name, &ctx)),
            Kind::Node => {
                let f = get(&self.stores.nodes, "", name)
                    .map(|n| classify::classify_node(&n, &ctx, &mut self.since))
                    .unwrap_or_default();
                (key_of("Node", "", name), f)
            }
            Kind::Deployment => (
                key_of("Deployment", ns, name),
                self.deployment(ns, name, &ctx),
            ),
            Kind::StatefulSet => {
                let f = get(&self.stores.statefulsets, ns, name)
                    .map(|s| classify::classify_statefulset(&s, &ctx, &mut self.since))
                    .unwrap_or_default();
                (key_of("StatefulSet", ns, name), f)
            }
            Kind::DaemonSet => {
                let f = get(&self.stores.daemonsets, ns, name)
                    .map(|d| classify::classify_daemonset(&d, &ctx, &mut self.since))
                    .unwrap_or_default();
                (key_of("DaemonSet", ns, name), f)
            }
            Kind::Hpa => {
                let f = get(&self.stores.hpas, ns, name)
                    .map(|h| classify::classify_hpa(&h, &ctx))
                    .unwrap_or_default();
                (key_of("HorizontalPodAutoscaler", ns, name), f)
            }
            Kind::EndpointSlice => (key_of("Service", ns, name), self.service(ns, name, &ctx)),
        };
        self.board.set_object(Source::Kubernetes, &key, findings);
    }

    /// The findings of pod `ns/name`, with the Warning events about it and its failing
    /// readiness checks.
    fn pod(&self, ns: &str, name: &str, ctx: &Ctx<'_>) -> Vec<Finding> {
        let Some(pod) = get(&self.stores.pods, ns, name) else {
            return Vec::new();
        };
        let about_pod: Vec<Arc<Event>> = self
            .stores
            .events
            .iter()
            .flat_map(Store::state)
            .filter(|e| {
                e.involved_object.name.as_deref() == Some(name)
                    && e.involved_object.namespace.as_deref() == Some(ns)
            })
            .collect();
        let mut events = classify::index_events(about_pod.iter().map(AsRef::as_ref));
        let key = (ns.to_owned(), name.to_owned());
        if let Some(checks) = self.readiness.get(ns, name) {
            classify::merge_readiness(&mut events, [(&key, &checks)]);
        }
        classify::classify_pod(&pod, ctx, &events)
    }

    /// The findings of Deployment `ns/name`, naming the dependency its pods wait for, if any.
    fn deployment(&mut self, ns: &str, name: &str, ctx: &Ctx<'_>) -> Vec<Finding> {
        let Some(d) = get(&self.stores.deployments, ns, name) else {
            return Vec::new();
        };
        let all_events: Vec<Arc<Event>> =
            self.stores.events.iter().flat_map(Store::state).collect();
        let mut events = classify::index_events(all_events.iter().map(AsRef::as_ref));
        classify::merge_readiness(&mut events, &self.readiness.snapshot());
        let pod_findings: Vec<Finding> = self
            .stores
            .pods
            .iter()
            .flat_map(|s| {
                s.state_filter(|p| {
                    p.metadata.namespace.as_deref() == Some(ns)
                        && workloads::owner_from_metadata(p)
                            .is_some_and(|o| o.kind == "Deployment" && o.name == name)
                })
            })
            .flat_map(|p| classify::classify_pod(&p, ctx, &events))
            .collect();
        let deps = classify::dependency_of_pods(&pod_findings);
        let dep = deps.values().next().map(String::as_str);
        classify::classify_deployment(&d, ctx, &mut self.since, dep)
    }

    /// The findings of Service `ns/name` from its EndpointSlices (none when it has none).
    fn service(&mut self, ns: &str, name: &str, ctx: &Ctx<'_>) -> Vec<Finding> {
        let slices: Vec<Arc<EndpointSlice>> = self
            .stores
            .endpoint_slices
            .iter()
            .flat_map(|s| {
                s.state_filter(|e| {
                    e.metadata.namespace.as_deref() == Some(ns)
                        && e.metadata
                            .labels
                            .as_ref()
                            .and_then(|l| l.get("kubernetes.io/service-name"))
                            .map(String::as_str)
                            == Some(name)
                })
            })
            .collect();
        if slices.is_empty() {
            return Vec::new();
        }
        let refs: Vec<&EndpointSlice> = slices.iter().map(AsRef::as_ref).collect();
        classify::classify_service_endpoints(ns, name, &refs, ctx, &mut self.since)
    }
}

/// The change an object of `kind` stands for (its own namespace and name).
pub fn target_of_object<K: Resource>(obj: &K, kind: Kind) -> Change {
    let meta = obj.meta();
    Change::Object {
        kind,
        namespace: meta.namespace.clone().unwrap_or_default(),
        name: meta.name.clone().unwrap_or_default(),
    }
}

fn target_of_slice(s: &EndpointSlice) -> Option<Change> {
    let service = s
        .metadata
        .labels
        .as_ref()?
        .get("kubernetes.io/service-name")?;
    Some(Change::Object {
        kind: Kind::EndpointSlice,
        namespace: s.metadata.namespace.clone().unwrap_or_default(),
        name: service.clone(),
    })
}

fn target_of_event(e: &Event) -> Option<Change> {
    let o = &e.involved_object;
    (o.kind.as_deref() == Some("Pod")).then(|| Change::Object {
        kind: Kind::Event,
        namespace: o.namespace.clone().unwrap_or_default(),
        name: o.name.clone().unwrap_or_default(),
    })
}

/// What every watcher shares: where changes go, the metrics, the readiness flag, shutdown.
#[derive(Debug, Clone)]
pub struct WatchContext {
    /// Changes for the evaluator.
    pub tx: mpsc::Sender<Change>,
    /// Metrics.
    pub metrics: Metrics,
    /// Down while a watch fails, up again after a (re-)list.
    pub ready: Option<ReadyFlag>,
    /// Stops the watchers.
    pub shutdown: CancellationToken,
}

/// Starts a reflector for `api`, sending what each event touched on the context's channel.
/// Returns its store.
pub fn reflect<K>(
    api: Api<K>,
    config: watcher::Config,
    kind: Kind,
    target: fn(&K) -> Option<Change>,
    wc: WatchContext,
) -> Store<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let (reader, writer) = reflector::store();
    let stream = watcher(api, config).default_backoff().reflect(writer);
    let resource = kind.resource();
    tokio::spawn(async move {
        let WatchContext {
            tx,
            metrics,
            ready,
            shutdown,
        } = wc;
        let mut stream = std::pin::pin!(stream);
        loop {
            let item = tokio::select! {
                () = shutdown.cancelled() => return,
                item = stream.next() => item,
            };
            let Some(item) = item else { return };
            let change = match item {
                Ok(watcher::Event::Apply(obj) | watcher::Event::Delete(obj)) => {
                    metrics.watch_events.with_label_values(&[resource]).inc();
                    target(&obj)
                }
                Ok(watcher::Event::InitApply(_)) => {
                    metrics.watch_events.with_label_values(&[resource]).inc();
                    None
                }
                Ok(watcher::Event::Init) => None,
                Ok(watcher::Event::InitDone) => {
                    if let Some(r) = &ready {
                        r.set_up();
                    }
                    Some(Change::Resynced(kind))
                }
                Err(e) => {
                    metrics.watch_errors.with_label_values(&[resource]).inc();
                    tracing::warn!(resource, error = %e, "watch failed; the watcher retries (re-listing if needed)");
                    if let Some(r) = &ready {
                        r.set_down();
                    }
                    None
                }
            };
            if let Some(change) = change
                && tx.send(change).await.is_err()
            {
                return;
            }
        }
    });
    reader
}

fn apis<K>(client: &Client, namespaces: &[String]) -> Vec<Api<K>>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>,
{
    if namespaces.is_empty() {
        vec![Api::all(client.clone())]
    } else {
        namespaces
            .iter()
            .map(|ns| Api::namespaced(client.clone(), ns))
            .collect()
    }
}

fn reflect_all<K>(
    client: &Client,
    namespaces: &[String],
    config: &watcher::Config,
    kind: Kind,
    target: fn(&K) -> Option<Change>,
    wc: &WatchContext,
) -> Vec<Store<K>>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Debug
        + Send
        + Sync
        + 'static,
{
    apis::<K>(client, namespaces)
        .into_iter()
        .map(|api| reflect(api, config.clone(), kind, target, wc.clone()))
        .collect()
}

/// Starts every watcher. Namespaced kinds are watched per namespace when the configuration
/// lists namespaces, cluster-wide otherwise; events only of type `Warning`.
pub fn start_watchers(client: &Client, namespaces: &[String], wc: &WatchContext) -> Stores {
    let cfg = watcher::Config::default();
    let ns = namespaces;
    Stores {
        pods: reflect_all(
            client,
            ns,
            &cfg,
            Kind::Pod,
            |o: &Pod| Some(target_of_object(o, Kind::Pod)),
            wc,
        ),
        nodes: vec![reflect(
            Api::<Node>::all(client.clone()),
            cfg.clone(),
            Kind::Node,
            |o| Some(target_of_object(o, Kind::Node)),
            wc.clone(),
        )],
        deployments: reflect_all(
            client,
            ns,
            &cfg,
            Kind::Deployment,
            |o: &Deployment| Some(target_of_object(o, Kind::Deployment)),
            wc,
        ),
        statefulsets: reflect_all(
            client,
            ns,
            &cfg,
            Kind::StatefulSet,
            |o: &StatefulSet| Some(target_of_object(o, Kind::StatefulSet)),
            wc,
        ),
        daemonsets: reflect_all(
            client,
            ns,
            &cfg,
            Kind::DaemonSet,
            |o: &DaemonSet| Some(target_of_object(o, Kind::DaemonSet)),
            wc,
        ),
        endpoint_slices: reflect_all(client, ns, &cfg, Kind::EndpointSlice, target_of_slice, wc),
        hpas: reflect_all(
            client,
            ns,
            &cfg,
            Kind::Hpa,
            |o: &HorizontalPodAutoscaler| Some(target_of_object(o, Kind::Hpa)),
            wc,
        ),
        events: reflect_all(
            client,
            ns,
            &cfg.clone().fields("type=Warning"),
            Kind::Event,
            target_of_event,
            wc,
        ),
    }
}

/// Re-classifies on every change and sweeps every interval (and after every re-list).
pub async fn run_evaluator(
    mut evaluator: Evaluator,
    mut rx: mpsc::Receiver<Change>,
    mut config: watch::Receiver<Arc<FileConfig>>,
    shutdown: CancellationToken,
) {
    let now = || time::OffsetDateTime::now_utc().unix_timestamp();
    let mut cfg = config.borrow_and_update().clone();
    let mut next_sweep = tokio::time::Instant::now();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep_until(next_sweep) => {
                evaluator.sweep(&cfg, now());
                next_sweep = tokio::time::Instant::now() + cfg.interval();
            }
            _ = config.changed() => {
                cfg = config.borrow_and_update().clone();
                next_sweep = tokio::time::Instant::now();
            }
            change = rx.recv() => match change {
                None => return,
                Some(Change::Resynced(_)) => {
                    evaluator.sweep(&cfg, now());
                }
                Some(change) => evaluator.apply(&change, &cfg, now()),
            }
        }
    }
}

/// GETs `path` from the API server through the kube client: `(status, body)` or why it failed.
pub async fn apiserver_get(client: &Client, path: &str) -> Result<(u16, String), String> {
    let req = http::Request::get(path)
        .body(kube::client::Body::empty())
        .map_err(|e| e.to_string())?;
    let resp = tokio::time::timeout(Duration::from_secs(5), client.send(req))
        .await
        .map_err(|_| "no answer within 5s".to_owned())?
        .map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let body = tokio::time::timeout(Duration::from_secs(5), resp.into_body().collect())
        .await
        .map_err(|_| "body not received within 5s".to_owned())?
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// One control-plane check: `/livez?verbose` and `/readyz?verbose` → findings.
pub async fn check_control_plane(client: &Client) -> Vec<Finding> {
    let livez = apiserver_get(client, "/livez?verbose").await;
    let readyz = apiserver_get(client, "/readyz?verbose").await;
    classify::classify_apiserver_health(&livez, &readyz)
}

/// Checks the control plane every interval until `shutdown`.
pub async fn run_control_plane(
    client: Client,
    config: watch::Receiver<Arc<FileConfig>>,
    board: CurrentFindings,
    shutdown: CancellationToken,
) {
    loop {
        let findings = check_control_plane(&client).await;
        board.replace_flat(Source::ControlPlane, findings);
        let period = config.borrow().interval();
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(period) => {}
        }
    }
}

/// Failing readiness checks of not-ready pods, as their own readiness endpoint reports them
/// (shared between [`run_readiness_probes`] and the [`Evaluator`]).
#[derive(Debug, Clone, Default)]
pub struct ReadinessReports(Arc<std::sync::RwLock<classify::ReadinessIndex>>);

impl ReadinessReports {
    /// The failing checks reported for a pod.
    pub fn get(&self, ns: &str, pod: &str) -> Option<Vec<String>> {
        let map = self
            .0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.get(&(ns.to_owned(), pod.to_owned())).cloned()
    }

    /// Sets (or, with `None` or an empty list, clears) a pod's failing checks; whether it changed.
    pub fn set(&self, ns: &str, pod: &str, checks: Option<Vec<String>>) -> bool {
        let mut map = self
            .0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let key = (ns.to_owned(), pod.to_owned());
        match checks.filter(|c| !c.is_empty()) {
            Some(c) => map.insert(key, c.clone()).as_ref() != Some(&c),
            None => map.remove(&key).is_some(),
        }
    }

    /// A copy of every report.
    pub fn snapshot(&self) -> classify::ReadinessIndex {
        self.0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// The URL of a pod's HTTP readiness probe (`http://<podIP>:<port><path>`), named ports
/// resolved; `None` without a pod IP or an HTTP `readinessProbe`.
pub fn readiness_url(pod: &Pod) -> Option<String> {
    let ip = pod.status.as_ref()?.pod_ip.as_deref()?;
    let spec = pod.spec.as_ref()?;
    spec.containers.iter().find_map(|c| {
        let get = c.readiness_probe.as_ref()?.http_get.as_ref()?;
        if get
            .scheme
            .as_deref()
            .is_some_and(|s| !s.eq_ignore_ascii_case("http"))
        {
            return None;
        }
        let port = match &get.port {
            k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(p) => *p,
            k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(name) => {
                c.ports
                    .iter()
                    .flatten()
                    .find(|p| p.name.as_deref() == Some(name.as_str()))?
                    .container_port
            }
        };
        let path = get.path.as_deref().unwrap_or("/");
        let host = if ip.contains(':') {
            format!("[{ip}]")
        } else {
            ip.to_owned()
        };
        Some(format!("http://{host}:{port}{path}"))
    })
}

/// Asks a pod's readiness endpoint: `Ok(failing checks)` (empty when ready), or why it could
/// not be asked.
pub async fn probe_readiness(
    http: &telemetry::client::HttpClient,
    url: &str,
) -> Result<Vec<String>, String> {
    let request = http.get(url).timeout(Duration::from_secs(1));
    let resp = http.send(request).await.map_err(|e| e.to_string())?;
    if resp.status().is_success() {
        return Ok(Vec::new());
    }
    let body = resp.text().await.map_err(|e| e.to_string())?;
    Ok(crate::local::failing_checks(&body)
        .into_iter()
        .map(|(check, reason)| {
            if reason.is_empty() {
                check
            } else {
                format!("{check}: {reason}")
            }
        })
        .collect())
}

fn not_ready(pod: &Pod) -> bool {
    let Some(status) = pod.status.as_ref() else {
        return false;
    };
    pod.metadata.deletion_timestamp.is_none()
        && status.phase.as_deref() == Some("Running")
        && status
            .conditions
            .iter()
            .flatten()
            .any(|c| c.type_ == "Ready" && c.status != "True")
}

/// Tells the classifier that pod `namespace/name` changed; `false` once nobody listens.
async fn pod_changed(tx: &mpsc::Sender<Change>, namespace: String, name: String) -> bool {
    let change = Change::Object {
        kind: Kind::Pod,
        namespace,
        name,
    };
    tx.send(change).await.is_ok()
}

/// Every `period`, asks each not-ready pod (in the watched namespaces) for its readiness
/// answer, so a failing check naming a dependency (`database`) reaches the classifier;
/// a changed report re-classifies the pod. Unreachable pods are skipped (no report).
pub async fn run_readiness_probes(
    pods: Vec<Store<Pod>>,
    reports: ReadinessReports,
    tx: mpsc::Sender<Change>,
    http: telemetry::client::HttpClient,
    config: watch::Receiver<Arc<FileConfig>>,
    period: Duration,
    shutdown: CancellationToken,
) {
    loop {
        let filter = config.borrow().namespace_filter();
        let candidates: Vec<(String, String, String)> = pods
            .iter()
            .flat_map(Store::state)
            .filter(|p| not_ready(p))
            .filter(|p| filter.allows(p.metadata.namespace.as_deref().unwrap_or("")))
            .filter_map(|p| {
                Some((
                    p.metadata.namespace.clone().unwrap_or_default(),
                    p.metadata.name.clone()?,
                    readiness_url(&p)?,
                ))
            })
            .take(500)
            .collect();
        let asked: Vec<(String, String, Result<Vec<String>, String>)> =
            futures::stream::iter(candidates.into_iter().map(|(ns, name, url)| {
                let http = http.clone();
                async move {
                    let r = probe_readiness(&http, &url).await;
                    (ns, name, r)
                }
            }))
            .buffer_unordered(16)
            .collect()
            .await;
        for (ns, name, result) in asked {
            let checks = match result {
                Ok(c) => c,
                Err(why) => {
                    tracing::debug!(pod = %name, namespace = %ns, error = %why, "cannot ask the pod for its readiness");
                    continue;
                }
            };
            if reports.set(&ns, &name, Some(checks)) && !pod_changed(&tx, ns, name).await {
                return;
            }
        }
        // Pods that became ready (or went away) lose their report.
        for (ns, name) in reports.snapshot().into_keys() {
            let still = get(&pods, &ns, &name).is_some_and(|p| not_ready(&p));
            if !still && reports.set(&ns, &name, None) && !pod_changed(&tx, ns, name).await {
                return;
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(period) => {}
        }
    }
}
