//! The API client against a real Alertmanager (started by testbed).

use std::time::Duration;

use alertmanager::client::Error;
use alertmanager::{
    AlertState, AlertmanagerClient, Matcher, PostableAlert, PostableSilence, SilenceState, Status,
    WebhookMessage,
};
use testbed::{Alertmanager, AlertmanagerConfig, HttpSink, alertmanager_client, wait_until};
use time::OffsetDateTime;

async fn alertmanager() -> (Alertmanager, HttpSink, AlertmanagerClient) {
    let sink = HttpSink::start().await;
    let am = Alertmanager::start(
        &AlertmanagerConfig::new()
            .webhook("sink", format!("{}/hook", sink.url()))
            .to_yaml(),
    )
    .await;
    let client = am.client();
    (am, sink, client)
}

#[tokio::test]
async fn posted_alerts_are_listed_delivered_and_resolved() {
    let (am, sink, client) = alertmanager().await;
    client.ready().await.unwrap();

    let starts_at = OffsetDateTime::now_utc() - time::Duration::seconds(5);
    let alert = PostableAlert::new([
        ("alertname", "PodCrashLooping"),
        ("namespace", "organism"),
        ("pod", "heart-0"),
        ("remediation", "restart-pod"),
    ])
    .with_annotation("summary", "heart-0 is crash-looping")
    .with_starts_at(starts_at)
    .with_generator_url("http://127.0.0.1:8084/findings");
    client
        .post_alerts(std::slice::from_ref(&alert))
        .await
        .unwrap();

    let filter = [Matcher::equal("alertname", "PodCrashLooping")];
    let listed = client.alerts(&filter).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].fingerprint, alert.fingerprint());
    assert_eq!(listed[0].labels, alert.labels);
    // API v2 prints times with millisecond precision.
    assert!((listed[0].starts_at - starts_at).abs() < time::Duration::milliseconds(1));
    assert!(
        client
            .alerts(&[Matcher::equal("alertname", "Other")])
            .await
            .unwrap()
            .is_empty()
    );

    // Delivered as a webhook identical to what the builder makes from the same alert: an alert
    // posted through the API (health-monitor's path) is indistinguishable from a direct delivery.
    let delivered = sink.wait_for_requests(1, Duration::from_secs(30)).await;
    let message = WebhookMessage::from_slice(&delivered[0].body).unwrap();
    assert_eq!(message.alerts[0].fingerprint, alert.fingerprint());
    let rebuilt = WebhookMessage::builder("sink")
        .group_by(["alertname"])
        .external_url(am.url())
        .alert(alertmanager::Alert::new(
            alert.labels.clone(),
            alert.annotations.clone(),
            starts_at,
            None,
            "http://127.0.0.1:8084/findings",
        ))
        .build();
    assert_eq!(message, rebuilt);

    // Resolving: post again with endsAt in the past; it leaves the list and a resolved
    // notification follows (send_resolved).
    let resolved = alert.clone().with_ends_at(OffsetDateTime::now_utc());
    client.post_alerts(&[resolved]).await.unwrap();
    let gone = wait_until(Duration::from_secs(10), || async {
        client.alerts(&filter).await.is_ok_and(|a| a.is_empty())
    })
    .await;
    assert!(gone, "a resolved alert is no longer listed");
    let resolved_message = wait_until(Duration::from_secs(30), || async {
        sink.requests().iter().any(|r| {
            WebhookMessage::from_slice(&r.body).is_ok_and(|m| m.status == Status::Resolved)
        })
    })
    .await;
    assert!(
        resolved_message,
        "no resolved notification; log:\n{}",
        am.log_tail()
    );
}

#[tokio::test]
async fn silences_mute_alerts_and_expire() {
    let (_am, _sink, client) = alertmanager().await;
    let alert = PostableAlert::new([("alertname", "HighErrorRate"), ("service", "brain")]);
    client
        .post_alerts(std::slice::from_ref(&alert))
        .await
        .unwrap();

    let silence = PostableSilence::for_duration(
        vec![
            Matcher::equal("alertname", "HighErrorRate"),
            Matcher::regex("service", "brain|heart"),
        ],
        time::Duration::hours(1),
        "alert-service",
        "acknowledged by oncall",
    );
    let id = client.create_silence(&silence).await.unwrap();
    assert!(!id.is_empty());

    let got = client.silence(&id).await.unwrap();
    assert_eq!(got.id, id);
    assert_eq!(got.status.state, SilenceState::Active);
    assert_eq!(got.matchers, silence.matchers);
    assert_eq!(got.created_by, "alert-service");
    assert!(client.silences().await.unwrap().iter().any(|s| s.id == id));

    let filter = [Matcher::equal("alertname", "HighErrorRate")];
    let muted = wait_until(Duration::from_secs(10), || async {
        client.alerts(&filter).await.is_ok_and(|a| {
            a.len() == 1
                && a[0].status.state == AlertState::Suppressed
                && a[0].status.silenced_by == [id.clone()]
        })
    })
    .await;
    assert!(
        muted,
        "the alert is silenced by {id}: {:?}",
        client.alerts(&filter).await
    );

    client.expire_silence(&id).await.unwrap();
    assert_eq!(
        client.silence(&id).await.unwrap().status.state,
        SilenceState::Expired
    );
    let active = wait_until(Duration::from_secs(10), || async {
        client
            .alerts(&filter)
            .await
            .is_ok_and(|a| a.len() == 1 && a[0].status.state == AlertState::Active)
    })
    .await;
    assert!(
        active,
        "the alert is active again after the silence expired"
    );

    let missing = client
        .silence("00000000-0000-0000-0000-000000000000")
        .await
        .unwrap_err();
    assert!(
        matches!(missing, Error::SilenceNotFound { .. }),
        "{missing:?}"
    );
    assert_eq!(missing.metric_label(), "not_found");
}

#[tokio::test]
async fn a_rejected_request_is_a_permanent_4xx() {
    let (_am, _sink, client) = alertmanager().await;
    // An alert without labels is invalid: Alertmanager answers 400 with the reason.
    let err = client
        .post_alerts(&[PostableAlert::default()])
        .await
        .unwrap_err();
    assert_eq!(err.metric_label(), "http_4xx", "{err}");
    assert!(!err.is_transient());
}

#[tokio::test]
async fn nothing_listening_is_a_transient_connect_failure() {
    let port = testbed::free_port();
    let dead = alertmanager_client(format!("http://127.0.0.1:{port}"));
    let err = dead.ready().await.unwrap_err();
    assert_eq!(err.metric_label(), "connect", "{err:?}");
    assert!(err.is_transient());
}

/// A server that accepts the connection but never answers: the per-request timeout fires (the
/// error says so; no wall-clock bound is asserted).
#[tokio::test]
async fn a_silent_server_is_cut_by_the_request_timeout() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent = alertmanager_client(format!("http://{}", listener.local_addr().unwrap()))
        .with_timeout(Duration::from_millis(300));
    let err = silent.silences().await.unwrap_err();
    assert_eq!(err.metric_label(), "timeout", "{err:?}");
    assert!(err.is_transient());
}
