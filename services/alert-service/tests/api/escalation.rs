//! Escalation (two replicas, one message), acknowledged alerts staying quiet, the digest and
//! the report.

use std::time::Duration;

use alertmanager::WebhookMessage;
use http::Method;
use serde_json::{Value, json};
use testbed::HttpSink;
use testbed::fixtures::{alert, webhook};

use crate::helpers::{FAST_DELIVERY, TestApp, db_dir};

fn critical(name: &str) -> WebhookMessage {
    webhook("alert-service")
        .alert(
            alert(name)
                .critical()
                .service("heart")
                .summary(format!("{name} summary"))
                .firing(),
        )
        .build()
}

#[tokio::test]
async fn unacknowledged_critical_alerts_escalate_once_across_two_replicas() {
    let sink = HttpSink::start().await;
    let dir = db_dir();
    let yaml = format!(
        "routes:\n  - channels: [hook]\nchannels:\n  hook:\n    kind: webhook\n    url_env: HOOK_URL\n  pager:\n    kind: webhook\n    url_env: PAGER_URL\nescalation:\n  min_severity: critical\n  check_interval: 200ms\n  tiers:\n    - after: 1s\n      channels: [pager]\n    - after: 3s\n{FAST_DELIVERY}"
    );
    let hook = format!("{}/hook", sink.url());
    let pager = format!("{}/pager", sink.url());
    let env = [("HOOK_URL", hook.as_str()), ("PAGER_URL", pager.as_str())];
    let a = TestApp::spawn(&yaml, &env, dir.path()).await;
    let b = TestApp::spawn(&yaml, &env, dir.path()).await;

    let unacked = critical("Unacked");
    let acked = critical("Acked");
    let mut warning = critical("JustAWarning");
    warning.alerts[0] = warning.alerts[0].clone().with_label("severity", "warning");
    a.post_message(&unacked).await;
    b.post_message(&acked).await;
    a.post_message(&warning).await;
    let fp = acked.alerts[0].fingerprint.to_string();
    let r = b
        .api
        .call(
            Method::POST,
            &b.ack_path(&fp),
            Some(json!({"by": "oncall"})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert!(
        r.body["silence"].is_null(),
        "no Alertmanager configured: a local ack"
    );

    // Tier 1 after 1 s to the pager; tier 2 (no channels listed) after 3 s to the routed channel.
    let ok = testbed::wait_until(Duration::from_secs(10), || async {
        !sink.requests_to("/pager").is_empty()
    })
    .await;
    assert!(ok);
    let ok = testbed::wait_until(Duration::from_secs(10), || async {
        sink.requests_to("/hook")
            .iter()
            .any(|r| r.json()["escalation"]["tier"] == 2)
    })
    .await;
    assert!(ok, "tier 2 never came");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let pages = sink.requests_to("/pager");
    assert_eq!(pages.len(), 1, "one escalation although two replicas check");
    let page = pages[0].json();
    assert_eq!(page["alerts"][0]["alertname"], "Unacked");
    assert!(
        page["title"]
            .as_str()
            .unwrap()
            .starts_with("[ESCALATED tier 1]"),
        "{page}"
    );
    let tier2: Vec<Value> = sink
        .requests_to("/hook")
        .iter()
        .map(|r| r.json())
        .filter(|v| !v["escalation"].is_null())
        .collect();
    assert_eq!(tier2.len(), 1);
    assert_eq!(tier2[0]["alerts"][0]["alertname"], "Unacked");

    // The report.
    let report = a.get("/api/v1/report?window=1h").await.body;
    assert_eq!(report["fired"], 3, "{report}");
    assert_eq!(report["acknowledged"], 1, "{report}");
    assert_eq!(report["escalated"], 1, "{report}");
    assert!(report["mean_time_to_ack_seconds"].as_f64().unwrap() >= 0.0);
    assert_eq!(report["noisiest"].as_array().unwrap().len(), 3);
    assert!(report["healer"].is_null(), "AUTO_HEALER_URL not set");
    let bad = a.get("/api/v1/report?window=forever").await;
    assert_eq!(bad.status, 400);
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn the_digest_is_sent_with_the_healers_actions() {
    let sink = HttpSink::start().await;
    let healer = HttpSink::start().await;
    healer.set_response(
        http::StatusCode::OK,
        "application/json",
        r#"[{"action":"restart-pod","result":"success"},{"action":"restart-pod","result":"success"},{"action":"rollback","result":"refused"}]"#,
    );
    let dir = db_dir();
    let yaml = format!(
        "routes:\n  - channels: [log]\nchannels:\n  log:\n    kind: log\n    path: {}\n  hook:\n    kind: webhook\n    url_env: HOOK_URL\ndigest:\n  interval: 2s\n  channels: [hook]\n{FAST_DELIVERY}",
        dir.path().join("alerts.log").display()
    );
    let hook = format!("{}/hook", sink.url());
    let healer_url = healer.url();
    let app = TestApp::spawn_with(&yaml, &[("HOOK_URL", hook.as_str())], dir.path(), |c| {
        c.auto_healer_url = Some(healer_url.clone())
    })
    .await;
    app.post_message(&critical("DigestMe")).await;
    // The log channel wrote the message.
    let logged = testbed::wait_until(Duration::from_secs(10), || async {
        std::fs::read_to_string(dir.path().join("alerts.log"))
            .is_ok_and(|t| t.contains("[FIRING:1] DigestMe"))
    })
    .await;
    assert!(logged);
    // Within two periods a digest counting the alert arrives.
    let ok = testbed::wait_until(Duration::from_secs(10), || async {
        sink.requests_to("/hook")
            .iter()
            .any(|r| r.json()["report"]["fired"] == 1)
    })
    .await;
    assert!(
        ok,
        "{:?}",
        sink.requests_to("/hook")
            .iter()
            .map(|r| r.body_text())
            .collect::<Vec<_>>()
    );
    let digest = sink
        .requests_to("/hook")
        .into_iter()
        .map(|r| r.json())
        .find(|v| v["report"]["fired"] == 1)
        .unwrap();
    assert_eq!(digest["type"], "digest");
    assert_eq!(digest["report"]["healer"]["available"], true);
    assert_eq!(digest["report"]["healer"]["total"], 3.0);
    assert_eq!(digest["report"]["noisiest"][0]["alertname"], "DigestMe");
    assert!(!healer.requests_to("/api/v1/actions").is_empty());
    app.stop().await;
}
