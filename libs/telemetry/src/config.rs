//! Telemetry settings read from the standard `OTEL_*` variables (and `RUST_LOG`).
//!
//! Reading goes through the workspace's one reader, [`env_config::EnvReader`], so tests pass a
//! map instead of mutating the process environment, every invalid variable is reported (not only
//! the first), and a service reports its telemetry variables together with its own.

use std::time::Duration;

use env_config::EnvReader;
pub use env_config::{Env, ProcessEnv, VarError};

/// OTLP wire protocol (`OTEL_EXPORTER_OTLP_PROTOCOL`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// `grpc`
    Grpc,
    /// `http/protobuf` (the specification's default)
    HttpProtobuf,
}

/// Export compression (`OTEL_EXPORTER_OTLP_COMPRESSION`, `OTEL_EXPORTER_OTLP_TRACES_COMPRESSION`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// `gzip`
    Gzip,
}

impl From<Compression> for opentelemetry_otlp::Compression {
    fn from(c: Compression) -> Self {
        match c {
            Compression::Gzip => opentelemetry_otlp::Compression::Gzip,
        }
    }
}

/// Trace sampler (`OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SamplerConfig {
    /// `always_on`
    AlwaysOn,
    /// `always_off`
    AlwaysOff,
    /// `traceidratio` with its ratio
    TraceIdRatio(f64),
    /// `parentbased_always_on` (the default)
    ParentBasedAlwaysOn,
    /// `parentbased_always_off`
    ParentBasedAlwaysOff,
    /// `parentbased_traceidratio` with its ratio
    ParentBasedTraceIdRatio(f64),
}

/// Where and how to export over OTLP.
#[derive(Debug, Clone, PartialEq)]
pub struct OtlpConfig {
    /// Wire protocol.
    pub protocol: Protocol,
    /// Endpoint for traces: for http/protobuf the full URL including `/v1/traces`.
    pub traces_endpoint: Option<String>,
    /// Endpoint for logs: for http/protobuf the full URL including `/v1/logs`.
    pub logs_endpoint: Option<String>,
    /// Per-export timeout (`OTEL_EXPORTER_OTLP_TIMEOUT`, milliseconds; default 2 s here,
    /// shorter than the spec's 10 s so a missing collector never stalls shutdown).
    pub timeout: Duration,
    /// Bound of each signal's export queue; beyond it items are dropped and counted.
    pub max_queue_size: usize,
    /// Headers sent with every trace export: `OTEL_EXPORTER_OTLP_HEADERS`, overridden key by key
    /// by `OTEL_EXPORTER_OTLP_TRACES_HEADERS` (`key=value,…`, values percent-encoded).
    pub traces_headers: Vec<(String, String)>,
    /// Compression of trace exports (`OTEL_EXPORTER_OTLP_TRACES_COMPRESSION`, else
    /// `OTEL_EXPORTER_OTLP_COMPRESSION`; `gzip` or `none`, the default). Log exports read the
    /// same variables (and `OTEL_EXPORTER_OTLP_LOGS_COMPRESSION`) inside `opentelemetry-otlp`.
    pub compression: Option<Compression>,
}

/// The one log line per HTTP request ([`crate::http`]): `ACCESS_LOG_LEVEL`,
/// `ACCESS_LOG_SAMPLE_RATIO`, `ACCESS_LOG_PROBES`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AccessLogConfig {
    /// Level of the line of a successful request (`ACCESS_LOG_LEVEL`: `trace`, `debug`, `info`
    /// (default), `warn`, `error`, or `off`). A 4xx answer logs at `warn`, a 5xx at `error`,
    /// unless this is `off`. The line still passes `RUST_LOG` (target `access_log`).
    pub level: Option<tracing::Level>,
    /// Share of successful requests logged (`ACCESS_LOG_SAMPLE_RATIO`, 0 to 1, default 1),
    /// decided by trace id, so a logged request is logged by every service it crosses. Answers
    /// of 400 and above are always logged. Independent of trace sampling.
    pub sample_ratio: f64,
    /// Whether `/healthz`, `/readyz` and `/metrics` are logged too (`ACCESS_LOG_PROBES`,
    /// default `false`).
    pub probes: bool,
}

impl Default for AccessLogConfig {
    fn default() -> Self {
        Self {
            level: Some(tracing::Level::INFO),
            sample_ratio: 1.0,
            probes: false,
        }
    }
}

/// Everything [`crate::init`] needs, parsed and validated.
#[derive(Debug, Clone, PartialEq)]
pub struct TelemetryConfig {
    /// `service.name` (`OTEL_SERVICE_NAME`, else the binary's name).
    pub service_name: String,
    /// `service.version` (the crate version unless `OTEL_RESOURCE_ATTRIBUTES` says otherwise).
    pub service_version: String,
    /// Resource attributes: parsed `OTEL_RESOURCE_ATTRIBUTES` plus the downward-API ones.
    pub resource_attributes: Vec<(String, String)>,
    /// `None` when no endpoint is set or `OTEL_SDK_DISABLED=true`: nothing is exported.
    pub otlp: Option<OtlpConfig>,
    /// Trace sampler.
    pub sampler: SamplerConfig,
    /// Initial log filter directives (`RUST_LOG`, default `info`).
    pub log_filter: String,
    /// Whether the SDK is disabled altogether (`OTEL_SDK_DISABLED`).
    pub sdk_disabled: bool,
    /// The per-request log line.
    pub access_log: AccessLogConfig,
}

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);
const DEFAULT_QUEUE: usize = 4096;

/// Downward-API variables (as the chart sets them) and the attribute each becomes.
const K8S_ATTRIBUTES: &[(&[&str], &str)] = &[
    (&["K8S_POD_NAME", "POD_NAME"], "k8s.pod.name"),
    (
        &["K8S_NAMESPACE_NAME", "POD_NAMESPACE"],
        "k8s.namespace.name",
    ),
    (&["K8S_NODE_NAME", "NODE_NAME"], "k8s.node.name"),
];

impl TelemetryConfig {
    /// Reads the configuration of `default_service_name` (version `version`) from `env`,
    /// returning every invalid variable at once.
    pub fn from_env(
        env: &dyn Env,
        default_service_name: &str,
        version: &str,
    ) -> Result<Self, Vec<VarError>> {
        let mut reader = EnvReader::new(env);
        let config = Self::read(&mut reader, default_service_name, version);
        reader.finish().map_err(|e| e.0)?;
        Ok(config.expect("a configuration with no problem recorded is complete"))
    }

    /// Reads the configuration through `reader`, recording problems there (so a service reports
    /// them with its own); `None` when any telemetry variable is invalid.
    pub fn read(
        reader: &mut EnvReader<'_>,
        default_service_name: &str,
        version: &str,
    ) -> Option<Self> {
        let problems_before = reader.problem_count();
        let sdk_disabled = read_sdk_disabled(reader);
        let exporter = read_exporter(reader);
        let sampler = read_sampler(reader);
        let resource_attributes = read_resource_attributes(reader);
        let service_name = reader
            .optional("OTEL_SERVICE_NAME")
            .or_else(|| attr(&resource_attributes, "service.name"))
            .unwrap_or_else(|| default_service_name.to_owned());
        let service_version =
            attr(&resource_attributes, "service.version").unwrap_or_else(|| version.to_owned());
        let log_filter = read_log_filter(reader);
        let access_log = read_access_log(reader);
        if reader.problem_count() > problems_before {
            return None;
        }
        let exports = exporter.traces_endpoint.is_some() || exporter.logs_endpoint.is_some();
        Some(Self {
            service_name,
            service_version,
            resource_attributes,
            otlp: (!sdk_disabled && exports).then_some(exporter),
            sampler,
            log_filter,
            sdk_disabled,
            access_log,
        })
    }
}

/// `true` or `false`, case-insensitive: the specification's booleans (no `1`/`yes`).
fn otel_bool(raw: &str) -> Result<bool, String> {
    if raw.eq_ignore_ascii_case("true") {
        Ok(true)
    } else if raw.eq_ignore_ascii_case("false") {
        Ok(false)
    } else {
        Err("expected true or false".to_owned())
    }
}

/// `OTEL_SDK_DISABLED`.
fn read_sdk_disabled(reader: &mut EnvReader<'_>) -> bool {
    reader.parse_with("OTEL_SDK_DISABLED", false, otel_bool)
}

/// Where and how to export: protocol, timeout, queue, endpoints, headers, compression. The
/// endpoints are `None` when no endpoint variable is set.
fn read_exporter(reader: &mut EnvReader<'_>) -> OtlpConfig {
    let protocol = reader.parse_with(
        "OTEL_EXPORTER_OTLP_PROTOCOL",
        Protocol::HttpProtobuf,
        |raw| match raw {
            "http/protobuf" => Ok(Protocol::HttpProtobuf),
            "grpc" => Ok(Protocol::Grpc),
            _ => Err("expected grpc or http/protobuf".to_owned()),
        },
    );
    // Milliseconds, as the specification defines this variable (not the workspace's humantime).
    let timeout = reader.parse_with(
        "OTEL_EXPORTER_OTLP_TIMEOUT",
        DEFAULT_TIMEOUT,
        |raw| match raw.parse::<u64>() {
            Ok(ms) if ms > 0 => Ok(Duration::from_millis(ms)),
            _ => Err("expected a positive number of milliseconds".to_owned()),
        },
    );
    let max_queue_size = reader.parse_with(
        "OTEL_BSP_MAX_QUEUE_SIZE",
        DEFAULT_QUEUE,
        |raw| match raw.parse::<usize>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err("expected a positive integer".to_owned()),
        },
    );
    let traces_endpoint = read_exporter_choice(reader, "OTEL_TRACES_EXPORTER")
        .then(|| {
            read_endpoint(
                reader,
                protocol,
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "v1/traces",
            )
        })
        .flatten();
    let logs_endpoint = read_exporter_choice(reader, "OTEL_LOGS_EXPORTER")
        .then(|| {
            read_endpoint(
                reader,
                protocol,
                "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
                "v1/logs",
            )
        })
        .flatten();
    let traces_headers = read_traces_headers(reader);
    let compression = read_compression(reader);
    OtlpConfig {
        protocol,
        traces_endpoint,
        logs_endpoint,
        timeout,
        max_queue_size,
        traces_headers,
        compression,
    }
}

/// `OTEL_TRACES_EXPORTER` / `OTEL_LOGS_EXPORTER`: whether the signal is exported (`otlp`, the
/// default) or not at all (`none`). Other exporters of the specification (`console`, `zipkin`)
/// are not built in and are refused by name.
fn read_exporter_choice(reader: &mut EnvReader<'_>, var: &str) -> bool {
    reader.parse_with(var, true, |raw| match raw {
        "otlp" => Ok(true),
        "none" => Ok(false),
        _ => Err("expected otlp or none (the exporters this build has)".to_owned()),
    })
}

/// One signal's endpoint: its own variable as given, else `OTEL_EXPORTER_OTLP_ENDPOINT` with
/// the signal's `path` appended for http/protobuf.
fn read_endpoint(
    reader: &mut EnvReader<'_>,
    protocol: Protocol,
    signal_var: &str,
    path: &str,
) -> Option<String> {
    const BASE: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
    let (var, url, append) = match reader.optional(signal_var) {
        Some(url) => (signal_var, url, false),
        None => (BASE, reader.optional(BASE)?, true),
    };
    let url = url.trim().to_owned();
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        reader.error(
            var,
            format!("expected an http:// or https:// URL, got {url:?}"),
        );
        return None;
    }
    Some(if append && protocol == Protocol::HttpProtobuf {
        format!("{}/{}", url.trim_end_matches('/'), path)
    } else {
        url
    })
}

/// `OTEL_EXPORTER_OTLP_HEADERS`, overridden key by key by `OTEL_EXPORTER_OTLP_TRACES_HEADERS`.
fn read_traces_headers(reader: &mut EnvReader<'_>) -> Vec<(String, String)> {
    let mut headers: Vec<(String, String)> = Vec::new();
    for var in [
        "OTEL_EXPORTER_OTLP_HEADERS",
        "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
    ] {
        match reader
            .optional(var)
            .as_deref()
            .map(parse_resource_attributes)
        {
            None => {}
            Some(Ok(pairs)) => {
                for (k, v) in pairs {
                    headers.retain(|(old, _)| !old.eq_ignore_ascii_case(&k));
                    headers.push((k, v));
                }
            }
            // Not `parse_with`: the reason would quote the variable, which may hold a credential.
            Some(Err(_)) => reader.error(
                var,
                "expected key=value pairs separated by commas, values percent-encoded \
                 (the value is not repeated here: it may hold a credential)",
            ),
        }
    }
    headers
}

/// `OTEL_EXPORTER_OTLP_TRACES_COMPRESSION`, else `OTEL_EXPORTER_OTLP_COMPRESSION`.
fn read_compression(reader: &mut EnvReader<'_>) -> Option<Compression> {
    let var = [
        "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION",
        "OTEL_EXPORTER_OTLP_COMPRESSION",
    ]
    .into_iter()
    .find(|var| reader.optional(var).is_some())?;
    reader.parse_with(var, None, |raw| match raw {
        "gzip" => Ok(Some(Compression::Gzip)),
        "none" => Ok(None),
        _ => Err("expected gzip or none".to_owned()),
    })
}

/// `OTEL_RESOURCE_ATTRIBUTES` plus the downward-API attributes it does not set.
fn read_resource_attributes(reader: &mut EnvReader<'_>) -> Vec<(String, String)> {
    let mut attributes = reader.parse_with(
        "OTEL_RESOURCE_ATTRIBUTES",
        Vec::new(),
        parse_resource_attributes,
    );
    for (vars, key) in K8S_ATTRIBUTES {
        if attributes.iter().any(|(k, _)| k == key) {
            continue;
        }
        if let Some(v) = vars.iter().find_map(|var| reader.optional(var)) {
            attributes.push(((*key).to_owned(), v));
        }
    }
    attributes
}

/// `RUST_LOG` (default `info`), checked as filter directives.
fn read_log_filter(reader: &mut EnvReader<'_>) -> String {
    let log_filter = reader.string("RUST_LOG", "info");
    if let Err(e) = tracing_subscriber::EnvFilter::builder().parse(&log_filter) {
        reader.error("RUST_LOG", format!("invalid filter directives: {e}"));
    }
    log_filter
}

/// `ACCESS_LOG_LEVEL`, `ACCESS_LOG_SAMPLE_RATIO`, `ACCESS_LOG_PROBES`.
fn read_access_log(reader: &mut EnvReader<'_>) -> AccessLogConfig {
    let default = AccessLogConfig::default();
    AccessLogConfig {
        level: reader.parse_with("ACCESS_LOG_LEVEL", default.level, |raw| {
            match raw.to_ascii_lowercase().as_str() {
                "off" => Ok(None),
                "trace" => Ok(Some(tracing::Level::TRACE)),
                "debug" => Ok(Some(tracing::Level::DEBUG)),
                "info" => Ok(Some(tracing::Level::INFO)),
                "warn" => Ok(Some(tracing::Level::WARN)),
                "error" => Ok(Some(tracing::Level::ERROR)),
                _ => Err("expected one of off, trace, debug, info, warn, error".to_owned()),
            }
        }),
        sample_ratio: reader.parse_with("ACCESS_LOG_SAMPLE_RATIO", default.sample_ratio, ratio),
        probes: reader.parse_with("ACCESS_LOG_PROBES", default.probes, otel_bool),
    }
}

/// A ratio between 0 and 1.
fn ratio(raw: &str) -> Result<f64, String> {
    match raw.parse::<f64>() {
        Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
        _ => Err("expected a ratio between 0 and 1".to_owned()),
    }
}

fn attr(attrs: &[(String, String)], key: &str) -> Option<String> {
    attrs.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
}

/// `OTEL_TRACES_SAMPLER` and, for the ratio samplers, `OTEL_TRACES_SAMPLER_ARG`.
fn read_sampler(reader: &mut EnvReader<'_>) -> SamplerConfig {
    let sampler = reader.parse_with(
        "OTEL_TRACES_SAMPLER",
        SamplerConfig::ParentBasedAlwaysOn,
        |raw| match raw {
            "parentbased_always_on" => Ok(SamplerConfig::ParentBasedAlwaysOn),
            "always_on" => Ok(SamplerConfig::AlwaysOn),
            "always_off" => Ok(SamplerConfig::AlwaysOff),
            "parentbased_always_off" => Ok(SamplerConfig::ParentBasedAlwaysOff),
            "traceidratio" => Ok(SamplerConfig::TraceIdRatio(1.0)),
            "parentbased_traceidratio" => Ok(SamplerConfig::ParentBasedTraceIdRatio(1.0)),
            _ => Err("expected one of always_on, always_off, traceidratio, \
                      parentbased_always_on, parentbased_always_off, parentbased_traceidratio"
                .to_owned()),
        },
    );
    match sampler {
        SamplerConfig::TraceIdRatio(_) => {
            SamplerConfig::TraceIdRatio(reader.parse_with("OTEL_TRACES_SAMPLER_ARG", 1.0, ratio))
        }
        SamplerConfig::ParentBasedTraceIdRatio(_) => SamplerConfig::ParentBasedTraceIdRatio(
            reader.parse_with("OTEL_TRACES_SAMPLER_ARG", 1.0, ratio),
        ),
        other => other,
    }
}

/// Parses `OTEL_RESOURCE_ATTRIBUTES` (`key1=value1,key2=value2`, values percent-encoded).
pub fn parse_resource_attributes(raw: &str) -> Result<Vec<(String, String)>, String> {
    raw.split(',')
        .map(str::trim)
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (k, v) = pair
                .split_once('=')
                .ok_or_else(|| format!("expected key=value, got {pair:?}"))?;
            let k = k.trim();
            if k.is_empty() {
                return Err(format!("empty key in {pair:?}"));
            }
            Ok((k.to_owned(), percent_decode(v.trim())?))
        })
        .collect()
}

fn percent_decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("invalid percent-encoding in {s:?}"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("value {s:?} is not UTF-8 once decoded"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn read(pairs: &[(&str, &str)]) -> Result<TelemetryConfig, Vec<VarError>> {
        let env: HashMap<&str, &str> = pairs.iter().copied().collect();
        TelemetryConfig::from_env(&env, "heart", "1.2.3")
    }

    #[test]
    fn no_endpoint_means_no_exporter() {
        let c = read(&[]).unwrap();
        assert_eq!(c.otlp, None);
        assert_eq!(c.service_name, "heart");
        assert_eq!(c.service_version, "1.2.3");
        assert_eq!(c.sampler, SamplerConfig::ParentBasedAlwaysOn);
        assert_eq!(c.log_filter, "info");
        assert_eq!(c.access_log, AccessLogConfig::default());
        assert_eq!(c.access_log.level, Some(tracing::Level::INFO));
    }

    #[test]
    fn a_signal_whose_exporter_is_none_is_not_exported() {
        let c = read(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
            ("OTEL_LOGS_EXPORTER", "none"),
        ])
        .unwrap();
        let otlp = c.otlp.unwrap();
        assert_eq!(
            otlp.traces_endpoint.as_deref(),
            Some("http://collector:4318/v1/traces")
        );
        assert_eq!(otlp.logs_endpoint, None);
        let c = read(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
            ("OTEL_TRACES_EXPORTER", "none"),
            ("OTEL_LOGS_EXPORTER", "otlp"),
        ])
        .unwrap();
        let otlp = c.otlp.unwrap();
        assert_eq!(otlp.traces_endpoint, None);
        assert_eq!(
            otlp.logs_endpoint.as_deref(),
            Some("http://collector:4318/v1/logs")
        );
    }

    #[test]
    fn an_exporter_this_build_lacks_is_refused_by_name() {
        let errors = read(&[("OTEL_TRACES_EXPORTER", "zipkin")]).unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].to_string().contains("OTEL_TRACES_EXPORTER"),
            "{errors:?}"
        );
    }

    #[test]
    fn access_log_settings_are_read_and_checked() {
        let c = read(&[
            ("ACCESS_LOG_LEVEL", "DEBUG"),
            ("ACCESS_LOG_SAMPLE_RATIO", "0.25"),
            ("ACCESS_LOG_PROBES", "true"),
        ])
        .unwrap();
        assert_eq!(
            c.access_log,
            AccessLogConfig {
                level: Some(tracing::Level::DEBUG),
                sample_ratio: 0.25,
                probes: true
            }
        );
        assert_eq!(
            read(&[("ACCESS_LOG_LEVEL", "off")])
                .unwrap()
                .access_log
                .level,
            None
        );
        let errs = read(&[
            ("ACCESS_LOG_LEVEL", "loud"),
            ("ACCESS_LOG_SAMPLE_RATIO", "2"),
            ("ACCESS_LOG_PROBES", "yes"),
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "lz4"),
        ])
        .unwrap_err();
        let vars: Vec<&str> = errs.iter().map(|e| e.var.as_str()).collect();
        assert_eq!(
            vars,
            [
                "OTEL_EXPORTER_OTLP_COMPRESSION",
                "ACCESS_LOG_LEVEL",
                "ACCESS_LOG_SAMPLE_RATIO",
                "ACCESS_LOG_PROBES"
            ]
        );
    }

    #[test]
    fn http_endpoint_gets_signal_paths_and_grpc_does_not() {
        let c = read(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/")]).unwrap();
        let otlp = c.otlp.unwrap();
        assert_eq!(otlp.protocol, Protocol::HttpProtobuf);
        assert_eq!(
            otlp.traces_endpoint.as_deref(),
            Some("http://collector:4318/v1/traces")
        );
        assert_eq!(
            otlp.logs_endpoint.as_deref(),
            Some("http://collector:4318/v1/logs")
        );

        let c = read(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "http://logs:4317"),
        ])
        .unwrap();
        let otlp = c.otlp.unwrap();
        assert_eq!(
            otlp.traces_endpoint.as_deref(),
            Some("http://collector:4317")
        );
        assert_eq!(otlp.logs_endpoint.as_deref(), Some("http://logs:4317"));
    }

    #[test]
    fn trace_headers_merge_with_the_signal_specific_ones_winning() {
        let c = read(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
            (
                "OTEL_EXPORTER_OTLP_HEADERS",
                "Authorization=Bearer%20generic,x-org=a",
            ),
            (
                "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
                "authorization=Bearer%20traces",
            ),
        ])
        .unwrap();
        assert_eq!(
            c.otlp.unwrap().traces_headers,
            [
                ("x-org".to_owned(), "a".to_owned()),
                ("authorization".to_owned(), "Bearer traces".to_owned()),
            ]
        );
    }

    #[test]
    fn a_malformed_header_variable_is_reported_without_its_value() {
        let errs = read(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "Bearer-token-without-a-key"),
        ])
        .unwrap_err();
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].var, "OTEL_EXPORTER_OTLP_HEADERS");
        assert!(
            !errs[0].reason.contains("Bearer-token"),
            "{}",
            errs[0].reason
        );
    }

    #[test]
    fn sdk_disabled_wins_over_endpoint() {
        let c = read(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
            ("OTEL_SDK_DISABLED", "true"),
        ])
        .unwrap();
        assert!(c.sdk_disabled);
        assert_eq!(c.otlp, None);
    }

    #[test]
    fn every_bad_variable_is_reported_at_once() {
        let errs = read(&[
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "carrier-pigeon"),
            ("OTEL_TRACES_SAMPLER", "traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "1.5"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "soon"),
            ("OTEL_RESOURCE_ATTRIBUTES", "novalue"),
            ("OTEL_SDK_DISABLED", "maybe"),
            ("RUST_LOG", "info,[bad"),
        ])
        .unwrap_err();
        let vars: Vec<&str> = errs.iter().map(|e| e.var.as_str()).collect();
        for expected in [
            "OTEL_EXPORTER_OTLP_PROTOCOL",
            "OTEL_TRACES_SAMPLER_ARG",
            "OTEL_EXPORTER_OTLP_TIMEOUT",
            "OTEL_RESOURCE_ATTRIBUTES",
            "OTEL_SDK_DISABLED",
            "RUST_LOG",
        ] {
            assert!(vars.contains(&expected), "{expected} missing from {vars:?}");
        }
        let protocol = errs
            .iter()
            .find(|e| e.var == "OTEL_EXPORTER_OTLP_PROTOCOL")
            .unwrap();
        assert!(
            protocol.to_string().contains("carrier-pigeon"),
            "{protocol}"
        );
    }

    #[test]
    fn resource_attributes_and_downward_api() {
        let c = read(&[
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "service.namespace=organism, deployment.environment.name=kind%20local,service.version=9",
            ),
            ("K8S_POD_NAME", "heart-abc"),
            ("POD_NAMESPACE", "organism"),
            ("OTEL_SERVICE_NAME", "heart-canary"),
        ])
        .unwrap();
        let get = |k: &str| attr(&c.resource_attributes, k);
        assert_eq!(
            get("deployment.environment.name").as_deref(),
            Some("kind local")
        );
        assert_eq!(get("k8s.pod.name").as_deref(), Some("heart-abc"));
        assert_eq!(get("k8s.namespace.name").as_deref(), Some("organism"));
        assert_eq!(get("k8s.node.name"), None);
        assert_eq!(c.service_name, "heart-canary");
        assert_eq!(c.service_version, "9");
    }

    #[test]
    fn bad_endpoint_scheme_is_named() {
        let errs = read(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4317")]).unwrap_err();
        assert_eq!(errs[0].var, "OTEL_EXPORTER_OTLP_ENDPOINT");
    }
}
