//! Bounded, counted export: wrappers around the SDK's batch processors and OTLP exporters.
//!
//! The SDK's batch processors already never block the caller, but they only log their drops.
//! These wrappers keep a hard bound on items waiting for export, count every item dropped
//! (queue full or failed export) in Prometheus counters, and turn a failing collector into one
//! warning when it starts failing and one when it recovers, instead of a line per batch.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use opentelemetry::Context;
use opentelemetry::InstrumentationScope;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::logs::{LogBatch, LogExporter, LogProcessor, SdkLogRecord};
use opentelemetry_sdk::trace::{Span, SpanData, SpanExporter, SpanProcessor};
use prometheus::{IntCounterVec, Opts, Registry};

/// Export counters of one process, labelled by `signal` (`traces` or `logs`).
#[derive(Clone, Debug)]
pub struct ExportMetrics {
    dropped: IntCounterVec,
    exported: IntCounterVec,
}

impl ExportMetrics {
    /// Creates the counters and registers them on `registry`.
    pub fn new(registry: &Registry) -> prometheus::Result<Self> {
        let dropped = IntCounterVec::new(
            Opts::new(
                "otel_export_dropped_items_total",
                "Telemetry items dropped before reaching the collector (queue full or export failed).",
            ),
            &["signal", "reason"],
        )?;
        let exported = IntCounterVec::new(
            Opts::new(
                "otel_export_items_total",
                "Telemetry items the collector accepted.",
            ),
            &["signal"],
        )?;
        registry.register(Box::new(dropped.clone()))?;
        registry.register(Box::new(exported.clone()))?;
        for signal in ["traces", "logs"] {
            for reason in ["queue_full", "export_failed"] {
                dropped.with_label_values(&[signal, reason]);
            }
            exported.with_label_values(&[signal]);
        }
        Ok(Self { dropped, exported })
    }
}

/// State shared by a processor wrapper and its exporter wrapper.
#[derive(Debug)]
struct Gauge {
    signal: &'static str,
    pending: AtomicUsize,
    cap: usize,
    failing: AtomicBool,
    metrics: ExportMetrics,
}

impl Gauge {
    fn new(signal: &'static str, cap: usize, metrics: ExportMetrics) -> Self {
        Self {
            signal,
            pending: AtomicUsize::new(0),
            cap,
            failing: AtomicBool::new(false),
            metrics,
        }
    }

    /// Reserves a slot for one item, or counts it as dropped.
    fn admit(&self) -> bool {
        if self.pending.fetch_add(1, Ordering::Relaxed) >= self.cap {
            self.pending.fetch_sub(1, Ordering::Relaxed);
            self.metrics
                .dropped
                .with_label_values(&[self.signal, "queue_full"])
                .inc();
            false
        } else {
            true
        }
    }

    fn settle(&self, n: usize, result: &OTelSdkResult) {
        self.pending.fetch_sub(
            n.min(self.pending.load(Ordering::Relaxed)),
            Ordering::Relaxed,
        );
        match result {
            Ok(()) => {
                self.metrics
                    .exported
                    .with_label_values(&[self.signal])
                    .inc_by(n as u64);
                if self.failing.swap(false, Ordering::Relaxed) {
                    tracing::info!(target: "otel_export", signal = self.signal, "OTLP export recovered");
                }
            }
            Err(e) => {
                self.metrics
                    .dropped
                    .with_label_values(&[self.signal, "export_failed"])
                    .inc_by(n as u64);
                if !self.failing.swap(true, Ordering::Relaxed) {
                    tracing::warn!(target: "otel_export", signal = self.signal, error = %e,
                        "OTLP export failing; dropping telemetry until the collector answers");
                }
            }
        }
    }
}

/// The SDK's own queue is made larger than ours so that ours is the one that drops (and counts).
fn inner_queue(cap: usize) -> usize {
    cap.saturating_mul(2).max(64)
}

/// Builds the bounded span pipeline around `exporter`.
pub(crate) fn span_processor<E: SpanExporter + 'static>(
    exporter: E,
    cap: usize,
    metrics: ExportMetrics,
) -> BoundedSpanProcessor {
    let gauge = Arc::new(Gauge::new("traces", cap, metrics));
    let inner = opentelemetry_sdk::trace::BatchSpanProcessor::builder(CountingSpanExporter {
        inner: exporter,
        gauge: gauge.clone(),
    })
    .with_batch_config(
        opentelemetry_sdk::trace::BatchConfigBuilder::default()
            .with_max_queue_size(inner_queue(cap))
            .with_scheduled_delay(Duration::from_millis(500))
            .build(),
    )
    .build();
    BoundedSpanProcessor { inner, gauge }
}

/// Builds the bounded log pipeline around `exporter`.
pub(crate) fn log_processor<E: LogExporter + 'static>(
    exporter: E,
    cap: usize,
    metrics: ExportMetrics,
) -> BoundedLogProcessor {
    let gauge = Arc::new(Gauge::new("logs", cap, metrics));
    let inner = opentelemetry_sdk::logs::BatchLogProcessor::builder(CountingLogExporter {
        inner: exporter,
        gauge: gauge.clone(),
    })
    .with_batch_config(
        opentelemetry_sdk::logs::BatchConfigBuilder::default()
            .with_max_queue_size(inner_queue(cap))
            .with_scheduled_delay(Duration::from_millis(500))
            .build(),
    )
    .build();
    BoundedLogProcessor { inner, gauge }
}

/// A batch span processor with a hard, counted bound on spans waiting for export.
pub struct BoundedSpanProcessor {
    inner: opentelemetry_sdk::trace::BatchSpanProcessor,
    gauge: Arc<Gauge>,
}

impl fmt::Debug for BoundedSpanProcessor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BoundedSpanProcessor")
            .field("gauge", &self.gauge)
            .finish()
    }
}

impl SpanProcessor for BoundedSpanProcessor {
    fn on_start(&self, span: &mut Span, cx: &Context) {
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        if self.gauge.admit() {
            self.inner.on_end(span);
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

#[derive(Debug)]
struct CountingSpanExporter<E> {
    inner: E,
    gauge: Arc<Gauge>,
}

impl<E: SpanExporter> SpanExporter for CountingSpanExporter<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let n = batch.len();
        let result = self.inner.export(batch).await;
        self.gauge.settle(n, &result);
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// A batch log processor with a hard, counted bound on records waiting for export.
pub struct BoundedLogProcessor {
    inner: opentelemetry_sdk::logs::BatchLogProcessor,
    gauge: Arc<Gauge>,
}

impl fmt::Debug for BoundedLogProcessor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BoundedLogProcessor")
            .field("gauge", &self.gauge)
            .finish()
    }
}

impl LogProcessor for BoundedLogProcessor {
    fn emit(&self, data: &mut SdkLogRecord, instrumentation: &InstrumentationScope) {
        if self.gauge.admit() {
            self.inner.emit(data, instrumentation);
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

#[derive(Debug)]
struct CountingLogExporter<E> {
    inner: E,
    gauge: Arc<Gauge>,
}

impl<E: LogExporter> LogExporter for CountingLogExporter<E> {
    async fn export(&self, batch: LogBatch<'_>) -> OTelSdkResult {
        let n = batch.iter().count();
        let result = self.inner.export(batch).await;
        self.gauge.settle(n, &result);
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gauge(cap: usize) -> (Gauge, Registry) {
        let registry = Registry::new();
        let metrics = ExportMetrics::new(&registry).unwrap();
        (Gauge::new("traces", cap, metrics), registry)
    }

    #[test]
    fn items_beyond_the_bound_are_dropped_and_counted() {
        let (g, _r) = gauge(3);
        let admitted = (0..5).filter(|_| g.admit()).count();
        assert_eq!(admitted, 3);
        assert_eq!(
            g.metrics
                .dropped
                .with_label_values(&["traces", "queue_full"])
                .get(),
            2
        );
        g.settle(3, &Ok(()));
        assert!(g.admit(), "room again once the batch is exported");
        assert_eq!(g.metrics.exported.with_label_values(&["traces"]).get(), 3);
    }

    #[test]
    fn failed_exports_count_their_items() {
        let (g, _r) = gauge(10);
        for _ in 0..4 {
            assert!(g.admit());
        }
        g.settle(
            4,
            &Err(opentelemetry_sdk::error::OTelSdkError::InternalFailure(
                "down".into(),
            )),
        );
        assert_eq!(
            g.metrics
                .dropped
                .with_label_values(&["traces", "export_failed"])
                .get(),
            4
        );
        assert_eq!(g.pending.load(Ordering::Relaxed), 0);
        assert!(g.failing.load(Ordering::Relaxed));
    }
}
