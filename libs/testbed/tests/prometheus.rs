//! Prometheus scrapes a target and answers queries about it.

use std::time::Duration;

use http::StatusCode;
use testbed::{HttpSink, Prometheus, PrometheusOptions, RuleFile, wait_until};

#[tokio::test]
async fn scrapes_a_target_and_answers_a_query() {
    let target = HttpSink::start().await;
    target.set_response(
        StatusCode::OK,
        "text/plain; version=0.0.4",
        "# TYPE testbed_answer gauge\ntestbed_answer{kind=\"real\"} 42\n",
    );
    let prometheus = Prometheus::start(PrometheusOptions {
        scrape_targets: vec![("sink".into(), target.addr().to_string())],
        ..PrometheusOptions::default()
    })
    .await;

    let found = wait_until(Duration::from_secs(30), || async {
        prometheus
            .query("testbed_answer")
            .await
            .is_ok_and(|s| !s.is_empty())
    })
    .await;
    assert!(
        found,
        "no testbed_answer series; log:\n{}",
        prometheus.log_tail()
    );
    let series = prometheus.query("testbed_answer").await.unwrap();
    assert_eq!(series.len(), 1);
    assert_eq!(series[0].value, 42.0);
    assert_eq!(series[0].metric["job"], "sink");
    assert_eq!(series[0].metric["instance"], target.addr().to_string());
    assert_eq!(series[0].metric["kind"], "real");
    assert!(
        target
            .requests_to("/metrics")
            .iter()
            .all(|r| r.method == "GET"),
        "Prometheus scrapes /metrics with GET"
    );

    let up = prometheus.query("up{job=\"sink\"}").await.unwrap();
    assert_eq!(up[0].value, 1.0);
    let scalar = prometheus
        .query("scalar(testbed_answer) * 2")
        .await
        .unwrap();
    assert_eq!(scalar[0].value, 84.0);
    let error = prometheus.query("sum(").await.unwrap_err();
    assert!(error.to_string().contains("parse error"), "{error}");
}

#[tokio::test]
async fn a_broken_rule_file_fails_start_with_the_log() {
    let start = tokio::spawn(Prometheus::start(PrometheusOptions {
        rule_files: vec![RuleFile::contents(
            "groups: [{name: g, rules: [{alert: A, expr: 'sum('}]}]\n",
        )],
        ..PrometheusOptions::default()
    }));
    let panic = start.await.expect_err("start must fail").into_panic();
    let message = panic.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(message.contains("prometheus exited"), "{message}");
    assert!(
        message.contains("rules-0.yml"),
        "the log tail names the bad file: {message}"
    );
}
