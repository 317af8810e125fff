//! The benchmark's instrumented baseline: the same hello-world as `bare-hello`, instrumented "by
//! the book" as the crates' documentation shows it, with no tuning:
//!
//! - `tower_http::trace::TraceLayer` making a span per request at `info` and a response log line
//!   (`on_response` at `info`), written as JSON on stdout by `tracing_subscriber::fmt`;
//! - `tracing-opentelemetry` turning those spans into OpenTelemetry spans, exported by
//!   `opentelemetry-otlp` through the SDK's batch span processor (its defaults) over OTLP/gRPC
//!   to `OTEL_EXPORTER_OTLP_ENDPOINT`, every trace sampled;
//! - a Prometheus histogram of request durations per route template, served at `/metrics`.
//!
//! `cargo xtask bench` builds and runs it beside heart and `bare-hello`.

use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::get;
use opentelemetry::trace::TracerProvider as _;
use prometheus::{Encoder, HistogramOpts, HistogramVec, Registry, TextEncoder};
use tower_http::trace::{DefaultMakeSpan, DefaultOnResponse, TraceLayer};
use tracing::Level;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

#[derive(Clone)]
struct Metrics {
    registry: Registry,
    duration: HistogramVec,
}

async fn observe(State(m): State<Metrics>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    let method = req.method().as_str().to_owned();
    let start = Instant::now();
    let response = next.run(req).await;
    m.duration
        .with_label_values(&[&method, &route, response.status().as_str()])
        .observe(start.elapsed().as_secs_f64());
    response
}

async fn metrics(State(m): State<Metrics>) -> String {
    let mut buf = Vec::new();
    let _ = TextEncoder::new().encode(&m.registry.gather(), &mut buf);
    String::from_utf8(buf).unwrap_or_default()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .build()?;
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name("book-hello")
                .build(),
        )
        .build();
    tracing_subscriber::registry()
        .with(tracing_subscriber::EnvFilter::new("info"))
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("book-hello")))
        .with(tracing_subscriber::fmt::layer().json())
        .init();

    let registry = Registry::new();
    let duration = HistogramVec::new(
        HistogramOpts::new(
            "http_server_request_duration_seconds",
            "HTTP request durations by route.",
        ),
        &["method", "route", "status"],
    )?;
    registry.register(Box::new(duration.clone()))?;
    let m = Metrics { registry, duration };

    let app = Router::new()
        .route("/", get(|| async { "hello" }))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(|| async { "ok" }))
        .route("/metrics", get(metrics).with_state(m.clone()))
        .layer(middleware::from_fn_with_state(m, observe))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(DefaultMakeSpan::new().level(Level::INFO))
                .on_response(DefaultOnResponse::new().level(Level::INFO)),
        );
    let addr = std::env::var("LISTEN_ADDR").unwrap_or_else(|_| "127.0.0.1:8098".to_owned());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    let _ = tokio::task::spawn_blocking(move || provider.shutdown()).await;
    Ok(())
}
