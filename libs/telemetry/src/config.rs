//! Telemetry settings read from the standard `OTEL_*` variables (and `RUST_LOG`).
//!
//! Reading goes through [`Env`] so tests pass a map instead of mutating the process
//! environment. Every invalid variable is reported, not only the first.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

/// A source of environment variables.
pub trait Env {
    /// The value of `key`, if set (an empty value counts as unset, as the OTel spec asks).
    fn var(&self, key: &str) -> Option<String>;
}

/// The process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, key: &str) -> Option<String> {
        std::env::var(key).ok().filter(|v| !v.trim().is_empty())
    }
}

impl<S: std::hash::BuildHasher> Env for HashMap<String, String, S> {
    fn var(&self, key: &str) -> Option<String> {
        self.get(key).cloned().filter(|v| !v.trim().is_empty())
    }
}

impl<S: std::hash::BuildHasher> Env for HashMap<&str, &str, S> {
    fn var(&self, key: &str) -> Option<String> {
        self.get(key)
            .map(|v| (*v).to_owned())
            .filter(|v| !v.trim().is_empty())
    }
}

/// One invalid variable: its name and what is wrong with its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VarError {
    /// The variable's name, e.g. `OTEL_EXPORTER_OTLP_PROTOCOL`.
    pub var: String,
    /// What is wrong, naming the accepted values.
    pub reason: String,
}

impl fmt::Display for VarError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.var, self.reason)
    }
}

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
        let mut errors = Vec::new();
        let mut err = |var: &str, reason: String| {
            errors.push(VarError {
                var: var.to_owned(),
                reason,
            })
        };

        let sdk_disabled = match env.var("OTEL_SDK_DISABLED").as_deref().map(str::trim) {
            None => false,
            Some(v) if v.eq_ignore_ascii_case("true") => true,
            Some(v) if v.eq_ignore_ascii_case("false") => false,
            Some(v) => {
                err(
                    "OTEL_SDK_DISABLED",
                    format!("expected true or false, got {v:?}"),
                );
                false
            }
        };

        let protocol = match env
            .var("OTEL_EXPORTER_OTLP_PROTOCOL")
            .as_deref()
            .map(str::trim)
        {
            None | Some("http/protobuf") => Protocol::HttpProtobuf,
            Some("grpc") => Protocol::Grpc,
            Some(v) => {
                err(
                    "OTEL_EXPORTER_OTLP_PROTOCOL",
                    format!("expected grpc or http/protobuf, got {v:?}"),
                );
                Protocol::HttpProtobuf
            }
        };

        let timeout = match env.var("OTEL_EXPORTER_OTLP_TIMEOUT") {
            None => DEFAULT_TIMEOUT,
            Some(v) => match v.trim().parse::<u64>() {
                Ok(ms) if ms > 0 => Duration::from_millis(ms),
                _ => {
                    err(
                        "OTEL_EXPORTER_OTLP_TIMEOUT",
                        format!("expected a positive number of milliseconds, got {v:?}"),
                    );
                    DEFAULT_TIMEOUT
                }
            },
        };

        let max_queue_size = match env.var("OTEL_BSP_MAX_QUEUE_SIZE") {
            None => DEFAULT_QUEUE,
            Some(v) => match v.trim().parse::<usize>() {
                Ok(n) if n > 0 => n,
                _ => {
                    err(
                        "OTEL_BSP_MAX_QUEUE_SIZE",
                        format!("expected a positive integer, got {v:?}"),
                    );
                    DEFAULT_QUEUE
                }
            },
        };

        let base = env.var("OTEL_EXPORTER_OTLP_ENDPOINT");
        let mut endpoint = |signal_var: &str, path: &str| -> Option<String> {
            let (var, url, append) = match env.var(signal_var) {
                Some(url) => (signal_var.to_owned(), url, false),
                None => (
                    "OTEL_EXPORTER_OTLP_ENDPOINT".to_owned(),
                    base.clone()?,
                    true,
                ),
            };
            let url = url.trim().to_owned();
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                err(
                    &var,
                    format!("expected an http:// or https:// URL, got {url:?}"),
                );
                return None;
            }
            Some(if append && protocol == Protocol::HttpProtobuf {
                format!("{}/{}", url.trim_end_matches('/'), path)
            } else {
                url
            })
        };
        let traces_endpoint = endpoint("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "v1/traces");
        let logs_endpoint = endpoint("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "v1/logs");

        let mut traces_headers: Vec<(String, String)> = Vec::new();
        for var in [
            "OTEL_EXPORTER_OTLP_HEADERS",
            "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
        ] {
            match env.var(var).as_deref().map(parse_resource_attributes) {
                None => {}
                Some(Ok(headers)) => {
                    for (k, v) in headers {
                        traces_headers.retain(|(old, _)| !old.eq_ignore_ascii_case(&k));
                        traces_headers.push((k, v));
                    }
                }
                // The reason would quote the variable, which may hold a credential.
                Some(Err(_)) => err(
                    var,
                    "expected key=value pairs separated by commas, values percent-encoded \
                     (the value is not repeated here: it may hold a credential)"
                        .to_owned(),
                ),
            }
        }

        let mut compression = None;
        for var in [
            "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION",
            "OTEL_EXPORTER_OTLP_COMPRESSION",
        ] {
            if let Some(v) = env.var(var) {
                match v.trim() {
                    "gzip" => compression = Some(Compression::Gzip),
                    "none" => {}
                    other => err(var, format!("expected gzip or none, got {other:?}")),
                }
                break;
            }
        }

        let sampler = parse_sampler(env, &mut err);

        let mut resource_attributes = Vec::new();
        if let Some(raw) = env.var("OTEL_RESOURCE_ATTRIBUTES") {
            match parse_resource_attributes(&raw) {
                Ok(attrs) => resource_attributes = attrs,
                Err(reason) => err("OTEL_RESOURCE_ATTRIBUTES", reason),
            }
        }
        for (vars, key) in K8S_ATTRIBUTES {
            if resource_attributes.iter().any(|(k, _)| k == key) {
                continue;
            }
            if let Some(v) = vars.iter().find_map(|var| env.var(var)) {
                resource_attributes.push(((*key).to_owned(), v));
            }
        }

        let service_name = env
            .var("OTEL_SERVICE_NAME")
            .or_else(|| attr(&resource_attributes, "service.name"))
            .unwrap_or_else(|| default_service_name.to_owned());
        let service_version =
            attr(&resource_attributes, "service.version").unwrap_or_else(|| version.to_owned());

        let log_filter = env.var("RUST_LOG").unwrap_or_else(|| "info".to_owned());
        if let Err(e) = tracing_subscriber::EnvFilter::builder().parse(&log_filter) {
            err("RUST_LOG", format!("invalid filter directives: {e}"));
        }

        let access_log = parse_access_log(env, &mut err);

        errors.dedup_by(|a, b| a.var == b.var);
        if !errors.is_empty() {
            return Err(errors);
        }
        let otlp = (!sdk_disabled && (traces_endpoint.is_some() || logs_endpoint.is_some()))
            .then_some(OtlpConfig {
                protocol,
                traces_endpoint,
                logs_endpoint,
                timeout,
                max_queue_size,
                traces_headers,
                compression,
            });
        Ok(Self {
            service_name,
            service_version,
            resource_attributes,
            otlp,
            sampler,
            log_filter,
            sdk_disabled,
            access_log,
        })
    }
}

fn parse_access_log(env: &dyn Env, err: &mut impl FnMut(&str, String)) -> AccessLogConfig {
    let mut c = AccessLogConfig::default();
    if let Some(v) = env.var("ACCESS_LOG_LEVEL") {
        let v = v.trim().to_ascii_lowercase();
        c.level = match v.as_str() {
            "off" => None,
            "trace" => Some(tracing::Level::TRACE),
            "debug" => Some(tracing::Level::DEBUG),
            "info" => Some(tracing::Level::INFO),
            "warn" => Some(tracing::Level::WARN),
            "error" => Some(tracing::Level::ERROR),
            _ => {
                err(
                    "ACCESS_LOG_LEVEL",
                    format!("expected one of off, trace, debug, info, warn, error; got {v:?}"),
                );
                c.level
            }
        };
    }
    if let Some(v) = env.var("ACCESS_LOG_SAMPLE_RATIO") {
        match v.trim().parse::<f64>() {
            Ok(r) if (0.0..=1.0).contains(&r) => c.sample_ratio = r,
            _ => err(
                "ACCESS_LOG_SAMPLE_RATIO",
                format!("expected a ratio between 0 and 1, got {v:?}"),
            ),
        }
    }
    if let Some(v) = env.var("ACCESS_LOG_PROBES") {
        match v.trim() {
            t if t.eq_ignore_ascii_case("true") => c.probes = true,
            f if f.eq_ignore_ascii_case("false") => c.probes = false,
            other => err(
                "ACCESS_LOG_PROBES",
                format!("expected true or false, got {other:?}"),
            ),
        }
    }
    c
}

fn attr(attrs: &[(String, String)], key: &str) -> Option<String> {
    attrs.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
}

fn parse_sampler(env: &dyn Env, err: &mut impl FnMut(&str, String)) -> SamplerConfig {
    let ratio = |err: &mut dyn FnMut(&str, String)| match env.var("OTEL_TRACES_SAMPLER_ARG") {
        None => 1.0,
        Some(v) => match v.trim().parse::<f64>() {
            Ok(r) if (0.0..=1.0).contains(&r) => r,
            _ => {
                err(
                    "OTEL_TRACES_SAMPLER_ARG",
                    format!("expected a ratio between 0 and 1, got {v:?}"),
                );
                1.0
            }
        },
    };
    match env.var("OTEL_TRACES_SAMPLER").as_deref().map(str::trim) {
        None | Some("parentbased_always_on") => SamplerConfig::ParentBasedAlwaysOn,
        Some("always_on") => SamplerConfig::AlwaysOn,
        Some("always_off") => SamplerConfig::AlwaysOff,
        Some("parentbased_always_off") => SamplerConfig::ParentBasedAlwaysOff,
        Some("traceidratio") => SamplerConfig::TraceIdRatio(ratio(err)),
        Some("parentbased_traceidratio") => SamplerConfig::ParentBasedTraceIdRatio(ratio(err)),
        Some(v) => {
            err(
                "OTEL_TRACES_SAMPLER",
                format!(
                    "expected one of always_on, always_off, traceidratio, parentbased_always_on, \
                     parentbased_always_off, parentbased_traceidratio; got {v:?}"
                ),
            );
            SamplerConfig::ParentBasedAlwaysOn
        }
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
