//! Intake: bad input gets a clear 4xx, good input a 202, a re-delivered webhook one notification.

use std::time::Duration;

use alert_service::Config;
use http::StatusCode;
use serde_json::{Value, json};
use testbed::HttpSink;
use testbed::fixtures::{self, alert, webhook};

use crate::helpers::{FAST_DELIVERY, TestApp, db_dir, webhook_request};

/// An HTTP sink as the one webhook channel (`hook`), and the database directory of the apps
/// spawned over it.
struct Setup {
    sink: HttpSink,
    dir: tempfile::TempDir,
    yaml: String,
    env: Vec<(&'static str, String)>,
}

impl Setup {
    async fn new() -> Self {
        let sink = HttpSink::start().await;
        let yaml = format!(
            "routes:\n  - channels: [hook]\nchannels:\n  hook:\n    kind: webhook\n    url_env: HOOK_URL\n{FAST_DELIVERY}"
        );
        let env = vec![("HOOK_URL", format!("{}/hook", sink.url()))];
        Self {
            sink,
            dir: db_dir(),
            yaml,
            env,
        }
    }

    async fn app(&self) -> TestApp {
        self.app_with(|_| {}).await
    }

    async fn app_with(&self, tweak: impl FnOnce(&mut Config)) -> TestApp {
        let env: Vec<(&str, &str)> = self.env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        TestApp::spawn_with(&self.yaml, &env, self.dir.path(), tweak).await
    }
}

/// A webhook app over its [`Setup`].
async fn webhook_app() -> (Setup, TestApp) {
    let setup = Setup::new().await;
    let app = setup.app().await;
    (setup, app)
}

/// The Alertmanager 0.25 fixture as JSON, to damage.
fn captured_webhook() -> Value {
    serde_json::from_str(fixtures::ALERTMANAGER_0_25_WEBHOOK).unwrap()
}

/// The crash-looping pod's payload as bytes.
fn crash_loop_body() -> Vec<u8> {
    serde_json::to_vec(&fixtures::pod_crash_looping("alert-service")).unwrap()
}

#[tokio::test]
async fn malformed_json_is_a_400_naming_line_and_column() {
    let (_setup, app) = webhook_app().await;
    let r = app.post_webhook("{\"version\": \"4\",\n oops}").await;
    assert_eq!(r.status, 400);
    let body = r.body;
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
    let (_setup, app) = webhook_app().await;
    let mut v = captured_webhook();
    v["alerts"][0]
        .as_object_mut()
        .unwrap()
        .remove("fingerprint");
    let r = app.post_webhook(serde_json::to_vec(&v).unwrap()).await;
    assert_eq!(r.status, 400);
    let body = r.body;
    assert_eq!(body["error"]["field"], "alerts[0].fingerprint", "{body}");
    app.stop().await;
}

#[tokio::test]
async fn a_wrong_version_is_a_400_naming_the_version() {
    let (_setup, app) = webhook_app().await;
    let mut v = captured_webhook();
    v["version"] = "3".into();
    let r = app.post_webhook(serde_json::to_vec(&v).unwrap()).await;
    assert_eq!(r.status, 400);
    let body = r.body;
    assert_eq!(body["error"]["field"], "version", "{body}");
    app.stop().await;
}

#[tokio::test]
async fn an_empty_alert_list_is_a_400() {
    let (_setup, app) = webhook_app().await;
    let mut v = captured_webhook();
    v["alerts"] = Value::Array(vec![]);
    let r = app.post_webhook(serde_json::to_vec(&v).unwrap()).await;
    assert_eq!(r.status, 400);
    app.stop().await;
}

#[tokio::test]
async fn a_huge_body_is_a_413_with_a_json_reason() {
    let (_setup, app) = webhook_app().await;
    let huge = vec![b' '; 2 * 1024 * 1024];
    let r = app.post_webhook(huge).await;
    assert_eq!(r.status, 413);
    let body = r.body;
    assert_eq!(body["error"]["code"], "payload_too_large", "{body}");
    app.stop().await;
}

#[tokio::test]
async fn after_bad_input_the_service_keeps_serving_and_sent_nothing_for_it() {
    let (setup, app) = webhook_app().await;
    let r = app.post_webhook("{\"version\": \"4\",\n oops}").await;
    assert_eq!(r.status, 400);
    let r = app
        .post_message(&fixtures::pod_crash_looping("alert-service"))
        .await;
    assert_eq!(r["notifications"][0]["result"], "queued");
    setup
        .sink
        .wait_for_requests(1, Duration::from_secs(10))
        .await;
    assert_eq!(setup.sink.requests().len(), 1);
    app.stop().await;
}

/// The status of the crash-loop payload posted as `content_type` with `token` (and `origin`,
/// when given) to an app whose webhook token is `s3cret`.
async fn status_at_app_with_secret(
    token: Option<&str>,
    content_type: &str,
    origin: Option<&str>,
) -> StatusCode {
    let setup = Setup::new().await;
    let app = setup
        .app_with(|c| c.token = Some("s3cret".to_owned().into()))
        .await;
    let mut request = webhook_request(token, content_type, crash_loop_body());
    if let Some(origin) = origin {
        request
            .headers_mut()
            .insert("origin", origin.parse().unwrap());
    }
    let status = app.api.send(request).await.status;
    app.stop().await;
    status
}

#[tokio::test]
async fn a_webhook_without_a_token_is_401() {
    let status = status_at_app_with_secret(None, "application/json", None).await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn a_webhook_with_a_wrong_token_is_401() {
    let status = status_at_app_with_secret(Some("wrong"), "application/json", None).await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn a_webhook_that_is_not_json_is_415() {
    let status = status_at_app_with_secret(Some("s3cret"), "text/plain", None).await;
    assert_eq!(status, 415);
}

#[tokio::test]
async fn a_cross_site_webhook_is_403() {
    let origin = Some("http://evil.example");
    let status = status_at_app_with_secret(Some("s3cret"), "application/json", origin).await;
    assert_eq!(status, 403);
}

#[tokio::test]
async fn a_webhook_with_the_configured_token_is_202() {
    let status = status_at_app_with_secret(Some("s3cret"), "application/json", None).await;
    assert_eq!(status, 202);
}

#[tokio::test]
async fn the_webhook_is_closed_without_a_token() {
    let setup = Setup::new().await;
    let app = setup.app_with(|c| c.token = None).await;
    let request = webhook_request(Some("anything"), "application/json", crash_loop_body());
    let r = app.api.send(request).await;
    assert_eq!(r.status, 403);
    assert_eq!(r.error_code(), Some("not_configured"));
    assert_eq!(app.outbox().await["rows"].as_array().unwrap().len(), 0);
    app.stop().await;
}

#[tokio::test]
async fn labels_alertmanager_would_reject_are_refused_at_intake() {
    let (_setup, app) = webhook_app().await;
    let mut msg = fixtures::pod_crash_looping("alert-service");
    msg.alerts[0] = msg.alerts[0].clone().with_label("bad-name", "x");
    let r = app.post_webhook(serde_json::to_vec(&msg).unwrap()).await;
    assert_eq!(r.status, 422);
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("bad-name"),
        "{}",
        r.text
    );
    assert_eq!(app.outbox().await["rows"].as_array().unwrap().len(), 0);
    app.stop().await;
}

/// A webhook app that treats a repeat within 10 minutes as a duplicate.
async fn deduplicating_app() -> (Setup, TestApp) {
    let mut setup = Setup::new().await;
    setup.yaml = setup.yaml.replace("dedup_window: 1s", "dedup_window: 10m");
    let app = setup.app().await;
    (setup, app)
}

/// `msg` with its alert resolved now.
fn resolved(msg: &alertmanager::WebhookMessage) -> alertmanager::WebhookMessage {
    let mut resolved = msg.clone();
    resolved.alerts[0] = resolved.alerts[0].clone().resolved_now();
    resolved.status = alertmanager::Status::Resolved;
    resolved
}

#[tokio::test]
async fn a_redelivered_webhook_is_a_duplicate_and_sent_once() {
    let (setup, app) = deduplicating_app().await;
    let firing = fixtures::pod_crash_looping("alert-service");
    let first = app.post_message(&firing).await;
    assert_eq!(first["notifications"][0]["result"], "queued");
    assert_eq!(first["alerts"], 1);
    let again = app.post_message(&firing).await;
    assert_eq!(again["notifications"][0]["result"], "duplicate", "{again}");
    let got = setup
        .sink
        .wait_for_requests(1, Duration::from_secs(10))
        .await;
    let sent = got[0].json();
    assert_eq!(sent["status"], "firing");
    assert_eq!(
        sent["alerts"][0]["labels"]["pod"],
        fixtures::CRASH_LOOPING_POD
    );
    assert!(
        sent["alerts"][0]["ack_url"]
            .as_str()
            .unwrap()
            .contains(&format!(
                "/api/v1/alerts/{}/ack?exp=",
                firing.alerts[0].fingerprint
            ))
    );
    // Time for a second delivery to show up, were there one.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(setup.sink.requests().len(), 1, "sent once");
    app.stop().await;
}

/// Posts `firing` `times` times, waits for its notification, then posts its resolution and
/// waits for that one: the two notifications sent.
async fn fire_then_resolve(
    setup: &Setup,
    app: &TestApp,
    firing: &alertmanager::WebhookMessage,
    times: usize,
) -> Vec<testbed::RecordedRequest> {
    for _ in 0..times {
        app.post_message(firing).await;
    }
    setup
        .sink
        .wait_for_requests(1, Duration::from_secs(10))
        .await;
    app.post_message(&resolved(firing)).await;
    setup
        .sink
        .wait_for_requests(2, Duration::from_secs(10))
        .await
}

#[tokio::test]
async fn the_resolution_of_a_sent_alert_is_a_notification_of_its_own() {
    let (setup, app) = deduplicating_app().await;
    let firing = fixtures::pod_crash_looping("alert-service");
    let got = fire_then_resolve(&setup, &app, &firing, 1).await;
    assert_eq!(got[0].json()["status"], "firing");
    assert_eq!(got[1].json()["status"], "resolved");
    app.stop().await;
}

#[tokio::test]
async fn sent_and_duplicate_notifications_are_counted_per_channel() {
    let (setup, app) = deduplicating_app().await;
    let firing = fixtures::pod_crash_looping("alert-service");
    fire_then_resolve(&setup, &app, &firing, 2).await;
    let metrics = app.metrics().await;
    let counted = |result| {
        metrics.value(
            "alert_service_notifications_total",
            &[("channel", "hook"), ("result", result)],
        )
    };
    assert_eq!(counted("sent"), Some(2.0), "{}", metrics.text());
    assert_eq!(counted("duplicate"), Some(1.0), "{}", metrics.text());
    assert!(
        metrics.text().contains("alert_service_outbox_depth"),
        "{}",
        metrics.text()
    );
    assert!(
        metrics
            .text()
            .contains("alert_service_delivery_duration_seconds_bucket"),
        "{}",
        metrics.text()
    );
    app.stop().await;
}

#[tokio::test]
async fn truncated_alerts_and_many_alerts_per_message_are_accepted() {
    let (setup, app) = webhook_app().await;
    let alerts = (0..30).map(|i| alert("Many").warning().pod(&format!("p{i}")).firing());
    let msg = webhook("alert-service")
        .max_alerts(20)
        .alerts(alerts)
        .build();
    assert_eq!(msg.truncated_alerts, 10);
    let r = app.post_message(&msg).await;
    assert_eq!(r["alerts"], 20);
    assert_eq!(r["truncated_alerts"], 10);
    let got = setup
        .sink
        .wait_for_requests(1, Duration::from_secs(10))
        .await;
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

/// The path and query of the ack link the notification carried (its public URL swapped for the
/// test's address).
async fn sent_ack_path(sink: &HttpSink, msg: &alertmanager::WebhookMessage) -> String {
    let got = sink.wait_for_requests(1, Duration::from_secs(10)).await;
    let sent = got[0].json()["alerts"][0]["ack_url"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, query) = sent.split_once('?').expect("a signed link");
    let fp = &msg.alerts[0].fingerprint;
    format!("/api/v1/alerts/{fp}/ack?{query}")
}

#[tokio::test]
async fn an_ack_link_works_once_even_across_a_restart() {
    let (setup, app) = webhook_app().await;
    let msg = fixtures::pod_crash_looping("alert-service");
    app.post_message(&msg).await;
    let link = sent_ack_path(&setup.sink, &msg).await;
    let r = app
        .api
        .call(http::Method::POST, &link, Some(json!({"by": "oncall"})))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    app.stop().await;

    let again = setup.app().await;
    let r = again
        .api
        .call(http::Method::POST, &link, Some(json!({"by": "replayer"})))
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "replayed after a restart");
    again.stop().await;
}

#[tokio::test]
async fn acks_are_closed_without_a_signing_key() {
    let setup = Setup::new().await;
    let app = setup.app_with(|c| c.ack_signer = None).await;
    let msg = fixtures::pod_crash_looping("alert-service");
    app.post_message(&msg).await;
    let fp = msg.alerts[0].fingerprint.to_string();
    let r = app
        .api
        .call(http::Method::POST, &app.ack_path(&fp), None)
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
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

    let webhook = app.post_webhook(crash_loop_body()).await;
    let outbox = app.get("/api/v1/outbox").await;
    for r in [webhook, outbox] {
        assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.error_code(), Some("unavailable"), "{}", r.text);
        assert_eq!(
            r.body["error"]["message"], "the alert database is unavailable; retry later",
            "{}",
            r.text
        );
    }
    app.stop().await;
}
