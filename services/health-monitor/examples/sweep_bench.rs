//! Sweep benchmark: a synthetic cluster of 10,000 pods, 1,000 nodes and 2,000 Deployments
//! (plus one EndpointSlice per Deployment and some Warning events), with a few percent of
//! everything unhealthy, generated here.
//!
//! ```text
//! cargo run --release -p health-monitor --example sweep_bench
//! ```
//!
//! Prints the full-sweep time (the pure classifier, and the evaluator's sweep through kube
//! reflector stores into the findings board), the per-event evaluation time (one pod change:
//! store lookup, classification, board update) and the peak RSS (`VmHWM`). Targets: sweep
//! < 100 ms, per event < 50 µs, peak RSS < 150 MB.

#![allow(clippy::print_stdout)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use health_monitor::board::CurrentFindings;
use health_monitor::classify::{Ctx, SinceTracker, classify_cluster};
use health_monitor::config::FileConfig;
use health_monitor::kube_watch::{Change, Evaluator, Kind, Stores};
use health_monitor::metrics::Metrics;
use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentCondition, DeploymentSpec, DeploymentStatus,
};
use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus, Event, Node, NodeCondition, NodeSpec, NodeStatus,
    ObjectReference, Pod, PodCondition, PodSpec, PodStatus,
};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, ObjectMeta, OwnerReference, Time,
};
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher;

const NODES: usize = 1_000;
const DEPLOYMENTS: usize = 2_000;
const PODS: usize = 10_000;
const EVENTS: usize = 500;
const NOW: i64 = 1_795_000_000;

fn time(s: i64) -> Time {
    Time(k8s_openapi::jiff::Timestamp::from_second(s).expect("a valid timestamp"))
}

fn meta(name: String, ns: Option<&str>, labels: &[(&str, &str)]) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: ns.map(str::to_owned),
        resource_version: Some("1".to_owned()),
        creation_timestamp: Some(time(NOW - 86_400)),
        labels: Some(
            labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect::<BTreeMap<_, _>>(),
        ),
        ..ObjectMeta::default()
    }
}

fn node(i: usize) -> Node {
    let ready = if i % 100 == 7 { "Unknown" } else { "True" };
    let mem = if i % 250 == 3 { "True" } else { "False" };
    let cond = |t: &str, s: &str| NodeCondition {
        type_: t.to_owned(),
        status: s.to_owned(),
        last_transition_time: Some(time(NOW - 3_600)),
        reason: Some("Kubelet".to_owned()),
        message: Some("synthetic".to_owned()),
        ..NodeCondition::default()
    };
    Node {
        metadata: meta(
            format!("node-{i:04}"),
            None,
            &[("kubernetes.io/os", "linux")],
        ),
        spec: Some(NodeSpec {
            unschedulable: (i % 333 == 5).then_some(true),
            ..NodeSpec::default()
        }),
        status: Some(NodeStatus {
            conditions: Some(vec![
                cond("MemoryPressure", mem),
                cond("DiskPressure", "False"),
                cond("PIDPressure", "False"),
                cond("Ready", ready),
            ]),
            ..NodeStatus::default()
        }),
    }
}

fn ns(d: usize) -> String {
    format!("team-{:02}", d % 40)
}

fn deployment(d: usize) -> Deployment {
    let name = format!("app-{d:04}");
    let available = if d % 50 == 9 { 3 } else { 5 };
    let namespace = ns(d);
    let cond = |t: &str, s: &str, r: &str| DeploymentCondition {
        type_: Some(t.to_owned()),
        status: Some(s.to_owned()),
        reason: Some(r.to_owned()),
        last_transition_time: Some(time(NOW - 900)),
        ..DeploymentCondition::default()
    };
    Deployment {
        metadata: meta(
            name.clone(),
            Some(&namespace),
            &[("app.kubernetes.io/name", &name)],
        ),
        spec: DeploymentSpec {
            replicas: Some(5),
            selector: LabelSelector::default(),
            ..DeploymentSpec::default()
        },
        status: Some(DeploymentStatus {
            replicas: Some(5),
            available_replicas: Some(available),
            ready_replicas: Some(available),
            updated_replicas: Some(5),
            conditions: Some(vec![
                cond(
                    "Available",
                    if available == 5 { "True" } else { "False" },
                    "MinimumReplicas",
                ),
                if d % 200 == 11 {
                    cond("Progressing", "False", "ProgressDeadlineExceeded")
                } else {
                    cond("Progressing", "True", "NewReplicaSetAvailable")
                },
            ]),
            ..DeploymentStatus::default()
        }),
    }
}

/// `(namespace, name)` of pod `p`.
fn pod_name(p: usize) -> (String, String) {
    let d = p % DEPLOYMENTS;
    (ns(d), format!("app-{d:04}-{:x}-{p:05}", 0x5f00_0000 + d))
}

/// Whether pod `p` is ready (crash-looping and not-ready ones are not).
fn pod_ready(p: usize) -> bool {
    !matches!(p % 100, 13 | 41)
}

/// Pod `p`'s metadata: a pod of Deployment `p % DEPLOYMENTS`'s ReplicaSet.
fn pod_meta(p: usize) -> ObjectMeta {
    let d = p % DEPLOYMENTS;
    let app = format!("app-{d:04}");
    let hash = format!("{:x}", 0x5f00_0000 + d);
    let (namespace, name) = pod_name(p);
    let mut m = meta(
        name,
        Some(&namespace),
        &[
            ("app.kubernetes.io/name", &app),
            ("pod-template-hash", &hash),
        ],
    );
    m.owner_references = Some(vec![OwnerReference {
        api_version: "apps/v1".to_owned(),
        kind: "ReplicaSet".to_owned(),
        name: format!("{app}-{hash}"),
        uid: format!("rs-{d}"),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }]);
    m
}

fn running_since(started: i64) -> ContainerState {
    ContainerState {
        running: Some(ContainerStateRunning {
            started_at: Some(time(started)),
        }),
        ..ContainerState::default()
    }
}

fn terminated(exit_code: i32, reason: &str, finished: i64) -> Option<ContainerStateTerminated> {
    Some(ContainerStateTerminated {
        exit_code,
        reason: Some(reason.to_owned()),
        finished_at: Some(time(finished)),
        ..ContainerStateTerminated::default()
    })
}

/// Pod `p`'s container: its state, readiness, restart count and last termination. One pod in
/// a hundred crash-loops, one was OOM-killed once, one is not ready.
fn container(p: usize) -> (ContainerState, bool, i32, Option<ContainerStateTerminated>) {
    match p % 100 {
        13 => (
            ContainerState {
                waiting: Some(ContainerStateWaiting {
                    reason: Some("CrashLoopBackOff".to_owned()),
                    message: Some("back-off 5m0s restarting failed container".to_owned()),
                }),
                ..ContainerState::default()
            },
            false,
            9,
            terminated(1, "Error", NOW - 60),
        ),
        29 => (
            running_since(NOW - 300),
            true,
            1,
            terminated(137, "OOMKilled", NOW - 301),
        ),
        _ => (running_since(NOW - 80_000), p % 100 != 41, 0, None),
    }
}

fn pod(p: usize) -> Pod {
    let app = format!("app-{:04}", p % DEPLOYMENTS);
    let (state, ready, restarts, last) = container(p);
    let ready_cond = |t: &str| PodCondition {
        type_: t.to_owned(),
        status: if ready { "True" } else { "False" }.to_owned(),
        last_transition_time: Some(time(NOW - 600)),
        message: (!ready).then(|| format!("containers with unready status: [{app}]")),
        ..PodCondition::default()
    };
    Pod {
        metadata: pod_meta(p),
        spec: Some(PodSpec {
            node_name: Some(format!("node-{:04}", p % NODES)),
            containers: vec![Container {
                name: app.clone(),
                image: Some("ghcr.io/organism-rs/organism:0.1.0".to_owned()),
                ..Container::default()
            }],
            ..PodSpec::default()
        }),
        status: Some(PodStatus {
            phase: Some("Running".to_owned()),
            start_time: Some(time(NOW - 80_000)),
            conditions: Some(vec![
                ready_cond("Ready"),
                ready_cond("ContainersReady"),
                PodCondition {
                    type_: "PodScheduled".to_owned(),
                    status: "True".to_owned(),
                    ..PodCondition::default()
                },
            ]),
            container_statuses: Some(vec![ContainerStatus {
                name: app,
                image: "ghcr.io/organism-rs/organism:0.1.0".to_owned(),
                image_id: String::new(),
                ready,
                restart_count: restarts,
                state: Some(state),
                last_state: last.map(|t| ContainerState {
                    terminated: Some(t),
                    ..ContainerState::default()
                }),
                ..ContainerStatus::default()
            }]),
            ..PodStatus::default()
        }),
    }
}

fn slice(d: usize) -> EndpointSlice {
    let app = format!("app-{d:04}");
    let namespace = ns(d);
    let endpoints = (d..PODS)
        .step_by(DEPLOYMENTS)
        .map(|p| Endpoint {
            addresses: vec![format!("10.{}.{}.{}", p / 65536, (p / 256) % 256, p % 256)],
            conditions: Some(EndpointConditions {
                ready: Some(pod_ready(p) && d % 500 != 17),
                ..EndpointConditions::default()
            }),
            node_name: Some(format!("node-{:04}", p % NODES)),
            target_ref: Some(ObjectReference {
                kind: Some("Pod".to_owned()),
                name: Some(pod_name(p).1),
                namespace: Some(namespace.clone()),
                ..ObjectReference::default()
            }),
            ..Endpoint::default()
        })
        .collect();
    EndpointSlice {
        address_type: "IPv4".to_owned(),
        endpoints: Some(endpoints),
        metadata: meta(
            format!("{app}-x7k2p"),
            Some(&namespace),
            &[
                ("kubernetes.io/service-name", &app),
                (
                    "endpointslice.kubernetes.io/managed-by",
                    "endpointslice-controller.k8s.io",
                ),
            ],
        ),
        ports: None,
    }
}

fn event(i: usize) -> Event {
    let (namespace, name) = pod_name((i * 97) % PODS);
    Event {
        type_: Some("Warning".to_owned()),
        reason: Some("Unhealthy".to_owned()),
        message: Some("Readiness probe failed: HTTP probe failed with statuscode: 503".to_owned()),
        involved_object: ObjectReference {
            kind: Some("Pod".to_owned()),
            name: Some(name),
            namespace: Some(namespace.clone()),
            ..ObjectReference::default()
        },
        metadata: meta(format!("ev-{i}"), Some(&namespace), &[]),
        ..Event::default()
    }
}

/// A reflector store fed as a watcher's initial list would feed it, one object at a time (the
/// objects are generated on the fly, so the store holds the only copy, as in the service).
fn store_of<K>(n: usize, make: impl Fn(usize) -> K) -> Store<K>
where
    K: kube::Resource<DynamicType = ()> + Clone + 'static,
{
    let (reader, mut writer) = reflector::store();
    writer.apply_watcher_event(&watcher::Event::Init);
    for i in 0..n {
        writer.apply_watcher_event(&watcher::Event::InitApply(make(i)));
    }
    writer.apply_watcher_event(&watcher::Event::InitDone);
    reader
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Reflector stores holding the synthetic cluster.
fn stores() -> Stores {
    let t = Instant::now();
    let stores = Stores {
        pods: vec![store_of(PODS, pod)],
        nodes: vec![store_of(NODES, node)],
        deployments: vec![store_of(DEPLOYMENTS, deployment)],
        endpoint_slices: vec![store_of(DEPLOYMENTS, slice)],
        events: vec![store_of(EVENTS, event)],
        ..Stores::default()
    };
    let cluster = stores.snapshot();
    println!(
        "generated {} pods, {} nodes, {} deployments, {} endpoint slices, {} events into reflector stores in {:?}",
        cluster.pods.len(),
        cluster.nodes.len(),
        cluster.deployments.len(),
        cluster.endpoint_slices.len(),
        cluster.events.len(),
        t.elapsed()
    );
    stores
}

/// Prints the median, min and max of `runs` after `what`; returns the median.
fn report_runs(what: &str, runs: Vec<Duration>, tail: &str) -> Duration {
    let (min, max) = (*runs.iter().min().unwrap(), *runs.iter().max().unwrap());
    let m = median(runs);
    println!("{what}: median {m:?}, min {min:?}, max {max:?}{tail}");
    m
}

/// 1. The pure classifier over a snapshot (Arcs shared with the stores, no copy); returns the
///    number of findings.
fn bench_classifier(stores: &Stores, cfg: &FileConfig) -> usize {
    let cluster = stores.snapshot();
    let filter = cfg.namespace_filter();
    let ctx = Ctx {
        now: NOW,
        thresholds: &cfg.thresholds,
        dependencies: &cfg.dependencies,
        namespaces: &filter,
    };
    let mut since = SinceTracker::default();
    let mut runs = Vec::new();
    let mut count = 0;
    for _ in 0..20 {
        let start = Instant::now();
        count = classify_cluster(&cluster, &ctx, &mut since).len();
        runs.push(start.elapsed());
    }
    report_runs("classifier sweep", runs, &format!(" ({count} findings)"));
    count
}

/// 2. The evaluator's sweep: reflector stores → snapshot → classify → findings board; returns
///    the median.
fn bench_sweep(evaluator: &mut Evaluator, board: &CurrentFindings, cfg: &FileConfig) -> Duration {
    let runs: Vec<Duration> = (0..20).map(|_| evaluator.sweep(cfg, NOW)).collect();
    let tail = format!("; board holds {} findings", board.all().len());
    report_runs("evaluator sweep (stores → board)", runs, &tail)
}

/// The mean time of `evaluator.apply` over `changes`.
fn mean_apply(evaluator: &mut Evaluator, cfg: &FileConfig, changes: &[Change]) -> Duration {
    let start = Instant::now();
    for c in changes {
        evaluator.apply(c, cfg, NOW);
    }
    start.elapsed() / changes.len() as u32
}

/// 3. Per-event evaluation: one pod change each, then one node change each; returns the
///    pods' mean.
fn bench_per_event(evaluator: &mut Evaluator, cfg: &FileConfig) -> Duration {
    let changes: Vec<Change> = (0..PODS)
        .map(|p| {
            let (namespace, name) = pod_name(p);
            Change::Object {
                kind: Kind::Pod,
                namespace,
                name,
            }
        })
        .collect();
    let per_event = mean_apply(evaluator, cfg, &changes);
    let node_changes: Vec<Change> = (0..NODES)
        .map(|i| Change::Object {
            kind: Kind::Node,
            namespace: String::new(),
            name: format!("node-{i:04}"),
        })
        .collect();
    let per_node_event = mean_apply(evaluator, cfg, &node_changes);
    println!(
        "per-event evaluation: pod {per_event:?}, node {per_node_event:?} (mean over {} + {} changes)",
        changes.len(),
        node_changes.len()
    );
    per_event
}

fn main() {
    let stores = stores();
    let cfg = FileConfig::default();
    let count = bench_classifier(&stores, &cfg);

    let registry = prometheus::Registry::new();
    let metrics = Metrics::new(&registry).expect("metrics register");
    let board = CurrentFindings::new();
    let mut evaluator = Evaluator::new(stores, board.clone(), metrics);
    let sweep_median = bench_sweep(&mut evaluator, &board, &cfg);
    let per_event = bench_per_event(&mut evaluator, &cfg);
    assert_eq!(
        board.all().len(),
        count,
        "per-event evaluation agrees with the sweep"
    );

    let rss = peak_rss_mb();
    match rss {
        Some(mb) => println!("peak RSS (VmHWM): {mb:.1} MB"),
        None => println!("peak RSS: /proc/self/status not readable"),
    }
    let verdict = |ok: bool| if ok { "ok" } else { "OVER TARGET" };
    println!(
        "targets: sweep < 100 ms: {}; per event < 50 µs: {}; peak RSS < 150 MB: {}",
        verdict(sweep_median < Duration::from_millis(100)),
        verdict(per_event < Duration::from_micros(50)),
        verdict(rss.is_some_and(|mb| mb < 150.0))
    );
}
