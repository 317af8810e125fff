//! Intake and history through the router: validation with reasons, auth, size limit, the
//! bounded queue, leadership, and the decisions that follow.

mod support;

use std::sync::Arc;
use std::time::Duration;

use alertmanager::{Alert, WebhookMessage};
use auto_healer::core::Target;
use auto_healer::local::FileStore;
use auto_healer::platform::LeaderFlag;
use auto_healer::{Adapters, AppState, Config, app};
use axum::body::Body;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use service_kit::Context;
use support::recording::Recording;
use tower::ServiceExt;

struct TestApp {
    router: axum::Router,
    platform: Recording,
    leader: LeaderFlag,
    _dir: tempfile::TempDir,
    _ctx: Context,
}

fn test_app(tweak: impl FnOnce(&mut Config)) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let ctx = Context::for_tests(auto_healer::SERVICE);
    let mut config = Config {
        state_dir: dir.path().to_owned(),
        token: Some(TOKEN.to_owned().into()),
        ..Config::default()
    };
    tweak(&mut config);
    let platform = Recording::default();
    let leader = LeaderFlag::new(true);
    let state = AppState::with_adapters(
        &ctx,
        config,
        Adapters {
            lease_task: None,
            platform: Arc::new(platform.clone()),
            store: Arc::new(FileStore::new(dir.path())),
            leader: Arc::new(leader.clone()),
        },
    )
    .unwrap();
    TestApp {
        router: app(state),
        platform,
        leader,
        _dir: dir,
        _ctx: ctx,
    }
}

async fn send(app: &TestApp, req: Request<Body>) -> (StatusCode, Value) {
    let resp = app.router.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
    (status, body)
}

/// The webhook token of [`test_app`] unless a test sets another.
const TOKEN: &str = "test-healer-token";

fn post(body: impl Into<Body>) -> Request<Body> {
    Request::post("/webhook/alertmanager")
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(body.into())
        .unwrap()
}

fn crashing(pod: &str, namespace: &str) -> Alert {
    Alert::firing([
        ("alertname", "PodCrashLooping"),
        ("namespace", namespace),
        ("pod", pod),
        ("workload", "heart"),
        ("workload_kind", "Deployment"),
        ("remediation", "restart-pod"),
        ("severity", "warning"),
    ])
}

fn payload(alerts: Vec<Alert>) -> String {
    serde_json::to_string(
        &WebhookMessage::builder("auto-healer")
            .alerts(alerts)
            .build(),
    )
    .unwrap()
}

async fn wait_for(cond: impl Fn() -> bool) -> bool {
    for _ in 0..100 {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

#[tokio::test]
async fn a_valid_alert_is_accepted_fast_then_acted_on_and_listed() {
    let app = test_app(|_| {});
    let (status, body) = send(&app, post(payload(vec![crashing("heart-abc", "organism")]))).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["accepted"], 1);
    assert!(
        wait_for(|| app.platform.executed().len() == 1).await,
        "no action issued"
    );
    let ex = &app.platform.executed()[0];
    assert_eq!(ex.action, "delete-pod");
    assert_eq!(
        ex.target,
        Target::Pod {
            namespace: "organism".into(),
            name: "heart-abc".into()
        }
    );
    assert!(wait_for(|| app.platform.records().iter().any(|r| r.result == "healed")).await);

    // A second alert in kube-system is skipped by the namespace guard, and the history is
    // newest first.
    let (status, _) = send(&app, post(payload(vec![crashing("dns-1", "kube-system")]))).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert!(wait_for(|| app.platform.records().iter().any(|r| r.result == "skipped")).await);
    let (status, body) = send(
        &app,
        Request::get("/api/v1/actions?limit=10")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let actions = body["actions"].as_array().unwrap();
    let results: Vec<&str> = actions
        .iter()
        .map(|a| a["result"].as_str().unwrap())
        .collect();
    assert_eq!(results, ["skipped", "healed", "acted"], "{body}");
    assert_eq!(actions[0]["guard"], "namespace");
    assert!(
        actions[0]["message"]
            .as_str()
            .unwrap()
            .contains("kube-system is denied")
    );
    assert_eq!(
        app.platform.executed().len(),
        1,
        "the skipped alert did not act"
    );
}

#[tokio::test]
async fn bad_payloads_get_400_with_the_reason() {
    let app = test_app(|_| {});
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
        let (status, resp) = send(&app, post(body.clone())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body} -> {resp}");
        assert_eq!(resp["error"]["code"], "invalid_webhook");
        assert!(
            resp["error"]["message"].as_str().unwrap().contains(reason),
            "{resp}"
        );
        if let Some(f) = field {
            assert_eq!(resp["error"]["field"], f, "{resp}");
        }
    }
    assert!(app.platform.executed().is_empty());
}

#[tokio::test]
async fn a_huge_body_gets_413_json() {
    let app = test_app(|c| c.max_body = 64 * 1024);
    let huge = format!(
        "{{\"version\":\"4\",\"pad\":\"{}\"}}",
        "x".repeat(200 * 1024)
    );
    let (status, body) = send(&app, post(huge)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(body["error"]["code"], "payload_too_large");
}

#[tokio::test]
async fn the_token_is_required_when_set() {
    let app = test_app(|c| c.token = Some("s3cret".to_owned().into()));
    let (status, body) = send(&app, post(payload(vec![crashing("p", "organism")]))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"]["code"], "unauthorized");
    let mut req = post(payload(vec![crashing("p", "organism")]));
    req.headers_mut()
        .insert("authorization", "Bearer s3cret".parse().unwrap());
    let (status, _) = send(&app, req).await;
    assert_eq!(status, StatusCode::ACCEPTED);
}

#[tokio::test]
async fn the_webhook_is_closed_without_a_token_and_takes_json_only() {
    let app = test_app(|c| c.token = None);
    let (status, body) = send(&app, post(payload(vec![crashing("p", "organism")]))).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"]["code"], "not_configured");
    let app = test_app(|_| {});
    let mut req = post(payload(vec![crashing("p", "organism")]));
    req.headers_mut()
        .insert("content-type", "text/plain".parse().unwrap());
    assert_eq!(send(&app, req).await.0, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let mut req = post(payload(vec![crashing("p", "organism")]));
    req.headers_mut()
        .insert("origin", "http://evil.example".parse().unwrap());
    assert_eq!(send(&app, req).await.0, StatusCode::FORBIDDEN);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(app.platform.executed().is_empty(), "nothing acted");
}

#[tokio::test]
async fn a_full_queue_answers_503_so_alertmanager_retries() {
    let app = test_app(|c| c.queue_capacity = 3);
    let alerts: Vec<Alert> = (0..10)
        .map(|i| crashing(&format!("p{i}"), "organism"))
        .collect();
    let (status, body) = send(&app, post(payload(alerts))).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("queue is full")
    );
    assert!(app.platform.executed().is_empty(), "all or nothing");
}

#[tokio::test]
async fn a_non_leader_refuses_with_503() {
    let app = test_app(|_| {});
    app.leader.set(false);
    let (status, body) = send(&app, post(payload(vec![crashing("p", "organism")]))).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not the leader")
    );
}

#[tokio::test]
async fn resolved_alerts_are_ignored() {
    let app = test_app(|_| {});
    let msg = WebhookMessage::builder("auto-healer")
        .alert(crashing("p", "organism").resolved_now())
        .build();
    let (status, body) = send(&app, post(serde_json::to_string(&msg).unwrap())).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(body["accepted"], 0);
    assert_eq!(body["ignored_resolved"], 1);
}

#[tokio::test]
async fn history_limit_is_validated() {
    let app = test_app(|_| {});
    for q in ["limit=0", "limit=abc", "limit=100000", "bogus=1"] {
        let (status, body) = send(
            &app,
            Request::get(format!("/api/v1/actions?{q}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{q}: {body}");
    }
}

#[tokio::test]
async fn failed_verification_escalates_step_by_step_then_stops() {
    let app = test_app(|_| {});
    *app.platform.fail_verify.lock().unwrap() = true;
    let (status, _) = send(&app, post(payload(vec![crashing("heart-abc", "organism")]))).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert!(
        wait_for(|| app
            .platform
            .records()
            .iter()
            .any(|r| r.result == "escalated"))
        .await
    );
    let actions: Vec<String> = app
        .platform
        .executed()
        .iter()
        .map(|e| e.action.clone())
        .collect();
    assert_eq!(actions, ["delete-pod", "rollout-restart", "rollback"]);
    let last = app.platform.records().last().cloned().unwrap();
    assert_eq!(last.result, "escalated");
    assert!(
        last.message.contains("no ALERTMANAGER_URL"),
        "{}",
        last.message
    );
}

#[tokio::test]
async fn duplicates_are_handled_once_and_non_actionable_alerts_take_no_queue_room() {
    // A queue of one: 300 alerts no rule acts on, the same actionable alert three times.
    let app = test_app(|c| c.queue_capacity = 1);
    let mut alerts: Vec<Alert> = (0..300)
        .map(|i| {
            Alert::firing([
                ("alertname", format!("Noise{i}")),
                ("severity", "info".into()),
            ])
        })
        .collect();
    for _ in 0..3 {
        alerts.push(crashing("heart-abc", "organism"));
    }
    let (status, body) = send(&app, post(payload(alerts))).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["accepted"], 1, "{body}");
    assert_eq!(body["ignored_duplicate"], 2, "{body}");
    assert_eq!(body["ignored_not_actionable"], 300, "{body}");
    assert!(wait_for(|| app.platform.executed().len() == 1).await);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(app.platform.executed().len(), 1, "handled once");
}

#[tokio::test]
async fn starts_at_in_the_future_or_far_past_is_clamped_and_said() {
    let app = test_app(|_| {});
    let now = time::OffsetDateTime::now_utc();
    let alerts = vec![
        crashing("a", "organism").with_starts_at(now + time::Duration::days(365)),
        crashing("b", "organism").with_starts_at(now - time::Duration::days(400)),
        crashing("c", "organism").with_starts_at(now - time::Duration::minutes(5)),
    ];
    let (status, body) = send(&app, post(payload(alerts))).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["starts_at_clamped"], 2, "{body}");
    let clamp = auto_healer::routes::clamp_starts_at;
    assert_eq!(clamp(now + time::Duration::days(1), now), now);
    assert_eq!(
        clamp(now - time::Duration::days(30), now),
        now - auto_healer::routes::MAX_ALERT_AGE
    );
    let recent = now - time::Duration::minutes(5);
    assert_eq!(clamp(recent, now), recent);
}

#[tokio::test]
async fn a_stop_is_told_once_and_later_alerts_are_left_alone() {
    let app = test_app(|c| c.policy.guards.cooldown = std::time::Duration::ZERO);
    *app.platform.fail_verify.lock().unwrap() = true;
    let (status, _) = send(&app, post(payload(vec![crashing("heart-abc", "organism")]))).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert!(
        wait_for(|| app
            .platform
            .records()
            .iter()
            .any(|r| r.result == "escalated"))
        .await
    );
    // Alertmanager repeats the alert: no action, no second escalation, the guard named.
    for _ in 0..3 {
        let (status, _) = send(&app, post(payload(vec![crashing("heart-abc", "organism")]))).await;
        assert_eq!(status, StatusCode::ACCEPTED);
    }
    assert!(
        wait_for(|| app
            .platform
            .records()
            .iter()
            .filter(|r| r.result == "skipped")
            .count()
            == 3)
        .await
    );
    let records = app.platform.records();
    assert_eq!(
        records.iter().filter(|r| r.result == "escalated").count(),
        1
    );
    for r in records.iter().filter(|r| r.result == "skipped") {
        assert!(r.message.contains("left alone until"), "{}", r.message);
        assert!(r.guard.is_some(), "{r:?}");
    }
    assert_eq!(
        app.platform.executed().len(),
        3,
        "delete, restart, rollback"
    );
}
