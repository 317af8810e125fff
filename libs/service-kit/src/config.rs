//! The configuration every service shares, read through the workspace's one environment reader
//! ([`EnvReader`], from `env-config`, re-exported here) so every bad variable is reported at once.

use std::net::SocketAddr;
use std::time::Duration;

pub use env_config::{ConfigError, Env, EnvReader, ProcessEnv, VarError};
use secrecy::SecretString;
use telemetry::TelemetryConfig;

/// What every service reads: where to listen, limits, shutdown, the admin token and telemetry.
#[derive(Debug, Clone)]
pub struct BaseConfig {
    /// The service's name (crate, binary and chart key).
    pub service: &'static str,
    /// `LISTEN_ADDR` (default `0.0.0.0:<the service's port>`).
    pub listen: SocketAddr,
    /// `SHUTDOWN_TIMEOUT`: the longest the drain of in-flight requests may take (default `20s`,
    /// below Kubernetes' default 30 s grace period).
    pub shutdown_timeout: Duration,
    /// `REQUEST_TIMEOUT`: the longest one request may take before a 503 `timeout` answer
    /// (default `30s`).
    pub request_timeout: Duration,
    /// `REQUEST_BODY_LIMIT_BYTES`: the largest request body accepted (default 1 MiB).
    pub body_limit: usize,
    /// `ADMIN_TOKEN`: bearer token for admin endpoints (`PUT /admin/log-filter`); closed (403)
    /// when unset.
    pub admin_token: Option<SecretString>,
    /// `HEADER_READ_TIMEOUT`: the longest a client may take to send a request's headers,
    /// and the longest a keep-alive connection may sit idle waiting for the next request
    /// (default `10s`, from `1s` to `1h`; the connection is closed after it).
    pub header_read_timeout: Duration,
    /// `MAX_CONNECTIONS`: open connections served at once (default 1024); one more is answered
    /// 503 JSON and closed at once.
    pub max_connections: usize,
    /// Telemetry settings from the `OTEL_*` variables and `RUST_LOG`.
    pub telemetry: TelemetryConfig,
}

impl BaseConfig {
    /// Reads the common settings of `service` (default port `port`, version `version`).
    pub fn read(
        reader: &mut EnvReader<'_>,
        service: &'static str,
        port: u16,
        version: &str,
    ) -> Option<Self> {
        let listen = reader.parse("LISTEN_ADDR", SocketAddr::from(([0, 0, 0, 0], port)));
        let shutdown_timeout = reader.duration("SHUTDOWN_TIMEOUT", Duration::from_secs(20), ..);
        let request_timeout = reader.duration("REQUEST_TIMEOUT", Duration::from_secs(30), ..);
        let body_limit = reader.parse("REQUEST_BODY_LIMIT_BYTES", 1024 * 1024usize);
        let admin_token = reader.secret("ADMIN_TOKEN");
        let header_read_timeout = reader.duration(
            "HEADER_READ_TIMEOUT",
            Duration::from_secs(10),
            Duration::from_secs(1)..=Duration::from_secs(3600),
        );
        let max_connections = reader.parse_with("MAX_CONNECTIONS", 1024usize, |raw| {
            match raw.parse::<usize>() {
                Ok(n) if (1..=1_000_000).contains(&n) => Ok(n),
                _ => Err("expected a whole number from 1 to 1000000".to_owned()),
            }
        });
        let telemetry = TelemetryConfig::read(reader, service, version);
        Some(Self {
            service,
            listen,
            shutdown_timeout,
            request_timeout,
            body_limit,
            admin_token,
            header_read_timeout,
            max_connections,
            telemetry: telemetry?,
        })
    }

    /// A configuration for tests: listens on 127.0.0.1:0, no exporter.
    pub fn for_tests(service: &'static str) -> Self {
        let env = std::collections::HashMap::<&str, &str>::new();
        let telemetry = TelemetryConfig::from_env(&env, service, "0.0.0-test")
            .expect("an empty environment is a valid telemetry configuration");
        Self {
            service,
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            shutdown_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            body_limit: 1024 * 1024,
            admin_token: None,
            header_read_timeout: Duration::from_secs(10),
            max_connections: 1024,
            telemetry,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn all_problems_are_reported_together() {
        let env: HashMap<&str, &str> = [
            ("LISTEN_ADDR", "not-an-address"),
            ("SHUTDOWN_TIMEOUT", "-3s"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "smoke-signals"),
            ("HEART_URL", "ftp://heart"),
        ]
        .into_iter()
        .collect();
        let mut reader = EnvReader::new(&env);
        let base = BaseConfig::read(&mut reader, "brain", 8082, "1.0.0");
        let _heart = reader.url("HEART_URL", "http://127.0.0.1:8081");
        let err = reader.finish().unwrap_err();
        assert!(base.is_none());
        let text = err.to_string();
        for var in [
            "LISTEN_ADDR",
            "SHUTDOWN_TIMEOUT",
            "OTEL_EXPORTER_OTLP_PROTOCOL",
            "HEART_URL",
        ] {
            assert!(text.contains(var), "{var} not named in:\n{text}");
        }
        assert!(
            text.starts_with("invalid configuration (4 problems)"),
            "{text}"
        );
    }

    #[test]
    fn defaults_when_nothing_is_set() {
        let env: HashMap<&str, &str> = HashMap::new();
        let mut reader = EnvReader::new(&env);
        let base = BaseConfig::read(&mut reader, "heart", 8081, "1.0.0").unwrap();
        reader.finish().unwrap();
        assert_eq!(base.listen.port(), 8081);
        assert_eq!(base.body_limit, 1024 * 1024);
        assert!(base.admin_token.is_none());
        assert!(base.telemetry.otlp.is_none());
    }
}
