//! A real Alertmanager delivering to alert-service; an ack becomes a silence there and stops the
//! re-notifications.

use std::time::Duration;

use alertmanager::{AlertmanagerClient, SilenceState};
use axum::body::Body;
use http::{Method, Request};
use serde_json::{Value, json};
use testbed::fixtures::alert;
use testbed::{Alertmanager, AlertmanagerConfig, HttpSink, Reply};

use crate::helpers::{FAST_DELIVERY, TestApp, db_dir};

#[tokio::test]
async fn alertmanager_delivers_and_an_ack_silences_the_alert() {
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

    let client = AlertmanagerClient::new(am.url(), reqwest::Client::new()).unwrap();
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

    // Alertmanager → alert-service → the webhook channel, then Alertmanager's repeat (2 s) again.
    let got = sink.wait_for_requests(2, Duration::from_secs(30)).await;
    let first = got[0].json();
    assert_eq!(first["status"], "firing");
    assert_eq!(first["external_url"], am.url());
    assert_eq!(first["receiver"], "alert-service");
    assert_eq!(first["alerts"][0]["fingerprint"], fp.as_str());
    assert_eq!(first["alerts"][0]["summary"], "heart is down");

    // Acknowledge: a silence on every label, visible in Alertmanager's API.
    // Without a signed link, with a tampered or expired one, or cross-site: nothing is created.
    let link = app.ack_path(&fp);
    let base = format!("/api/v1/alerts/{fp}/ack");
    let expired = {
        let s = alert_service::ack_link::Signer::new(
            crate::helpers::ACK_KEY.to_owned().into(),
            Duration::from_secs(1),
        )
        .unwrap();
        format!("{base}?{}", s.sign(&fp, 1_000))
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
        let r = post(
            &app,
            &path,
            json!({"by": "mallory", "duration_minutes": 30}),
        )
        .await;
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
        client.silences().await.unwrap().is_empty(),
        "refused acks created no silence"
    );
    let r = post(
        &app,
        &link,
        json!({"by": "tester", "comment": "on it", "duration_minutes": 30}),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let silence_id = r.body["silence"]["id"].as_str().unwrap().to_owned();
    let s = client.silence(&silence_id).await.unwrap();
    assert_eq!(s.status.state, SilenceState::Active);
    assert_eq!(s.created_by, "tester");
    assert_eq!(s.comment, "on it");
    assert_eq!(s.matchers.len(), alert.labels.len());
    for m in &s.matchers {
        assert!(m.is_equal && !m.is_regex);
        assert_eq!(alert.labels[&m.name], m.value);
    }
    let minutes = (s.ends_at - s.starts_at).whole_minutes();
    assert!((29..=30).contains(&minutes), "{minutes}");

    // The link works once.
    let r = post(&app, &link, json!({"by": "again"})).await;
    assert_eq!(r.status, 409);
    assert_eq!(r.error_code(), Some("link_used"));
    assert_eq!(
        client.silences().await.unwrap().len(),
        1,
        "a replay made no silence"
    );

    // The state read back.
    let state = app.get(&base).await.body;
    assert_eq!(state["acknowledged"], true, "{state}");
    assert_eq!(state["acked_by"], "tester");
    assert_eq!(state["silences"][0]["id"], silence_id.as_str());
    assert_eq!(state["silences"][0]["state"], "active");
    let page = get_html(&app, &base).await;
    assert!(
        page.contains("Acknowledged") && !page.contains("<form"),
        "no form without a signed link: {page}"
    );
    let page = get_html(&app, &app.ack_path(&fp)).await;
    assert!(
        page.contains("<form method=\"post\" action=\"/api/v1/alerts/"),
        "{page}"
    );

    // Alertmanager mutes it: no more notifications.
    let muted = testbed::wait_until(Duration::from_secs(10), || async {
        client
            .alerts(&[])
            .await
            .unwrap()
            .iter()
            .any(|a| a.fingerprint.to_string() == fp && !a.status.silenced_by.is_empty())
    })
    .await;
    assert!(muted);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before = sink.requests().len();
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        sink.requests().len(),
        before,
        "re-notification continued after the ack"
    );

    // Unknown fingerprints and bad ones.
    let r = app
        .api
        .call(Method::POST, &app.ack_path("0123456789abcdef"), None)
        .await;
    assert_eq!(r.status, 404);
    assert_eq!(app.get("/api/v1/alerts/not-hex/ack").await.status, 400);
    let r = post(&app, &app.ack_path(&fp), json!({"duration_minutes": 0})).await;
    assert_eq!(r.status, 422);
    // Alertmanager's own deliveries went through intake (bearer token included).
    let metrics = app.metrics().await;
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
    app.stop().await;
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
