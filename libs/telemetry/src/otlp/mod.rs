//! The OTLP span exporter: spans encoded (module `wire`) straight from the SDK's `SpanData`, sent
//! over gRPC (tonic) or http/protobuf (reqwest).
//!
//! `opentelemetry-otlp`'s span exporter copies every span into generated structs before
//! encoding them, which on a service exporting a span per request costs more CPU than the
//! request itself; this one writes the same bytes without the copy (see `wire.rs`). It speaks
//! the same protocol to the same endpoints with the same settings (`OTEL_EXPORTER_OTLP_*`
//! endpoint, protocol, headers and timeout). Logs still go through `opentelemetry-otlp`.

mod wire;

use std::fmt;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use prost::Message;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

use crate::config::{OtlpConfig, Protocol};

/// The gRPC method of `TraceService/Export`.
const GRPC_EXPORT: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

/// Why a span exporter could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The endpoint is not a URL the transport accepts.
    #[error("invalid OTLP endpoint {endpoint:?}: {reason}")]
    Endpoint {
        /// The endpoint as configured.
        endpoint: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A header from `OTEL_EXPORTER_OTLP_(TRACES_)HEADERS` is not a valid HTTP header.
    #[error("invalid OTLP header {name:?}: {reason}")]
    Header {
        /// The header's name.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Not called from inside a Tokio runtime (the transports run their I/O there).
    #[error("the OTLP span exporter must be built inside a Tokio runtime")]
    NoRuntime,
}

/// Exports spans over OTLP; see the module documentation.
pub struct OtlpSpanExporter {
    resource: wire::EncodedResource,
    transport: Transport,
    runtime: tokio::runtime::Handle,
    timeout: Duration,
}

#[derive(Clone)]
enum Transport {
    Grpc {
        client: tonic::client::Grpc<tonic::transport::Channel>,
        metadata: tonic::metadata::MetadataMap,
    },
    Http {
        client: reqwest::Client,
        url: String,
        headers: http::HeaderMap,
    },
}

impl fmt::Debug for OtlpSpanExporter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let protocol = match self.transport {
            Transport::Grpc { .. } => "grpc",
            Transport::Http { .. } => "http/protobuf",
        };
        f.debug_struct("OtlpSpanExporter")
            .field("protocol", &protocol)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl OtlpSpanExporter {
    /// An exporter sending to `endpoint` (for http/protobuf the full URL, `/v1/traces`
    /// included) as `otlp` says. Connects lazily: a missing collector fails exports, not this.
    pub fn new(otlp: &OtlpConfig, endpoint: &str) -> Result<Self, BuildError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| BuildError::NoRuntime)?;
        let endpoint_error = |reason: String| BuildError::Endpoint {
            endpoint: endpoint.to_owned(),
            reason,
        };
        let mut headers = http::HeaderMap::new();
        for (name, value) in &otlp.traces_headers {
            let header_error = |reason: String| BuildError::Header {
                name: name.clone(),
                reason,
            };
            let name = http::HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| header_error(e.to_string()))?;
            let value =
                http::HeaderValue::from_str(value).map_err(|e| header_error(e.to_string()))?;
            headers.append(name, value);
        }
        let transport = match otlp.protocol {
            Protocol::Grpc => {
                let channel = tonic::transport::Endpoint::from_shared(endpoint.to_owned())
                    .map_err(|e| endpoint_error(e.to_string()))?
                    .connect_timeout(otlp.timeout)
                    .timeout(otlp.timeout)
                    .connect_lazy();
                Transport::Grpc {
                    client: tonic::client::Grpc::new(channel),
                    metadata: tonic::metadata::MetadataMap::from_headers(headers),
                }
            }
            Protocol::HttpProtobuf => {
                reqwest::Url::parse(endpoint).map_err(|e| endpoint_error(e.to_string()))?;
                let client = reqwest::Client::builder()
                    .connect_timeout(otlp.timeout)
                    .timeout(otlp.timeout)
                    .build()
                    .map_err(|e| endpoint_error(e.to_string()))?;
                Transport::Http {
                    client,
                    url: endpoint.to_owned(),
                    headers,
                }
            }
        };
        Ok(Self {
            resource: wire::EncodedResource::default(),
            transport,
            runtime,
            timeout: otlp.timeout,
        })
    }
}

impl SpanExporter for OtlpSpanExporter {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let mut body = Vec::with_capacity(batch.len() * 320 + 256);
        wire::export_request(&mut body, &self.resource, &batch);
        drop(batch);
        let body = Bytes::from(body);
        let transport = self.transport.clone();
        // The transports time out on their own; this also bounds connecting and queueing.
        let deadline = self.timeout + Duration::from_secs(1);
        // The batch processor calls this from its own thread; the transports need the runtime.
        let sent = self.runtime.spawn(async move {
            let send = async move {
                match transport {
                    Transport::Grpc {
                        mut client,
                        metadata,
                    } => send_grpc(&mut client, metadata, body).await,
                    Transport::Http {
                        client,
                        url,
                        headers,
                    } => send_http(&client, &url, headers, body).await,
                }
            };
            tokio::time::timeout(deadline, send)
                .await
                .unwrap_or(Err(OTelSdkError::Timeout(deadline)))
        });
        sent.await.unwrap_or_else(|join| {
            Err(OTelSdkError::InternalFailure(format!(
                "the export task did not finish: {join}"
            )))
        })
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.resource = wire::EncodedResource::new(resource);
    }
}

async fn send_grpc(
    client: &mut tonic::client::Grpc<tonic::transport::Channel>,
    metadata: tonic::metadata::MetadataMap,
    body: Bytes,
) -> OTelSdkResult {
    let failed = |e: String| OTelSdkError::InternalFailure(format!("gRPC export failed: {e}"));
    client.ready().await.map_err(|e| failed(e.to_string()))?;
    let mut request = tonic::Request::new(body);
    *request.metadata_mut() = metadata;
    let response = client
        .unary(
            request,
            http::uri::PathAndQuery::from_static(GRPC_EXPORT),
            PreEncoded,
        )
        .await
        .map_err(|status| failed(format!("{}: {}", status.code(), status.message())))?;
    partial_success(&response.into_inner());
    Ok(())
}

async fn send_http(
    client: &reqwest::Client,
    url: &str,
    headers: http::HeaderMap,
    body: Bytes,
) -> OTelSdkResult {
    let failed = |e: String| OTelSdkError::InternalFailure(format!("HTTP export failed: {e}"));
    let response = client
        .post(url)
        .headers(headers)
        .header(http::header::CONTENT_TYPE, "application/x-protobuf")
        .body(body)
        .send()
        .await
        .map_err(|e| failed(e.to_string()))?;
    let status = response.status();
    let bytes = response.bytes().await.map_err(|e| failed(e.to_string()))?;
    if !status.is_success() {
        return Err(failed(format!("the collector answered {status}")));
    }
    if let Ok(answer) = ExportTraceServiceResponse::decode(bytes) {
        partial_success(&answer);
    }
    Ok(())
}

/// The collector took the request but refused some spans: say so (once per answer).
fn partial_success(answer: &ExportTraceServiceResponse) {
    if let Some(partial) = &answer.partial_success
        && partial.rejected_spans > 0
    {
        tracing::warn!(target: "otel_export", rejected = partial.rejected_spans,
            reason = %partial.error_message, "the collector rejected some spans");
    }
}

/// A tonic codec whose requests are already-encoded protobuf messages.
#[derive(Debug, Clone, Copy)]
struct PreEncoded;

impl Codec for PreEncoded {
    type Encode = Bytes;
    type Decode = ExportTraceServiceResponse;
    type Encoder = Self;
    type Decoder = Self;

    fn encoder(&mut self) -> Self::Encoder {
        *self
    }

    fn decoder(&mut self) -> Self::Decoder {
        *self
    }
}

impl Encoder for PreEncoded {
    type Item = Bytes;
    type Error = tonic::Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Self::Error> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for PreEncoded {
    type Item = ExportTraceServiceResponse;
    type Error = tonic::Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Self::Item>, Self::Error> {
        let len = src.remaining();
        ExportTraceServiceResponse::decode(src.copy_to_bytes(len))
            .map(Some)
            .map_err(|e| tonic::Status::internal(format!("decoding the export response: {e}")))
    }
}
