//! Kubernetes adapters through kube's `tower_test::mock::pair`: every request's method, path
//! and query is asserted. A list + watch of pods streamed in gives findings out; a `410 Gone`
//! (resource version expired) makes the watcher re-list, and the re-list replaces the store.

use std::sync::Arc;

use health_monitor::board::CurrentFindings;
use health_monitor::config::FileConfig;
use health_monitor::finding::{Finding, FindingKind, Remediation};
use health_monitor::kube_watch::{self, Change, Evaluator, Kind, Stores, WatchContext};
use health_monitor::metrics::Metrics;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::Api;
use kube::runtime::watcher;
use serde_json::{Value, json};
use testbed::kube_mock::{self, Call, get, watch_events};
use testbed::wait_until;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

mod support;
use support::{fixture, fixture_item, scrape};

fn fixture_pod(name: &str) -> Value {
    fixture_item("pods-unhealthy.json", name)
}

fn with_rv(mut pod: Value, rv: &str) -> Value {
    pod["metadata"]["resourceVersion"] = json!(rv);
    pod
}

fn pod_list(rv: &str, items: Vec<Value>) -> Value {
    json!({"apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": rv}, "items": items})
}

/// The watcher's list of every pod.
fn list_pods(answer: Value) -> Call {
    get("/api/v1/pods", answer).no_param("watch")
}

/// The watcher's watch of every pod from `rv`, answered with `events`.
fn watch_pods(rv: &str, events: &[Value]) -> Call {
    get("/api/v1/pods", Value::Null)
        .param("watch", "true")
        .param("resourceVersion", rv)
        .raw(watch_events(events))
}

fn kinds_of(board: &CurrentFindings) -> Vec<(FindingKind, String)> {
    board
        .all()
        .into_iter()
        .map(|f| (f.finding, f.object.name))
        .collect()
}

/// Watchers and reflectors of pods (and nodes, when asked) over `client`, feeding an evaluator
/// that writes to a board, as the service runs them.
struct Watching {
    board: CurrentFindings,
    registry: prometheus::Registry,
    shutdown: CancellationToken,
    _config: watch::Sender<Arc<FileConfig>>,
}

impl Watching {
    fn start(client: kube::Client, nodes: bool) -> Self {
        let registry = prometheus::Registry::new();
        let metrics = Metrics::new(&registry).unwrap();
        let shutdown = CancellationToken::new();
        let (tx, rx) = mpsc::channel::<Change>(100);
        let wc = WatchContext {
            tx,
            metrics: metrics.clone(),
            ready: None,
            shutdown: shutdown.clone(),
        };
        let mut stores = Stores::default();
        stores.pods.push(kube_watch::reflect(
            Api::<Pod>::all(client.clone()),
            watcher::Config::default(),
            Kind::Pod,
            |p: &Pod| Some(kube_watch::target_of_object(p, Kind::Pod)),
            wc.clone(),
        ));
        if nodes {
            stores.nodes.push(kube_watch::reflect(
                Api::<Node>::all(client),
                watcher::Config::default(),
                Kind::Node,
                |n: &Node| Some(kube_watch::target_of_object(n, Kind::Node)),
                wc,
            ));
        }
        let board = CurrentFindings::new();
        let evaluator = Evaluator::new(stores, board.clone(), metrics);
        let (config, cfg_rx) = watch::channel(Arc::new(FileConfig::default()));
        tokio::spawn(kube_watch::run_evaluator(
            evaluator,
            rx,
            cfg_rx,
            shutdown.clone(),
        ));
        Self {
            board,
            registry,
            shutdown,
            _config: config,
        }
    }
}

impl Drop for Watching {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A pod watcher over a scripted API server that the test answers step by step.
struct PodWatch {
    server: kube_mock::ApiServer,
    watching: Watching,
}

impl PodWatch {
    fn start() -> Self {
        let (client, server) = kube_mock::pair();
        Self {
            server,
            watching: Watching::start(client, false),
        }
    }

    /// Answers the next request with `call`.
    async fn serve(&mut self, call: Call) {
        tokio::time::timeout(kube_mock::SCRIPT_WAIT, self.server.serve(call))
            .await
            .expect("the watcher sent no request");
    }

    /// Waits until the board holds exactly `want` (kind, object name) findings, in any order.
    async fn wait_for_findings(&self, want: &[(FindingKind, &str)]) {
        let mut want: Vec<(FindingKind, String)> =
            want.iter().map(|(k, n)| (*k, (*n).to_owned())).collect();
        want.sort_by_key(|(k, n)| (k.as_str(), n.clone()));
        let seen = wait_until(kube_mock::SCRIPT_WAIT, || async {
            let mut have = kinds_of(&self.watching.board);
            have.sort_by_key(|(k, n)| (k.as_str(), n.clone()));
            have == want
        })
        .await;
        assert!(
            seen,
            "want {want:?}, have {:?}",
            kinds_of(&self.watching.board)
        );
    }

    /// The initial list (one crash-looping pod at 1000), then a watch from 1000 in which a pod
    /// that cannot pull its image arrives and the resource version expires (410 Gone); waits
    /// until both pods are findings.
    async fn list_then_watch_until_gone(&mut self) {
        let first = pod_list(
            "1000",
            vec![with_rv(fixture_pod("heart-6d5f7c9b8-x2x4p"), "990")],
        );
        self.serve(list_pods(first).param("limit", "500")).await;
        let events = [
            json!({"type": "ADDED", "object": with_rv(fixture_pod("api-gateway-5f6b7c8d9-l4k3j"), "1001")}),
            json!({"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": "too old resource version: 1000 (1500)", "reason": "Expired", "code": 410}}),
        ];
        self.serve(watch_pods("1000", &events).param("allowWatchBookmarks", "true"))
            .await;
        self.wait_for_findings(&[
            (FindingKind::CrashLoopBackOff, "heart-6d5f7c9b8-x2x4p"),
            (FindingKind::ImagePullBackOff, "api-gateway-5f6b7c8d9-l4k3j"),
        ])
        .await;
    }

    /// The re-list after 410 (a list, not a watch), at 2000: only a healthy pod is left.
    async fn relist_healthy(&mut self) {
        let healthy = pod_list(
            "2000",
            vec![with_rv(fixture_pod("heart-6d5f7c9b8-h7k2m"), "1990")],
        );
        self.serve(list_pods(healthy)).await;
        self.wait_for_findings(&[]).await;
    }
}

#[tokio::test]
async fn listed_and_watched_pods_become_findings() {
    let mut w = PodWatch::start();
    // Waits for the crash loop (listed) and the image pull failure (watched).
    w.list_then_watch_until_gone().await;
}

#[tokio::test]
async fn after_a_410_gone_the_relist_replaces_the_store() {
    let mut w = PodWatch::start();
    w.list_then_watch_until_gone().await;
    // Waits until the findings of the pods no longer listed are gone.
    w.relist_healthy().await;
}

#[tokio::test]
async fn a_410_gone_is_counted_as_a_watch_error() {
    let mut w = PodWatch::start();
    w.list_then_watch_until_gone().await;
    w.relist_healthy().await;
    let errors = scrape(&w.watching.registry)
        .value("health_monitor_watch_errors_total", &[("resource", "pods")]);
    assert_eq!(errors, Some(1.0));
}

#[tokio::test]
async fn after_a_relist_the_watch_resumes_from_the_new_version() {
    let mut w = PodWatch::start();
    w.list_then_watch_until_gone().await;
    w.relist_healthy().await;
    let mut sick = with_rv(fixture_pod("heart-6d5f7c9b8-h7k2m"), "2001");
    sick["status"]["containerStatuses"][0]["state"] = json!({"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 10s restarting failed container"}});
    sick["status"]["containerStatuses"][0]["restartCount"] = json!(3);
    w.serve(watch_pods(
        "2000",
        &[json!({"type": "MODIFIED", "object": sick})],
    ))
    .await;
    w.wait_for_findings(&[(FindingKind::CrashLoopBackOff, "heart-6d5f7c9b8-h7k2m")])
        .await;
    let events = scrape(&w.watching.registry)
        .value("health_monitor_watch_events_total", &[("resource", "pods")]);
    assert!(events.is_some_and(|n| n >= 4.0), "{events:?}");
}

#[tokio::test]
async fn control_plane_checks_use_the_api_servers_verbose_health_endpoints() {
    let calls = [
        ("/livez", 200, "livez-ok.txt"),
        ("/readyz", 500, "readyz-etcd-failed.txt"),
    ]
    .into_iter()
    .map(|(path, status, file)| {
        get(path, Value::Null)
            .param("verbose", "")
            .status(status)
            .raw(fixture(file).into_bytes())
    })
    .collect();
    let (client, script) = kube_mock::scripted(calls);
    let findings = kube_watch::check_control_plane(&client).await;
    script.done().await;
    assert_eq!(findings.len(), 1, "{findings:#?}");
    assert_eq!(findings[0].finding, FindingKind::ControlPlaneUnhealthy);
    assert_eq!(findings[0].object.name, "etcd");
    assert!(
        findings[0].description.contains("/readyz"),
        "{}",
        findings[0].description
    );
}

fn rfc3339_ago(secs: i64) -> String {
    let t = time::OffsetDateTime::now_utc() - time::Duration::seconds(secs);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

fn fixture_node(name: &str) -> Value {
    fixture_item("nodes.json", name)
}

/// The producers of the healer's `raise-memory` and `uncordon` actions, through the kube API:
/// a pod OOM-killed again after a restart and a node the healer cordoned that is Ready again
/// arrive by list (GET /api/v1/pods, GET /api/v1/nodes); the board's alerts carry the labels
/// the auto-healer's `oom-killed` and `node-recovered` rules match. A human's cordon is not
/// touched.
struct Listed {
    watching: Watching,
    _server: kube_mock::ApiServer,
}

impl Listed {
    fn find(&self, kind: FindingKind) -> Finding {
        let all = self.watching.board.all();
        all.iter()
            .find(|f| f.finding == kind)
            .cloned()
            .unwrap_or_else(|| panic!("no {kind}: {all:#?}"))
    }
}

/// brain, OOM-killed a minute ago for the second time (restartCount 2).
fn brain_oom_killed_twice() -> Value {
    let mut brain = with_rv(fixture_pod("brain-7c8d9f6b5-q9w8e"), "10");
    brain["status"]["containerStatuses"][0]["restartCount"] = json!(2);
    brain["status"]["containerStatuses"][0]["lastState"]["terminated"]["finishedAt"] =
        json!(rfc3339_ago(60));
    brain
}

/// kind-worker8: cordoned by the healer, Ready again for 10 minutes; kind-worker6: cordoned by
/// a human (no annotation), Ready.
fn cordoned_nodes() -> Value {
    let mut recovered = fixture_node("kind-worker8");
    recovered["metadata"]["resourceVersion"] = json!("11");
    for c in recovered["status"]["conditions"].as_array_mut().unwrap() {
        if c["type"] == "Ready" {
            c["lastTransitionTime"] = json!(rfc3339_ago(600));
        }
    }
    let mut human = fixture_node("kind-worker6");
    human["metadata"]["resourceVersion"] = json!("12");
    json!({"apiVersion": "v1", "kind": "NodeList", "metadata": {"resourceVersion": "100"},
        "items": [recovered, human]})
}

/// Pod and node watchers whose lists hold brain and the cordoned nodes; waits until both
/// remediations are on the board.
async fn listed_oom_and_cordons() -> Listed {
    let (client, mut server) = kube_mock::pair();
    let watching = Watching::start(client, true);
    // Each watcher lists, then watches; the watches are held open and silent: the lists are
    // what these tests are about.
    let lists_and_watches = vec![
        list_pods(pod_list("100", vec![brain_oom_killed_twice()])),
        get("/api/v1/nodes", cordoned_nodes()).no_param("watch"),
        get("/api/v1/pods", Value::Null)
            .param("watch", "true")
            .hold(),
        get("/api/v1/nodes", Value::Null)
            .param("watch", "true")
            .hold(),
    ];
    tokio::time::timeout(
        kube_mock::SCRIPT_WAIT,
        server.serve_any_order(lists_and_watches),
    )
    .await
    .expect("lists and watches timed out");

    let board = &watching.board;
    let both = wait_until(kube_mock::SCRIPT_WAIT, || async {
        let all = board.all();
        all.iter()
            .any(|f| f.finding == FindingKind::OomKilled && f.remediation.is_some())
            && all.iter().any(|f| f.finding == FindingKind::NodeRecovered)
    })
    .await;
    assert!(both, "{:#?}", board.all());
    Listed {
        watching,
        _server: server,
    }
}

#[tokio::test]
async fn a_listed_pod_oom_killed_after_a_restart_asks_the_healer_to_raise_memory() {
    let listed = listed_oom_and_cordons().await;
    let oom = listed.find(FindingKind::OomKilled);
    assert_eq!(oom.remediation, Some(Remediation::RaiseMemory));
    let l = oom.alert_labels();
    assert_eq!(l["remediation"], "raise-memory");
    assert_eq!(l["workload_kind"], "Deployment");
    assert_eq!(l["workload"], "brain");
    assert_eq!(l["namespace"], "organism");
    assert_eq!(l["container"], "brain");
}

#[tokio::test]
async fn a_listed_node_the_healer_cordoned_and_ready_again_asks_to_be_uncordoned() {
    let listed = listed_oom_and_cordons().await;
    let node = listed.find(FindingKind::NodeRecovered);
    assert_eq!(node.object.name, "kind-worker8");
    let l = node.alert_labels();
    assert_eq!(l["remediation"], "uncordon");
    assert_eq!(l["node"], "kind-worker8");
}

#[tokio::test]
async fn a_listed_node_a_human_cordoned_gets_no_remediation() {
    let listed = listed_oom_and_cordons().await;
    let all = listed.watching.board.all();
    assert!(
        all.iter()
            .all(|f| !(f.object.name == "kind-worker6" && f.remediation.is_some())),
        "a human's cordon gets no remediation: {all:#?}"
    );
}
