//! Logs, traces and metrics for every organism binary.
//!
//! One call, [`init`], installs:
//! - JSON logs on stdout, one object per line, with `trace_id`/`span_id` inside a span, filtered by
//!   `RUST_LOG` and changeable at runtime through [`LogFilter`];
//! - OpenTelemetry traces and logs exported by `opentelemetry-otlp` (gRPC or http/protobuf, TLS
//!   for `https://` endpoints, gzip, retries with backoff) when an endpoint is configured through
//!   the standard `OTEL_*` variables, with bounded queues whose drops are counted ([`export`]);
//! - W3C trace-context propagation.
//!
//! It returns a [`Guard`] that flushes and shuts the exporters down, bounded in time, after the
//! server has stopped. [`http`] gives the axum layer (server spans, RED metrics and one log line
//! per request), [`client`] the
//! traced HTTP client and [`metrics`] the `/metrics` encoder with process metrics.

pub mod client;
pub mod config;
pub mod export;
pub mod fmt;
pub mod http;
pub mod metrics;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::logs::SdkLoggerProvider;
use opentelemetry_sdk::propagation::{BaggagePropagator, TraceContextPropagator};
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use prometheus::Registry;
use tracing_subscriber::filter::FilterFn;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, reload};

pub use config::{Env, ProcessEnv, TelemetryConfig, VarError};

/// Errors from [`init`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An OTLP exporter could not be built from the configuration.
    #[error("building the OTLP {signal} exporter: {source}")]
    Exporter {
        /// `traces` or `logs`.
        signal: &'static str,
        /// The exporter's error.
        source: opentelemetry_otlp::ExporterBuildError,
    },
    /// A metric could not be registered (a name clash on the registry).
    #[error("registering telemetry metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    /// A global subscriber was already installed in this process.
    #[error("installing the log subscriber: {0}")]
    Subscriber(#[from] tracing_subscriber::util::TryInitError),
}

/// Targets whose events never go to the OTel layers: the exporters' own stack, so that export
/// never traces or logs itself.
const EXPORT_STACK: &[&str] = &[
    "hyper",
    "h2",
    "tonic",
    "tower",
    "reqwest",
    "opentelemetry",
    "otel_export",
];

/// Directives added to `RUST_LOG` unless it mentions the target: the SDK reports its own drops
/// and failures through our counters and the once-per-outage warning instead.
const QUIET_BY_DEFAULT: &[&str] = &[
    "opentelemetry=off",
    "opentelemetry_sdk=off",
    "opentelemetry_otlp=off",
    "h2=warn",
    "hyper=warn",
    "tonic=warn",
];

/// The running telemetry of one process.
#[derive(Debug)]
pub struct Telemetry {
    /// Flushes exporters on shutdown.
    pub guard: Guard,
    /// Changes the log filter at runtime.
    pub log_filter: LogFilter,
    /// `service.instance.id` of this process.
    pub instance_id: String,
}

/// Installs logging, tracing and propagation for the process, registering export metrics on
/// `registry`. Must be called from inside a Tokio runtime (the gRPC exporter spawns its
/// connection task there) and at most once per process.
pub fn init(config: &TelemetryConfig, registry: &Registry) -> Result<Telemetry, Error> {
    let instance_id = config
        .resource_attributes
        .iter()
        .find(|(k, _)| k == "service.instance.id")
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    metrics::register_target_info(registry, config, &instance_id)?;
    let export_metrics = export::ExportMetrics::new(registry)?;
    let (tracer_provider, logger_provider) = if config.sdk_disabled {
        (None, None)
    } else {
        let resource = resource(config, &instance_id);
        (
            Some(tracer_provider(config, resource.clone(), &export_metrics)?),
            logger_provider(config, resource, export_metrics)?,
        )
    };

    opentelemetry::global::set_text_map_propagator(
        opentelemetry::propagation::TextMapCompositePropagator::new(vec![
            Box::new(TraceContextPropagator::new()),
            Box::new(BaggagePropagator::new()),
        ]),
    );
    let log_filter = install_subscriber(
        &config.log_filter,
        tracer_provider.as_ref(),
        logger_provider.as_ref(),
    )?;
    Ok(Telemetry {
        guard: Guard {
            exporting: config.otlp.is_some() && !config.sdk_disabled,
            tracer_provider,
            logger_provider,
        },
        log_filter,
        instance_id,
    })
}

/// The process's tracer provider: the configured sampler, and the bounded OTLP span pipeline
/// when a traces endpoint is set.
fn tracer_provider(
    config: &TelemetryConfig,
    resource: Resource,
    export_metrics: &export::ExportMetrics,
) -> Result<SdkTracerProvider, Error> {
    let mut builder = SdkTracerProvider::builder()
        .with_resource(resource)
        .with_sampler(sampler(config.sampler));
    if let Some(otlp) = &config.otlp
        && let Some(endpoint) = &otlp.traces_endpoint
    {
        let exporter = span_exporter(otlp, endpoint).map_err(|source| Error::Exporter {
            signal: "traces",
            source,
        })?;
        builder = builder.with_span_processor(export::span_processor(
            exporter,
            otlp.max_queue_size,
            export_metrics.clone(),
        ));
    }
    Ok(builder.build())
}

/// The process's logger provider with the bounded OTLP log pipeline, when a logs endpoint is set.
fn logger_provider(
    config: &TelemetryConfig,
    resource: Resource,
    export_metrics: export::ExportMetrics,
) -> Result<Option<SdkLoggerProvider>, Error> {
    let Some((otlp, endpoint)) = config
        .otlp
        .as_ref()
        .and_then(|otlp| Some((otlp, otlp.logs_endpoint.as_ref()?)))
    else {
        return Ok(None);
    };
    let exporter = log_exporter(otlp, endpoint).map_err(|source| Error::Exporter {
        signal: "logs",
        source,
    })?;
    Ok(Some(
        SdkLoggerProvider::builder()
            .with_resource(resource)
            .with_log_processor(export::log_processor(
                exporter,
                otlp.max_queue_size,
                export_metrics,
            ))
            .build(),
    ))
}

/// Installs the global subscriber: the reloadable `RUST_LOG` filter, the OTel span and log
/// bridges (without the exporters' own stack) and the JSON lines on stdout.
fn install_subscriber(
    log_filter: &str,
    tracer_provider: Option<&SdkTracerProvider>,
    logger_provider: Option<&SdkLoggerProvider>,
) -> Result<LogFilter, Error> {
    let (filter_layer, handle) = reload::Layer::new(build_filter(log_filter));
    let not_export_stack =
        FilterFn::new(|meta| !EXPORT_STACK.iter().any(|t| meta.target().starts_with(t)));
    let otel_traces = tracer_provider.map(|p| {
        opentelemetry::global::set_tracer_provider(p.clone());
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer("organism"))
            .with_error_records_to_exceptions(true)
            // Semantic-convention attributes only: no code.*, thread.*, target or busy/idle
            // timings on every span (they cost per request and say little).
            .with_location(false)
            .with_threads(false)
            .with_target(false)
            .with_tracked_inactivity(false)
            .with_filter(not_export_stack.clone())
    });
    let otel_logs = logger_provider.map(|p| {
        opentelemetry_appender_tracing::layer::OpenTelemetryTracingBridge::new(p)
            .with_filter(not_export_stack)
    });
    tracing_subscriber::registry()
        .with(filter_layer)
        .with(otel_traces)
        .with(otel_logs)
        .with(fmt::JsonLayer::new(std::io::stdout))
        .try_init()?;
    Ok(LogFilter {
        handle: Arc::new(handle),
        current: Arc::new(Mutex::new(log_filter.to_owned())),
    })
}

fn resource(config: &TelemetryConfig, instance_id: &str) -> Resource {
    let mut attrs: Vec<KeyValue> = config
        .resource_attributes
        .iter()
        .filter(|(k, _)| {
            !matches!(
                k.as_str(),
                "service.name" | "service.version" | "service.instance.id"
            )
        })
        .map(|(k, v)| KeyValue::new(k.clone(), v.clone()))
        .collect();
    attrs.push(KeyValue::new(
        "service.version",
        config.service_version.clone(),
    ));
    attrs.push(KeyValue::new("service.instance.id", instance_id.to_owned()));
    attrs.push(KeyValue::new("telemetry.sdk.language", "rust"));
    attrs.push(KeyValue::new("telemetry.sdk.name", "opentelemetry"));
    Resource::builder_empty()
        .with_service_name(config.service_name.clone())
        .with_attributes(attrs)
        .build()
}

fn sampler(config: config::SamplerConfig) -> Sampler {
    use config::SamplerConfig as S;
    match config {
        S::AlwaysOn => Sampler::AlwaysOn,
        S::AlwaysOff => Sampler::AlwaysOff,
        S::TraceIdRatio(r) => Sampler::TraceIdRatioBased(r),
        S::ParentBasedAlwaysOn => Sampler::ParentBased(Box::new(Sampler::AlwaysOn)),
        S::ParentBasedAlwaysOff => Sampler::ParentBased(Box::new(Sampler::AlwaysOff)),
        S::ParentBasedTraceIdRatio(r) => {
            Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(r)))
        }
    }
}

/// The span exporter of `opentelemetry-otlp` for `endpoint`. Endpoint and timeout come from our
/// validated configuration; headers, compression (`OTEL_EXPORTER_OTLP_(TRACES_)COMPRESSION`) and
/// `OTEL_EXPORTER_OTLP_(TRACES_)INSECURE` are read by the crate from the same variables; an
/// `https://` endpoint gets TLS with the system's roots; failed exports are retried with backoff.
///
/// Must be called inside a Tokio runtime for gRPC (the channel's connection task runs there).
pub fn span_exporter(
    otlp: &config::OtlpConfig,
    endpoint: &str,
) -> Result<opentelemetry_otlp::SpanExporter, opentelemetry_otlp::ExporterBuildError> {
    use opentelemetry_otlp::{WithHttpConfig as _, WithTonicConfig as _};
    // The http/protobuf exporter builds a reqwest client, which needs the process's provider.
    crypto_provider::install();
    let builder = opentelemetry_otlp::SpanExporter::builder();
    match otlp.protocol {
        config::Protocol::Grpc => {
            let mut headers = ::http::HeaderMap::new();
            for (name, value) in &otlp.traces_headers {
                let (Ok(name), Ok(value)) = (
                    ::http::HeaderName::from_bytes(name.as_bytes()),
                    ::http::HeaderValue::from_str(value),
                ) else {
                    return Err(
                        opentelemetry_otlp::ExporterBuildError::InvalidConfiguration(format!(
                            "OTLP header {name:?} is not a valid gRPC metadata entry"
                        )),
                    );
                };
                headers.append(name, value);
            }
            let builder = builder
                .with_tonic()
                .with_endpoint(endpoint)
                .with_timeout(otlp.timeout)
                .with_metadata(tonic::metadata::MetadataMap::from_headers(headers));
            match otlp.compression {
                Some(c) => builder.with_compression(c.into()).build(),
                None => builder.build(),
            }
        }
        config::Protocol::HttpProtobuf => {
            let builder = builder
                .with_http()
                .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                .with_endpoint(endpoint)
                .with_timeout(otlp.timeout)
                .with_headers(otlp.traces_headers.iter().cloned().collect());
            match otlp.compression {
                Some(c) => builder.with_compression(c.into()).build(),
                None => builder.build(),
            }
        }
    }
}

fn log_exporter(
    otlp: &config::OtlpConfig,
    endpoint: &str,
) -> Result<opentelemetry_otlp::LogExporter, opentelemetry_otlp::ExporterBuildError> {
    // The http/protobuf exporter builds a reqwest client, which needs the process's provider.
    crypto_provider::install();
    let builder = opentelemetry_otlp::LogExporter::builder();
    match otlp.protocol {
        config::Protocol::Grpc => builder
            .with_tonic()
            .with_endpoint(endpoint)
            .with_timeout(otlp.timeout)
            .build(),
        config::Protocol::HttpProtobuf => builder
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .with_endpoint(endpoint)
            .with_timeout(otlp.timeout)
            .build(),
    }
}

fn build_filter(directives: &str) -> EnvFilter {
    let mut all = directives.to_owned();
    for quiet in QUIET_BY_DEFAULT {
        let target = quiet.split('=').next().unwrap_or_default();
        if !directives.contains(target) {
            all.push(',');
            all.push_str(quiet);
        }
    }
    EnvFilter::builder().parse_lossy(all)
}

/// Changes the process's log filter at runtime (`RUST_LOG` syntax).
#[derive(Clone)]
pub struct LogFilter {
    handle: Arc<reload::Handle<EnvFilter, tracing_subscriber::Registry>>,
    current: Arc<Mutex<String>>,
}

impl std::fmt::Debug for LogFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogFilter")
            .field("current", &self.current())
            .finish()
    }
}

impl LogFilter {
    /// The directives in force.
    pub fn current(&self) -> String {
        self.current.lock().map(|c| c.clone()).unwrap_or_default()
    }

    /// Replaces the directives; an invalid string is rejected with the parser's reason and the
    /// old filter stays in force.
    pub fn set(&self, directives: &str) -> Result<(), String> {
        EnvFilter::builder()
            .parse(directives)
            .map_err(|e| format!("invalid filter directives: {e}"))?;
        self.handle
            .reload(build_filter(directives))
            .map_err(|e| format!("reloading the filter: {e}"))?;
        if let Ok(mut c) = self.current.lock() {
            *c = directives.to_owned();
        }
        Ok(())
    }
}

/// Owns the tracer and logger providers; [`Guard::shutdown`] flushes them, bounded in time.
#[derive(Debug)]
pub struct Guard {
    tracer_provider: Option<SdkTracerProvider>,
    logger_provider: Option<SdkLoggerProvider>,
    exporting: bool,
}

impl Guard {
    /// Whether anything is exported (an OTLP endpoint was configured and the SDK is enabled).
    pub fn exporting(&self) -> bool {
        self.exporting
    }

    /// Flushes and shuts down traces, then logs (so the last log lines, about shutting down,
    /// still leave). Runs off the async workers and gives up after `timeout`.
    pub async fn shutdown(mut self, timeout: Duration) {
        let tracer = self.tracer_provider.take();
        let logger = self.logger_provider.take();
        if tracer.is_none() && logger.is_none() {
            return;
        }
        let half = timeout / 2;
        let work = tokio::task::spawn_blocking(move || {
            if let Some(t) = tracer {
                let _ = t.shutdown_with_timeout(half);
            }
            if let Some(l) = logger {
                let _ = l.shutdown_with_timeout(half);
            }
        });
        let _ = tokio::time::timeout(timeout, work).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_sdk::trace::InMemorySpanExporter;

    #[test]
    fn spans_reach_the_exporter_through_the_filtered_layers() {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .build();
        let (filter_layer, _handle) = reload::Layer::new(build_filter("info"));
        let not_export_stack =
            FilterFn::new(|meta| !EXPORT_STACK.iter().any(|t| meta.target().starts_with(t)));
        let subscriber = tracing_subscriber::registry().with(filter_layer).with(Some(
            tracing_opentelemetry::layer()
                .with_tracer(provider.tracer("test"))
                .with_filter(not_export_stack),
        ));
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("kept", otel.name = "GET /kept");
            let _e = span.enter();
            let hidden = tracing::info_span!(target: "hyper::client", "dropped");
            let _h = hidden.enter();
        });
        let _ = provider.force_flush();
        let names: Vec<String> = exporter
            .get_finished_spans()
            .unwrap()
            .into_iter()
            .map(|s| s.name.to_string())
            .collect();
        assert_eq!(names, vec!["GET /kept".to_owned()]);
    }
}
