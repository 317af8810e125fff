//! The per-request log line, through `init` and a real OTLP receiver: one line per request with
//! the server span's ids, sampled trace or not; levels by status; probes left out; sampling of
//! successful lines by ratio.

use std::collections::HashMap;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use http::{Request, StatusCode};
use otlp_sink::{OtlpSink, ReceivedLog};
use prometheus::Registry;
use telemetry::TelemetryConfig;
use telemetry::http::{AccessLogConfig, ServerMetrics};
use testbed::TestRouter;

fn app(metrics: &ServerMetrics) -> Router {
    metrics.instrument_router(
        Router::new()
            .route("/items/{id}", get(|| async { "ok" }))
            .route(
                "/broken",
                get(|| async { (StatusCode::BAD_GATEWAY, "upstream down") }),
            )
            .route("/healthz", get(|| async { "ok" })),
    )
}

/// `GET path` with a request id (and a `traceparent` when given); the `traceresponse` header.
async fn call(app: &Router, path: &str, traceparent: Option<&str>, request_id: &str) -> String {
    let mut req = Request::get(path).header("x-request-id", request_id);
    if let Some(tp) = traceparent {
        req = req.header("traceparent", tp);
    }
    let reply = TestRouter::new(app.clone())
        .send(req.body(Body::empty()).unwrap())
        .await;
    reply.header("traceresponse").unwrap_or_default().to_owned()
}

fn lines_of<'a>(logs: &'a [ReceivedLog], request_id: &str) -> Vec<&'a ReceivedLog> {
    logs.iter()
        .filter(|l| l.body() == "request" && l.attr("request_id").as_deref() == Some(request_id))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_line_per_request_with_the_server_span_ids() {
    let sink = OtlpSink::start().await.unwrap();
    let endpoint = sink.http_endpoint();
    let env: HashMap<&str, &str> = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_SERVICE_NAME", "access-test"),
    ]
    .into_iter()
    .collect();
    let config = TelemetryConfig::from_env(&env, "fallback", "1.0.0").unwrap();
    assert_eq!(config.access_log, AccessLogConfig::default());
    let registry = Registry::new();
    let telemetry = telemetry::init(&config, &registry).unwrap();
    let metrics = ServerMetrics::new(&registry)
        .unwrap()
        .with_access_log(config.access_log);
    let app = app(&metrics);

    let ok = call(&app, "/items/7", None, "req-ok").await;
    let unsampled = call(
        &app,
        "/items/8",
        Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"),
        "req-unsampled",
    )
    .await;
    call(&app, "/broken", None, "req-broken").await;
    call(&app, "/nowhere", None, "req-missing").await;
    call(&app, "/healthz", None, "req-probe").await;

    // Successful lines only 0 % of the time: errors are logged all the same.
    let errors_only = ServerMetrics::new(&Registry::new())
        .unwrap()
        .with_access_log(AccessLogConfig {
            sample_ratio: 0.0,
            ..AccessLogConfig::default()
        });
    let errors_only = self::app(&errors_only);
    call(&errors_only, "/items/9", None, "req-sampled-out").await;
    call(&errors_only, "/broken", None, "req-sampled-error").await;

    let got = sink
        .wait_for(Duration::from_secs(10), |spans, logs| {
            spans.len() >= 3
                && [
                    "req-ok",
                    "req-unsampled",
                    "req-broken",
                    "req-missing",
                    "req-sampled-error",
                ]
                .iter()
                .all(|id| !lines_of(logs, id).is_empty())
        })
        .await;
    // Time for a duplicate or a probe line to show up, were there one.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let (spans, logs) = (sink.spans(), sink.logs());
    assert!(got, "spans {spans:#?} logs {logs:#?}");

    let ok_lines = lines_of(&logs, "req-ok");
    assert_eq!(ok_lines.len(), 1, "{ok_lines:#?}");
    let line = ok_lines[0];
    let span = spans
        .iter()
        .find(|s| s.attr("url.path").as_deref() == Some("/items/7"))
        .unwrap();
    assert_eq!(line.trace_id(), span.trace_id());
    assert_eq!(
        line.span_id(),
        span.span_id(),
        "the line names its server span"
    );
    assert!(ok.contains(&span.trace_id()));
    assert_eq!(line.service, "access-test");
    assert_eq!(line.attr("http.request.method").as_deref(), Some("GET"));
    assert_eq!(line.attr("http.route").as_deref(), Some("/items/{id}"));
    assert_eq!(line.attr("url.path").as_deref(), Some("/items/7"));
    assert_eq!(
        line.attr("http.response.status_code").as_deref(),
        Some("200")
    );
    assert!(line.attr("duration_ms").unwrap().parse::<f64>().unwrap() >= 0.0);
    assert_eq!(line.record.severity_text, "INFO");

    // Not sampled: no span, the line all the same, in the caller's trace.
    let quiet = lines_of(&logs, "req-unsampled");
    assert_eq!(quiet.len(), 1);
    assert_eq!(quiet[0].trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
    assert!(unsampled.ends_with("-00"), "{unsampled}");
    assert!(
        !spans
            .iter()
            .any(|s| s.trace_id() == "4bf92f3577b34da6a3ce929d0e0e4736"),
        "an unsampled trace was exported"
    );

    assert_eq!(
        lines_of(&logs, "req-broken")[0].record.severity_text,
        "ERROR"
    );
    let missing = lines_of(&logs, "req-missing");
    assert_eq!(missing[0].record.severity_text, "WARN");
    assert_eq!(
        missing[0].attr("http.response.status_code").as_deref(),
        Some("404")
    );
    assert!(
        lines_of(&logs, "req-probe").is_empty(),
        "probes are not logged"
    );
    assert!(lines_of(&logs, "req-sampled-out").is_empty());
    assert_eq!(lines_of(&logs, "req-sampled-error").len(), 1);
    telemetry.guard.shutdown(Duration::from_secs(2)).await;
}
