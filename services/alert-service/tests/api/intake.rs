//! Intake: bad input gets a clear 4xx, good input a 202, a re-delivered webhook one notification.

use std::time::Duration;

use alertmanager::fixtures;
use serde_json::Value;
use testbed::HttpSink;

use crate::helpers::{FAST_DELIVERY, TestApp, db_dir};

fn webhook_config(sink: &HttpSink) -> (String, Vec<(&'static str, String)>) {
    let yaml = format!(
        "routes:\n  - channels: [hook]\nchannels:\n  hook:\n    kind: webhook\n    url_env: HOOK_URL\n{FAST_DELIVERY}"
    );
    (yaml, vec![("HOOK_URL", format!("{}/hook", sink.url()))])
}

/// A webhook app over an HTTP sink, with its database directory.
async fn webhook_app() -> (HttpSink, tempfile::TempDir, TestApp) {
    let sink = HttpSink::start().await;
    let dir = db_dir();
    let (yaml, env) = webhook_config(&sink);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let app = TestApp::spawn(&yaml, &env, dir.path()).await;
    (sink, dir, app)
}

/// The Alertmanager 0.25 fixture as JSON, to damage.
fn captured_webhook() -> Value {
    serde_json::from_str(fixtures::ALERTMANAGER_0_25_WEBHOOK).unwrap()
}

#[tokio::test]
async fn malformed_json_is_a_400_naming_line_and_column() {
    let (_sink, _dir, app) = webhook_app().await;
    let r = app.post_webhook("{\"version\": \"4\",\n oops}").await;
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "bad_request");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("line 2 column"),
        "{body}"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_missing_field_is_a_400_naming_it() {
    let (_sink, _dir, app) = webhook_app().await;
    let mut v = captured_webhook();
    v["alerts"][0]
        .as_object_mut()
        .unwrap()
        .remove("fingerprint");
    let r = app.post_webhook(serde_json::to_vec(&v).unwrap()).await;
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["field"], "alerts[0].fingerprint", "{body}");
    app.stop().await;
}

#[tokio::test]
async fn a_wrong_version_is_a_400_naming_the_version() {
    let (_sink, _dir, app) = webhook_app().await;
    let mut v = captured_webhook();
    v["version"] = "3".into();
    let r = app.post_webhook(serde_json::to_vec(&v).unwrap()).await;
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["field"], "version", "{body}");
    app.stop().await;
}

#[tokio::test]
async fn an_empty_alert_list_is_a_400() {
    let (_sink, _dir, app) = webhook_app().await;
    let mut v = captured_webhook();
    v["alerts"] = Value::Array(vec![]);
    let r = app.post_webhook(serde_json::to_vec(&v).unwrap()).await;
    assert_eq!(r.status(), 400);
    app.stop().await;
}

#[tokio::test]
async fn a_huge_body_is_a_413_with_a_json_reason() {
    let (_sink, _dir, app) = webhook_app().await;
    let huge = vec![b' '; 2 * 1024 * 1024];
    let r = app.post_webhook(huge).await;
    assert_eq!(r.status(), 413);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "payload_too_large", "{body}");
    app.stop().await;
}

#[tokio::test]
async fn after_bad_input_the_service_keeps_serving_and_sent_nothing_for_it() {
    let (sink, _dir, app) = webhook_app().await;
    let r = app.post_webhook("{\"version\": \"4\",\n oops}").await;
    assert_eq!(r.status(), 400);
    let r = app
        .post_message(&fixtures::pod_crash_looping("alert-service"))
        .await;
    assert_eq!(r["notifications"][0]["result"], "queued");
    sink.wait_for_requests(1, Duration::from_secs(10)).await;
    assert_eq!(sink.requests().len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn bearer_token_is_required_when_configured() {
    let sink = HttpSink::start().await;
    let dir = db_dir();
    let (yaml, env) = webhook_config(&sink);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let app = TestApp::spawn_with(&yaml, &env, dir.path(), |c| {
        c.token = Some("s3cret".to_owned().into())
    })
    .await;
    let body = serde_json::to_vec(&fixtures::pod_crash_looping("alert-service")).unwrap();
    let r = app
        .client
        .post(format!("{}/webhook/alertmanager", app.url))
        .header("content-type", "application/json")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = app
        .client
        .post(format!("{}/webhook/alertmanager", app.url))
        .bearer_auth("wrong")
        .header("content-type", "application/json")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = app
        .client
        .post(format!("{}/webhook/alertmanager", app.url))
        .bearer_auth("s3cret")
        .header("content-type", "text/plain")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415, "the webhook takes JSON only");
    let r = app
        .client
        .post(format!("{}/webhook/alertmanager", app.url))
        .bearer_auth("s3cret")
        .header("content-type", "application/json")
        .header("origin", "http://evil.example")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "cross-site");
    let r = app
        .client
        .post(format!("{}/webhook/alertmanager", app.url))
        .bearer_auth("s3cret")
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    app.stop().await;
}

#[tokio::test]
async fn the_webhook_is_closed_without_a_token() {
    let sink = HttpSink::start().await;
    let dir = db_dir();
    let (yaml, env) = webhook_config(&sink);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let app = TestApp::spawn_with(&yaml, &env, dir.path(), |c| c.token = None).await;
    let body = serde_json::to_vec(&fixtures::pod_crash_looping("alert-service")).unwrap();
    let r = app
        .client
        .post(format!("{}/webhook/alertmanager", app.url))
        .bearer_auth("anything")
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "not_configured");
    assert_eq!(app.outbox().await["rows"].as_array().unwrap().len(), 0);
    app.stop().await;
}

#[tokio::test]
async fn labels_alertmanager_would_reject_are_refused_at_intake() {
    let sink = HttpSink::start().await;
    let dir = db_dir();
    let (yaml, env) = webhook_config(&sink);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let app = TestApp::spawn(&yaml, &env, dir.path()).await;
    let mut msg = fixtures::pod_crash_looping("alert-service");
    msg.alerts[0] = msg.alerts[0].clone().with_label("bad-name", "x");
    let r = app.post_webhook(serde_json::to_vec(&msg).unwrap()).await;
    assert_eq!(r.status(), 422);
    let v: serde_json::Value = r.json().await.unwrap();
    assert!(
        v["error"]["message"].as_str().unwrap().contains("bad-name"),
        "{v}"
    );
    assert_eq!(app.outbox().await["rows"].as_array().unwrap().len(), 0);
    app.stop().await;
}

#[tokio::test]
async fn a_redelivered_webhook_is_sent_once_and_resolution_separately() {
    let sink = HttpSink::start().await;
    let dir = db_dir();
    let (yaml, env) = webhook_config(&sink);
    let yaml = yaml.replace("dedup_window: 1s", "dedup_window: 10m");
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let app = TestApp::spawn(&yaml, &env, dir.path()).await;
    let firing = fixtures::pod_crash_looping("alert-service");
    let first = app.post_message(&firing).await;
    assert_eq!(first["notifications"][0]["result"], "queued");
    assert_eq!(first["alerts"], 1);
    let again = app.post_message(&firing).await;
    assert_eq!(again["notifications"][0]["result"], "duplicate", "{again}");
    sink.wait_for_requests(1, Duration::from_secs(10)).await;

    // The resolution is a different notification.
    let mut resolved = firing.clone();
    resolved.alerts[0] = resolved.alerts[0].clone().resolved_now();
    resolved.status = alertmanager::Status::Resolved;
    app.post_message(&resolved).await;
    let got = sink.wait_for_requests(2, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        sink.requests().len(),
        2,
        "exactly one firing and one resolved"
    );
    let first = got[0].json();
    assert_eq!(first["status"], "firing");
    assert_eq!(first["alerts"][0]["labels"]["pod"], "heart-7d9c8b6f5-abcde");
    assert!(
        first["alerts"][0]["ack_url"]
            .as_str()
            .unwrap()
            .contains(&format!(
                "/api/v1/alerts/{}/ack?exp=",
                firing.alerts[0].fingerprint
            ))
    );
    assert_eq!(got[1].json()["status"], "resolved");

    let metrics = app.metrics().await;
    assert!(
        metrics.contains("alert_service_notifications_total{channel=\"hook\",result=\"sent\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics
            .contains("alert_service_notifications_total{channel=\"hook\",result=\"duplicate\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("alert_service_outbox_depth"), "{metrics}");
    assert!(
        metrics.contains("alert_service_delivery_duration_seconds_bucket"),
        "{metrics}"
    );
    app.stop().await;
}

#[tokio::test]
async fn truncated_alerts_and_many_alerts_per_message_are_accepted() {
    let sink = HttpSink::start().await;
    let dir = db_dir();
    let (yaml, env) = webhook_config(&sink);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let app = TestApp::spawn(&yaml, &env, dir.path()).await;
    let alerts = (0..30).map(|i| {
        alertmanager::Alert::firing([
            ("alertname", "Many"),
            ("severity", "warning"),
            ("pod", &format!("p{i}")),
        ])
    });
    let msg = alertmanager::WebhookMessage::builder("alert-service")
        .group_by(["alertname"])
        .max_alerts(20)
        .alerts(alerts)
        .build();
    assert_eq!(msg.truncated_alerts, 10);
    let r = app.post_message(&msg).await;
    assert_eq!(r["alerts"], 20);
    assert_eq!(r["truncated_alerts"], 10);
    let got = sink.wait_for_requests(1, Duration::from_secs(10)).await;
    let body = got[0].json();
    assert_eq!(body["truncated_alerts"], 10);
    assert_eq!(body["title"], "[FIRING:30] Many");
    assert_eq!(
        body["alerts"].as_array().unwrap().len(),
        10,
        "shows 10, counts the rest"
    );
    assert_eq!(body["more_alerts"], 20);
    app.stop().await;
}

#[test]
fn a_broken_config_file_is_reported_at_load_naming_the_place() {
    let dir = db_dir();
    let path = dir.path().join("config.yaml");
    std::fs::write(
        &path,
        "routes:\n  - channels: [chat]\nchannels:\n  chat:\n    kind: log\n    templates:\n      message: |\n        fine\n        {% for %}\n",
    )
    .unwrap();
    let p = path.display().to_string();
    let env: std::collections::HashMap<&str, &str> =
        [("ALERT_SERVICE_CONFIG", p.as_str())].into_iter().collect();
    let mut reader = service_kit::EnvReader::new(&env);
    let _ = alert_service::Config::read(&mut reader);
    let err = reader.finish().unwrap_err().to_string();
    assert!(err.contains("ALERT_SERVICE_CONFIG"), "{err}");
    assert!(
        err.contains("channels.chat.templates.message: line 2: syntax error"),
        "{err}"
    );
}

#[tokio::test]
async fn an_ack_link_works_once_even_across_a_restart() {
    let sink = HttpSink::start().await;
    let dir = db_dir();
    let (yaml, env) = webhook_config(&sink);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let app = TestApp::spawn(&yaml, &env, dir.path()).await;
    let msg = fixtures::pod_crash_looping("alert-service");
    app.post_message(&msg).await;
    // The link as the notification carries it (public URL swapped for the test's address).
    let got = sink.wait_for_requests(1, Duration::from_secs(10)).await;
    let sent = got[0].json()["alerts"][0]["ack_url"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, query) = sent.split_once('?').expect("a signed link");
    let fp = msg.alerts[0].fingerprint.to_string();
    let link = format!("{}/api/v1/alerts/{fp}/ack?{query}", app.url);
    let r = app
        .client
        .post(&link)
        .json(&serde_json::json!({"by": "oncall"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    app.stop().await;

    let again = TestApp::spawn(&yaml, &env, dir.path()).await;
    let link = format!("{}/api/v1/alerts/{fp}/ack?{query}", again.url);
    let r = again
        .client
        .post(&link)
        .json(&serde_json::json!({"by": "replayer"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409, "replayed after a restart");
    again.stop().await;
}

#[tokio::test]
async fn acks_are_closed_without_a_signing_key() {
    let sink = HttpSink::start().await;
    let dir = db_dir();
    let (yaml, env) = webhook_config(&sink);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let app = TestApp::spawn_with(&yaml, &env, dir.path(), |c| c.ack_signer = None).await;
    let msg = fixtures::pod_crash_looping("alert-service");
    app.post_message(&msg).await;
    let fp = msg.alerts[0].fingerprint.to_string();
    let r = app.client.post(app.ack_url(&fp)).send().await.unwrap();
    assert_eq!(r.status(), 403);
    app.stop().await;
}

/// A database failure answers 503 with a body naming the dependency and none of its error text
/// (the cause goes to the log and the trace).
#[tokio::test]
async fn a_database_failure_answers_503_without_the_database_error() {
    let dir = db_dir();
    let app = TestApp::spawn(&format!("routes: []\n{FAST_DELIVERY}"), &[], dir.path()).await;
    // Closes the database pool; the listener keeps serving.
    app.state.shutdown().await;

    let msg = fixtures::pod_crash_looping("alert-service");
    let r = app.post_webhook(serde_json::to_vec(&msg).unwrap()).await;
    assert_eq!(r.status(), 503);
    let webhook: Value = r.json().await.unwrap();
    let r = app
        .client
        .get(format!("{}/api/v1/outbox", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    let outbox: Value = r.json().await.unwrap();
    for body in [webhook, outbox] {
        assert_eq!(body["error"]["code"], "unavailable", "{body}");
        assert_eq!(
            body["error"]["message"], "the alert database is unavailable; retry later",
            "{body}"
        );
    }
    app.stop().await;
}
