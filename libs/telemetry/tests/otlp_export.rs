//! The span exporter (`opentelemetry-otlp`, as [`telemetry::span_exporter`] configures it)
//! against real receivers: the in-process sink over gRPC and over http/protobuf (spans, resource
//! and headers arrive through the SDK's batch processor, gzip when asked), and failures (no
//! collector, an error answer) reported within the timeout.

use std::time::{Duration, Instant};

use opentelemetry::KeyValue;
use opentelemetry::trace::{Span as _, SpanKind, Tracer as _, TracerProvider as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanExporter as _};
use otlp_sink::OtlpSink;
use telemetry::config::{OtlpConfig, Protocol};
use telemetry::span_exporter;

fn config(protocol: Protocol, timeout: Duration) -> OtlpConfig {
    OtlpConfig {
        protocol,
        traces_endpoint: None,
        logs_endpoint: None,
        timeout,
        max_queue_size: 64,
        traces_headers: vec![
            ("authorization".to_owned(), "Bearer s3cret".to_owned()),
            ("x-scope-orgid".to_owned(), "tenant 1".to_owned()),
        ],
        compression: None,
    }
}

fn resource() -> Resource {
    Resource::builder_empty()
        .with_service_name("heart")
        .with_attributes([KeyValue::new("service.instance.id", "i-1")])
        .build()
}

/// Sends two spans through the SDK's batch processor and our exporter, then checks what arrived.
async fn spans_arrive(otlp: OtlpConfig, endpoint: String, sink: &OtlpSink) {
    let exporter = span_exporter(&otlp, &endpoint).expect("exporter");
    let provider = SdkTracerProvider::builder()
        .with_resource(resource())
        .with_batch_exporter(exporter)
        .build();
    let tracer = provider.tracer("organism");
    let mut parent = tracer
        .span_builder("GET /beat")
        .with_kind(SpanKind::Server)
        .with_attributes([
            KeyValue::new("http.request.method", "GET"),
            KeyValue::new("http.response.status_code", 200_i64),
        ])
        .start(&tracer);
    let trace_id = parent.span_context().trace_id();
    parent.add_event("beat", vec![KeyValue::new("beat.number", 7_i64)]);
    parent.end();
    tracer.start("beat_work").end();
    // The batch processor exports from its own thread, which waits on this runtime's workers.
    tokio::task::spawn_blocking(move || provider.force_flush())
        .await
        .unwrap()
        .expect("flush");

    let spans = sink.spans();
    assert_eq!(spans.len(), 2, "{spans:?}");
    let beat = spans.iter().find(|s| s.span.name == "GET /beat").unwrap();
    assert_eq!(beat.service, "heart");
    assert_eq!(beat.trace_id(), format!("{trace_id}"));
    assert_eq!(beat.attr("http.request.method").as_deref(), Some("GET"));
    assert_eq!(beat.span.events[0].name, "beat");
    let headers = sink.last_trace_headers();
    assert_eq!(headers["authorization"], "Bearer s3cret");
    assert_eq!(headers["x-scope-orgid"], "tenant 1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_reach_a_grpc_collector_with_resource_and_headers() {
    let sink = OtlpSink::start().await.unwrap();
    spans_arrive(
        config(Protocol::Grpc, Duration::from_secs(2)),
        sink.endpoint(),
        &sink,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_compressed_spans_reach_a_grpc_collector() {
    let sink = OtlpSink::start().await.unwrap();
    let mut otlp = config(Protocol::Grpc, Duration::from_secs(2));
    otlp.compression = Some(telemetry::config::Compression::Gzip);
    spans_arrive(otlp, sink.endpoint(), &sink).await;
    assert_eq!(sink.last_trace_headers()["grpc-encoding"], "gzip");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_reach_an_http_protobuf_collector_with_resource_and_headers() {
    let sink = OtlpSink::start().await.unwrap();
    spans_arrive(
        config(Protocol::HttpProtobuf, Duration::from_secs(2)),
        format!("{}/v1/traces", sink.http_endpoint()),
        &sink,
    )
    .await;
}

fn one_span() -> Vec<opentelemetry_sdk::trace::SpanData> {
    let exporter = opentelemetry_sdk::trace::InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    provider.tracer("t").start("s").end();
    exporter.get_finished_spans().unwrap()
}

/// Exports `batch` as the SDK's batch processor does: from a thread of its own, blocking on
/// the export future (the http/protobuf client is reqwest's blocking one).
async fn export_off_runtime(
    exporter: opentelemetry_otlp::SpanExporter,
) -> opentelemetry_sdk::error::OTelSdkResult {
    let batch = one_span();
    tokio::task::spawn_blocking(move || futures::executor::block_on(exporter.export(batch)))
        .await
        .unwrap()
}

/// A port nothing listens on.
async fn closed_port() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_collector_fails_the_export_within_the_timeout() {
    for (protocol, path) in [(Protocol::Grpc, ""), (Protocol::HttpProtobuf, "/v1/traces")] {
        let endpoint = format!("{}{path}", closed_port().await);
        let exporter =
            span_exporter(&config(protocol, Duration::from_millis(300)), &endpoint).unwrap();
        let started = Instant::now();
        let result = export_off_runtime(exporter).await;
        assert!(result.is_err(), "{protocol:?}: {result:?}");
        // Below the exporter's own default (10 s), far above the 300 ms asked: a timeout that
        // was not applied shows, a loaded machine does not.
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{protocol:?} took {:?}",
            started.elapsed()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_answer_is_retried_then_fails_the_export() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = calls.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move || {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async { (http::StatusCode::SERVICE_UNAVAILABLE, "busy") }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    let exporter = span_exporter(
        &config(Protocol::HttpProtobuf, Duration::from_secs(2)),
        &format!("http://{addr}/v1/traces"),
    )
    .unwrap();
    let result = export_off_runtime(exporter).await;
    assert!(result.is_err(), "{result:?}");
    assert!(
        calls.load(std::sync::atomic::Ordering::SeqCst) > 1,
        "a 503 is retryable: the exporter must try again"
    );
}

#[tokio::test]
async fn a_bad_header_name_is_refused_naming_the_header() {
    let mut otlp = config(Protocol::Grpc, Duration::from_secs(1));
    otlp.traces_headers = vec![("bad header".to_owned(), "v".to_owned())];
    let err = span_exporter(&otlp, "http://127.0.0.1:4317").unwrap_err();
    assert!(err.to_string().contains("bad header"), "{err}");
}
