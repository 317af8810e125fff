//! Against a real Alertmanager (testbed): an alert posted to Alertmanager reaches the healer's
//! webhook; every escalation step fails to verify; the healer posts `RemediationFailed`, which
//! Alertmanager then holds with the right labels.

mod support;

use std::sync::Arc;
use std::time::Duration;

use alertmanager::{AlertmanagerClient, Matcher, PostableAlert};
use auto_healer::local::FileStore;
use auto_healer::platform::LeaderFlag;
use auto_healer::{Adapters, AppState, Config, app};
use service_kit::Context;
use support::recording::Recording;

#[tokio::test]
async fn remediation_failed_reaches_alertmanager_with_the_right_labels() {
    // The healer, served on a free port, is Alertmanager's webhook receiver.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let healer = format!("http://{}", listener.local_addr().unwrap());
    let am = testbed::Alertmanager::start(
        &testbed::AlertmanagerConfig::new()
            .webhook_with_token(
                "auto-healer",
                format!("{healer}/webhook/alertmanager"),
                "hook-token",
            )
            .to_yaml(),
    )
    .await;

    let dir = tempfile::tempdir().unwrap();
    let ctx = Context::for_tests(auto_healer::SERVICE);
    let config = Config {
        state_dir: dir.path().to_owned(),
        alertmanager_url: Some(am.url()),
        token: Some("hook-token".to_owned().into()),
        ..Config::default()
    };
    let platform = Recording::default();
    *platform.fail_verify.lock().unwrap() = true;
    let state = AppState::with_adapters(
        &ctx,
        config,
        Adapters {
            lease_task: None,
            platform: Arc::new(platform.clone()),
            store: Arc::new(FileStore::new(dir.path())),
            leader: Arc::new(LeaderFlag::new(true)),
        },
    )
    .unwrap();
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, service_kit::assemble(&ctx, app(state))).await;
    });

    let client = AlertmanagerClient::new(
        am.url(),
        telemetry::client::HttpClient::new(telemetry::client::ClientMetrics::unregistered()),
    )
    .unwrap();
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

    let arrived = testbed::wait_until(Duration::from_secs(30), || async {
        !client
            .alerts(&[Matcher::equal("alertname", "RemediationFailed")])
            .await
            .unwrap_or_default()
            .is_empty()
    })
    .await;
    assert!(
        arrived,
        "no RemediationFailed in Alertmanager; healer records: {:?}\n{}",
        platform.records(),
        am.log_tail()
    );
    let alerts = client
        .alerts(&[Matcher::equal("alertname", "RemediationFailed")])
        .await
        .unwrap();
    assert_eq!(alerts.len(), 1);
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
    let steps: Vec<String> = platform
        .executed()
        .iter()
        .map(|e| e.action.clone())
        .collect();
    assert_eq!(steps, ["delete-pod", "rollout-restart", "rollback"]);

    // A forged alert straight to the webhook (with the token, as a replay would have it):
    // Alertmanager holds no such alert, so the healer does nothing and says why.
    let forged = alertmanager::WebhookMessage::builder("auto-healer")
        .alert(alertmanager::Alert::firing([
            ("alertname", "Forged"),
            ("namespace", "organism"),
            ("pod", "brain-abc"),
            ("workload", "brain"),
            ("remediation", "restart-pod"),
        ]))
        .build();
    let resp = testbed::http_client()
        .post(format!("{healer}/webhook/alertmanager"))
        .bearer_auth("hook-token")
        .json(&forged)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let refused = testbed::wait_until(Duration::from_secs(10), || async {
        platform
            .records()
            .iter()
            .any(|r| r.alertname == "Forged" && r.guard.as_deref() == Some("unconfirmed"))
    })
    .await;
    assert!(refused, "{:?}", platform.records());
    assert!(
        !platform
            .executed()
            .iter()
            .any(|e| e.target.key().contains("brain")),
        "acted on a forged alert"
    );
    server.abort();
}
