//! The trace service of a counting sink: it reads the framing of each export request down to the
//! spans (resource spans → scope spans → spans) and counts them, leaving each span's bytes
//! undecoded.
//!
//! On a real deployment the collector runs on its own CPU; on a two-core benchmark machine it
//! shares the cores with the service being measured, so the sink does as little as a receiver
//! can while still checking that what arrives is a well-formed OTLP export request.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use tonic::body::Body;
use tonic::codegen::BoxFuture;

use crate::Store;

/// `ExportTraceServiceRequest` with only the fields needed to count spans.
#[derive(Clone, PartialEq, prost::Message)]
struct CountedTraceRequest {
    #[prost(message, repeated, tag = "1")]
    resource_spans: Vec<CountedResourceSpans>,
}

/// `ResourceSpans`: the resource (tag 1) and schema URL (tag 3) are skipped.
#[derive(Clone, PartialEq, prost::Message)]
struct CountedResourceSpans {
    #[prost(message, repeated, tag = "2")]
    scope_spans: Vec<CountedScopeSpans>,
}

/// `ScopeSpans`: each span kept as its encoded bytes (a slice of the request, not a copy).
#[derive(Clone, PartialEq, prost::Message)]
struct CountedScopeSpans {
    #[prost(bytes = "bytes", repeated, tag = "2")]
    spans: Vec<bytes::Bytes>,
}

impl CountedTraceRequest {
    fn span_count(&self) -> usize {
        self.resource_spans
            .iter()
            .flat_map(|rs| &rs.scope_spans)
            .map(|ss| ss.spans.len())
            .sum()
    }
}

/// The gRPC path of `TraceService/Export`.
const EXPORT: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

/// A tonic service answering `TraceService/Export` by counting.
#[derive(Clone, Debug)]
pub(crate) struct CountingTraces(pub(crate) Arc<Store>);

impl tonic::server::NamedService for CountingTraces {
    const NAME: &'static str = "opentelemetry.proto.collector.trace.v1.TraceService";
}

struct Export(Arc<Store>);

impl tonic::server::UnaryService<CountedTraceRequest> for Export {
    type Response = ExportTraceServiceResponse;
    type Future = BoxFuture<tonic::Response<Self::Response>, tonic::Status>;

    fn call(&mut self, request: tonic::Request<CountedTraceRequest>) -> Self::Future {
        let n = request.get_ref().span_count();
        self.0.span_count.fetch_add(n as u64, Ordering::Relaxed);
        Box::pin(async {
            Ok(tonic::Response::new(ExportTraceServiceResponse {
                partial_success: None,
            }))
        })
    }
}

impl tonic::codegen::Service<http::Request<Body>> for CountingTraces {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let store = self.0.clone();
        Box::pin(async move {
            if request.uri().path() != EXPORT {
                return Ok(tonic::Status::unimplemented("only TraceService/Export").into_http());
            }
            let codec =
                tonic_prost::ProstCodec::<ExportTraceServiceResponse, CountedTraceRequest>::default(
                );
            Ok(tonic::server::Grpc::new(codec)
                .unary(Export(store), request)
                .await)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
    use prost::Message as _;

    #[test]
    fn spans_are_counted_from_the_framing_of_a_full_request() {
        let span = |name: &str| Span {
            name: name.into(),
            trace_id: vec![1; 16],
            span_id: vec![2; 8],
            ..Span::default()
        };
        let request = ExportTraceServiceRequest {
            resource_spans: vec![
                ResourceSpans {
                    resource: None,
                    scope_spans: vec![
                        ScopeSpans {
                            spans: vec![span("a"), span("b")],
                            ..ScopeSpans::default()
                        },
                        ScopeSpans {
                            spans: vec![span("c")],
                            ..ScopeSpans::default()
                        },
                    ],
                    schema_url: "https://opentelemetry.io/schemas/1.30.0".into(),
                },
                ResourceSpans {
                    scope_spans: vec![ScopeSpans {
                        spans: vec![span("d")],
                        ..ScopeSpans::default()
                    }],
                    ..ResourceSpans::default()
                },
            ],
        };
        let bytes = request.encode_to_vec();
        let counted = CountedTraceRequest::decode(bytes.as_slice()).unwrap();
        assert_eq!(counted.span_count(), 4);
        // Each span is its own encoding, untouched.
        let first = &counted.resource_spans[0].scope_spans[0].spans[0];
        assert_eq!(Span::decode(first.clone()).unwrap().name, "a");
    }

    #[test]
    fn malformed_requests_are_refused() {
        assert!(CountedTraceRequest::decode(&[0x0a, 0x05, 0x12][..]).is_err());
    }
}
