//! The Prometheus side: text encoding of a registry, process metrics and `target_info`.

use prometheus::{Encoder, IntGaugeVec, Opts, Registry, TextEncoder};

use crate::config::TelemetryConfig;

/// Registers the process collector (CPU seconds, resident memory, open and max fds, threads,
/// start time) on `registry`. Linux only; elsewhere it registers nothing.
pub fn register_process_metrics(registry: &Registry) -> prometheus::Result<()> {
    #[cfg(target_os = "linux")]
    registry.register(Box::new(
        prometheus::process_collector::ProcessCollector::for_self(),
    ))?;
    #[cfg(not(target_os = "linux"))]
    let _ = registry;
    Ok(())
}

/// `target_info`: the resource's identifying attributes as labels of a constant 1, as the
/// OpenTelemetry-to-Prometheus mapping does.
pub(crate) fn register_target_info(
    registry: &Registry,
    config: &TelemetryConfig,
    instance_id: &str,
) -> prometheus::Result<()> {
    let info = IntGaugeVec::new(
        Opts::new(
            "target_info",
            "Target metadata: the service's resource attributes.",
        ),
        &["service_name", "service_version", "service_instance_id"],
    )?;
    info.with_label_values(&[&config.service_name, &config.service_version, instance_id])
        .set(1);
    registry.register(Box::new(info))
}

/// Encodes every metric of `registry` in the Prometheus text format (0.0.4).
pub fn encode(registry: &Registry) -> String {
    let mut buf = Vec::with_capacity(8 * 1024);
    let encoder = TextEncoder::new();
    if let Err(e) = encoder.encode(&registry.gather(), &mut buf) {
        tracing::error!(error = %e, "encoding metrics");
    }
    String::from_utf8(buf).unwrap_or_default()
}

/// The content type of [`encode`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
