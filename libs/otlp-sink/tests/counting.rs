//! The counting sink over a real gRPC connection: spans are counted, nothing is kept.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use otlp_sink::OtlpSink;

#[tokio::test]
async fn a_counting_sink_counts_exported_spans_and_keeps_none() {
    let sink = OtlpSink::start_counting().await.unwrap();
    let mut client = TraceServiceClient::connect(sink.endpoint()).await.unwrap();
    let spans: Vec<Span> = (0..5)
        .map(|i| Span {
            name: format!("GET /beat {i}"),
            trace_id: vec![7; 16],
            span_id: vec![i; 8],
            ..Span::default()
        })
        .collect();
    for _ in 0..3 {
        client
            .export(ExportTraceServiceRequest {
                resource_spans: vec![ResourceSpans {
                    scope_spans: vec![ScopeSpans {
                        spans: spans.clone(),
                        ..ScopeSpans::default()
                    }],
                    ..ResourceSpans::default()
                }],
            })
            .await
            .unwrap();
    }
    assert_eq!(sink.span_count(), 15);
    assert!(sink.spans().is_empty(), "a counting sink keeps nothing");
}
