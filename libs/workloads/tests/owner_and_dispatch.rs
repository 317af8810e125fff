//! Which workload owns a pod, and the kind → typed API dispatch, against the scripted API
//! server of `testbed::kube_mock`.

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Patch, PatchParams};
use serde_json::{Value, json};
use testbed::kube_mock::{call, get, scripted};
use workloads::{Owner, WorkloadKind};

fn pod(labels: Value, owners: Value) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": "p", "namespace": "organism", "labels": labels, "ownerReferences": owners}
    }))
    .unwrap()
}

fn owner(kind: &str, name: &str, controller: bool) -> Value {
    json!({"apiVersion": "apps/v1", "kind": kind, "name": name, "uid": "u", "controller": controller})
}

fn named(kind: &str, name: &str) -> Option<Owner> {
    Some(Owner {
        kind: kind.to_owned(),
        name: name.to_owned(),
    })
}

#[test]
fn a_replica_sets_pod_belongs_to_the_deployment_named_without_the_template_hash() {
    let p = pod(
        json!({"pod-template-hash": "7d9c8b6f5"}),
        json!([owner("ReplicaSet", "api-gateway-7d9c8b6f5", true)]),
    );
    assert_eq!(
        workloads::owner_from_metadata(&p),
        named("Deployment", "api-gateway")
    );
}

#[test]
fn without_the_template_hash_label_the_last_suffix_is_cut() {
    let p = pod(json!({}), json!([owner("ReplicaSet", "heart-abc12", true)]));
    assert_eq!(
        workloads::owner_from_metadata(&p),
        named("Deployment", "heart")
    );
}

#[test]
fn other_controllers_own_their_pods_directly() {
    let p = pod(
        json!({}),
        json!([
            owner("StatefulSet", "db", false),
            owner("Job", "migrate", true)
        ]),
    );
    assert_eq!(workloads::owner_from_metadata(&p), named("Job", "migrate"));
}

#[test]
fn a_pod_without_a_controller_has_no_owner() {
    let p = pod(json!({}), json!([owner("ReplicaSet", "heart-1", false)]));
    assert_eq!(workloads::owner_from_metadata(&p), None);
}

#[tokio::test]
async fn through_the_api_a_replica_sets_owner_is_read() {
    let (client, script) = scripted(vec![get(
        "/apis/apps/v1/namespaces/organism/replicasets/heart-1",
        json!({"metadata": {"name": "heart-1", "ownerReferences": [
            {"apiVersion": "apps/v1", "kind": "Deployment", "name": "heart", "uid": "d"}]}}),
    )]);
    let p = pod(json!({}), json!([owner("ReplicaSet", "heart-1", false)]));
    let found = workloads::owner_through_api(client, &p).await.unwrap();
    assert_eq!(found, Some((WorkloadKind::Deployment, "heart".to_owned())));
    script.done().await;
}

#[tokio::test]
async fn through_the_api_a_pod_of_a_job_has_no_workload_to_act_on() {
    let (client, script) = scripted(vec![]);
    let p = pod(json!({}), json!([owner("Job", "migrate", true)]));
    assert_eq!(
        workloads::owner_through_api(client, &p).await.unwrap(),
        None
    );
    script.done().await;
}

#[tokio::test]
async fn each_kind_is_read_through_its_own_api() {
    let sts = json!({"metadata": {"name": "db", "generation": 2},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "db"}}, "template": {}, "serviceName": "db"},
        "status": {"observedGeneration": 2, "replicas": 2, "readyReplicas": 2, "updatedReplicas": 2}});
    let (client, script) = scripted(vec![get(
        "/apis/apps/v1/namespaces/organism/statefulsets/db",
        sts,
    )]);
    let w = workloads::get(client, "organism", WorkloadKind::StatefulSet, "db")
        .await
        .unwrap();
    assert!(w.rolled_out);
    assert_eq!(workloads::selector_string(&w.selector), "app=db");
    script.done().await;
}

#[tokio::test]
async fn a_deployment_short_of_available_replicas_is_not_rolled_out() {
    let d = json!({"metadata": {"name": "heart", "generation": 4},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "heart"}}, "template": {}},
        "status": {"observedGeneration": 4, "replicas": 3, "updatedReplicas": 3, "availableReplicas": 2}});
    let (client, script) = scripted(vec![get(
        "/apis/apps/v1/namespaces/organism/deployments/heart",
        d,
    )]);
    let w = workloads::get(client, "organism", WorkloadKind::Deployment, "heart")
        .await
        .unwrap();
    assert!(!w.rolled_out);
    script.done().await;
}

#[tokio::test]
async fn a_patch_goes_to_the_kinds_path_with_the_patch_type() {
    let (client, script) = scripted(vec![
        call(
            "PATCH",
            "/apis/apps/v1/namespaces/organism/daemonsets/agent",
            json!({"metadata": {"name": "agent"}, "spec": {"selector": {}, "template": {}}}),
        )
        .content_type("application/merge-patch+json")
        .body(|b| assert_eq!(b, &json!({"spec": {"paused": true}}))),
    ]);
    let patch = json!({"spec": {"paused": true}});
    workloads::patch(
        client,
        "organism",
        WorkloadKind::DaemonSet,
        "agent",
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await
    .unwrap();
    script.done().await;
}
