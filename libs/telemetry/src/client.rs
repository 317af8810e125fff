//! A traced HTTP client: every request gets a client span, carries `traceparent`/`tracestate`
//! from it, is timed in `http_client_request_duration_seconds`, and has timeouts by default.
//!
//! The span records `url.full` without the query; a client whose URLs carry a secret in the path
//! (a Slack or Teams webhook token) is made with [`HttpClient::redacting_url_paths`] so the
//! path is recorded as `REDACTED`, as the semantic conventions ask of sensitive URL content.

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
        let metrics = Self::unregistered();
        registry.register(Box::new(metrics.duration.clone()))?;
        Ok(metrics)
    }

    /// Metrics kept on no registry: for tools and tests that serve no `/metrics`.
    pub fn unregistered() -> Self {
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
        )
        .expect("the histogram's options and label names are valid");
        Self { duration }
    }
}

/// A `reqwest` client that traces and times every request it sends.
#[derive(Clone, Debug)]
pub struct HttpClient {
    inner: reqwest::Client,
    metrics: ClientMetrics,
    redact_url_paths: bool,
}

impl HttpClient {
    /// A client with the default timeouts.
    pub fn new(metrics: ClientMetrics) -> Self {
        Self::with_timeouts(metrics, DEFAULT_CONNECT_TIMEOUT, DEFAULT_TIMEOUT)
    }

    /// A client with its own connect and whole-request timeouts.
    pub fn with_timeouts(metrics: ClientMetrics, connect: Duration, total: Duration) -> Self {
        crypto_provider::install();
        let inner = reqwest::Client::builder()
            .connect_timeout(connect)
            .timeout(total)
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .unwrap_or_default();
        Self {
            inner,
            metrics,
            redact_url_paths: false,
        }
    }

    /// This client with `url.full` recorded as `scheme://host:port/REDACTED`: for URLs whose path
    /// is a secret (a webhook token). Method, server address and port are still recorded.
    #[must_use]
    pub fn redacting_url_paths(mut self) -> Self {
        self.redact_url_paths = true;
        self
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
        let path = if self.redact_url_paths {
            "/REDACTED"
        } else {
            url.path()
        };
        let full = format!("{}://{}:{}{}", url.scheme(), host, port, path);
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

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
    use tracing_subscriber::layer::SubscriberExt as _;

    /// Sends one GET for `url` through `client` (to a closed port: the span is recorded all the
    /// same) and returns the `url.full` of its client span.
    async fn recorded_url_full(client: HttpClient, path: &str) -> String {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        let _guard = tracing::subscriber::set_default(subscriber);
        let url = format!("http://127.0.0.1:{port}{path}?token=q");
        let _ = client.send(client.get(&url)).await;
        let _ = provider.force_flush();
        let spans = exporter.get_finished_spans().unwrap();
        let span = spans.first().expect("one client span");
        span.attributes
            .iter()
            .find(|kv| kv.key.as_str() == "url.full")
            .map(|kv| kv.value.to_string())
            .unwrap_or_else(|| format!("no url.full on {span:?}"))
            .replace(&port.to_string(), "PORT")
    }

    #[tokio::test]
    async fn url_full_records_the_path_without_the_query() {
        let client = HttpClient::new(ClientMetrics::unregistered());
        assert_eq!(
            recorded_url_full(client, "/services/T0/B0/secret").await,
            "http://127.0.0.1:PORT/services/T0/B0/secret"
        );
    }

    #[tokio::test]
    async fn a_redacting_client_records_no_path() {
        let client = HttpClient::new(ClientMetrics::unregistered()).redacting_url_paths();
        assert_eq!(
            recorded_url_full(client, "/services/T0/B0/secret").await,
            "http://127.0.0.1:PORT/REDACTED"
        );
    }
}
