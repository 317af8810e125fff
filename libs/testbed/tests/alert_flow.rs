//! End to end through real servers: a Prometheus rule fires, Alertmanager groups it and delivers
//! a webhook to an HttpSink. Doubles as the check of the `alertmanager` crate against a real
//! Alertmanager: parser, fingerprint, builder and API client.

use std::time::Duration;

use alertmanager::{Fingerprint, Matcher, Status, WebhookMessage};
use testbed::{
    Alertmanager, AlertmanagerConfig, HttpSink, Prometheus, PrometheusOptions, RuleFile,
};

const RULES: &str = r#"
groups:
  - name: testbed
    rules:
      - alert: TestbedAlwaysFiring
        expr: vector(1)
        labels:
          severity: warning
          service: heart
        annotations:
          summary: "testbed alert, value {{ $value }}"
          runbook_url: https://runbooks.organism.dev/TestbedAlwaysFiring
"#;

#[tokio::test]
async fn rule_fires_and_alertmanager_delivers_a_parseable_webhook() {
    let sink = HttpSink::start().await;
    let am = Alertmanager::start(
        &AlertmanagerConfig::new()
            .webhook(
                "testbed-sink",
                format!("{}/webhook/alertmanager", sink.url()),
            )
            .to_yaml(),
    )
    .await;
    let prometheus = Prometheus::start(PrometheusOptions {
        rule_files: vec![RuleFile::contents(RULES)],
        alertmanager: Some(am.url()),
        ..PrometheusOptions::default()
    })
    .await;

    let delivered = sink.wait_for_requests(1, Duration::from_secs(45)).await;
    let request = &delivered[0];
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, "/webhook/alertmanager");
    assert_eq!(request.header("content-type"), Some("application/json"));

    let message = WebhookMessage::from_slice(&request.body)
        .unwrap_or_else(|e| panic!("{e}: {}", request.body_text()));
    assert_eq!(message.version, "4");
    assert_eq!(message.status, Status::Firing);
    assert_eq!(message.receiver, "testbed-sink");
    assert_eq!(message.external_url, am.url());
    assert_eq!(message.group_key, "{}:{alertname=\"TestbedAlwaysFiring\"}");
    let alert = &message.alerts[0];
    assert_eq!(alert.alertname(), Some("TestbedAlwaysFiring"));
    assert_eq!(alert.labels["service"], "heart");
    assert_eq!(alert.annotations["summary"], "testbed alert, value 1");
    assert_eq!(
        alert.ends_at, None,
        "Alertmanager sends Go's zero time for a firing alert"
    );
    assert!(
        alert.generator_url.starts_with(&prometheus.url()),
        "{}",
        alert.generator_url
    );

    // The fingerprint Alertmanager computed is ours.
    assert_eq!(alert.fingerprint, Fingerprint::of_labels(&alert.labels));

    // ... and the one its API reports.
    let client = am.client();
    client.ready().await.unwrap();
    let listed = client
        .alerts(&[Matcher::equal("alertname", "TestbedAlwaysFiring")])
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].fingerprint, alert.fingerprint);
    assert_eq!(listed[0].labels, alert.labels);

    // The builder produces the same payload from the same inputs (health-monitor's direct
    // delivery must be indistinguishable from Alertmanager's).
    let rebuilt = WebhookMessage::builder("testbed-sink")
        .group_by(["alertname"])
        .external_url(am.url())
        .alert(alertmanager::Alert::new(
            alert.labels.clone(),
            alert.annotations.clone(),
            alert.starts_at,
            None,
            alert.generator_url.clone(),
        ))
        .build();
    assert_eq!(rebuilt, message);
    let delivered_json: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
    assert_eq!(serde_json::to_value(&rebuilt).unwrap(), delivered_json);
}
