//! Publishing against real peers: a real Alertmanager (testbed) and a real HTTP receiver
//! (testbed HttpSink).

use std::time::Duration;

use alertmanager::{AlertmanagerClient, Matcher, Status, WebhookMessage};
use health_monitor::config::{PublishConfig, Receiver};
use health_monitor::finding::{Finding, FindingKind, ObjectRef, Remediation, Severity};
use health_monitor::metrics::Metrics;
use health_monitor::publish::{Publisher, Sink};
use http::StatusCode;
use testbed::{Alertmanager, AlertmanagerConfig, HttpSink, wait_until};

fn crash_loop(pod: &str) -> Finding {
    let mut o = ObjectRef::new("Pod", Some("organism"), pod);
    o.node = Some("kind-worker".into());
    o.workload_kind = Some("Deployment".into());
    o.workload = Some("heart".into());
    Finding::new(
        FindingKind::CrashLoopBackOff,
        Severity::Critical,
        o,
        format!("Pod organism/{pod} is crash looping"),
        "Containers in CrashLoopBackOff: heart restarted 7 times.",
    )
    .with_remediation(Some(Remediation::RestartPod))
    .with_service(Some("heart".into()))
}

fn fast_config() -> PublishConfig {
    PublishConfig {
        resend_interval: Duration::from_secs(1),
        repeat_interval: Duration::from_secs(3600),
        ..PublishConfig::default()
    }
}

fn metrics() -> (prometheus::Registry, Metrics) {
    let registry = prometheus::Registry::new();
    let m = Metrics::new(&registry).unwrap();
    (registry, m)
}

#[tokio::test]
async fn a_finding_fires_in_alertmanager_with_the_contract_labels_and_resolves() {
    let sink = HttpSink::start().await;
    let am = Alertmanager::start(
        &AlertmanagerConfig::new()
            .webhook(
                "auto-healer",
                format!("{}/webhook/alertmanager", sink.url()),
            )
            .to_yaml(),
    )
    .await;
    let client = AlertmanagerClient::new(
        am.url(),
        telemetry::client::HttpClient::new(telemetry::client::ClientMetrics::unregistered()),
    )
    .unwrap();
    let (_registry, m) = metrics();
    let mut publisher = Publisher::new(
        Sink::Alertmanager(client.clone()),
        fast_config(),
        m.clone(),
        None,
    );

    let finding = crash_loop("heart-6d5f7c9b8-x2x4p");
    publisher.tick(std::slice::from_ref(&finding)).await;
    assert_eq!(publisher.pending(), 0, "delivered");

    let alerts = client
        .alerts(&[Matcher::equal("alertname", "CrashLoopBackOff")])
        .await
        .unwrap();
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    let a = &alerts[0];
    for (k, v) in [
        ("alertname", "CrashLoopBackOff"),
        ("severity", "critical"),
        ("namespace", "organism"),
        ("pod", "heart-6d5f7c9b8-x2x4p"),
        ("node", "kind-worker"),
        ("workload_kind", "Deployment"),
        ("workload", "heart"),
        ("finding", "crash-loop-back-off"),
        ("remediation", "restart-pod"),
        ("service", "heart"),
    ] {
        assert_eq!(
            a.labels.get(k).map(String::as_str),
            Some(v),
            "label {k} in {:?}",
            a.labels
        );
    }
    assert!(!a.labels.contains_key("dependency"));
    assert_eq!(a.annotations["summary"], finding.summary);
    assert!(a.annotations["runbook_url"].ends_with("#crashloopbackoff"));
    assert!(
        a.ends_at > time::OffsetDateTime::now_utc(),
        "endsAt in the future while firing"
    );
    assert_eq!(
        a.fingerprint,
        alertmanager::Fingerprint::of_labels(&finding.alert_labels())
    );

    // Re-sent while it persists (endsAt moves forward).
    let first_end = a.ends_at;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    publisher.tick(std::slice::from_ref(&finding)).await;
    let again = client
        .alerts(&[Matcher::equal("alertname", "CrashLoopBackOff")])
        .await
        .unwrap();
    assert!(
        again[0].ends_at > first_end,
        "re-posted with a later endsAt"
    );

    // Alertmanager notifies the receiver (firing).
    let firing = sink.wait_for_requests(1, Duration::from_secs(20)).await;
    let msg = WebhookMessage::from_slice(&firing[0].body).unwrap();
    assert_eq!(msg.status, Status::Firing);

    // Cleared: posted with endsAt = now; Alertmanager no longer lists it and notifies resolved.
    publisher.tick(&[]).await;
    assert_eq!(publisher.pending(), 0);
    let gone = wait_until(Duration::from_secs(5), || async {
        client
            .alerts(&[Matcher::equal("alertname", "CrashLoopBackOff")])
            .await
            .is_ok_and(|a| a.is_empty())
    })
    .await;
    assert!(gone, "the alert is still active in Alertmanager");
    let resolved = wait_until(Duration::from_secs(20), || async {
        sink.requests().iter().any(|r| {
            WebhookMessage::from_slice(&r.body).is_ok_and(|m| m.status == Status::Resolved)
        })
    })
    .await;
    assert!(resolved, "no resolved notification; {}", am.log_tail());
    assert_eq!(
        m.published
            .with_label_values(&["alertmanager", "resolved"])
            .get(),
        1
    );
}

#[tokio::test]
async fn an_unreachable_alertmanager_is_retried_counted_and_bounded() {
    let port = testbed::free_port();
    let client = AlertmanagerClient::new(
        format!("http://127.0.0.1:{port}"),
        telemetry::client::HttpClient::new(telemetry::client::ClientMetrics::unregistered()),
    )
    .unwrap()
    .with_timeout(Duration::from_millis(500));
    let (_registry, m) = metrics();
    let config = PublishConfig {
        queue_capacity: 2,
        ..fast_config()
    };
    let mut publisher = Publisher::new(Sink::Alertmanager(client), config, m.clone(), None);
    let a = crash_loop("a");
    let b = crash_loop("b");
    let c = crash_loop("c");
    publisher.tick(&[a.clone(), b.clone()]).await;
    assert_eq!(publisher.pending(), 2);
    assert_eq!(
        m.publish_failures
            .with_label_values(&["alertmanager", "connect"])
            .get(),
        1
    );
    // a and b clear (their resolves wait), c appears: the queue is full, the oldest resolve goes.
    publisher.tick(std::slice::from_ref(&c)).await;
    assert_eq!(m.publish_dropped.get(), 1);
    assert_eq!(publisher.pending(), 2);
}

#[tokio::test]
async fn a_short_receiver_outage_loses_nothing() {
    let sink = HttpSink::start().await;
    sink.set_status(StatusCode::SERVICE_UNAVAILABLE);
    let (_registry, m) = metrics();
    let receivers = vec![Receiver {
        name: "auto-healer".into(),
        url: format!("{}/webhook/alertmanager", sink.url()),
        bearer_token: Some("s3cret".into()),
    }];
    let mut publisher = Publisher::new(
        Sink::Webhooks {
            http: traced_client(),
            receivers,
        },
        fast_config(),
        m.clone(),
        None,
    );
    let f = crash_loop("heart-6d5f7c9b8-x2x4p");
    publisher.tick(std::slice::from_ref(&f)).await;
    publisher.tick(&[]).await; // cleared while the receiver is down
    assert_eq!(publisher.pending(), 1, "the resolve waits");
    assert!(
        m.publish_failures
            .with_label_values(&["webhook", "http_5xx"])
            .get()
            >= 1
    );

    sink.set_status(StatusCode::OK);
    sink.clear();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut delivered = false;
    while std::time::Instant::now() < deadline {
        publisher.tick(&[]).await;
        if publisher.pending() == 0 {
            delivered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(delivered, "retries stopped");
    let requests = sink.requests();
    assert_eq!(requests.len(), 1, "only the resolve is still owed");
    assert_eq!(requests[0].header("authorization"), Some("Bearer s3cret"));
    let msg = WebhookMessage::from_slice(&requests[0].body).unwrap();
    assert_eq!(msg.status, Status::Resolved);
    assert_eq!(msg.alerts[0].labels["pod"], "heart-6d5f7c9b8-x2x4p");
}

#[tokio::test]
async fn direct_webhook_mode_delivers_firing_then_resolved_v4_payloads() {
    let sink = HttpSink::start().await;
    let (_registry, m) = metrics();
    let receivers = vec![
        Receiver {
            name: "auto-healer".into(),
            url: format!("{}/healer", sink.url()),
            bearer_token: None,
        },
        Receiver {
            name: "alert-service".into(),
            url: format!("{}/alerts", sink.url()),
            bearer_token: None,
        },
    ];
    let mut publisher = Publisher::new(
        Sink::Webhooks {
            http: traced_client(),
            receivers,
        },
        fast_config(),
        m,
        None,
    );
    let f = crash_loop("heart-6d5f7c9b8-x2x4p").with_since(Some(1_790_000_000));
    publisher.tick(std::slice::from_ref(&f)).await;
    publisher.tick(std::slice::from_ref(&f)).await; // not due again: no duplicate
    let firing = sink.wait_for_requests(2, Duration::from_secs(5)).await;
    assert_eq!(firing.len(), 2);
    for r in &firing {
        assert_eq!(r.method, "POST");
        let msg = WebhookMessage::from_slice(&r.body)
            .unwrap_or_else(|e| panic!("{e}: {}", r.body_text()));
        assert_eq!(msg.version, "4");
        assert_eq!(msg.status, Status::Firing);
        let expected = if r.path == "/healer" {
            "auto-healer"
        } else {
            "alert-service"
        };
        assert_eq!(msg.receiver, expected);
        let alert = &msg.alerts[0];
        assert_eq!(alert.labels, f.alert_labels());
        assert_eq!(
            alert.fingerprint,
            alertmanager::Fingerprint::of_labels(&alert.labels)
        );
        assert_eq!(alert.ends_at, None);
        assert_eq!(alert.starts_at.unix_timestamp(), 1_790_000_000);
        assert!(
            msg.group_key.contains("pod=\"heart-6d5f7c9b8-x2x4p\""),
            "{}",
            msg.group_key
        );
        assert_eq!(alert.annotations["description"], f.description);
    }
    sink.clear();
    publisher.tick(&[]).await;
    let resolved = sink.wait_for_requests(2, Duration::from_secs(5)).await;
    for r in &resolved {
        let msg = WebhookMessage::from_slice(&r.body).unwrap();
        assert_eq!(msg.status, Status::Resolved);
        assert!(msg.alerts[0].ends_at.is_some());
    }
    publisher.tick(&[]).await;
    assert_eq!(sink.requests().len(), 2, "resolved is sent once");
}

/// A traced client as the service builds one (metrics on a throwaway registry).
fn traced_client() -> telemetry::client::HttpClient {
    let metrics = telemetry::client::ClientMetrics::new(&prometheus::Registry::new()).unwrap();
    telemetry::client::HttpClient::new(metrics)
}
