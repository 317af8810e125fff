//! Publishing against real peers: a real Alertmanager (testbed) and a real HTTP receiver
//! (testbed HttpSink).

use std::time::Duration;

use alertmanager::{AlertmanagerClient, GettableAlert, Matcher, Status, WebhookMessage};
use health_monitor::config::{PublishConfig, Receiver};
use health_monitor::finding::{Finding, FindingKind, ObjectRef, Remediation, Severity};
use health_monitor::metrics::Metrics;
use health_monitor::publish::{Publisher, Sink};
use http::StatusCode;
use testbed::{Alertmanager, HttpSink, wait_until};

mod support;
use support::{alertmanager_notifying, scrape};

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

/// A bound for waits on Alertmanager (1 s grouping): a test gone wrong, not a timing
/// requirement.
const WAIT: Duration = Duration::from_secs(20);

/// A real Alertmanager notifying an HTTP sink, a client of its API, and a publisher posting
/// to it.
struct ToAlertmanager {
    am: Alertmanager,
    sink: HttpSink,
    client: AlertmanagerClient,
    registry: prometheus::Registry,
    publisher: Publisher,
}

impl ToAlertmanager {
    async fn start() -> Self {
        let (am, sink, client) = alertmanager_notifying("/webhook/alertmanager").await;
        let (registry, m) = metrics();
        let publisher = Publisher::new(Sink::Alertmanager(client.clone()), fast_config(), m, None);
        Self {
            am,
            sink,
            client,
            registry,
            publisher,
        }
    }

    async fn crash_loops(&self) -> Vec<GettableAlert> {
        self.client
            .alerts(&[Matcher::equal("alertname", "CrashLoopBackOff")])
            .await
            .unwrap()
    }

    /// Publishes `finding`, then publishes it gone.
    async fn fire_and_clear(&mut self, finding: &Finding) {
        self.publisher.tick(std::slice::from_ref(finding)).await;
        self.publisher.tick(&[]).await;
        assert_eq!(self.publisher.pending(), 0);
    }
}

/// A publisher delivering straight to `receivers`.
fn to_webhooks(receivers: Vec<Receiver>) -> (prometheus::Registry, Publisher) {
    let (registry, m) = metrics();
    let sink = Sink::Webhooks {
        http: traced_client(),
        receivers,
    };
    (registry, Publisher::new(sink, fast_config(), m, None))
}

fn receiver(name: &str, url: String, bearer_token: Option<&str>) -> Receiver {
    Receiver {
        name: name.into(),
        url,
        bearer_token: bearer_token.map(str::to_owned),
    }
}

#[tokio::test]
async fn a_finding_fires_in_alertmanager_with_the_contract_labels() {
    let mut to = ToAlertmanager::start().await;
    let finding = crash_loop("heart-6d5f7c9b8-x2x4p");
    to.publisher.tick(std::slice::from_ref(&finding)).await;
    assert_eq!(to.publisher.pending(), 0, "delivered");

    let alerts = to.crash_loops().await;
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
    assert_eq!(
        a.fingerprint,
        alertmanager::Fingerprint::of_labels(&finding.alert_labels())
    );
}

#[tokio::test]
async fn a_firing_alert_carries_summary_runbook_and_a_future_ends_at() {
    let mut to = ToAlertmanager::start().await;
    let finding = crash_loop("heart-6d5f7c9b8-x2x4p");
    to.publisher.tick(std::slice::from_ref(&finding)).await;
    let a = &to.crash_loops().await[0];
    assert_eq!(a.annotations["summary"], finding.summary);
    assert!(a.annotations["runbook_url"].ends_with("#crashloopbackoff"));
    assert!(
        a.ends_at > time::OffsetDateTime::now_utc(),
        "endsAt in the future while firing"
    );
}

#[tokio::test]
async fn a_persisting_finding_is_re_sent_with_a_later_ends_at() {
    let mut to = ToAlertmanager::start().await;
    let finding = crash_loop("heart-6d5f7c9b8-x2x4p");
    to.publisher.tick(std::slice::from_ref(&finding)).await;
    let first_end = to.crash_loops().await[0].ends_at;
    // Past resend_interval (1 s): due again.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    to.publisher.tick(std::slice::from_ref(&finding)).await;
    let again = to.crash_loops().await;
    assert!(
        again[0].ends_at > first_end,
        "re-posted with a later endsAt"
    );
}

#[tokio::test]
async fn alertmanager_notifies_the_receiver_of_a_firing_alert() {
    let mut to = ToAlertmanager::start().await;
    let finding = crash_loop("heart-6d5f7c9b8-x2x4p");
    to.publisher.tick(std::slice::from_ref(&finding)).await;
    let firing = to.sink.wait_for_requests(1, WAIT).await;
    let msg = WebhookMessage::from_slice(&firing[0].body).unwrap();
    assert_eq!(msg.status, Status::Firing);
}

#[tokio::test]
async fn a_cleared_finding_is_no_longer_active_in_alertmanager() {
    let mut to = ToAlertmanager::start().await;
    to.fire_and_clear(&crash_loop("heart-6d5f7c9b8-x2x4p"))
        .await;
    let gone = wait_until(WAIT, || async { to.crash_loops().await.is_empty() }).await;
    assert!(gone, "the alert is still active in Alertmanager");
}

#[tokio::test]
async fn alertmanager_notifies_the_receiver_of_a_resolved_alert() {
    let mut to = ToAlertmanager::start().await;
    let finding = crash_loop("heart-6d5f7c9b8-x2x4p");
    to.publisher.tick(std::slice::from_ref(&finding)).await;
    // Alertmanager tells a receiver of a resolve only when it told it of the firing.
    to.sink.wait_for_requests(1, WAIT).await;
    to.publisher.tick(&[]).await;
    let resolved = wait_until(WAIT, || async {
        to.sink.requests().iter().any(|r| {
            WebhookMessage::from_slice(&r.body).is_ok_and(|m| m.status == Status::Resolved)
        })
    })
    .await;
    assert!(resolved, "no resolved notification; {}", to.am.log_tail());
}

#[tokio::test]
async fn a_delivered_resolve_is_counted_as_published() {
    let mut to = ToAlertmanager::start().await;
    to.fire_and_clear(&crash_loop("heart-6d5f7c9b8-x2x4p"))
        .await;
    let m = scrape(&to.registry);
    let published = "health_monitor_alerts_published_total";
    let labels = [("sink", "alertmanager"), ("status", "resolved")];
    assert_eq!(m.value(published, &labels), Some(1.0));
}

/// A publisher to an Alertmanager nobody listens for, keeping at most two alerts.
fn to_nowhere() -> (prometheus::Registry, Publisher) {
    let port = testbed::free_port();
    let client = testbed::alertmanager_client(format!("http://127.0.0.1:{port}"))
        .with_timeout(Duration::from_millis(500));
    let (registry, m) = metrics();
    let config = PublishConfig {
        queue_capacity: 2,
        ..fast_config()
    };
    (
        registry,
        Publisher::new(Sink::Alertmanager(client), config, m, None),
    )
}

#[tokio::test]
async fn an_unreachable_alertmanager_keeps_the_alerts_and_counts_the_failure() {
    let (registry, mut publisher) = to_nowhere();
    publisher.tick(&[crash_loop("a"), crash_loop("b")]).await;
    assert_eq!(publisher.pending(), 2);
    let labels = [("sink", "alertmanager"), ("reason", "connect")];
    assert_eq!(
        scrape(&registry).value("health_monitor_publish_failures_total", &labels),
        Some(1.0)
    );
}

#[tokio::test]
async fn a_full_retry_queue_drops_the_oldest_resolve() {
    let (registry, mut publisher) = to_nowhere();
    publisher.tick(&[crash_loop("a"), crash_loop("b")]).await;
    // a and b clear (their resolves wait), c appears: the queue is full, the oldest resolve goes.
    publisher.tick(&[crash_loop("c")]).await;
    assert_eq!(
        scrape(&registry).value("health_monitor_publish_dropped_total", &[]),
        Some(1.0)
    );
    assert_eq!(publisher.pending(), 2);
}

/// A finding published and cleared while the one receiver answers 503.
async fn cleared_during_an_outage() -> (HttpSink, prometheus::Registry, Publisher) {
    let sink = HttpSink::start().await;
    sink.set_status(StatusCode::SERVICE_UNAVAILABLE);
    let url = format!("{}/webhook/alertmanager", sink.url());
    let (registry, mut publisher) = to_webhooks(vec![receiver("auto-healer", url, Some("s3cret"))]);
    let f = crash_loop("heart-6d5f7c9b8-x2x4p");
    publisher.tick(std::slice::from_ref(&f)).await;
    publisher.tick(&[]).await;
    (sink, registry, publisher)
}

#[tokio::test]
async fn a_failing_receiver_keeps_the_resolve_and_counts_the_5xx() {
    let (_sink, registry, publisher) = cleared_during_an_outage().await;
    assert_eq!(publisher.pending(), 1, "the resolve waits");
    let labels = [("sink", "webhook"), ("reason", "http_5xx")];
    let failures = scrape(&registry)
        .value("health_monitor_publish_failures_total", &labels)
        .unwrap_or(0.0);
    assert!(failures >= 1.0, "{failures}");
}

#[tokio::test]
async fn after_a_short_receiver_outage_only_the_owed_resolve_is_delivered() {
    let (sink, _registry, mut publisher) = cleared_during_an_outage().await;
    sink.set_status(StatusCode::OK);
    sink.clear();
    // Retries back off; count rounds, not time.
    let mut rounds = 0;
    while publisher.pending() > 0 && rounds < 100 {
        publisher.tick(&[]).await;
        rounds += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(publisher.pending(), 0, "retries stopped");
    let requests = sink.requests();
    assert_eq!(requests.len(), 1, "only the resolve is still owed");
    assert_eq!(requests[0].header("authorization"), Some("Bearer s3cret"));
    let msg = WebhookMessage::from_slice(&requests[0].body).unwrap();
    assert_eq!(msg.status, Status::Resolved);
    assert_eq!(msg.alerts[0].labels["pod"], "heart-6d5f7c9b8-x2x4p");
}

/// A publisher delivering straight to two receivers on one sink (`/healer`, `/alerts`).
async fn two_receivers() -> (HttpSink, Publisher) {
    let sink = HttpSink::start().await;
    let (_registry, publisher) = to_webhooks(vec![
        receiver("auto-healer", format!("{}/healer", sink.url()), None),
        receiver("alert-service", format!("{}/alerts", sink.url()), None),
    ]);
    (sink, publisher)
}

#[tokio::test]
async fn direct_webhooks_deliver_a_v4_firing_message_to_each_receiver() {
    let (sink, mut publisher) = two_receivers().await;
    let f = crash_loop("heart-6d5f7c9b8-x2x4p").with_since(Some(1_790_000_000));
    publisher.tick(std::slice::from_ref(&f)).await;
    let firing = sink.wait_for_requests(2, WAIT).await;
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
}

#[tokio::test]
async fn a_firing_alert_not_due_again_is_not_re_sent() {
    let (sink, mut publisher) = two_receivers().await;
    let f = crash_loop("heart-6d5f7c9b8-x2x4p");
    publisher.tick(std::slice::from_ref(&f)).await;
    publisher.tick(std::slice::from_ref(&f)).await;
    assert_eq!(sink.requests().len(), 2, "one message per receiver");
}

#[tokio::test]
async fn a_cleared_finding_is_sent_resolved_once_to_each_receiver() {
    let (sink, mut publisher) = two_receivers().await;
    let f = crash_loop("heart-6d5f7c9b8-x2x4p");
    publisher.tick(std::slice::from_ref(&f)).await;
    sink.clear();
    publisher.tick(&[]).await;
    publisher.tick(&[]).await;
    let resolved = sink.requests();
    assert_eq!(resolved.len(), 2, "resolved is sent once");
    for r in &resolved {
        let msg = WebhookMessage::from_slice(&r.body).unwrap();
        assert_eq!(msg.status, Status::Resolved);
        assert!(msg.alerts[0].ends_at.is_some());
    }
}

/// A traced client as the service builds one (metrics on a throwaway registry).
fn traced_client() -> telemetry::client::HttpClient {
    let metrics = telemetry::client::ClientMetrics::new(&prometheus::Registry::new()).unwrap();
    telemetry::client::HttpClient::new(metrics)
}
