//! The trace of a pulse, exported over OTLP to an in-process receiver: brain's server span
//! (carrying `brain.circuit_breaker.state`), its client span, and heart's server span, all in
//! one trace, heart's span a child of brain's client span. One test: telemetry is per process.

#[path = "api/helpers.rs"]
mod helpers;

use std::collections::HashMap;
use std::time::Duration;

use otlp_sink::OtlpSink;
use prometheus::Registry;
use telemetry::TelemetryConfig;

use helpers::{quick_breaker, spawn_brain, spawn_heart};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pulse_is_one_trace_from_brain_to_heart() {
    let sink = OtlpSink::start().await.unwrap();
    let endpoint = sink.endpoint();
    let env: HashMap<&str, &str> = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ("OTEL_SERVICE_NAME", "organism-test"),
    ]
    .into_iter()
    .collect();
    let config = TelemetryConfig::from_env(&env, "organism-test", "1.0.0").unwrap();
    let telemetry = telemetry::init(&config, &Registry::new()).unwrap();

    let heart = spawn_heart().await;
    let brain = spawn_brain(&heart.url(), quick_breaker()).await;
    let a = brain.client().get("/think?pulse=true").await;
    assert_eq!(a.status, 200, "{}", a.text);

    let done = sink
        .wait_for(Duration::from_secs(10), |spans, _| {
            spans.iter().any(|s| s.span.name == "GET /think")
                && spans.iter().any(|s| s.span.name == "GET /beat")
        })
        .await;
    let spans = sink.spans();
    assert!(
        done,
        "spans: {:?}",
        spans.iter().map(|s| &s.span.name).collect::<Vec<_>>()
    );
    let think = spans.iter().find(|s| s.span.name == "GET /think").unwrap();
    let beat = spans.iter().find(|s| s.span.name == "GET /beat").unwrap();
    assert_eq!(
        think.attr("brain.circuit_breaker.state").as_deref(),
        Some("closed")
    );
    assert_eq!(
        beat.trace_id(),
        think.trace_id(),
        "brain → heart is one trace"
    );
    let call = spans
        .iter()
        .find(|s| s.span_id() == beat.parent_span_id())
        .expect("heart's span has brain's client span as parent");
    assert_eq!(call.attr("http.request.method").as_deref(), Some("GET"));
    assert_eq!(call.trace_id(), think.trace_id());

    heart.stop().await;
    brain.stop().await;
    telemetry.guard.shutdown(Duration::from_secs(2)).await;
}
