//! Typed configuration from environment variables, with every bad variable reported at once.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use secrecy::SecretString;
use telemetry::TelemetryConfig;
pub use telemetry::config::{Env, ProcessEnv, VarError};

/// Reads variables from an [`Env`], collecting every problem instead of stopping at the first.
pub struct EnvReader<'a> {
    env: &'a dyn Env,
    errors: Vec<VarError>,
}

impl fmt::Debug for EnvReader<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EnvReader")
            .field("errors", &self.errors)
            .finish()
    }
}

impl<'a> EnvReader<'a> {
    /// A reader over `env`.
    pub fn new(env: &'a dyn Env) -> Self {
        Self {
            env,
            errors: Vec::new(),
        }
    }

    /// The underlying environment.
    pub fn env(&self) -> &'a dyn Env {
        self.env
    }

    /// Records a problem with `var`.
    pub fn error(&mut self, var: &str, reason: impl Into<String>) {
        self.errors.push(VarError {
            var: var.to_owned(),
            reason: reason.into(),
        });
    }

    /// Records several problems at once (e.g. from another reader).
    pub fn extend(&mut self, errors: impl IntoIterator<Item = VarError>) {
        self.errors.extend(errors);
    }

    /// The raw value, if set and not empty.
    pub fn optional(&self, var: &str) -> Option<String> {
        self.env.var(var)
    }

    /// The raw value, or `default`.
    pub fn string(&self, var: &str, default: &str) -> String {
        self.optional(var).unwrap_or_else(|| default.to_owned())
    }

    /// A value parsed with `FromStr`, or `default` when unset; a bad value is recorded.
    pub fn parse<T>(&mut self, var: &str, default: T) -> T
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        self.parse_with(var, default, |raw| {
            raw.parse::<T>().map_err(|e| e.to_string())
        })
    }

    /// A value parsed with `parse`, or `default` when unset; a bad value is recorded.
    pub fn parse_with<T>(
        &mut self,
        var: &str,
        default: T,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> T {
        match self.optional(var) {
            None => default,
            Some(raw) => match parse(raw.trim()) {
                Ok(v) => v,
                Err(reason) => {
                    self.error(var, format!("{reason} (got {raw:?})"));
                    default
                }
            },
        }
    }

    /// `true`/`false` (also `1`/`0`, `yes`/`no`).
    pub fn bool(&mut self, var: &str, default: bool) -> bool {
        self.parse_with(var, default, |raw| {
            match raw.to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" => Ok(true),
                "false" | "0" | "no" => Ok(false),
                _ => Err("expected true or false".to_owned()),
            }
        })
    }

    /// A whole number of milliseconds.
    pub fn millis(&mut self, var: &str, default: Duration) -> Duration {
        self.parse_with(var, default, |raw| {
            raw.parse::<u64>()
                .map(Duration::from_millis)
                .map_err(|_| "expected a whole number of milliseconds".to_owned())
        })
    }

    /// A whole number of seconds.
    pub fn seconds(&mut self, var: &str, default: Duration) -> Duration {
        self.parse_with(var, default, |raw| {
            raw.parse::<u64>()
                .map(Duration::from_secs)
                .map_err(|_| "expected a whole number of seconds".to_owned())
        })
    }

    /// An `http://` or `https://` URL without a trailing slash.
    pub fn url(&mut self, var: &str, default: &str) -> String {
        self.parse_with(var, default.to_owned(), |raw| {
            if (raw.starts_with("http://") || raw.starts_with("https://")) && raw.len() > 8 {
                Ok(raw.trim_end_matches('/').to_owned())
            } else {
                Err("expected an http:// or https:// URL".to_owned())
            }
        })
    }

    /// An optional URL (unset means "not configured").
    pub fn optional_url(&mut self, var: &str) -> Option<String> {
        self.optional(var)?;
        Some(self.url(var, ""))
    }

    /// A secret (a token or password), never printed.
    pub fn secret(&self, var: &str) -> Option<SecretString> {
        self.optional(var).map(SecretString::from)
    }

    /// Ends reading: every problem found, or nothing.
    pub fn finish(self) -> Result<(), ConfigError> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(ConfigError(self.errors))
        }
    }
}

/// Every invalid variable found while reading the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub Vec<VarError>);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid configuration ({} problem", self.0.len())?;
        if self.0.len() != 1 {
            write!(f, "s")?;
        }
        write!(f, ")")?;
        for e in &self.0 {
            write!(f, "\n  {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// What every service reads: where to listen, limits, shutdown, the admin token and telemetry.
#[derive(Debug, Clone)]
pub struct BaseConfig {
    /// The service's name (crate, binary and chart key).
    pub service: &'static str,
    /// `LISTEN_ADDR` (default `0.0.0.0:<the service's port>`).
    pub listen: SocketAddr,
    /// `SHUTDOWN_TIMEOUT_SECS`: the longest the drain of in-flight requests may take (default 20,
    /// below Kubernetes' default 30 s grace period).
    pub shutdown_timeout: Duration,
    /// `REQUEST_TIMEOUT_SECS`: the longest one request may take before a 408 (default 30).
    pub request_timeout: Duration,
    /// `REQUEST_BODY_LIMIT_BYTES`: the largest request body accepted (default 1 MiB).
    pub body_limit: usize,
    /// `ADMIN_TOKEN`: bearer token for admin endpoints (`PUT /admin/log-filter`); closed (403)
    /// when unset.
    pub admin_token: Option<SecretString>,
    /// `HEADER_READ_TIMEOUT_SECS`: the longest a client may take to send a request's headers,
    /// and the longest a keep-alive connection may sit idle waiting for the next request
    /// (default 10; the connection is closed after it).
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
        let shutdown_timeout = reader.seconds("SHUTDOWN_TIMEOUT_SECS", Duration::from_secs(20));
        let request_timeout = reader.seconds("REQUEST_TIMEOUT_SECS", Duration::from_secs(30));
        let body_limit = reader.parse("REQUEST_BODY_LIMIT_BYTES", 1024 * 1024usize);
        let admin_token = reader.secret("ADMIN_TOKEN");
        let header_read_timeout = reader.parse_with(
            "HEADER_READ_TIMEOUT_SECS",
            Duration::from_secs(10),
            |raw| match raw.parse::<u64>() {
                Ok(s) if (1..=3600).contains(&s) => Ok(Duration::from_secs(s)),
                _ => Err("expected a whole number of seconds from 1 to 3600".to_owned()),
            },
        );
        let max_connections = reader.parse_with("MAX_CONNECTIONS", 1024usize, |raw| {
            match raw.parse::<usize>() {
                Ok(n) if (1..=1_000_000).contains(&n) => Ok(n),
                _ => Err("expected a whole number from 1 to 1000000".to_owned()),
            }
        });
        let telemetry = match TelemetryConfig::from_env(reader.env(), service, version) {
            Ok(t) => Some(t),
            Err(errors) => {
                reader.extend(errors);
                None
            }
        };
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
            ("SHUTDOWN_TIMEOUT_SECS", "-3"),
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
            "SHUTDOWN_TIMEOUT_SECS",
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
