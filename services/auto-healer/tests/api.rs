//! Intake and history through the router: validation with reasons, auth, size limit, the
//! bounded queue, leadership, and the decisions that follow.
//!
//! Every test runs on paused time: the engine works the queue on the test's own runtime, and a
//! wait for what it did ([`Recording::wait_for`]) can only run out once nothing is left to run,
//! never because the machine is slow.

mod support;

use std::sync::Arc;

use alertmanager::{Alert, WebhookMessage};
use auto_healer::core::Target;
use http::{Request, StatusCode};
use serde_json::Value;
use support::healer::{TestHealer, WEBHOOK, crashing, payload, settle};
use support::recording::Recording;
use testbed::Reply;

/// A healer over a recording platform, with the default configuration changed by `tweak`.
fn healer(tweak: impl FnOnce(&mut auto_healer::Config)) -> (TestHealer, Recording) {
    let platform = Recording::default();
    let healer = TestHealer::new(Arc::new(platform.clone()), tweak);
    (healer, platform)
}

/// `reply` has `status`, and nothing was acted on once everything queued could run.
async fn assert_refused(reply: &Reply, status: StatusCode, platform: &Recording) {
    assert_eq!(reply.status, status, "{}", reply.text);
    settle().await;
    assert!(platform.executed().is_empty(), "nothing acted");
}

/// A webhook POST of a valid message with `header` set to `value` (the token is sent too).
fn post_with_header(header: &'static str, value: &str) -> Request<axum::body::Body> {
    let mut request = Request::post(WEBHOOK)
        .header("content-type", "application/json")
        .body(payload(vec![crashing("p", "organism")]).into())
        .unwrap();
    request.headers_mut().insert(header, value.parse().unwrap());
    request
}

#[tokio::test(start_paused = true)]
async fn a_valid_alert_is_accepted_then_acted_on_and_verified() {
    let (healer, platform) = healer(|_| {});
    let reply = healer
        .post_alerts(vec![crashing("heart-abc", "organism")])
        .await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.text);
    assert_eq!(reply.body["accepted"], 1);
    platform
        .wait_for("healed", |p| p.count("healed") == 1)
        .await;
    let executed = platform.executed();
    assert_eq!(executed.len(), 1);
    assert_eq!(executed[0].action, "delete-pod");
    assert_eq!(
        executed[0].target,
        Target::Pod {
            namespace: "organism".into(),
            name: "heart-abc".into()
        }
    );
}

#[tokio::test(start_paused = true)]
async fn an_alert_in_a_denied_namespace_is_skipped_with_the_guard_named() {
    let (healer, platform) = healer(|_| {});
    let reply = healer
        .post_alerts(vec![crashing("dns-1", "kube-system")])
        .await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.text);
    platform
        .wait_for("skipped", |p| p.count("skipped") == 1)
        .await;
    let record = &platform.records()[0];
    assert_eq!(record.guard.as_deref(), Some("namespace"));
    assert!(
        record.message.contains("kube-system is denied"),
        "{}",
        record.message
    );
    assert!(
        platform.executed().is_empty(),
        "the skipped alert did not act"
    );
}

#[tokio::test(start_paused = true)]
async fn the_history_lists_decisions_newest_first() {
    let (healer, platform) = healer(|_| {});
    healer
        .post_alerts(vec![crashing("heart-abc", "organism")])
        .await;
    platform
        .wait_for("healed", |p| p.count("healed") == 1)
        .await;
    healer
        .post_alerts(vec![crashing("dns-1", "kube-system")])
        .await;
    platform
        .wait_for("skipped", |p| p.count("skipped") == 1)
        .await;
    let reply = healer.client.get("/api/v1/actions?limit=10").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let results: Vec<&str> = reply.body["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["result"].as_str().unwrap())
        .collect();
    assert_eq!(results, ["skipped", "healed", "acted"], "{}", reply.text);
    assert_eq!(reply.body["actions"][0]["guard"], "namespace");
}

/// Each row is one kind of bad payload: 400 `invalid_webhook`, the reason, and the field.
#[tokio::test(start_paused = true)]
async fn bad_payloads_get_400_with_the_reason() {
    let (healer, platform) = healer(|_| {});
    let good: Value = serde_json::from_str(&payload(vec![crashing("p", "organism")])).unwrap();
    let mut wrong_version = good.clone();
    wrong_version["version"] = "3".into();
    let mut no_alertname = good.clone();
    no_alertname["alerts"][0]["labels"]
        .as_object_mut()
        .unwrap()
        .remove("alertname");
    let mut no_labels = good.clone();
    no_labels["alerts"][0]
        .as_object_mut()
        .unwrap()
        .remove("labels");
    let cases: Vec<(String, &str, Option<&str>)> = vec![
        ("{\"version\": \"4\",".into(), "malformed JSON", None),
        (
            wrong_version.to_string(),
            "unsupported webhook version \"3\"",
            Some("version"),
        ),
        (
            no_alertname.to_string(),
            "missing alertname label",
            Some("alerts[0].labels.alertname"),
        ),
        (
            no_labels.to_string(),
            "missing field",
            Some("alerts[0].labels"),
        ),
        ("{\"version\":\"4\",\"alerts\":[]}".into(), "", None),
    ];
    for (body, reason, field) in cases {
        let reply = healer.post_raw(body.clone()).await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{body} -> {}",
            reply.text
        );
        assert_eq!(reply.error_code(), Some("invalid_webhook"), "{body}");
        assert!(
            reply.body["error"]["message"]
                .as_str()
                .unwrap()
                .contains(reason),
            "{body} -> {}",
            reply.text
        );
        if let Some(f) = field {
            assert_eq!(reply.body["error"]["field"], f, "{body} -> {}", reply.text);
        }
    }
    settle().await;
    assert!(platform.executed().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_huge_body_gets_413_json() {
    let (healer, _platform) = healer(|c| c.max_body = 64 * 1024);
    let huge = format!(
        "{{\"version\":\"4\",\"pad\":\"{}\"}}",
        "x".repeat(200 * 1024)
    );
    let reply = healer.post_raw(huge).await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(reply.error_code(), Some("payload_too_large"));
}

#[tokio::test(start_paused = true)]
async fn a_wrong_token_gets_401() {
    let (healer, platform) = healer(|c| c.token = Some("s3cret".to_owned().into()));
    let reply = healer.post_alerts(vec![crashing("p", "organism")]).await;
    assert_eq!(reply.error_code(), Some("unauthorized"));
    assert_refused(&reply, StatusCode::UNAUTHORIZED, &platform).await;
}

#[tokio::test(start_paused = true)]
async fn without_a_configured_token_the_webhook_is_closed() {
    let (healer, platform) = healer(|c| c.token = None);
    let reply = healer.post_alerts(vec![crashing("p", "organism")]).await;
    assert_eq!(reply.error_code(), Some("not_configured"));
    assert_refused(&reply, StatusCode::FORBIDDEN, &platform).await;
}

#[tokio::test(start_paused = true)]
async fn a_body_that_is_not_json_gets_415() {
    let (healer, platform) = healer(|_| {});
    let reply = healer
        .client
        .send(post_with_header("content-type", "text/plain"))
        .await;
    assert_refused(&reply, StatusCode::UNSUPPORTED_MEDIA_TYPE, &platform).await;
}

#[tokio::test(start_paused = true)]
async fn a_cross_origin_post_gets_403() {
    let (healer, platform) = healer(|_| {});
    let reply = healer
        .client
        .send(post_with_header("origin", "http://evil.example"))
        .await;
    assert_refused(&reply, StatusCode::FORBIDDEN, &platform).await;
}

#[tokio::test(start_paused = true)]
async fn a_full_queue_answers_503_so_alertmanager_retries() {
    let (healer, platform) = healer(|c| c.queue_capacity = 3);
    let alerts: Vec<Alert> = (0..10)
        .map(|i| crashing(&format!("p{i}"), "organism"))
        .collect();
    let reply = healer.post_alerts(alerts).await;
    assert!(
        reply.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("queue is full"),
        "{}",
        reply.text
    );
    // All or nothing: not even the first three were queued.
    assert_refused(&reply, StatusCode::SERVICE_UNAVAILABLE, &platform).await;
}

#[tokio::test(start_paused = true)]
async fn a_non_leader_refuses_with_503() {
    let (healer, _platform) = healer(|_| {});
    healer.leader.set(false);
    let reply = healer.post_alerts(vec![crashing("p", "organism")]).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        reply.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not the leader"),
        "{}",
        reply.text
    );
}

#[tokio::test(start_paused = true)]
async fn resolved_alerts_are_ignored() {
    let (healer, _platform) = healer(|_| {});
    let msg = WebhookMessage::builder("auto-healer")
        .alert(crashing("p", "organism").resolved_now())
        .build();
    let reply = healer.post_raw(serde_json::to_string(&msg).unwrap()).await;
    assert_eq!(reply.status, StatusCode::ACCEPTED);
    assert_eq!(reply.body["accepted"], 0);
    assert_eq!(reply.body["ignored_resolved"], 1);
}

/// Each row is one bad query of the history: 400.
#[tokio::test(start_paused = true)]
async fn history_limit_is_validated() {
    let (healer, _platform) = healer(|_| {});
    for q in ["limit=0", "limit=abc", "limit=100000", "bogus=1"] {
        let reply = healer.client.get(&format!("/api/v1/actions?{q}")).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{q}: {}", reply.text);
    }
}

#[tokio::test(start_paused = true)]
async fn failed_verification_escalates_step_by_step_then_stops() {
    let (healer, platform) = healer(|_| {});
    *platform.fail_verify.lock().unwrap() = true;
    let reply = healer
        .post_alerts(vec![crashing("heart-abc", "organism")])
        .await;
    assert_eq!(reply.status, StatusCode::ACCEPTED);
    let escalated = platform.wait_for_escalation().await;
    assert_eq!(
        platform.actions(),
        ["delete-pod", "rollout-restart", "rollback"]
    );
    assert!(
        escalated.message.contains("no ALERTMANAGER_URL"),
        "{}",
        escalated.message
    );
}

#[tokio::test(start_paused = true)]
async fn the_same_alert_twice_in_one_message_is_handled_once() {
    let (healer, platform) = healer(|_| {});
    let reply = healer
        .post_alerts(vec![crashing("heart-abc", "organism"); 3])
        .await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.text);
    assert_eq!(reply.body["accepted"], 1, "{}", reply.text);
    assert_eq!(reply.body["ignored_duplicate"], 2, "{}", reply.text);
    platform
        .wait_for("healed", |p| p.count("healed") == 1)
        .await;
    settle().await;
    assert_eq!(platform.executed().len(), 1, "handled once");
}

#[tokio::test(start_paused = true)]
async fn alerts_no_rule_acts_on_take_no_queue_room() {
    // A queue of one: 300 alerts no rule acts on, and one actionable alert.
    let (healer, _platform) = healer(|c| c.queue_capacity = 1);
    let mut alerts: Vec<Alert> = (0..300).map(noise).collect();
    alerts.push(crashing("heart-abc", "organism"));
    let reply = healer.post_alerts(alerts).await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.text);
    assert_eq!(reply.body["accepted"], 1, "{}", reply.text);
    assert_eq!(reply.body["ignored_not_actionable"], 300, "{}", reply.text);
}

#[tokio::test(start_paused = true)]
async fn alerts_left_out_at_intake_are_counted_by_reason() {
    let (healer, _platform) = healer(|_| {});
    let mut alerts: Vec<Alert> = (0..2).map(noise).collect();
    alerts.extend(vec![crashing("heart-abc", "organism"); 4]);
    healer.post_alerts(alerts).await;
    let metrics = healer.client.metrics().await;
    let ignored = "auto_healer_alerts_ignored_total";
    assert_eq!(
        metrics.value(ignored, &[("reason", "duplicate")]),
        Some(3.0)
    );
    assert_eq!(
        metrics.value(ignored, &[("reason", "not-actionable")]),
        Some(2.0)
    );
    assert_eq!(
        metrics.value("auto_healer_skips_total", &[("guard", "no-rule")]),
        Some(2.0)
    );
}

#[tokio::test(start_paused = true)]
async fn starts_at_in_the_future_or_far_past_is_clamped_and_counted() {
    let (healer, _platform) = healer(|_| {});
    let now = time::OffsetDateTime::now_utc();
    let alerts = vec![
        crashing("a", "organism").with_starts_at(now + time::Duration::days(365)),
        crashing("b", "organism").with_starts_at(now - time::Duration::days(400)),
        crashing("c", "organism").with_starts_at(now - time::Duration::minutes(5)),
    ];
    let reply = healer.post_alerts(alerts).await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.text);
    assert_eq!(reply.body["starts_at_clamped"], 2, "{}", reply.text);
}

#[tokio::test(start_paused = true)]
async fn a_stop_is_told_once_and_later_alerts_are_left_alone() {
    let (healer, platform) = healer(|c| c.policy.guards.cooldown = std::time::Duration::ZERO);
    *platform.fail_verify.lock().unwrap() = true;
    let reply = healer
        .post_alerts(vec![crashing("heart-abc", "organism")])
        .await;
    assert_eq!(reply.status, StatusCode::ACCEPTED);
    platform.wait_for_escalation().await;
    // Alertmanager repeats the alert: no action, no second escalation, the guard named.
    for _ in 0..3 {
        let reply = healer
            .post_alerts(vec![crashing("heart-abc", "organism")])
            .await;
        assert_eq!(reply.status, StatusCode::ACCEPTED);
    }
    platform
        .wait_for("three skips", |p| p.count("skipped") == 3)
        .await;
    assert_eq!(platform.count("escalated"), 1);
    for r in platform.records().iter().filter(|r| r.result == "skipped") {
        assert!(r.message.contains("left alone until"), "{}", r.message);
        assert!(r.guard.is_some(), "{r:?}");
    }
    assert_eq!(platform.executed().len(), 3, "delete, restart, rollback");
}

/// An alert no rule of the default policy acts on.
fn noise(i: usize) -> Alert {
    Alert::firing([
        ("alertname", format!("Noise{i}")),
        ("severity", "info".into()),
    ])
}
