//! A real Alertmanager delivering to alert-service; an ack becomes a silence there and stops the
//! re-notifications.

use std::time::Duration;

use alertmanager::{AlertmanagerClient, PostableAlert, SilenceState};
use axum::body::Body;
use http::{Method, Request};
use serde_json::{Value, json};
use testbed::fixtures::alert;
use testbed::{Alertmanager, AlertmanagerConfig, HttpSink, RecordedRequest, Reply};

use crate::helpers::{FAST_DELIVERY, TestApp, db_dir};

/// alert-service behind a real Alertmanager that delivers to it with a token and repeats every
/// 2 s, one alert posted to Alertmanager and its first notification arrived at the webhook
/// channel (`sink`).
struct Flow {
    sink: HttpSink,
    am: Alertmanager,
    app: TestApp,
    client: AlertmanagerClient,
    alert: PostableAlert,
    fp: String,
    _dir: tempfile::TempDir,
}

async fn flow() -> Flow {
    let sink = HttpSink::start().await;
    // Alertmanager first (its URL goes into alert-service's config), then point it at us.
    let am = Alertmanager::start(
        &AlertmanagerConfig::new()
            .webhook("alert-service", format!("{}/placeholder", sink.url()))
            .to_yaml(),
    )
    .await;
    let dir = db_dir();
    let yaml = format!(
        "routes:\n  - channels: [hook]\nchannels:\n  hook:\n    kind: webhook\n    url_env: HOOK_URL\n{FAST_DELIVERY}"
    );
    let hook = format!("{}/hook", sink.url());
    let am_url = am.url();
    let app = TestApp::spawn_with(&yaml, &[("HOOK_URL", hook.as_str())], dir.path(), |c| {
        c.alertmanager_url = Some(am_url.clone());
        c.token = Some("am-token".to_owned().into());
    })
    .await;
    am.reload(
        &AlertmanagerConfig::new()
            .webhook_with_token(
                "alert-service",
                format!("{}/webhook/alertmanager", app.url),
                "am-token",
            )
            .repeat_interval(Duration::from_secs(2))
            .to_yaml(),
    )
    .await;
    let client = am.client();
    let alert = alert("E2EHeartDown")
        .critical()
        .service("heart")
        .summary("heart is down")
        .annotation("runbook_url", "https://runbooks.organism.dev/HeartDown")
        .postable();
    let fp = alert.fingerprint().to_string();
    client
        .post_alerts(std::slice::from_ref(&alert))
        .await
        .unwrap();
    sink.wait_for_requests(1, Duration::from_secs(30)).await;
    Flow {
        sink,
        am,
        app,
        client,
        alert,
        fp,
        _dir: dir,
    }
}

impl Flow {
    /// Acknowledges the alert through the signed `link` as `tester` for 30 minutes; the answer.
    async fn ack(&self, link: &str) -> Reply {
        let body = json!({"by": "tester", "comment": "on it", "duration_minutes": 30});
        post(&self.app, link, body).await
    }

    /// The webhook channel's notifications so far.
    fn notifications(&self) -> Vec<RecordedRequest> {
        self.sink.requests_to("/hook")
    }
}

/// `POST path` with a JSON body.
async fn post(app: &TestApp, path: &str, body: Value) -> Reply {
    app.api.call(Method::POST, path, Some(body)).await
}

/// `GET path` as a browser asks for it.
async fn get_html(app: &TestApp, path: &str) -> String {
    let request = Request::get(path)
        .header("accept", "text/html")
        .body(Body::empty())
        .unwrap();
    app.api.send(request).await.text
}

#[tokio::test]
async fn alertmanager_delivers_through_alert_service_and_repeats() {
    let f = flow().await;
    // Alertmanager → alert-service → the webhook channel, then Alertmanager's repeat (2 s) again.
    let got = f.sink.wait_for_requests(2, Duration::from_secs(30)).await;
    let first = got[0].json();
    assert_eq!(first["status"], "firing");
    assert_eq!(first["external_url"], f.am.url());
    assert_eq!(first["receiver"], "alert-service");
    assert_eq!(first["alerts"][0]["fingerprint"], f.fp.as_str());
    assert_eq!(first["alerts"][0]["summary"], "heart is down");
    // Alertmanager's own deliveries went through intake (bearer token included).
    let metrics = f.app.metrics().await;
    assert!(
        !metrics.text().contains("result=\"unauthorized\""),
        "{}",
        metrics.text()
    );
    assert!(
        metrics
            .value(
                "alert_service_webhook_messages_total",
                &[("result", "accepted")]
            )
            .is_some(),
        "{}",
        metrics.text()
    );
    f.app.stop().await;
}

#[tokio::test]
async fn acks_without_a_valid_signed_link_or_from_another_site_create_no_silence() {
    let f = flow().await;
    let (app, fp) = (&f.app, &f.fp);
    let link = app.ack_path(fp);
    let base = format!("/api/v1/alerts/{fp}/ack");
    let expired = {
        let s = alert_service::ack_link::Signer::new(
            crate::helpers::ACK_KEY.to_owned().into(),
            Duration::from_secs(1),
        )
        .unwrap();
        format!("{base}?{}", s.sign(fp, 1_000))
    };
    let tampered = link.replace("&sig=", "&sig=00");
    let other_alert = {
        let q = link.split_once('?').unwrap().1;
        format!("/api/v1/alerts/0123456789abcdef/ack?{q}")
    };
    for (path, status) in [
        (base.clone(), 401),
        (tampered, 403),
        (other_alert, 403),
        (expired, 410),
    ] {
        let r = post(app, &path, json!({"by": "mallory", "duration_minutes": 30})).await;
        assert_eq!(r.status, status, "{path}");
        assert!(r.error_code().is_some(), "{}", r.text);
    }
    let cross_site = Request::post(&link)
        .header("origin", "http://evil.example")
        .header("content-type", "application/json")
        .body(Body::from(json!({"by": "mallory"}).to_string()))
        .unwrap();
    assert_eq!(app.api.send(cross_site).await.status, 403, "cross-site");
    let r = app
        .api
        .raw(
            Method::POST,
            &link,
            "application/x-www-form-urlencoded",
            "by=mallory",
        )
        .await;
    assert_eq!(r.status, 403, "a form body from no page of ours");
    assert!(
        f.client.silences().await.unwrap().is_empty(),
        "refused acks created no silence"
    );
    f.app.stop().await;
}

#[tokio::test]
async fn an_ack_is_an_alertmanager_silence_on_every_label() {
    let f = flow().await;
    let r = f.ack(&f.app.ack_path(&f.fp)).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let silence_id = r.body["silence"]["id"].as_str().unwrap().to_owned();
    let s = f.client.silence(&silence_id).await.unwrap();
    assert_eq!(s.status.state, SilenceState::Active);
    assert_eq!(s.created_by, "tester");
    assert_eq!(s.comment, "on it");
    assert_eq!(s.matchers.len(), f.alert.labels.len());
    for m in &s.matchers {
        assert!(m.is_equal && !m.is_regex);
        assert_eq!(f.alert.labels[&m.name], m.value);
    }
    let minutes = (s.ends_at - s.starts_at).whole_minutes();
    assert!((29..=30).contains(&minutes), "{minutes}");
    f.app.stop().await;
}

#[tokio::test]
async fn an_ack_link_works_once() {
    let f = flow().await;
    let link = f.app.ack_path(&f.fp);
    assert_eq!(f.ack(&link).await.status, 201);
    let r = post(&f.app, &link, json!({"by": "again"})).await;
    assert_eq!(r.status, 409);
    assert_eq!(r.error_code(), Some("link_used"));
    assert_eq!(
        f.client.silences().await.unwrap().len(),
        1,
        "a replay made no silence"
    );
    f.app.stop().await;
}

#[tokio::test]
async fn the_ack_state_reads_back_and_the_page_offers_a_form_only_with_a_signed_link() {
    let f = flow().await;
    let r = f.ack(&f.app.ack_path(&f.fp)).await;
    let silence_id = r.body["silence"]["id"].as_str().unwrap().to_owned();
    let base = format!("/api/v1/alerts/{}/ack", f.fp);
    let state = f.app.get(&base).await.body;
    assert_eq!(state["acknowledged"], true, "{state}");
    assert_eq!(state["acked_by"], "tester");
    assert_eq!(state["silences"][0]["id"], silence_id.as_str());
    assert_eq!(state["silences"][0]["state"], "active");
    let page = get_html(&f.app, &base).await;
    assert!(
        page.contains("Acknowledged") && !page.contains("<form"),
        "no form without a signed link: {page}"
    );
    let page = get_html(&f.app, &f.app.ack_path(&f.fp)).await;
    assert!(
        page.contains("<form method=\"post\" action=\"/api/v1/alerts/"),
        "{page}"
    );
    f.app.stop().await;
}

#[tokio::test]
async fn an_acknowledged_alert_is_muted_by_alertmanager() {
    let f = flow().await;
    assert_eq!(f.ack(&f.app.ack_path(&f.fp)).await.status, 201);
    let muted = testbed::wait_until(Duration::from_secs(10), || async {
        f.client
            .alerts(&[])
            .await
            .unwrap()
            .iter()
            .any(|a| a.fingerprint.to_string() == f.fp && !a.status.silenced_by.is_empty())
    })
    .await;
    assert!(muted);
    // A notification already on its way may still land; after that, Alertmanager's 2 s repeat
    // would show within 5 s, were the alert not muted.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before = f.notifications().len();
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        f.notifications().len(),
        before,
        "re-notification continued after the ack"
    );
    f.app.stop().await;
}

#[tokio::test]
async fn unknown_and_malformed_fingerprints_and_a_zero_duration_are_refused() {
    let f = flow().await;
    let app = &f.app;
    let r = app
        .api
        .call(Method::POST, &app.ack_path("0123456789abcdef"), None)
        .await;
    assert_eq!(r.status, 404);
    assert_eq!(app.get("/api/v1/alerts/not-hex/ack").await.status, 400);
    let r = post(app, &app.ack_path(&f.fp), json!({"duration_minutes": 0})).await;
    assert_eq!(r.status, 422);
    f.app.stop().await;
}
