//! Server-side HTTP telemetry for axum: one server span per request named by method and matched
//! route, W3C trace context extracted from the request, HTTP semantic-convention attributes, RED
//! metrics labelled by route template, and one log line per request.
//!
//! The log line (target `access_log`, message `request`) carries `http.request.method`,
//! `http.route`, `url.path`, `http.response.status_code`, `duration_ms` and `request_id` (the
//! `x-request-id` header), and, like every line written inside the request, the trace and span
//! ids of the server span: on stdout as JSON and over OTLP logs. It is written whether or not
//! the trace is sampled; its level and sampling are set by [`AccessLogConfig`]
//! (`ACCESS_LOG_LEVEL`, `ACCESS_LOG_SAMPLE_RATIO`, `ACCESS_LOG_PROBES`). A 4xx answer logs at
//! `warn`, a 5xx at `error`; `/healthz`, `/readyz` and `/metrics` are not logged by default.
//!
//! The server span is made with the OpenTelemetry API directly rather than as a `tracing` span:
//! its attributes are mostly static strings, so a sampled request allocates a few values instead
//! of every field, and an unsampled one almost nothing. The span's context is the current
//! OpenTelemetry context while the handler runs, so `tracing` spans made inside it (client
//! calls, database queries) become its children and log lines carry its trace and span ids.
//! Handlers add attributes with `opentelemetry::Context::current().span().set_attribute(..)`.

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Poll, ready};
use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request};
use axum::response::Response;
use http::HeaderValue;
use opentelemetry::KeyValue;
use opentelemetry::context::{FutureExt as _, WithContext};
use opentelemetry::global::BoxedTracer;
use opentelemetry::trace::{SpanKind, Status, TraceContextExt, Tracer};
use opentelemetry_http::HeaderExtractor;
use opentelemetry_semantic_conventions::attribute as semconv;
use prometheus::{HistogramOpts, HistogramVec, IntGaugeVec, Opts, Registry};

pub use crate::config::AccessLogConfig;

/// The header whose value the log line carries as `request_id`.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Routes not logged unless [`AccessLogConfig::probes`] is set.
const PROBES: &[&str] = &["/healthz", "/readyz", "/metrics"];

/// Latency buckets in seconds, from 0.5 ms to 10 s.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The RED metrics of an HTTP server.
#[derive(Clone, Debug)]
pub struct ServerMetrics {
    duration: HistogramVec,
    active: IntGaugeVec,
    /// The global tracer, taken on the first request (after `init` has installed the provider).
    tracer: Arc<OnceLock<BoxedTracer>>,
    access_log: AccessLogConfig,
}

impl ServerMetrics {
    /// Creates the metrics and registers them on `registry`.
    pub fn new(registry: &Registry) -> prometheus::Result<Self> {
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "http_server_request_duration_seconds",
                "Duration of HTTP server requests, by method, route template and status code.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &[
                "http_request_method",
                "http_route",
                "http_response_status_code",
            ],
        )?;
        let active = IntGaugeVec::new(
            Opts::new(
                "http_server_active_requests",
                "HTTP server requests in flight, by method and route template.",
            ),
            &["http_request_method", "http_route"],
        )?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(active.clone()))?;
        Ok(Self {
            duration,
            active,
            tracer: Arc::default(),
            access_log: AccessLogConfig::default(),
        })
    }

    /// The same metrics with the per-request log line set by `config` (default: every request
    /// but probes, at `info`).
    #[must_use]
    pub fn with_access_log(mut self, config: AccessLogConfig) -> Self {
        self.access_log = config;
        self
    }

    /// Wraps every route of `router` (call it after all routes are added).
    pub fn instrument_router<S: Clone + Send + Sync + 'static>(
        &self,
        router: Router<S>,
    ) -> Router<S> {
        router.layer(self.layer())
    }

    /// A tower layer giving each request a server span and RED metrics. Apply it with
    /// `Router::layer` (inside the router, where the matched route is known), possibly within a
    /// `ServiceBuilder` with other layers so that the router boxes them once.
    pub fn layer(&self) -> TrackLayer {
        TrackLayer(self.clone())
    }
}

/// Semantic-convention method value: known methods as is, anything else `_OTHER`.
fn method_label(method: &http::Method) -> &'static str {
    match *method {
        http::Method::GET => "GET",
        http::Method::POST => "POST",
        http::Method::PUT => "PUT",
        http::Method::DELETE => "DELETE",
        http::Method::PATCH => "PATCH",
        http::Method::HEAD => "HEAD",
        http::Method::OPTIONS => "OPTIONS",
        http::Method::CONNECT => "CONNECT",
        http::Method::TRACE => "TRACE",
        _ => "_OTHER",
    }
}

fn protocol_version(v: http::Version) -> &'static str {
    match v {
        http::Version::HTTP_09 => "0.9",
        http::Version::HTTP_10 => "1.0",
        http::Version::HTTP_11 => "1.1",
        http::Version::HTTP_2 => "2",
        http::Version::HTTP_3 => "3",
        _ => "other",
    }
}

struct ActiveGuard(prometheus::IntGauge);
impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Writes `bytes` as lowercase hex into the start of `out`.
fn hex_into(out: &mut [u8], bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (pair, b) in out.chunks_exact_mut(2).zip(bytes) {
        pair[0] = HEX[usize::from(b >> 4)];
        pair[1] = HEX[usize::from(b & 0xf)];
    }
}

/// `00-<trace id>-<span id>-<flags>` (W3C Trace Context Level 2), hex-encoded without `fmt`.
fn traceresponse(sc: &opentelemetry::trace::SpanContext) -> Option<HeaderValue> {
    let mut out = *b"00-00000000000000000000000000000000-0000000000000000-00";
    hex_into(&mut out[3..35], &sc.trace_id().to_bytes());
    hex_into(&mut out[36..52], &sc.span_id().to_bytes());
    hex_into(&mut out[53..55], &[sc.trace_flags().to_u8()]);
    HeaderValue::from_bytes(&out).ok()
}

/// What a request's telemetry carries from its start to its response.
struct Tracking {
    start: Instant,
    method: &'static str,
    route: Option<MatchedPath>,
    cx: opentelemetry::Context,
    /// What the log line needs from the request, when it may be written.
    line: Option<LineParts>,
    _active: ActiveGuard,
}

/// The request's part of its log line.
struct LineParts {
    path: http::Uri,
    request_id: Option<HeaderValue>,
}

/// Whether a successful request with this trace id is among the `ratio` logged: the trace id's
/// low 64 bits against the ratio, as the `TraceIdRatioBased` sampler decides, so all services a
/// request crosses decide alike.
fn sampled_in(ratio: f64, trace_id: opentelemetry::trace::TraceId) -> bool {
    if ratio >= 1.0 {
        return true;
    }
    if ratio <= 0.0 {
        return false;
    }
    let bytes = trace_id.to_bytes();
    let mut low = [0u8; 8];
    low.copy_from_slice(&bytes[8..]);
    let x = u64::from_be_bytes(low) >> 1;
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let bound = (ratio * (1u64 << 63) as f64) as u64;
    x < bound
}

/// Writes one request's log line at `level` (a `tracing` level must be a constant per call site).
macro_rules! request_line {
    ($level:expr, $($fields:tt)*) => {
        match $level {
            tracing::Level::ERROR => tracing::event!(target: "access_log", tracing::Level::ERROR, $($fields)*),
            tracing::Level::WARN => tracing::event!(target: "access_log", tracing::Level::WARN, $($fields)*),
            tracing::Level::INFO => tracing::event!(target: "access_log", tracing::Level::INFO, $($fields)*),
            tracing::Level::DEBUG => tracing::event!(target: "access_log", tracing::Level::DEBUG, $($fields)*),
            tracing::Level::TRACE => tracing::event!(target: "access_log", tracing::Level::TRACE, $($fields)*),
        }
    };
}

impl ServerMetrics {
    /// Starts the server span (child of the caller's W3C trace context) and counts the request
    /// as active.
    fn begin(&self, req: &Request) -> Tracking {
        let start = Instant::now();
        let method = method_label(req.method());
        let route = req.extensions().get::<MatchedPath>().cloned();
        let name: Cow<'static, str> = match &route {
            Some(r) => format!("{method} {}", r.as_str()).into(),
            None => method.into(),
        };
        let parent = opentelemetry::global::get_text_map_propagator(|p| {
            p.extract(&HeaderExtractor(req.headers()))
        });
        let tracer = self
            .tracer
            .get_or_init(|| opentelemetry::global::tracer("organism"));
        let mut attributes = Vec::with_capacity(9);
        attributes.push(KeyValue::new(semconv::HTTP_REQUEST_METHOD, method));
        attributes.push(KeyValue::new(
            semconv::URL_SCHEME,
            match req.uri().scheme_str() {
                Some("https") => "https",
                _ => "http",
            },
        ));
        attributes.push(KeyValue::new(
            semconv::NETWORK_PROTOCOL_VERSION,
            protocol_version(req.version()),
        ));
        let span = tracer
            .span_builder(name)
            .with_kind(SpanKind::Server)
            .with_attributes(attributes)
            .start_with_context(tracer, &parent);
        let cx = parent.with_span(span);
        let span = cx.span();
        if span.is_recording() {
            // Owned values only when the span is kept.
            span.set_attribute(KeyValue::new(
                semconv::URL_PATH,
                req.uri().path().to_owned(),
            ));
            if let Some(route) = &route {
                span.set_attribute(KeyValue::new(
                    semconv::HTTP_ROUTE,
                    route.as_str().to_owned(),
                ));
            }
            if let Some(agent) = req
                .headers()
                .get(http::header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
            {
                span.set_attribute(KeyValue::new(
                    semconv::USER_AGENT_ORIGINAL,
                    agent.to_owned(),
                ));
            }
        }
        let route_label = route.as_ref().map_or("", |r| r.as_str());
        let gauge = self.active.with_label_values(&[method, route_label]);
        gauge.inc();
        let line = (self.access_log.level.is_some()
            && (self.access_log.probes || !PROBES.contains(&route_label)))
        .then(|| LineParts {
            path: req.uri().clone(),
            request_id: req.headers().get(REQUEST_ID_HEADER).cloned(),
        });
        Tracking {
            start,
            method,
            route,
            cx,
            line,
            _active: ActiveGuard(gauge),
        }
    }

    /// Ends the span with the response's status, adds `traceresponse`, records the duration.
    fn finish(&self, tracking: Tracking, response: &mut Response) {
        let span = tracking.cx.span();
        let status = response.status();
        span.set_attribute(KeyValue::new(
            semconv::HTTP_RESPONSE_STATUS_CODE,
            i64::from(status.as_u16()),
        ));
        if status.is_server_error() {
            span.set_attribute(KeyValue::new(
                semconv::ERROR_TYPE,
                status.as_str().to_owned(),
            ));
            span.set_status(Status::error(""));
        }
        let sc = span.span_context();
        if sc.is_valid()
            && let Some(value) = traceresponse(sc)
        {
            response.headers_mut().insert("traceresponse", value);
        }
        let route_label = tracking.route.as_ref().map_or("", |r| r.as_str());
        let elapsed = tracking.start.elapsed().as_secs_f64();
        if let (Some(parts), Some(level)) = (&tracking.line, self.access_log.level) {
            let level = if status.is_server_error() {
                Some(tracing::Level::ERROR)
            } else if status.is_client_error() {
                Some(tracing::Level::WARN)
            } else if sampled_in(self.access_log.sample_ratio, sc.trace_id()) {
                Some(level)
            } else {
                None
            };
            if let Some(level) = level {
                // The server span is the current context: both log layers take its ids.
                let _attached = tracking.cx.clone().attach();
                let request_id = parts
                    .request_id
                    .as_ref()
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default();
                request_line!(
                    level,
                    http.request.method = tracking.method,
                    http.route = route_label,
                    url.path = parts.path.path(),
                    http.response.status_code = status.as_u16(),
                    duration_ms = elapsed * 1000.0,
                    request_id,
                    "request"
                );
            }
        }
        span.end();
        self.duration
            .with_label_values(&[tracking.method, route_label, status.as_str()])
            .observe(elapsed);
    }
}

/// The [`ServerMetrics`] layer (see [`ServerMetrics::layer`]).
#[derive(Clone, Debug)]
pub struct TrackLayer(ServerMetrics);

impl<S> tower::Layer<S> for TrackLayer {
    type Service = Track<S>;

    fn layer(&self, inner: S) -> Track<S> {
        Track {
            inner,
            metrics: self.0.clone(),
        }
    }
}

/// A service wrapped in a server span and RED metrics (see [`ServerMetrics::layer`]).
#[derive(Clone, Debug)]
pub struct Track<S> {
    inner: S,
    metrics: ServerMetrics,
}

impl<S> tower::Service<Request> for Track<S>
where
    S: tower::Service<Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = TrackFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let tracking = self.metrics.begin(&req);
        let inner = {
            // The inner service's synchronous part runs inside the span too.
            let _attached = tracking.cx.clone().attach();
            self.inner.call(req)
        };
        TrackFuture {
            inner: inner.with_context(tracking.cx.clone()),
            tracking: Some((tracking, self.metrics.clone())),
        }
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`Track`]: the inner future polled inside the span's context.
    pub struct TrackFuture<F> {
        #[pin]
        inner: WithContext<F>,
        tracking: Option<(Tracking, ServerMetrics)>,
    }
}

impl<F, E> Future for TrackFuture<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut result = ready!(this.inner.poll(cx));
        if let (Ok(response), Some((tracking, metrics))) = (&mut result, this.tracking.take()) {
            metrics.finish(tracking, response);
        }
        Poll::Ready(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::routing::get;
    use tower::ServiceExt;

    #[test]
    fn traceresponse_is_the_w3c_format() {
        use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};
        let sc = SpanContext::new(
            TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
            SpanId::from_hex("00f067aa0ba902b7").unwrap(),
            TraceFlags::SAMPLED,
            false,
            TraceState::default(),
        );
        assert_eq!(
            traceresponse(&sc).unwrap(),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        );
    }

    #[tokio::test]
    async fn metrics_are_labelled_with_the_route_template() {
        let registry = Registry::new();
        let metrics = ServerMetrics::new(&registry).unwrap();
        let app =
            metrics.instrument_router(Router::new().route("/users/{id}", get(|| async { "ok" })));
        for path in ["/users/42", "/users/43", "/nowhere"] {
            app.clone()
                .oneshot(Request::get(path).body(Body::empty()).unwrap())
                .await
                .unwrap();
        }
        let text = crate::metrics::encode(&registry);
        assert!(
            text.contains(r#"http_server_request_duration_seconds_count{http_request_method="GET",http_response_status_code="200",http_route="/users/{id}"} 2"#),
            "{text}"
        );
        assert!(
            !text.contains("/users/42"),
            "raw paths must never become labels"
        );
        assert!(text.contains(r#"le="0.0005""#) && text.contains(r#"le="10""#));
    }
}
