//! An in-process OTLP receiver (trace and logs services, over gRPC and over http/protobuf on a
//! second port) that keeps what it is sent.
//!
//! Tests point `OTEL_EXPORTER_OTLP_ENDPOINT` at [`OtlpSink::endpoint`] and then assert on the
//! spans and log records received; the benchmark uses it as the "local collector". It stops
//! when dropped.

mod counting;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
pub use opentelemetry_proto::tonic::logs::v1::LogRecord;
pub use opentelemetry_proto::tonic::trace::v1::Span;
use tokio::sync::oneshot;

/// A received span with the `service.name` of the resource that sent it.
#[derive(Debug, Clone)]
pub struct ReceivedSpan {
    /// `service.name` of the sender.
    pub service: String,
    /// Every resource attribute of the sender, values as text.
    pub resource: Vec<(String, String)>,
    /// The span as sent.
    pub span: Span,
}

impl ReceivedSpan {
    /// Trace id as 32 lowercase hex digits.
    pub fn trace_id(&self) -> String {
        hex(&self.span.trace_id)
    }
    /// Span id as 16 lowercase hex digits.
    pub fn span_id(&self) -> String {
        hex(&self.span.span_id)
    }
    /// Parent span id as hex, empty for a root span.
    pub fn parent_span_id(&self) -> String {
        hex(&self.span.parent_span_id)
    }
    /// A string attribute's value.
    pub fn attr(&self, key: &str) -> Option<String> {
        attr(&self.span.attributes, key)
    }
}

/// A received log record with the `service.name` of the resource that sent it.
#[derive(Debug, Clone)]
pub struct ReceivedLog {
    /// `service.name` of the sender.
    pub service: String,
    /// Every resource attribute of the sender, values as text.
    pub resource: Vec<(String, String)>,
    /// The record as sent.
    pub record: LogRecord,
}

impl ReceivedLog {
    /// Trace id as hex (empty when the record was emitted outside a span).
    pub fn trace_id(&self) -> String {
        hex(&self.record.trace_id)
    }
    /// Span id as hex (empty when the record was emitted outside a span).
    pub fn span_id(&self) -> String {
        hex(&self.record.span_id)
    }
    /// An attribute's value as text.
    pub fn attr(&self, key: &str) -> Option<String> {
        attr(&self.record.attributes, key)
    }
    /// The body as text.
    pub fn body(&self) -> String {
        self.record
            .body
            .as_ref()
            .map(value_text)
            .unwrap_or_default()
    }
}

#[derive(Default, Debug)]
struct Store {
    /// Counting only: decode and count, keep nothing (benchmarks).
    counting: bool,
    span_count: std::sync::atomic::AtomicU64,
    log_count: std::sync::atomic::AtomicU64,
    spans: Mutex<Vec<ReceivedSpan>>,
    logs: Mutex<Vec<ReceivedLog>>,
    headers: Mutex<http::HeaderMap>,
}

#[derive(Clone, Debug)]
struct Traces(Arc<Store>);
#[derive(Clone, Debug)]
struct Logs(Arc<Store>);

#[tonic::async_trait]
impl TraceService for Traces {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.0
            .keep_headers(&request.metadata().clone().into_headers());
        self.0.keep_spans(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

#[tonic::async_trait]
impl LogsService for Logs {
    async fn export(
        &self,
        request: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
        self.0.keep_logs(request.into_inner());
        Ok(tonic::Response::new(ExportLogsServiceResponse {
            partial_success: None,
        }))
    }
}

impl Store {
    fn keep_headers(&self, headers: &http::HeaderMap) {
        if let Ok(mut kept) = self.headers.lock() {
            kept.clone_from(headers);
        }
    }

    fn keep_spans(&self, request: ExportTraceServiceRequest) {
        let mut received = Vec::new();
        for rs in request.resource_spans {
            let service = rs
                .resource
                .as_ref()
                .and_then(|r| attr(&r.attributes, "service.name"))
                .unwrap_or_default();
            let resource = resource_text(rs.resource.as_ref());
            for ss in rs.scope_spans {
                for span in ss.spans {
                    received.push(ReceivedSpan {
                        service: service.clone(),
                        resource: resource.clone(),
                        span,
                    });
                }
            }
        }
        if self.counting {
            self.span_count
                .fetch_add(received.len() as u64, std::sync::atomic::Ordering::Relaxed);
        } else if let Ok(mut spans) = self.spans.lock() {
            spans.extend(received);
        }
    }

    fn keep_logs(&self, request: ExportLogsServiceRequest) {
        if self.counting {
            let n: usize = request
                .resource_logs
                .iter()
                .flat_map(|rl| &rl.scope_logs)
                .map(|sl| sl.log_records.len())
                .sum();
            self.log_count
                .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
            return;
        }
        let mut received = Vec::new();
        for rl in request.resource_logs {
            let service = rl
                .resource
                .as_ref()
                .and_then(|r| attr(&r.attributes, "service.name"))
                .unwrap_or_default();
            let resource = resource_text(rl.resource.as_ref());
            for sl in rl.scope_logs {
                for record in sl.log_records {
                    received.push(ReceivedLog {
                        service: service.clone(),
                        resource: resource.clone(),
                        record,
                    });
                }
            }
        }
        if let Ok(mut logs) = self.logs.lock() {
            logs.extend(received);
        }
    }
}

/// OTLP/HTTP (`http/protobuf`): `POST /v1/traces` and `POST /v1/logs` with a protobuf body.
mod http_receiver {
    use std::sync::Arc;

    use axum::body::Bytes;
    use axum::extract::State;
    use axum::http::{HeaderMap, StatusCode, header};
    use axum::response::{IntoResponse, Response};
    use opentelemetry_proto::tonic::collector::logs::v1::{
        ExportLogsServiceRequest, ExportLogsServiceResponse,
    };
    use opentelemetry_proto::tonic::collector::trace::v1::{
        ExportTraceServiceRequest, ExportTraceServiceResponse,
    };
    use prost::Message;

    use crate::Store;

    pub(crate) fn router(store: Arc<Store>) -> axum::Router {
        axum::Router::new()
            .route("/v1/traces", axum::routing::post(traces))
            .route("/v1/logs", axum::routing::post(logs))
            .with_state(store)
    }

    /// `None` when the body is protobuf, else the refusal.
    fn not_protobuf(headers: &HeaderMap) -> Option<Response> {
        match headers.get(header::CONTENT_TYPE).map(|v| v.as_bytes()) {
            Some(b"application/x-protobuf") => None,
            _ => Some(
                (
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "expected Content-Type: application/x-protobuf",
                )
                    .into_response(),
            ),
        }
    }

    fn answer(body: Vec<u8>) -> Response {
        ([(header::CONTENT_TYPE, "application/x-protobuf")], body).into_response()
    }

    async fn traces(State(store): State<Arc<Store>>, headers: HeaderMap, body: Bytes) -> Response {
        if let Some(refused) = not_protobuf(&headers) {
            return refused;
        }
        match ExportTraceServiceRequest::decode(body) {
            Ok(request) => {
                store.keep_headers(&headers);
                store.keep_spans(request);
                answer(ExportTraceServiceResponse::default().encode_to_vec())
            }
            Err(e) => (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
        }
    }

    async fn logs(State(store): State<Arc<Store>>, headers: HeaderMap, body: Bytes) -> Response {
        if let Some(refused) = not_protobuf(&headers) {
            return refused;
        }
        match ExportLogsServiceRequest::decode(body) {
            Ok(request) => {
                store.keep_logs(request);
                answer(ExportLogsServiceResponse::default().encode_to_vec())
            }
            Err(e) => (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
        }
    }
}

/// A running receiver on 127.0.0.1; stops when dropped.
#[derive(Debug)]
pub struct OtlpSink {
    addr: SocketAddr,
    http_addr: SocketAddr,
    store: Arc<Store>,
    stop: Option<oneshot::Sender<()>>,
    stop_http: Option<oneshot::Sender<()>>,
}

impl OtlpSink {
    /// Starts a receiver on a free port of 127.0.0.1.
    pub async fn start() -> std::io::Result<Self> {
        Self::start_on("127.0.0.1:0".parse().expect("a valid address")).await
    }

    /// Starts a receiver that counts what it is sent but keeps nothing (for benchmarks:
    /// [`OtlpSink::span_count`]). Trace exports are read down to their spans, whose bytes are
    /// left undecoded, so that the sink takes as little as possible of the CPU it shares with
    /// the service being measured; log exports are decoded.
    pub async fn start_counting() -> std::io::Result<Self> {
        Self::start_with("127.0.0.1:0".parse().expect("a valid address"), true).await
    }

    /// [`OtlpSink::start_counting`] on `addr`.
    pub async fn start_counting_on(addr: SocketAddr) -> std::io::Result<Self> {
        Self::start_with(addr, true).await
    }

    /// Starts a receiver on `addr` (port 0 picks a free one).
    pub async fn start_on(addr: SocketAddr) -> std::io::Result<Self> {
        Self::start_with(addr, false).await
    }

    async fn start_with(addr: SocketAddr, counting: bool) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let store = Arc::new(Store {
            counting,
            ..Store::default()
        });
        let (stop, stopped) = oneshot::channel::<()>();
        let (stop_http, http_stopped) = oneshot::channel::<()>();
        let http_listener = tokio::net::TcpListener::bind((addr.ip(), 0)).await?;
        let http_addr = http_listener.local_addr()?;
        let http = http_receiver::router(store.clone());
        tokio::spawn(async move {
            let _ = axum::serve(http_listener, http)
                .with_graceful_shutdown(async {
                    let _ = http_stopped.await;
                })
                .await;
        });
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        let mut builder = tonic::transport::Server::builder();
        let router = if counting {
            builder.add_service(counting::CountingTraces(store.clone()))
        } else {
            builder.add_service(
                TraceServiceServer::new(Traces(store.clone()))
                    .accept_compressed(tonic::codec::CompressionEncoding::Gzip),
            )
        };
        let router = router.add_service(
            LogsServiceServer::new(Logs(store.clone()))
                .accept_compressed(tonic::codec::CompressionEncoding::Gzip),
        );
        tokio::spawn(async move {
            let _ = router
                .serve_with_incoming_shutdown(incoming, async {
                    let _ = stopped.await;
                })
                .await;
        });
        Ok(Self {
            addr,
            http_addr,
            store,
            stop: Some(stop),
            stop_http: Some(stop_http),
        })
    }

    /// The gRPC endpoint, e.g. `http://127.0.0.1:41234`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The OTLP/HTTP (`http/protobuf`) base endpoint, e.g. `http://127.0.0.1:41235`: exports
    /// go to its `/v1/traces` and `/v1/logs` (a port of its own, beside the gRPC one).
    pub fn http_endpoint(&self) -> String {
        format!("http://{}", self.http_addr)
    }

    /// The headers (gRPC metadata) of the last trace export received, over either protocol.
    pub fn last_trace_headers(&self) -> http::HeaderMap {
        self.store
            .headers
            .lock()
            .map(|h| h.clone())
            .unwrap_or_default()
    }

    /// Spans received so far (counted in both modes).
    pub fn span_count(&self) -> u64 {
        let kept = self.store.spans.lock().map(|s| s.len()).unwrap_or_default() as u64;
        kept + self
            .store
            .span_count
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Log records received so far (counted in both modes).
    pub fn log_count(&self) -> u64 {
        let kept = self.store.logs.lock().map(|l| l.len()).unwrap_or_default() as u64;
        kept + self
            .store
            .log_count
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.store
            .spans
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default()
    }

    /// Every log record received so far.
    pub fn logs(&self) -> Vec<ReceivedLog> {
        self.store
            .logs
            .lock()
            .map(|l| l.clone())
            .unwrap_or_default()
    }

    /// Waits until `done(spans, logs)` holds or `timeout` passes; returns whether it held.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        done: impl Fn(&[ReceivedSpan], &[ReceivedLog]) -> bool,
    ) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if done(&self.spans(), &self.logs()) {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for OtlpSink {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(stop) = self.stop_http.take() {
            let _ = stop.send(());
        }
    }
}

fn attr(attrs: &[KeyValue], key: &str) -> Option<String> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .map(value_text)
}

fn resource_text(
    resource: Option<&opentelemetry_proto::tonic::resource::v1::Resource>,
) -> Vec<(String, String)> {
    resource
        .map(|r| {
            r.attributes
                .iter()
                .map(|kv| {
                    (
                        kv.key.clone(),
                        kv.value.as_ref().map(value_text).unwrap_or_default(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn value_text(v: &AnyValue) -> String {
    match &v.value {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
