//! Every Kubernetes call, against the scripted API server of `testbed::kube_mock`: each test
//! scripts the requests it expects (method, path, query, content type, body) and the API
//! server's answers, and fails on any other request or on a request that never came. The Lease
//! tests use [`lease_server`], a stateful API server with resourceVersion semantics.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Request, Response, StatusCode};
use kube::client::Body;
use serde_json::{Value, json};
use time::OffsetDateTime;

use super::lease::LeaseElector;
use super::state::ConfigMapStore;
use super::*;
use crate::core::GuardState;
use crate::platform::{LeaderFlag, Leadership, StateStore, StoreError, update_state};
use testbed::kube_mock::{Call, SCRIPT_WAIT, call, scripted, status_body};

const MERGE: &str = "application/merge-patch+json";
const STRATEGIC: &str = "application/strategic-merge-patch+json";
/// The API path of the Deployment `heart()` targets.
const HEART_DEPLOYMENT: &str = "/apis/apps/v1/namespaces/organism/deployments/heart";

fn platform(client: Client) -> KubePlatform {
    KubePlatform::new(
        client,
        "auto-healer-0",
        Timings {
            poll: Duration::from_millis(10),
            eviction_retry: Duration::from_millis(20),
        },
    )
}

fn deployment(replicas: i32, ready: i32) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "heart", "namespace": "organism", "uid": "dep-uid", "generation": 4,
                     "annotations": {REVISION: "3"}},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "heart"}},
                 "template": {"metadata": {"labels": {"app": "heart"}},
                              "spec": {"containers": [{"name": "heart", "image": "organism:3",
                                        "resources": {"limits": {"memory": "256Mi"}}}]}}},
        "status": {"observedGeneration": 4, "replicas": replicas, "updatedReplicas": ready, "availableReplicas": ready}
    })
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn pod_target() -> Target {
    Target::Pod {
        namespace: "organism".into(),
        name: "heart-abc".into(),
    }
}

fn heart() -> Target {
    Target::Workload {
        namespace: "organism".into(),
        kind: WorkloadKind::Deployment,
        name: "heart".into(),
    }
}

#[tokio::test]
async fn delete_pod() {
    let (client, task) = scripted(vec![call(
        "DELETE",
        "/api/v1/namespaces/organism/pods/heart-abc",
        json!({"metadata": {"name": "heart-abc"}}),
    )]);
    let out = platform(client)
        .execute(&Action::DeletePod, &pod_target(), &Labels::new())
        .await
        .unwrap();
    assert_eq!(out, "deleted pod organism/heart-abc");
    task.done().await;
}

#[tokio::test]
async fn rollout_restart_patches_restarted_at_like_kubectl() {
    let before = OffsetDateTime::now_utc();
    let check = move |b: &Value| {
        let at = b["spec"]["template"]["metadata"]["annotations"][RESTARTED_AT]
            .as_str()
            .unwrap();
        let at = OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339).unwrap();
        assert!(at >= before - time::Duration::seconds(1) && at <= OffsetDateTime::now_utc());
    };
    let (client, task) = scripted(vec![
        call("PATCH", HEART_DEPLOYMENT, deployment(3, 3)).content_type(MERGE).body(check),
        call("PATCH", "/apis/apps/v1/namespaces/organism/statefulsets/db", json!({"metadata": {"name": "db"}, "spec": {"selector": {}, "template": {}, "serviceName": "db"}})).content_type(MERGE).body(check),
    ]);
    let p = platform(client);
    p.execute(&Action::RolloutRestart, &heart(), &Labels::new())
        .await
        .unwrap();
    let sts = Target::Workload {
        namespace: "organism".into(),
        kind: WorkloadKind::StatefulSet,
        name: "db".into(),
    };
    p.execute(&Action::RolloutRestart, &sts, &Labels::new())
        .await
        .unwrap();
    task.done().await;
}

#[tokio::test]
async fn rollback_restores_the_previous_replica_set_template() {
    let rs = |name: &str, rev: &str, owner: &str, image: &str| {
        json!({"metadata": {"name": name, "annotations": {REVISION: rev},
                            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "heart", "uid": owner}]},
               "spec": {"selector": {"matchLabels": {"app": "heart"}},
                        "template": {"metadata": {"labels": {"app": "heart", "pod-template-hash": name}},
                                     "spec": {"containers": [{"name": "heart", "image": image}]}}}})
    };
    let (client, task) = scripted(vec![
        call("GET", HEART_DEPLOYMENT, deployment(3, 1)),
        call(
            "GET",
            "/apis/apps/v1/namespaces/organism/replicasets",
            json!({"metadata": {}, "items": [
                rs("heart-1", "1", "dep-uid", "organism:1"),
                rs("heart-2", "2", "dep-uid", "organism:2"),
                rs("heart-3", "3", "dep-uid", "organism:3"),
                rs("other-9", "2", "someone-else", "evil:9"),
            ]}),
        )
        .query("labelSelector=app%3Dheart"),
        call("PATCH", HEART_DEPLOYMENT, deployment(3, 1))
            .content_type(STRATEGIC)
            .body(|b| {
                let t = &b["spec"]["template"];
                assert_eq!(t["$patch"], "replace");
                assert_eq!(t["spec"]["containers"][0]["image"], "organism:2");
                assert_eq!(
                    t["metadata"]["labels"],
                    json!({"app": "heart"}),
                    "pod-template-hash removed"
                );
            }),
    ]);
    let out = platform(client)
        .execute(&Action::Rollback, &heart(), &Labels::new())
        .await
        .unwrap();
    assert!(out.contains("from revision 3 to 2 (heart-2)"), "{out}");
    task.done().await;
}

#[tokio::test]
async fn scale_up_patches_the_scale_subresource_within_bounds() {
    let scale = |n: i32| json!({"metadata": {"name": "heart"}, "spec": {"replicas": n}});
    let (client, task) = scripted(vec![
        call(
            "GET",
            "/apis/apps/v1/namespaces/organism/deployments/heart/scale",
            scale(2),
        ),
        call(
            "PATCH",
            "/apis/apps/v1/namespaces/organism/deployments/heart/scale",
            scale(4),
        )
        .body(|b| assert_eq!(b["spec"], json!({"replicas": 4}))),
        call(
            "GET",
            "/apis/apps/v1/namespaces/organism/deployments/heart/scale",
            scale(4),
        ),
    ]);
    let p = platform(client);
    let action = Action::ScaleUp {
        step: 3,
        max_replicas: 4,
    };
    assert_eq!(
        p.execute(&action, &heart(), &Labels::new()).await.unwrap(),
        "scaled Deployment organism/heart from 2 to 4 replicas"
    );
    let e = p
        .execute(&action, &heart(), &Labels::new())
        .await
        .unwrap_err();
    assert_eq!(e.kind, "at-cap", "{e}");
    task.done().await;
}

#[tokio::test]
async fn raise_hpa_min_replicas() {
    let (client, task) = scripted(vec![
        call("GET", "/apis/autoscaling/v2/namespaces/organism/horizontalpodautoscalers", json!({"metadata": {}, "items": [
            {"metadata": {"name": "other"}, "spec": {"maxReplicas": 9, "scaleTargetRef": {"kind": "Deployment", "name": "brain"}}},
            {"metadata": {"name": "heart-hpa"}, "spec": {"minReplicas": 2, "maxReplicas": 5, "scaleTargetRef": {"kind": "Deployment", "name": "heart"}}}
        ]})),
        call("PATCH", "/apis/autoscaling/v2/namespaces/organism/horizontalpodautoscalers/heart-hpa",
             json!({"metadata": {"name": "heart-hpa"}, "spec": {"maxReplicas": 5, "scaleTargetRef": {"kind": "Deployment", "name": "heart"}}}))
            .body(|b| assert_eq!(b["spec"], json!({"minReplicas": 3}))),
    ]);
    let out = platform(client)
        .execute(
            &Action::RaiseHpaMin {
                step: 1,
                max_replicas: 10,
            },
            &heart(),
            &Labels::new(),
        )
        .await
        .unwrap();
    assert!(out.contains("from 2 to 3"), "{out}");
    task.done().await;
}

#[tokio::test]
async fn raise_memory_limit_is_capped() {
    let (client, task) = scripted(vec![
        call("GET", HEART_DEPLOYMENT, deployment(3, 3)),
        call("PATCH", HEART_DEPLOYMENT, deployment(3, 3))
            .content_type(STRATEGIC)
            .body(|b| {
                assert_eq!(
                    b["spec"]["template"]["spec"]["containers"],
                    json!([{"name": "heart", "resources": {"limits": {"memory": "300Mi"}}}])
                );
            }),
    ]);
    let action = Action::RaiseMemoryLimit {
        factor: 1.5,
        max_bytes: 300 << 20,
        container: None,
    };
    let out = platform(client)
        .execute(&action, &heart(), &labels(&[("container", "heart")]))
        .await
        .unwrap();
    assert!(out.contains("from 256Mi to 300Mi"), "{out}");
    task.done().await;
}

fn node(name: &str, ready: bool, unschedulable: bool) -> Value {
    json!({"metadata": {"name": name}, "spec": {"unschedulable": unschedulable},
           "status": {"conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}})
}

#[tokio::test]
async fn cordon_marks_the_node_unschedulable_and_says_who_did() {
    let (client, task) = scripted(vec![
        call("PATCH", "/api/v1/nodes/n1", node("n1", false, true))
            .content_type(MERGE)
            .body(|b| {
                assert_eq!(b["spec"], json!({"unschedulable": true}));
                assert_eq!(
                    b["metadata"]["annotations"]["organism.dev/cordoned-by"],
                    "auto-healer"
                );
            }),
    ]);
    let n1 = Target::Node { name: "n1".into() };
    platform(client)
        .execute(&Action::Cordon, &n1, &Labels::new())
        .await
        .unwrap();
    task.done().await;
}

#[tokio::test]
async fn uncordon_makes_the_node_schedulable_and_removes_the_mark() {
    let (client, task) = scripted(vec![
        call("PATCH", "/api/v1/nodes/n1", node("n1", true, false)).body(|b| {
            assert_eq!(b["spec"], json!({"unschedulable": false}));
            // null in a merge patch removes the annotation.
            assert!(
                b["metadata"]["annotations"]
                    .as_object()
                    .unwrap()
                    .get("organism.dev/cordoned-by")
                    .unwrap()
                    .is_null()
            );
        }),
    ]);
    let n1 = Target::Node { name: "n1".into() };
    platform(client)
        .execute(&Action::Uncordon, &n1, &Labels::new())
        .await
        .unwrap();
    task.done().await;
}

fn pod(ns: &str, name: &str, owner_kind: &str, mirror: bool) -> Value {
    let mut p = json!({"metadata": {"name": name, "namespace": ns,
        "ownerReferences": [{"apiVersion": "apps/v1", "kind": owner_kind, "name": "x", "uid": "u"}]},
        "status": {"phase": "Running"}});
    if mirror {
        p["metadata"]["annotations"] = json!({"kubernetes.io/config.mirror": "abc"});
    }
    p
}

fn eviction_check(name: &'static str) -> impl Fn(&Value) + Send + 'static {
    move |b: &Value| {
        assert_eq!(b["kind"], "Eviction");
        assert_eq!(b["apiVersion"], "policy/v1");
        assert_eq!(b["metadata"]["name"], name);
    }
}

#[tokio::test]
async fn drain_evicts_through_the_eviction_api_respecting_pdbs() {
    let ok = json!({"kind": "Status", "apiVersion": "v1", "status": "Success", "code": 201});
    let (client, task) = scripted(vec![
        call("PATCH", "/api/v1/nodes/n1", node("n1", false, true))
            .body(|b| assert_eq!(b["spec"], json!({"unschedulable": true}))),
        call(
            "GET",
            "/api/v1/pods",
            json!({"metadata": {}, "items": [
                pod("organism", "heart-1", "ReplicaSet", false),
                pod("kube-system", "fluent-1", "DaemonSet", false),
                pod("kube-system", "etcd-n1", "Node", true),
                pod("organism", "brain-1", "ReplicaSet", false),
            ]}),
        )
        .query("fieldSelector=spec.nodeName%3Dn1"),
        call(
            "POST",
            "/api/v1/namespaces/organism/pods/heart-1/eviction",
            status_body(429, "TooManyRequests"),
        )
        .status(429)
        .body(eviction_check("heart-1")),
        call(
            "POST",
            "/api/v1/namespaces/organism/pods/heart-1/eviction",
            ok.clone(),
        )
        .status(201)
        .body(eviction_check("heart-1")),
        call(
            "POST",
            "/api/v1/namespaces/organism/pods/brain-1/eviction",
            ok,
        )
        .status(201)
        .body(eviction_check("brain-1")),
    ]);
    let out = platform(client)
        .execute(
            &Action::Drain {
                timeout: Duration::from_secs(5),
            },
            &Target::Node { name: "n1".into() },
            &Labels::new(),
        )
        .await
        .unwrap();
    assert_eq!(
        out,
        "cordoned n1, evicted 2 pods, left 2 (DaemonSet, mirror or finished)"
    );
    task.done().await;
}

/// On paused time: the drain's 1 s timeout and its retries are exact, and the 5 s bound runs
/// out only if the drain never gives up, not because the machine is slow.
#[tokio::test(start_paused = true)]
async fn drain_gives_up_when_a_pdb_keeps_refusing() {
    let mut script = vec![
        call("PATCH", "/api/v1/nodes/n1", node("n1", false, true)),
        call(
            "GET",
            "/api/v1/pods",
            json!({"metadata": {}, "items": [pod("organism", "heart-1", "ReplicaSet", false)]}),
        ),
    ];
    // 1 s timeout, 20 ms between retries: about 50 refusals (200 scripted), then the drain fails.
    for _ in 0..200 {
        script.push(
            call(
                "POST",
                "/api/v1/namespaces/organism/pods/heart-1/eviction",
                status_body(429, "TooManyRequests"),
            )
            .status(429),
        );
    }
    let (client, task) = scripted(script);
    let p = platform(client);
    let res = tokio::time::timeout(
        Duration::from_secs(5),
        p.execute(
            &Action::Drain {
                timeout: Duration::from_secs(1),
            },
            &Target::Node { name: "n1".into() },
            &Labels::new(),
        ),
    )
    .await
    .expect("drain is bounded by its timeout");
    let e = res.unwrap_err();
    assert_eq!(e.kind, "timeout");
    assert!(e.message.contains("PodDisruptionBudget"), "{e}");
    task.abort();
}

#[tokio::test]
async fn cleanup_deletes_old_failed_pods_and_finished_jobs() {
    let old = "2020-01-01T00:00:00Z";
    let new = rfc3339(OffsetDateTime::now_utc());
    let (client, task) = scripted(vec![
        call("GET", "/api/v1/namespaces/organism/pods", json!({"metadata": {}, "items": [
            {"metadata": {"name": "evicted-old", "creationTimestamp": old}, "status": {"phase": "Failed", "reason": "Evicted", "startTime": old}},
            {"metadata": {"name": "failed-new", "creationTimestamp": new}, "status": {"phase": "Failed", "startTime": new}},
        ]})).query("fieldSelector=status.phase%3DFailed"),
        call("DELETE", "/api/v1/namespaces/organism/pods/evicted-old", json!({"metadata": {"name": "evicted-old"}})),
        call("GET", "/apis/batch/v1/namespaces/organism/jobs", json!({"metadata": {}, "items": [
            {"metadata": {"name": "migrate-old"}, "status": {"completionTime": old, "conditions": [{"type": "Complete", "status": "True", "lastTransitionTime": old}]}},
            {"metadata": {"name": "running"}, "status": {"active": 1}},
            {"metadata": {"name": "failed-old"}, "status": {"conditions": [{"type": "Failed", "status": "True", "lastTransitionTime": old}]}},
        ]})),
        call("DELETE", "/apis/batch/v1/namespaces/organism/jobs/migrate-old", json!({"metadata": {"name": "migrate-old"}}))
            .body(|b| assert_eq!(b["propagationPolicy"], "Background")),
        call("DELETE", "/apis/batch/v1/namespaces/organism/jobs/failed-old", json!({"metadata": {"name": "failed-old"}})),
    ]);
    let out = platform(client)
        .execute(
            &Action::Cleanup {
                ttl: Duration::from_secs(3600),
            },
            &Target::Namespace {
                name: "organism".into(),
            },
            &Labels::new(),
        )
        .await
        .unwrap();
    assert_eq!(
        out,
        "deleted 1 failed pods and 2 finished Jobs older than 3600 s in organism"
    );
    task.done().await;
}

#[tokio::test]
async fn snapshot_of_a_pod_follows_its_owners_and_counts_disrupted_pods() {
    let ready = |name: &str, ok: bool| json!({"metadata": {"name": name}, "status": {"conditions": [{"type": "Ready", "status": if ok {"True"} else {"False"}}]}});
    let (client, task) = scripted(vec![
        call(
            "GET",
            "/api/v1/namespaces/organism/pods/heart-abc",
            json!({"metadata": {"name": "heart-abc", "namespace": "organism",
            "annotations": {"a": "b"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "heart-3", "uid": "rs"}]}}),
        ),
        call(
            "GET",
            "/apis/apps/v1/namespaces/organism/replicasets/heart-3",
            json!({"metadata": {"name": "heart-3",
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "heart", "uid": "dep-uid"}]},
            "spec": {"selector": {}}}),
        ),
        call("GET", HEART_DEPLOYMENT, {
            let mut d = deployment(3, 2);
            d["metadata"]["annotations"]["organism.dev/auto-heal"] = json!("false");
            d
        }),
        call(
            "GET",
            "/api/v1/namespaces/organism/pods",
            json!({"metadata": {}, "items": [
                ready("heart-abc", false), ready("heart-def", true), ready("heart-ghi", false)
            ]}),
        )
        .query("labelSelector=app%3Dheart"),
    ]);
    let snap = platform(client).snapshot(&pod_target()).await.unwrap();
    assert_eq!(
        snap.workload_pods,
        Some(PodCounts {
            total: 3,
            disrupted_others: 1
        })
    );
    assert_eq!(snap.annotations[0].0, "pod/organism/heart-abc");
    assert_eq!(snap.annotations[1].0, "deployment/organism/heart");
    assert_eq!(snap.annotations[1].1["organism.dev/auto-heal"], "false");
    task.done().await;
}

#[tokio::test]
async fn verify_polls_until_the_deployment_is_ready() {
    let (client, task) = scripted(vec![
        call("GET", HEART_DEPLOYMENT, deployment(3, 1)),
        call("GET", HEART_DEPLOYMENT, deployment(3, 2)),
        call("GET", HEART_DEPLOYMENT, deployment(3, 3)),
    ]);
    platform(client)
        .verify(&Action::RolloutRestart, &heart(), Duration::from_secs(5))
        .await
        .unwrap();
    task.done().await;
}

#[tokio::test]
async fn events_are_created_on_the_target() {
    let (client, task) = scripted(vec![
        call("POST", "/apis/events.k8s.io/v1/namespaces/organism/events", json!({"metadata": {"name": "heart-abc.1"}, "eventTime": "2026-11-01T12:00:00.000000Z"}))
            .status(201)
            .body(|b| {
                assert_eq!(b["regarding"], json!({"apiVersion": "v1", "kind": "Pod", "name": "heart-abc", "namespace": "organism"}));
                assert_eq!(b["reason"], "RemediationSkipped");
                assert_eq!(b["type"], "Normal");
                assert_eq!(b["action"], "delete-pod");
                assert_eq!(b["reportingController"], REPORTING_CONTROLLER);
                assert_eq!(b["reportingInstance"], "auto-healer-0");
                assert_eq!(b["note"], "[guard cooldown] heart was acted on recently");
                assert!(b["eventTime"].as_str().unwrap().starts_with("2026-11-01T12:00:00"));
            }),
        call("POST", "/apis/events.k8s.io/v1/namespaces/default/events", json!({"metadata": {"name": "n1.1"}, "eventTime": "2026-11-01T12:00:00.000000Z"}))
            .status(201)
            .body(|b| {
                assert_eq!(b["regarding"]["kind"], "Node");
                assert_eq!(b["reason"], "RemediationFailed");
                assert_eq!(b["type"], "Warning");
            }),
    ]);
    let p = platform(client);
    let mut r = AuditRecord {
        at: time::macros::datetime!(2026-11-01 12:00 UTC),
        alertname: "PodCrashLooping".into(),
        subject: "deployment/organism/heart".into(),
        result: "skipped".into(),
        action: Some("delete-pod".into()),
        target: Some(pod_target()),
        rule: Some("crashing-pod".into()),
        step: Some(0),
        guard: Some("cooldown".into()),
        message: "heart was acted on recently".into(),
    };
    p.record(&r).await.unwrap();
    r.target = Some(Target::Node { name: "n1".into() });
    r.result = "escalated".into();
    p.record(&r).await.unwrap();
    task.done().await;
}

/// The state ConfigMap at `rv` holding `data`.
fn state_configmap(rv: &str, data: &GuardState) -> Value {
    json!({"metadata": {"name": "auto-healer-state", "resourceVersion": rv},
    "data": {"state.json": serde_json::to_string(data).unwrap()}})
}

/// A state with one action, at 12:00.
fn one_action() -> GuardState {
    let mut s = GuardState::default();
    s.actions.push(crate::core::Timestamp(
        time::macros::datetime!(2026-11-01 12:00 UTC),
    ));
    s
}

const STATE_CONFIGMAP: &str = "/api/v1/namespaces/organism/configmaps/auto-healer-state";

#[tokio::test]
async fn an_absent_state_configmap_loads_empty_and_the_first_save_creates_it() {
    let s1 = one_action();
    let (client, task) = scripted(vec![
        call("GET", STATE_CONFIGMAP, status_body(404, "NotFound")).status(404),
        call(
            "POST",
            "/api/v1/namespaces/organism/configmaps",
            state_configmap("1", &s1),
        )
        .status(201)
        .body(|b| {
            assert_eq!(b["metadata"]["name"], "auto-healer-state");
            assert!(b["metadata"].get("resourceVersion").is_none());
            let st: GuardState =
                serde_json::from_str(b["data"]["state.json"].as_str().unwrap()).unwrap();
            assert_eq!(st.actions.len(), 1);
        }),
    ]);
    let store = ConfigMapStore::new(client, "organism");
    let (state, version) = store.load().await.unwrap();
    assert_eq!((state, version), (GuardState::default(), None));
    store.save(&s1, None).await.unwrap();
    task.done().await;
}

#[tokio::test]
async fn an_update_after_a_conflict_is_applied_again_to_the_reloaded_state() {
    let s1 = one_action();
    // Load v1, replace → 409; reload v2, replace with resourceVersion 2 → ok.
    let (client, task) = scripted(vec![
        call("GET", STATE_CONFIGMAP, state_configmap("1", &s1)),
        call("PUT", STATE_CONFIGMAP, status_body(409, "Conflict"))
            .status(409)
            .body(|b| assert_eq!(b["metadata"]["resourceVersion"], "1")),
        call("GET", STATE_CONFIGMAP, state_configmap("2", &s1)),
        call("PUT", STATE_CONFIGMAP, state_configmap("3", &s1)).body(|b| {
            assert_eq!(b["metadata"]["resourceVersion"], "2");
            let st: GuardState =
                serde_json::from_str(b["data"]["state.json"].as_str().unwrap()).unwrap();
            assert_eq!(
                st.actions.len(),
                2,
                "the change was applied to the reloaded state"
            );
        }),
    ]);
    let store = ConfigMapStore::new(client, "organism");
    let mut calls = 0;
    update_state(&store, |s| {
        calls += 1;
        s.actions.push(crate::core::Timestamp(
            time::macros::datetime!(2026-11-01 12:01 UTC),
        ));
    })
    .await
    .unwrap();
    assert_eq!(calls, 2, "one retry after the conflict");
    task.done().await;
}

#[tokio::test]
async fn configmap_conflict_is_reported_as_conflict() {
    let (client, task) = scripted(vec![
        call("PUT", STATE_CONFIGMAP, status_body(409, "Conflict")).status(409),
    ]);
    let store = ConfigMapStore::new(client, "organism");
    assert!(matches!(
        store.save(&GuardState::default(), Some("7")).await,
        Err(StoreError::Conflict)
    ));
    task.done().await;
}

fn lease_json(holder: &str, renew: OffsetDateTime, rv: &str, transitions: i32) -> Value {
    json!({"metadata": {"name": "auto-healer", "namespace": "organism", "resourceVersion": rv},
           "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15,
                    "acquireTime": rfc3339(renew), "renewTime": rfc3339(renew), "leaseTransitions": transitions}})
}

const LEASE: &str = "/apis/coordination.k8s.io/v1/namespaces/organism/leases/auto-healer";
const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/organism/leases";

fn elector(client: Client, id: &str) -> LeaseElector {
    LeaseElector::new(
        client,
        "organism",
        "auto-healer",
        id,
        Duration::from_secs(15),
    )
}

/// `try_acquire_or_renew` on paused time: a request the script does not answer (an
/// unexpected write) fails the test at once instead of hanging it.
async fn try_acquire(
    e: &mut LeaseElector,
    wall: OffsetDateTime,
    local: tokio::time::Instant,
) -> bool {
    tokio::time::timeout(SCRIPT_WAIT, e.try_acquire_or_renew(wall, local))
        .await
        .expect("the elector sent a request the script does not answer")
        .unwrap()
}

/// Runs `script` against elector "a", trying at each `(seconds after the first try, whether it
/// leads, why)`, and expects the script used up.
async fn tries(script: Vec<Call>, wall: OffsetDateTime, attempts: &[(u64, bool, &str)]) {
    let (client, task) = scripted(script);
    let mut e = elector(client, "a");
    let t0 = tokio::time::Instant::now();
    for &(after, leads, why) in attempts {
        let at = t0 + Duration::from_secs(after);
        assert_eq!(try_acquire(&mut e, wall, at).await, leads, "{why}");
    }
    task.done().await;
}

/// The wall-clock time the tests' leases carry, and a renewTime an hour before it: compared
/// with our clock such a record would look long expired, but client-go judges a lease by the
/// local time we saw its record change, so its renewTime is irrelevant.
fn wall_and_stale() -> (OffsetDateTime, OffsetDateTime) {
    let wall = OffsetDateTime::now_utc();
    (wall, wall - time::Duration::hours(1))
}

#[tokio::test(start_paused = true)]
async fn a_missing_lease_is_created_with_this_instance_as_holder() {
    let (wall, _) = wall_and_stale();
    let script = vec![
        call("GET", LEASE, status_body(404, "NotFound")).status(404),
        call("POST", LEASES, lease_json("a", wall, "1", 0))
            .status(201)
            .body(|b| {
                assert_eq!(b["metadata"]["name"], "auto-healer");
                assert_eq!(b["spec"]["holderIdentity"], "a");
                assert_eq!(b["spec"]["leaseDurationSeconds"], 15);
                assert_eq!(b["spec"]["leaseTransitions"], 0);
            }),
    ];
    tries(script, wall, &[(0, true, "acquired")]).await;
}

#[tokio::test(start_paused = true)]
async fn the_holder_renews_with_the_version_it_read_keeping_its_acquire_time() {
    let (wall, _) = wall_and_stale();
    let script = vec![
        call("GET", LEASE, lease_json("a", wall, "1", 0)),
        call("PUT", LEASE, lease_json("a", wall, "2", 0)).body(move |b| {
            assert_eq!(b["metadata"]["resourceVersion"], "1");
            assert_eq!(b["spec"]["holderIdentity"], "a");
            let kept = b["spec"]["acquireTime"].as_str().unwrap();
            assert!(kept.starts_with(&rfc3339(wall)[..26]), "{kept}");
        }),
    ];
    tries(script, wall, &[(0, true, "renewed")]).await;
}

#[tokio::test(start_paused = true)]
async fn another_holders_lease_is_live_for_its_duration_of_our_time_since_we_saw_it_change() {
    let (wall, stale) = wall_and_stale();
    // No write: b holds it at first sight and still 14 s later, unchanged.
    let script = vec![
        call("GET", LEASE, lease_json("b", stale, "5", 1)),
        call("GET", LEASE, lease_json("b", stale, "5", 1)),
    ];
    let live = "b's lease is live for 15 s of our time after we saw it change";
    tries(script, wall, &[(0, false, "held by b"), (14, false, live)]).await;
}

#[tokio::test(start_paused = true)]
async fn a_lease_unchanged_for_its_duration_is_taken_over_with_one_more_transition() {
    let (wall, stale) = wall_and_stale();
    let script = vec![
        call("GET", LEASE, lease_json("b", stale, "5", 1)),
        call("GET", LEASE, lease_json("b", stale, "5", 1)),
        call("PUT", LEASE, lease_json("a", wall, "6", 2)).body(|b| {
            assert_eq!(b["metadata"]["resourceVersion"], "5");
            assert_eq!(b["spec"]["holderIdentity"], "a");
            assert_eq!(b["spec"]["leaseTransitions"], 2);
        }),
    ];
    let taken = "taken over once unchanged for 15 s of our time";
    tries(script, wall, &[(0, false, "held by b"), (16, true, taken)]).await;
}

#[tokio::test(start_paused = true)]
async fn a_lease_whose_record_changed_is_live_again_from_that_moment() {
    let (wall, stale) = wall_and_stale();
    // b renewed between our looks (a new renewTime, however skewed its clock): no write.
    let renewed = stale + time::Duration::seconds(16);
    let script = vec![
        call("GET", LEASE, lease_json("b", stale, "5", 1)),
        call("GET", LEASE, lease_json("b", renewed, "8", 1)),
    ];
    let live = "b's changed record is live again";
    tries(script, wall, &[(0, false, "held by b"), (16, false, live)]).await;
}

#[tokio::test]
async fn a_leader_releases_the_lease_with_an_empty_holder() {
    let wall = OffsetDateTime::now_utc();
    let (client, task) = scripted(vec![
        call("GET", LEASE, lease_json("a", wall, "3", 4)),
        call("PUT", LEASE, lease_json("a", wall, "4", 4)),
        call("PUT", LEASE, lease_json("", wall, "5", 4)).body(|b| {
            assert_eq!(b["metadata"]["resourceVersion"], "4");
            assert_eq!(b["spec"]["holderIdentity"], "");
            assert_eq!(b["spec"]["leaseDurationSeconds"], 1);
            assert_eq!(b["spec"]["leaseTransitions"], 4);
        }),
    ]);
    let mut e = elector(client, "a");
    assert!(
        e.try_acquire_or_renew(wall, tokio::time::Instant::now())
            .await
            .unwrap()
    );
    assert!(e.release(wall).await.unwrap(), "released");
    assert!(!e.is_leader());
    assert!(!e.release(wall).await.unwrap(), "nothing left to release");
    task.done().await;
}

/// The one Lease of a [`lease_server`].
pub(crate) type LeaseCell = Arc<Mutex<Option<Value>>>;

/// An API server holding one Lease with resourceVersion semantics (409 on a stale write, 409
/// AlreadyExists on a second create), shared by several clients. Asserts every request is a
/// Lease GET, POST or PUT on the right path, and that every write is a whole Lease record with
/// the resourceVersion it read (PUT) or none (POST).
pub(crate) fn lease_server() -> (Client, Client, LeaseCell) {
    let lease: LeaseCell = Arc::new(Mutex::new(None));
    let make = |lease: LeaseCell| {
        let (svc, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        tokio::spawn(async move {
            while let Some((req, send)) = handle.next_request().await {
                let method = req.method().as_str().to_owned();
                let path = req.uri().path().to_owned();
                let body = req.into_body().collect_bytes().await.unwrap();
                let written = || {
                    let l: Value = serde_json::from_slice(&body).unwrap();
                    assert_eq!(l["metadata"]["name"], "auto-healer", "{l}");
                    assert!(l["spec"]["holderIdentity"].is_string(), "{l}");
                    assert!(l["spec"]["leaseDurationSeconds"].is_i64(), "{l}");
                    assert!(l["spec"]["renewTime"].is_string(), "{l}");
                    assert!(l["spec"]["leaseTransitions"].is_i64(), "{l}");
                    l
                };
                let mut guard = lease.lock().unwrap();
                let (status, answer) = match (method.as_str(), path.as_str()) {
                    ("GET", LEASE) => match guard.as_ref() {
                        Some(l) => (200, l.clone()),
                        None => (404, status_body(404, "NotFound")),
                    },
                    ("POST", LEASES) => {
                        let mut l = written();
                        assert!(l["metadata"]["resourceVersion"].is_null(), "{l}");
                        if guard.is_some() {
                            (409, status_body(409, "AlreadyExists"))
                        } else {
                            l["metadata"]["resourceVersion"] = json!("1");
                            *guard = Some(l.clone());
                            (201, l)
                        }
                    }
                    ("PUT", LEASE) => {
                        let mut l = written();
                        assert!(l["metadata"]["resourceVersion"].is_string(), "{l}");
                        let current = guard.as_ref().map(|c| {
                            c["metadata"]["resourceVersion"]
                                .as_str()
                                .unwrap()
                                .to_owned()
                        });
                        if current.as_deref() != l["metadata"]["resourceVersion"].as_str() {
                            (409, status_body(409, "Conflict"))
                        } else {
                            let next: u64 = current.unwrap().parse::<u64>().unwrap() + 1;
                            l["metadata"]["resourceVersion"] = json!(next.to_string());
                            *guard = Some(l.clone());
                            (200, l)
                        }
                    }
                    other => panic!("unexpected request {other:?}"),
                };
                drop(guard);
                send.send_response(
                    Response::builder()
                        .status(StatusCode::from_u16(status).unwrap())
                        .body(Body::from(serde_json::to_vec(&answer).unwrap()))
                        .unwrap(),
                );
            }
        });
        Client::new(svc, "default")
    };
    (make(lease.clone()), make(lease.clone()), lease)
}

#[tokio::test]
async fn two_contenders_for_one_lease_elect_exactly_one() {
    for _ in 0..20 {
        let (ca, cb, _) = lease_server();
        let mut a = elector(ca, "a");
        let mut b = elector(cb, "b");
        let now = OffsetDateTime::now_utc();
        let t = tokio::time::Instant::now();
        let (ra, rb) = tokio::join!(
            a.try_acquire_or_renew(now, t),
            b.try_acquire_or_renew(now, t)
        );
        let (ra, rb) = (ra.unwrap(), rb.unwrap());
        assert!(ra ^ rb, "exactly one leader, got a={ra} b={rb}");
        // Renewals keep the same leader.
        let (ra2, rb2) = tokio::join!(
            a.try_acquire_or_renew(now, t),
            b.try_acquire_or_renew(now, t)
        );
        assert_eq!((ra2.unwrap(), rb2.unwrap()), (ra, rb));
    }
}

/// Two instances whose wall clocks disagree by two hours, through the kube mock, on local time
/// that tokio drives: a live leader is never displaced (whatever its `renewTime` says to the
/// other's clock), and a dead one is replaced after the lease duration of the other's own time.
#[tokio::test(start_paused = true)]
async fn skewed_clocks_neither_steal_a_live_lease_nor_keep_a_dead_one() {
    for (a_skew, b_skew) in [(-1i64, 1i64), (1, -1)] {
        let (ca, cb, lease) = lease_server();
        let mut a = elector(ca, "a");
        let mut b = elector(cb, "b");
        let wall_a = || OffsetDateTime::now_utc() + time::Duration::hours(a_skew);
        let wall_b = || OffsetDateTime::now_utc() + time::Duration::hours(b_skew);
        let now = tokio::time::Instant::now;
        assert!(a.try_acquire_or_renew(wall_a(), now()).await.unwrap());
        assert!(!b.try_acquire_or_renew(wall_b(), now()).await.unwrap());
        // a renews every 2 s for a minute: b never takes over.
        for _ in 0..30 {
            tokio::time::advance(Duration::from_secs(2)).await;
            assert!(a.try_acquire_or_renew(wall_a(), now()).await.unwrap());
            assert!(
                !b.try_acquire_or_renew(wall_b(), now()).await.unwrap(),
                "b (clock {b_skew:+} h) stole a live lease from a (clock {a_skew:+} h)"
            );
        }
        // a dies. b takes over after 15 s of its own time since it last saw a change, not
        // before and not an hour later.
        let died = now();
        let mut took_over = None;
        for _ in 0..20 {
            tokio::time::advance(Duration::from_secs(1)).await;
            if b.try_acquire_or_renew(wall_b(), now()).await.unwrap() {
                took_over = Some(now() - died);
                break;
            }
        }
        let took_over = took_over.expect("b never took over a dead lease");
        assert!(
            took_over > Duration::from_secs(14) && took_over <= Duration::from_secs(17),
            "b took over {took_over:?} after a died (lease 15 s, a renewed just before)"
        );
        let l = lease.lock().unwrap().clone().unwrap();
        assert_eq!(l["spec"]["holderIdentity"], "b");
        assert_eq!(l["spec"]["leaseTransitions"], 1);
        // a comes back: it sees b's record and does not take it back.
        assert!(!a.try_acquire_or_renew(wall_a(), now()).await.unwrap());
    }
}

/// A rolling update: the leader shuts down, releases the Lease, and the other instance takes
/// over at once instead of waiting out the lease duration.
#[tokio::test(start_paused = true)]
async fn shutdown_releases_the_lease_and_the_other_takes_over_at_once() {
    let (ca, cb, lease) = lease_server();
    let flag = LeaderFlag::new(false);
    let shutdown = tokio_util::sync::CancellationToken::new();
    let run = tokio::spawn(elector(ca, "a").run(flag.clone(), shutdown.clone()));
    while !flag.is_leader() {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut b = elector(cb, "b");
    assert!(
        !b.try_acquire_or_renew(OffsetDateTime::now_utc(), tokio::time::Instant::now())
            .await
            .unwrap()
    );
    shutdown.cancel();
    run.await.unwrap();
    assert!(!flag.is_leader(), "stops acting on shutdown");
    let released = lease.lock().unwrap().clone().unwrap();
    assert_eq!(released["spec"]["holderIdentity"], "");
    assert_eq!(released["spec"]["leaseDurationSeconds"], 1);
    // No time passes: b takes the released lease at once.
    assert!(
        b.try_acquire_or_renew(OffsetDateTime::now_utc(), tokio::time::Instant::now())
            .await
            .unwrap(),
        "b waited out a released lease"
    );
}

/// Counts `execute` calls; everything else succeeds.
#[derive(Default)]
struct CountingPlatform(Mutex<Vec<String>>);

impl Platform for CountingPlatform {
    fn kind(&self) -> core::PlatformKind {
        core::PlatformKind::Kubernetes
    }
    fn snapshot<'a>(
        &'a self,
        _t: &'a Target,
    ) -> BoxFuture<'a, Result<ClusterSnapshot, AdapterError>> {
        Box::pin(async { Ok(ClusterSnapshot::default()) })
    }
    fn execute<'a>(
        &'a self,
        a: &'a Action,
        t: &'a Target,
        _l: &'a Labels,
    ) -> BoxFuture<'a, Result<String, AdapterError>> {
        self.0
            .lock()
            .unwrap()
            .push(format!("{} {}", a.name(), t.key()));
        Box::pin(async { Ok("done".to_owned()) })
    }
    fn verify<'a>(
        &'a self,
        _a: &'a Action,
        _t: &'a Target,
        _d: Duration,
    ) -> BoxFuture<'a, Result<(), AdapterError>> {
        Box::pin(async { Ok(()) })
    }
    fn record<'a>(&'a self, _r: &'a AuditRecord) -> BoxFuture<'a, Result<(), AdapterError>> {
        Box::pin(async { Ok(()) })
    }
}

#[tokio::test]
async fn two_instances_against_one_lease_exactly_one_acts() {
    use crate::engine::{Engine, History, Metrics};
    use crate::platform::LeaderFlag;
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn StateStore> = Arc::new(crate::local::FileStore::new(dir.path()));
    let platform = Arc::new(CountingPlatform::default());
    let (ca, cb, _) = lease_server();
    let mut engines = Vec::new();
    let mut electors = Vec::new();
    for (client, id) in [(ca, "a"), (cb, "b")] {
        let flag = LeaderFlag::new(false);
        electors.push((
            LeaseElector::new(
                client,
                "organism",
                "auto-healer",
                id,
                Duration::from_secs(15),
            ),
            flag.clone(),
        ));
        engines.push(Engine::new(
            Arc::new(crate::policy::Policy::default_policy()),
            platform.clone(),
            store.clone(),
            Arc::new(flag),
            false,
            Metrics::new(&prometheus::Registry::new()).unwrap(),
            History::new(10),
            None,
        ));
    }
    let now = OffsetDateTime::now_utc();
    let t = tokio::time::Instant::now();
    let [(ea, _), (eb, _)] = &mut electors[..] else {
        unreachable!("two electors")
    };
    let (ra, rb) = tokio::join!(
        ea.try_acquire_or_renew(now, t),
        eb.try_acquire_or_renew(now, t)
    );
    electors[0].1.set(ra.unwrap());
    electors[1].1.set(rb.unwrap());
    let alert = crate::core::AlertFacts {
        labels: labels(&[
            ("alertname", "PodCrashLooping"),
            ("namespace", "organism"),
            ("pod", "heart-abc"),
            ("workload", "heart"),
            ("remediation", "restart-pod"),
        ]),
        starts_at: now,
    };
    let (a, b) = tokio::join!(engines[0].handle(alert.clone()), engines[1].handle(alert));
    let results = [a.result.as_str(), b.result.as_str()];
    assert!(
        results.contains(&"healed") && results.contains(&"skipped"),
        "{results:?}"
    );
    let skipped = if a.result == "skipped" { &a } else { &b };
    assert_eq!(skipped.guard.as_deref(), Some("leader"));
    assert_eq!(
        *platform.0.lock().unwrap(),
        ["delete-pod pod/organism/heart-abc"],
        "exactly one instance acted"
    );
}
