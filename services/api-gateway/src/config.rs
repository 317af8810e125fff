//! The gateway's own configuration.
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `USER_SERVICE_URL` | `http://127.0.0.1:8083` | user-service |
//! | `HEART_URL` | `http://127.0.0.1:8081` | heart |
//! | `BRAIN_URL` | `http://127.0.0.1:8082` | brain |
//! | `GATEWAY_MAX_CONCURRENCY` | 512 | proxied requests in flight before shedding with 503 |
//! | `USER_SERVICE_MAX_CONCURRENCY` | 256 | calls in flight to user-service before shedding (503 `upstream_busy`) |
//! | `HEART_MAX_CONCURRENCY` | 256 | calls in flight to heart before shedding |
//! | `BRAIN_MAX_CONCURRENCY` | 16 | calls in flight to brain (slow, CPU-bound) before shedding |
//! | `UPSTREAM_TIMEOUT` | `2s` | longest an upstream call may take (connect: at most 1 s) before a 504 |
//! | `CHAOS_TOKEN` | unset | bearer token for `POST`/`DELETE /chaos` (closed, 403, when unset) |

use std::time::Duration;

use secrecy::SecretString;
use service_kit::EnvReader;

/// The service's own configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// `USER_SERVICE_URL`, without a trailing slash.
    pub user_service_url: String,
    /// `HEART_URL`, without a trailing slash.
    pub heart_url: String,
    /// `BRAIN_URL`, without a trailing slash.
    pub brain_url: String,
    /// `GATEWAY_MAX_CONCURRENCY`.
    pub max_concurrency: usize,
    /// `USER_SERVICE_MAX_CONCURRENCY`, `HEART_MAX_CONCURRENCY`, `BRAIN_MAX_CONCURRENCY`: each
    /// upstream's own limit, so that a slow one cannot starve the others.
    pub upstream_concurrency: UpstreamConcurrency,
    /// `UPSTREAM_TIMEOUT` (a duration such as `2s`; at least `1ms`).
    pub upstream_timeout: Duration,
    /// `CHAOS_TOKEN`.
    pub chaos_token: Option<SecretString>,
}

/// Calls in flight allowed per upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpstreamConcurrency {
    /// user-service.
    pub users: usize,
    /// heart.
    pub heart: usize,
    /// brain.
    pub brain: usize,
}

impl Default for UpstreamConcurrency {
    fn default() -> Self {
        Self {
            users: 256,
            heart: 256,
            brain: 16,
        }
    }
}

fn concurrency(reader: &mut EnvReader<'_>, var: &str, default: usize) -> usize {
    reader.parse_with(var, default, |raw| match raw.parse::<usize>() {
        Ok(n) if (1..=1_000_000).contains(&n) => Ok(n),
        _ => Err("expected a whole number from 1 to 1000000".to_owned()),
    })
}

impl Config {
    /// Reads the service's own variables; problems are recorded on `reader`.
    pub fn read(reader: &mut EnvReader<'_>) -> Self {
        let d = UpstreamConcurrency::default();
        let upstream_concurrency = UpstreamConcurrency {
            users: concurrency(reader, "USER_SERVICE_MAX_CONCURRENCY", d.users),
            heart: concurrency(reader, "HEART_MAX_CONCURRENCY", d.heart),
            brain: concurrency(reader, "BRAIN_MAX_CONCURRENCY", d.brain),
        };
        let user_service_url = reader.url("USER_SERVICE_URL", &topology::USER_SERVICE.local_url());
        let heart_url = reader.url("HEART_URL", &topology::HEART.local_url());
        let brain_url = reader.url("BRAIN_URL", &topology::BRAIN.local_url());
        let max_concurrency = reader.parse_with("GATEWAY_MAX_CONCURRENCY", 512, |raw| match raw
            .parse::<usize>()
        {
            Ok(n) if (1..=1_000_000).contains(&n) => Ok(n),
            _ => Err("expected a whole number from 1 to 1000000".to_owned()),
        });
        let upstream_timeout = reader.duration(
            "UPSTREAM_TIMEOUT",
            Duration::from_millis(2000),
            Duration::from_millis(1)..,
        );
        let chaos_token = chaos::Chaos::read_token(reader);
        Self {
            user_service_url,
            heart_url,
            brain_url,
            max_concurrency,
            upstream_concurrency,
            upstream_timeout,
            chaos_token,
        }
    }

    /// The defaults with these upstream URLs (for tests and tools).
    pub fn with_upstreams(user_service: &str, heart: &str, brain: &str) -> Self {
        let env = std::collections::HashMap::from([
            ("USER_SERVICE_URL", user_service),
            ("HEART_URL", heart),
            ("BRAIN_URL", brain),
        ]);
        let mut reader = EnvReader::new(&env);
        let config = Self::read(&mut reader);
        if let Err(e) = reader.finish() {
            panic!("invalid upstream URLs: {e}");
        }
        config
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn defaults_follow_the_contracts() {
        let env: HashMap<&str, &str> = HashMap::new();
        let mut reader = EnvReader::new(&env);
        let c = Config::read(&mut reader);
        reader.finish().unwrap();
        assert_eq!(c.user_service_url, "http://127.0.0.1:8083");
        assert_eq!(c.heart_url, "http://127.0.0.1:8081");
        assert_eq!(c.brain_url, "http://127.0.0.1:8082");
        assert_eq!(c.max_concurrency, 512);
        assert_eq!(c.upstream_timeout, Duration::from_millis(2000));
    }

    #[test]
    fn every_bad_variable_is_reported() {
        let env: HashMap<&str, &str> = [
            ("USER_SERVICE_URL", "users:8083"),
            ("HEART_URL", "ftp://heart"),
            ("GATEWAY_MAX_CONCURRENCY", "0"),
            ("UPSTREAM_TIMEOUT", "fast"),
        ]
        .into_iter()
        .collect();
        let mut reader = EnvReader::new(&env);
        let _ = Config::read(&mut reader);
        let text = reader.finish().unwrap_err().to_string();
        for var in [
            "USER_SERVICE_URL",
            "HEART_URL",
            "GATEWAY_MAX_CONCURRENCY",
            "UPSTREAM_TIMEOUT",
        ] {
            assert!(text.contains(var), "{var} not named in {text}");
        }
    }

    #[test]
    fn the_retired_millisecond_timeout_is_refused_naming_its_replacement() {
        let env: HashMap<&str, &str> = [("UPSTREAM_TIMEOUT_MS", "2500")].into_iter().collect();
        let mut reader = EnvReader::new(&env);
        let _ = Config::read(&mut reader);
        let text = reader.finish().unwrap_err().to_string();
        assert!(
            text.contains("UPSTREAM_TIMEOUT_MS: no longer read; set UPSTREAM_TIMEOUT=2s 500ms"),
            "{text}"
        );
    }

    #[test]
    fn trailing_slashes_are_dropped() {
        let c = Config::with_upstreams("http://u:1/", "http://h:2", "http://b:3//");
        assert_eq!(c.user_service_url, "http://u:1");
        assert_eq!(c.brain_url, "http://b:3");
    }
}
