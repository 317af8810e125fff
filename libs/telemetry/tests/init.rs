//! `init` end to end in one process: a request through the axum layer becomes a server span
//! exported over OTLP/gRPC, and a log inside it carries the trace id.

use std::collections::HashMap;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use http::Request;
use otlp_sink::OtlpSink;
use prometheus::Registry;
use telemetry::TelemetryConfig;
use testbed::TestRouter;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_exports_server_spans_and_logs_over_grpc() {
    let sink = OtlpSink::start().await.unwrap();
    let endpoint = sink.endpoint();
    let env: HashMap<&str, &str> = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ("OTEL_SERVICE_NAME", "init-test"),
        ("K8S_POD_NAME", "init-test-0"),
    ]
    .into_iter()
    .collect();
    let config = TelemetryConfig::from_env(&env, "fallback", "1.0.0").unwrap();
    let registry = Registry::new();
    let telemetry = telemetry::init(&config, &registry).unwrap();
    let metrics = telemetry::http::ServerMetrics::new(&registry).unwrap();
    let app = metrics.instrument_router(Router::new().route(
        "/items/{id}",
        get(|| async {
            tracing::info!("inside the request");
            "ok"
        }),
    ));
    let app = TestRouter::new(app);
    let root = app.get("/items/8").await;
    assert!(
        root.header("traceresponse").is_some(),
        "a request without traceparent starts a trace"
    );
    let response = app
        .send(
            Request::get("/items/7")
                .header(
                    "traceparent",
                    "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                )
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(response.status, 200);
    assert!(
        response
            .header("traceresponse")
            .unwrap()
            .starts_with("00-0af7651916cd43dd8448eb211c80319c-")
    );
    let got = sink
        .wait_for(Duration::from_secs(10), |spans, logs| {
            spans.len() >= 2 && logs.len() >= 2
        })
        .await;
    assert!(got, "spans {:?} logs {:?}", sink.spans(), sink.logs());
    let span = sink
        .spans()
        .into_iter()
        .find(|s| s.attr("url.path").as_deref() == Some("/items/7"))
        .unwrap();
    assert_eq!(span.service, "init-test");
    assert_eq!(span.span.name, "GET /items/{id}");
    assert_eq!(
        span.trace_id(),
        "0af7651916cd43dd8448eb211c80319c",
        "W3C parent extracted"
    );
    assert_eq!(span.parent_span_id(), "b7ad6b7169203331");
    let log = sink
        .logs()
        .into_iter()
        .find(|l| l.body() == "inside the request" && l.trace_id() == span.trace_id())
        .expect("the log inside the request carries its trace id");
    assert_eq!(log.trace_id(), "0af7651916cd43dd8448eb211c80319c");
    // With the collector up, shutdown flushes and returns; a flush that hung would use the whole
    // bound (a long one, so a loaded machine does not decide the outcome).
    let bound = Duration::from_secs(30);
    let start = std::time::Instant::now();
    telemetry.guard.shutdown(bound).await;
    assert!(start.elapsed() < bound, "shutdown ran into its bound");
}
