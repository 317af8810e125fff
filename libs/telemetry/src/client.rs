//! A traced HTTP client: every request gets a client span, carries `traceparent`/`tracestate`
//! from it, is timed in `http_client_request_duration_seconds`, and has timeouts by default.

use std::time::{Duration, Instant};

use opentelemetry::trace::TraceContextExt as _;
use opentelemetry_http::HeaderInjector;
use prometheus::{HistogramOpts, HistogramVec, Registry};
use tracing::Instrument;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt;

pub use reqwest::{Method, RequestBuilder, Response, StatusCode};

/// Default time to establish a connection.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Default time for a whole request.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// Client-side HTTP metrics; create once per registry and share between clients.
#[derive(Clone, Debug)]
pub struct ClientMetrics {
    duration: HistogramVec,
}

impl ClientMetrics {
    /// Creates the metrics and registers them on `registry`.
    pub fn new(registry: &Registry) -> prometheus::Result<Self> {
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "http_client_request_duration_seconds",
                "Duration of HTTP client requests, by method, server and status code.",
            )
            .buckets(crate::http::LATENCY_BUCKETS.to_vec()),
            &[
                "http_request_method",
                "server_address",
                "http_response_status_code",
                "error_type",
            ],
        )?;
        registry.register(Box::new(duration.clone()))?;
        Ok(Self { duration })
    }
}

/// A `reqwest` client that traces and times every request it sends.
#[derive(Clone, Debug)]
pub struct HttpClient {
    inner: reqwest::Client,
    metrics: ClientMetrics,
}

impl HttpClient {
    /// A client with the default timeouts.
    pub fn new(metrics: ClientMetrics) -> Self {
        Self::with_timeouts(metrics, DEFAULT_CONNECT_TIMEOUT, DEFAULT_TIMEOUT)
    }

    /// A client with its own connect and whole-request timeouts.
    pub fn with_timeouts(metrics: ClientMetrics, connect: Duration, total: Duration) -> Self {
        let inner = reqwest::Client::builder()
            .connect_timeout(connect)
            .timeout(total)
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .unwrap_or_default();
        Self { inner, metrics }
    }

    /// Starts a request; send it with [`HttpClient::send`] so it is traced.
    pub fn request(&self, method: Method, url: &str) -> RequestBuilder {
        self.inner.request(method, url)
    }

    /// Starts a GET request.
    pub fn get(&self, url: &str) -> RequestBuilder {
        self.request(Method::GET, url)
    }

    /// Sends `request` inside a client span, injecting the trace context into its headers.
    ///
    /// Status codes below 500 do not mark the span as an error: a 404 from a lookup is an
    /// answer, not a failure of the call (the gateway passes it on as such).
    pub async fn send(&self, request: RequestBuilder) -> reqwest::Result<Response> {
        let mut request = request.build()?;
        let method = request.method().as_str().to_owned();
        let url = request.url();
        let host = url.host_str().unwrap_or_default().to_owned();
        let port = url.port_or_known_default().unwrap_or_default();
        let full = format!("{}://{}:{}{}", url.scheme(), host, port, url.path());
        let span = tracing::info_span!(
            "HTTP client request",
            otel.name = %method,
            otel.kind = "client",
            otel.status_code = Empty,
            http.request.method = %method,
            server.address = %host,
            server.port = port,
            url.full = %full,
            http.response.status_code = Empty,
            error.type = Empty,
        );
        let cx = span.context();
        if cx.span().span_context().is_valid() {
            opentelemetry::global::get_text_map_propagator(|p| {
                p.inject_context(&cx, &mut HeaderInjector(request.headers_mut()))
            });
        }
        let start = Instant::now();
        let result = self.inner.execute(request).instrument(span.clone()).await;
        let (status_label, error_label) = match &result {
            Ok(resp) => {
                let status = resp.status();
                span.record("http.response.status_code", status.as_u16());
                if status.is_server_error() {
                    span.record("otel.status_code", "ERROR");
                    span.record("error.type", status.as_str());
                }
                let error = if status.is_server_error() {
                    status.as_str().to_owned()
                } else {
                    String::new()
                };
                (status.as_str().to_owned(), error)
            }
            Err(e) => {
                let kind = if e.is_timeout() {
                    "timeout"
                } else if e.is_connect() {
                    "connect"
                } else {
                    "request"
                };
                span.record("otel.status_code", "ERROR");
                span.record("error.type", kind);
                (String::new(), kind.to_owned())
            }
        };
        self.metrics
            .duration
            .with_label_values(&[&method, &host, &status_label, &error_label])
            .observe(start.elapsed().as_secs_f64());
        result
    }
}
