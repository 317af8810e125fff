//! Against a real Alertmanager (testbed): an alert posted to Alertmanager reaches the healer's
//! webhook; every escalation step fails to verify; the healer posts `RemediationFailed`, which
//! Alertmanager then holds with the right labels. An alert Alertmanager does not hold is never
//! acted on.
//!
//! Waits follow what the healer recorded ([`Recording::wait_for`]), not the clock; their bound
//! only ends a test that went wrong.

mod support;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use alertmanager::{Matcher, PostableAlert};
use http::StatusCode;
use support::healer::{TOKEN, TestHealer, WEBHOOK, payload};
use support::recording::Recording;
use testbed::{Alertmanager, AlertmanagerConfig};

/// A real Alertmanager whose `auto-healer` receiver posts to `healer` with the webhook token.
async fn alertmanager_sending_to(healer: SocketAddr) -> Alertmanager {
    let config = AlertmanagerConfig::new().webhook_with_token(
        "auto-healer",
        format!("http://{healer}{WEBHOOK}"),
        TOKEN,
    );
    Alertmanager::start(&config.to_yaml()).await
}

/// A healer whose every step fails to verify, confirming alerts with (and escalating to) `am`.
fn failing_healer(am: &Alertmanager) -> (TestHealer, Recording) {
    let platform = Recording::default();
    *platform.fail_verify.lock().unwrap() = true;
    let url = am.url();
    let healer = TestHealer::new(Arc::new(platform.clone()), |c| {
        c.alertmanager_url = Some(url);
    });
    (healer, platform)
}

fn free_addr() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, testbed::free_port()))
}

fn remediation_failed() -> Vec<Matcher> {
    vec![Matcher::equal("alertname", "RemediationFailed")]
}

#[tokio::test]
async fn remediation_failed_reaches_alertmanager_with_the_right_labels() {
    // The healer, served on a free port, is Alertmanager's webhook receiver.
    let addr = free_addr();
    let am = alertmanager_sending_to(addr).await;
    let (healer, platform) = failing_healer(&am);
    let _served = healer.serve_on(addr).await;
    let client = am.client();
    client
        .post_alerts(&[PostableAlert::new([
            ("alertname", "PodCrashLooping"),
            ("namespace", "organism"),
            ("pod", "heart-abc"),
            ("workload", "heart"),
            ("workload_kind", "Deployment"),
            ("remediation", "restart-pod"),
            ("finding", "crash-loop"),
            ("severity", "warning"),
        ])])
        .await
        .unwrap();

    let escalated = platform.wait_for_escalation().await;
    assert_eq!(
        platform.actions(),
        ["delete-pod", "rollout-restart", "rollback"]
    );
    assert!(
        escalated
            .message
            .contains("RemediationFailed sent to Alertmanager"),
        "{}\n{}",
        escalated.message,
        am.log_tail()
    );
    // Alertmanager answered the post: it holds the alert now.
    let alerts = client.alerts(&remediation_failed()).await.unwrap();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    let l = &alerts[0].labels;
    for (k, v) in [
        ("severity", "critical"),
        ("namespace", "organism"),
        ("pod", "heart-abc"),
        ("workload", "heart"),
        ("workload_kind", "Deployment"),
        ("finding", "crash-loop"),
        ("original_alertname", "PodCrashLooping"),
        ("rule", "crashing-pod"),
        ("service", "auto-healer"),
    ] {
        assert_eq!(l.get(k).map(String::as_str), Some(v), "label {k} in {l:?}");
    }
    assert!(
        !l.contains_key("remediation"),
        "the healer must not be asked to heal its own failure"
    );
    assert!(alerts[0].annotations["summary"].contains("deployment/organism/heart"));
}

#[tokio::test]
async fn an_alert_alertmanager_does_not_hold_is_not_acted_on() {
    // Nothing is posted to Alertmanager here: its receiver is never called.
    let am = alertmanager_sending_to(free_addr()).await;
    let (healer, platform) = failing_healer(&am);
    // A forged alert straight to the webhook (with the token, as a replay would have it).
    let forged = alertmanager::Alert::firing([
        ("alertname", "Forged"),
        ("namespace", "organism"),
        ("pod", "brain-abc"),
        ("workload", "brain"),
        ("remediation", "restart-pod"),
    ]);
    let reply = healer.post_raw(payload(vec![forged])).await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.text);
    platform
        .wait_for("refused as unconfirmed", |p| p.count("skipped") == 1)
        .await;
    let record = &platform.records()[0];
    assert_eq!(record.alertname, "Forged");
    assert_eq!(record.guard.as_deref(), Some("unconfirmed"), "{record:?}");
    assert!(platform.executed().is_empty(), "acted on a forged alert");
}
