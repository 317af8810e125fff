//! Server-side HTTP telemetry for axum: one server span per request named by method and matched
//! route, W3C trace context extracted from the request, HTTP semantic-convention attributes, and
//! RED metrics labelled by route template.

use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use http::HeaderValue;
use opentelemetry::trace::TraceContextExt;
use opentelemetry_http::HeaderExtractor;
use prometheus::{HistogramOpts, HistogramVec, IntGaugeVec, Opts, Registry};
use tracing::Instrument;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Latency buckets in seconds, from 0.5 ms to 10 s.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The RED metrics of an HTTP server.
#[derive(Clone, Debug)]
pub struct ServerMetrics {
    duration: HistogramVec,
    active: IntGaugeVec,
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
        Ok(Self { duration, active })
    }

    /// Wraps every route of `router` (call it after all routes are added).
    pub fn instrument_router<S: Clone + Send + Sync + 'static>(
        &self,
        router: Router<S>,
    ) -> Router<S> {
        router.layer(axum::middleware::from_fn_with_state(self.clone(), track))
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

async fn track(State(metrics): State<ServerMetrics>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = method_label(req.method());
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned());
    let route_label = route.as_deref().unwrap_or("");
    let name = match &route {
        Some(r) => format!("{method} {r}"),
        None => method.to_owned(),
    };
    let span = tracing::info_span!(
        "HTTP request",
        otel.name = %name,
        otel.kind = "server",
        otel.status_code = Empty,
        http.request.method = method,
        http.route = route.as_deref(),
        url.path = req.uri().path(),
        url.scheme = req.uri().scheme_str().unwrap_or("http"),
        network.protocol.version = protocol_version(req.version()),
        user_agent.original = req.headers().get(http::header::USER_AGENT).and_then(|v| v.to_str().ok()),
        http.response.status_code = Empty,
        error.type = Empty,
    );
    let parent = opentelemetry::global::get_text_map_propagator(|p| {
        p.extract(&HeaderExtractor(req.headers()))
    });
    let _ = span.set_parent(parent);

    let gauge = metrics.active.with_label_values(&[method, route_label]);
    gauge.inc();
    let _active = ActiveGuard(gauge);

    let mut response = next.run(req).instrument(span.clone()).await;

    let status = response.status();
    span.record("http.response.status_code", status.as_u16());
    if status.is_server_error() {
        span.record("otel.status_code", "ERROR");
        span.record("error.type", status.as_str());
    }
    let sc = span.context().span().span_context().clone();
    if sc.is_valid() {
        let value = format!(
            "00-{}-{}-{:02x}",
            sc.trace_id(),
            sc.span_id(),
            sc.trace_flags().to_u8()
        );
        if let Ok(v) = HeaderValue::from_str(&value) {
            response.headers_mut().insert("traceresponse", v);
        }
    }
    metrics
        .duration
        .with_label_values(&[method, route_label, status.as_str()])
        .observe(start.elapsed().as_secs_f64());
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::routing::get;
    use tower::ServiceExt;

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
