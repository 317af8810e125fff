//! Kubernetes adapters through kube's `tower_test::mock::pair`: every request's method, path
//! and query is asserted. A list + watch of pods streamed in gives findings out; a `410 Gone`
//! (resource version expired) makes the watcher re-list, and the re-list replaces the store.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use health_monitor::board::CurrentFindings;
use health_monitor::config::FileConfig;
use health_monitor::finding::FindingKind;
use health_monitor::kube_watch::{self, Change, Evaluator, Kind, Stores, WatchContext};
use health_monitor::metrics::Metrics;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::runtime::watcher;
use serde_json::{Value, json};
use testbed::kube_mock::{self, Call, get, watch_events};
use testbed::wait_until;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

fn fixture_pod(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pods-unhealthy.json");
    let list: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no pod {name} in the fixture"))
        .clone()
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

#[tokio::test]
async fn list_watch_findings_and_a_410_gone_relists() {
    let (client, mut server) = kube_mock::pair();
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
    let store = kube_watch::reflect(
        Api::<Pod>::all(client.clone()),
        watcher::Config::default(),
        Kind::Pod,
        |p: &Pod| Some(kube_watch::target_of_object(p, Kind::Pod)),
        wc,
    );
    let board = CurrentFindings::new();
    let evaluator = Evaluator::new(
        Stores {
            pods: vec![store],
            ..Stores::default()
        },
        board.clone(),
        metrics.clone(),
    );
    let (_cfg_tx, cfg_rx) = watch::channel(Arc::new(FileConfig::default()));
    tokio::spawn(kube_watch::run_evaluator(
        evaluator,
        rx,
        cfg_rx,
        shutdown.clone(),
    ));

    let scenario = async {
        // 1. The initial list: one crash-looping pod.
        let first = pod_list(
            "1000",
            vec![with_rv(fixture_pod("heart-6d5f7c9b8-x2x4p"), "990")],
        );
        server.serve(list_pods(first).param("limit", "500")).await;

        // 2. The watch from the list's resource version: a pod that cannot pull its image
        //    arrives, then the resource version expires (410 Gone).
        let events = [
            json!({"type": "ADDED", "object": with_rv(fixture_pod("api-gateway-5f6b7c8d9-l4k3j"), "1001")}),
            json!({"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": "too old resource version: 1000 (1500)", "reason": "Expired", "code": 410}}),
        ];
        server
            .serve(watch_pods("1000", &events).param("allowWatchBookmarks", "true"))
            .await;
        let both = wait_until(Duration::from_secs(5), || async {
            let k = kinds_of(&board);
            k.contains(&(
                FindingKind::CrashLoopBackOff,
                "heart-6d5f7c9b8-x2x4p".into(),
            )) && k.contains(&(
                FindingKind::ImagePullBackOff,
                "api-gateway-5f6b7c8d9-l4k3j".into(),
            ))
        })
        .await;
        assert!(both, "findings from list + watch: {:?}", kinds_of(&board));

        // 3. The re-list after 410 (a list, not a watch): only a healthy pod is left; the store
        //    is replaced.
        let healthy = pod_list(
            "2000",
            vec![with_rv(fixture_pod("heart-6d5f7c9b8-h7k2m"), "1990")],
        );
        server.serve(list_pods(healthy)).await;
        let cleared = wait_until(Duration::from_secs(5), || async { board.all().is_empty() }).await;
        assert!(
            cleared,
            "stale findings survived the re-list: {:?}",
            kinds_of(&board)
        );
        assert_eq!(metrics.watch_errors.with_label_values(&["pods"]).get(), 1);

        // 4. Watching again from the new version: the healthy pod starts crash looping.
        let mut sick = with_rv(fixture_pod("heart-6d5f7c9b8-h7k2m"), "2001");
        sick["status"]["containerStatuses"][0]["state"] = json!({"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 10s restarting failed container"}});
        sick["status"]["containerStatuses"][0]["restartCount"] = json!(3);
        server
            .serve(watch_pods(
                "2000",
                &[json!({"type": "MODIFIED", "object": sick})],
            ))
            .await;
        let modified = wait_until(Duration::from_secs(5), || async {
            kinds_of(&board)
                == vec![(
                    FindingKind::CrashLoopBackOff,
                    "heart-6d5f7c9b8-h7k2m".to_owned(),
                )]
        })
        .await;
        assert!(modified, "{:?}", kinds_of(&board));
        assert!(metrics.watch_events.with_label_values(&["pods"]).get() >= 4);
    };
    tokio::time::timeout(Duration::from_secs(30), scenario)
        .await
        .expect("scenario timed out");
    shutdown.cancel();
}

#[tokio::test]
async fn control_plane_checks_use_the_api_servers_verbose_health_endpoints() {
    let (client, mut server) = kube_mock::pair();
    let check = tokio::spawn(async move { kube_watch::check_control_plane(&client).await });
    let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    for (path, status, file) in [
        ("/livez", 200, "livez-ok.txt"),
        ("/readyz", 500, "readyz-etcd-failed.txt"),
    ] {
        let body = std::fs::read(fixtures.join(file)).unwrap();
        let call = get(path, Value::Null)
            .param("verbose", "")
            .status(status)
            .raw(body);
        tokio::time::timeout(Duration::from_secs(10), server.serve(call))
            .await
            .expect("the check sent no request within 10 s");
    }
    let findings = tokio::time::timeout(Duration::from_secs(10), check)
        .await
        .unwrap()
        .unwrap();
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
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/nodes.json");
    let list: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no node {name} in the fixture"))
        .clone()
}

/// The producers of the healer's `raise-memory` and `uncordon` actions, through the kube API:
/// a pod OOM-killed again after a restart and a node the healer cordoned that is Ready again
/// arrive by list (GET /api/v1/pods, GET /api/v1/nodes); the board's alerts carry the labels
/// the auto-healer's `oom-killed` and `node-recovered` rules match. A human's cordon is not
/// touched.
#[tokio::test]
async fn oom_kills_after_a_restart_and_a_recovered_healer_cordon_become_remediations() {
    use health_monitor::finding::Remediation;
    use k8s_openapi::api::core::v1::Node;

    let (client, mut server) = kube_mock::pair();
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
    let pods = kube_watch::reflect(
        Api::<Pod>::all(client.clone()),
        watcher::Config::default(),
        Kind::Pod,
        |p: &Pod| Some(kube_watch::target_of_object(p, Kind::Pod)),
        wc.clone(),
    );
    let nodes = kube_watch::reflect(
        Api::<Node>::all(client.clone()),
        watcher::Config::default(),
        Kind::Node,
        |n: &Node| Some(kube_watch::target_of_object(n, Kind::Node)),
        wc,
    );
    let board = CurrentFindings::new();
    let evaluator = Evaluator::new(
        Stores {
            pods: vec![pods],
            nodes: vec![nodes],
            ..Stores::default()
        },
        board.clone(),
        metrics.clone(),
    );
    let (_cfg_tx, cfg_rx) = watch::channel(Arc::new(FileConfig::default()));
    tokio::spawn(kube_watch::run_evaluator(
        evaluator,
        rx,
        cfg_rx,
        shutdown.clone(),
    ));

    // brain, OOM-killed a minute ago for the second time (restartCount 2).
    let mut brain = with_rv(fixture_pod("brain-7c8d9f6b5-q9w8e"), "10");
    brain["status"]["containerStatuses"][0]["restartCount"] = json!(2);
    brain["status"]["containerStatuses"][0]["lastState"]["terminated"]["finishedAt"] =
        json!(rfc3339_ago(60));
    // kind-worker8: cordoned by the healer, Ready again for 10 minutes; kind-worker6: cordoned by
    // a human (no annotation), Ready.
    let mut recovered = fixture_node("kind-worker8");
    recovered["metadata"]["resourceVersion"] = json!("11");
    for c in recovered["status"]["conditions"].as_array_mut().unwrap() {
        if c["type"] == "Ready" {
            c["lastTransitionTime"] = json!(rfc3339_ago(600));
        }
    }
    let mut human = fixture_node("kind-worker6");
    human["metadata"]["resourceVersion"] = json!("12");

    // Each watcher lists, then watches; the watches are held open and silent: the lists are
    // what this test is about.
    let nodes = json!({"apiVersion": "v1", "kind": "NodeList", "metadata": {"resourceVersion": "100"},
        "items": [recovered, human]});
    let lists_and_watches = vec![
        list_pods(pod_list("100", vec![brain])),
        get("/api/v1/nodes", nodes).no_param("watch"),
        get("/api/v1/pods", Value::Null)
            .param("watch", "true")
            .hold(),
        get("/api/v1/nodes", Value::Null)
            .param("watch", "true")
            .hold(),
    ];
    tokio::time::timeout(
        Duration::from_secs(20),
        server.serve_any_order(lists_and_watches),
    )
    .await
    .expect("lists and watches timed out");

    let both = wait_until(Duration::from_secs(10), || async {
        let all = board.all();
        all.iter()
            .any(|f| f.finding == FindingKind::OomKilled && f.remediation.is_some())
            && all.iter().any(|f| f.finding == FindingKind::NodeRecovered)
    })
    .await;
    assert!(both, "{:#?}", board.all());
    let all = board.all();
    let oom = all
        .iter()
        .find(|f| f.finding == FindingKind::OomKilled)
        .unwrap();
    assert_eq!(oom.remediation, Some(Remediation::RaiseMemory));
    let l = oom.alert_labels();
    assert_eq!(l["remediation"], "raise-memory");
    assert_eq!(l["workload_kind"], "Deployment");
    assert_eq!(l["workload"], "brain");
    assert_eq!(l["namespace"], "organism");
    assert_eq!(l["container"], "brain");
    let node = all
        .iter()
        .find(|f| f.finding == FindingKind::NodeRecovered)
        .unwrap();
    assert_eq!(node.object.name, "kind-worker8");
    let l = node.alert_labels();
    assert_eq!(l["remediation"], "uncordon");
    assert_eq!(l["node"], "kind-worker8");
    assert!(
        all.iter()
            .all(|f| !(f.object.name == "kind-worker6" && f.remediation.is_some())),
        "a human's cordon gets no remediation: {all:#?}"
    );
    shutdown.cancel();
    drop(server);
}
