//! Typed configuration from environment variables, with every bad variable reported at once.
//!
//! Every organism binary (and the telemetry library) reads its variables through one
//! [`EnvReader`] over an [`Env`]: the process environment in production ([`ProcessEnv`]), a map in
//! tests (in edition 2024 mutating the process environment is `unsafe`). Each problem is recorded
//! (one per variable) and [`EnvReader::finish`] returns them all as one [`ConfigError`].
//!
//! Durations have one syntax, [humantime]'s: `10s`, `500ms`, `1m 30s`, read by
//! [`EnvReader::duration`]. The variables that used to hold a bare number of seconds or
//! milliseconds (`SHUTDOWN_TIMEOUT_SECS`, `UPSTREAM_TIMEOUT_MS`, …) are refused at start with a
//! message naming the variable that replaced them and their value in the new form:
//!
//! ```
//! use std::collections::HashMap;
//! use std::time::Duration;
//! use env_config::EnvReader;
//!
//! let env: HashMap<&str, &str> = [("SHUTDOWN_TIMEOUT_SECS", "10")].into_iter().collect();
//! let mut reader = EnvReader::new(&env);
//! let timeout = reader.duration("SHUTDOWN_TIMEOUT", Duration::from_secs(20), ..);
//! assert_eq!(timeout, Duration::from_secs(20));
//! let message = reader.finish().unwrap_err().to_string();
//! assert!(message.contains("SHUTDOWN_TIMEOUT_SECS: no longer read; set SHUTDOWN_TIMEOUT=10s"));
//! ```
//!
//! [humantime]: https://docs.rs/humantime

pub mod duration;

use std::collections::HashMap;
use std::fmt;
use std::ops::{Bound, RangeBounds};
use std::str::FromStr;
use std::time::Duration;

use secrecy::SecretString;

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

/// A unit a retired duration variable held: the number's meaning.
type Unit = fn(u64) -> Duration;

/// The suffixes of the retired duration variables, and the unit each held.
const RETIRED_DURATION_SUFFIXES: [(&str, Unit); 2] = [
    ("_SECS", Duration::from_secs),
    ("_MS", Duration::from_millis),
];

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

    /// Records a problem with `var` (only the first problem of each variable is kept).
    pub fn error(&mut self, var: &str, reason: impl Into<String>) {
        if self.errors.iter().any(|e| e.var == var) {
            return;
        }
        self.errors.push(VarError {
            var: var.to_owned(),
            reason: reason.into(),
        });
    }

    /// Records several problems at once (e.g. from another reader).
    pub fn extend(&mut self, errors: impl IntoIterator<Item = VarError>) {
        for e in errors {
            self.error(&e.var, e.reason);
        }
    }

    /// How many problems have been recorded so far (a part of the configuration can tell
    /// whether its own variables added any).
    pub fn problem_count(&self) -> usize {
        self.errors.len()
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

    /// A value parsed with `parse` (given the trimmed value), or `default` when unset; a bad
    /// value is recorded with the reason and the value.
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

    /// A duration in humantime's syntax (`10s`, `500ms`, `1m30s`) within `bounds` (`..` for
    /// any), or `default` when unset.
    ///
    /// The retired forms of the variable, `<var>_SECS` and `<var>_MS` (a bare number of seconds
    /// or milliseconds), are refused: each is recorded as a problem naming `var` and the value
    /// to set it to, so an old deployment fails at start instead of silently losing its setting.
    pub fn duration(
        &mut self,
        var: &str,
        default: Duration,
        bounds: impl RangeBounds<Duration>,
    ) -> Duration {
        self.refuse_retired_duration_variables(var, default);
        let Some(raw) = self.optional(var) else {
            return default;
        };
        // `duration::parse`'s messages quote the value already.
        match duration::parse(&raw) {
            Ok(value) if bounds.contains(&value) => value,
            Ok(_) => {
                let bounds = describe_bounds(&bounds);
                self.error(var, format!("expected a duration {bounds} (got {raw:?})"));
                default
            }
            Err(reason) => {
                self.error(var, reason);
                default
            }
        }
    }

    fn refuse_retired_duration_variables(&mut self, var: &str, default: Duration) {
        for (suffix, unit) in RETIRED_DURATION_SUFFIXES {
            let retired = format!("{var}{suffix}");
            if let Some(raw) = self.optional(&retired) {
                let value = raw.trim().parse::<u64>().map_or(default, unit);
                self.error(
                    &retired,
                    format!(
                        "no longer read; set {var}={} instead ({})",
                        duration::format(value),
                        duration::EXAMPLES
                    ),
                );
            }
        }
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

/// `from 1s to 1h`, `of at least 1ms`, … for a message.
fn describe_bounds(bounds: &impl RangeBounds<Duration>) -> String {
    let show = |d: &Duration| duration::format(*d);
    match (bounds.start_bound(), bounds.end_bound()) {
        (Bound::Included(a), Bound::Included(b)) => format!("from {} to {}", show(a), show(b)),
        (Bound::Included(a), Bound::Excluded(b)) => {
            format!("from {} to less than {}", show(a), show(b))
        }
        (Bound::Included(a), Bound::Unbounded) => format!("of at least {}", show(a)),
        (Bound::Excluded(a), Bound::Unbounded) => format!("longer than {}", show(a)),
        (Bound::Unbounded, Bound::Included(b)) => format!("of at most {}", show(b)),
        (Bound::Unbounded, Bound::Excluded(b)) => format!("shorter than {}", show(b)),
        (Bound::Excluded(a), Bound::Included(b)) => {
            format!("longer than {} and at most {}", show(a), show(b))
        }
        (Bound::Excluded(a), Bound::Excluded(b)) => {
            format!("longer than {} and shorter than {}", show(a), show(b))
        }
        (Bound::Unbounded, Bound::Unbounded) => "of any length".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader_of<'a>(env: &'a HashMap<&'a str, &'a str>) -> EnvReader<'a> {
        EnvReader::new(env)
    }

    fn env(pairs: &[(&'static str, &'static str)]) -> HashMap<&'static str, &'static str> {
        pairs.iter().copied().collect()
    }

    #[test]
    fn a_duration_is_read_in_humantime_syntax() {
        let env = env(&[("UPSTREAM_TIMEOUT", "1m 30s"), ("TICK", "250ms")]);
        let mut reader = reader_of(&env);
        assert_eq!(
            reader.duration("UPSTREAM_TIMEOUT", Duration::ZERO, ..),
            Duration::from_secs(90)
        );
        assert_eq!(
            reader.duration("TICK", Duration::ZERO, ..),
            Duration::from_millis(250)
        );
        reader.finish().unwrap();
    }

    #[test]
    fn an_unset_duration_is_its_default() {
        let env = env(&[]);
        let mut reader = reader_of(&env);
        let d = reader.duration("SHUTDOWN_TIMEOUT", Duration::from_secs(20), ..);
        assert_eq!(d, Duration::from_secs(20));
        reader.finish().unwrap();
    }

    #[test]
    fn a_bare_number_is_not_a_duration() {
        let env = env(&[("SHUTDOWN_TIMEOUT", "10")]);
        let mut reader = reader_of(&env);
        reader.duration("SHUTDOWN_TIMEOUT", Duration::from_secs(20), ..);
        let err = reader.finish().unwrap_err();
        assert_eq!(
            err.0[0].to_string(),
            format!("SHUTDOWN_TIMEOUT: {}", duration::bare_number("10"))
        );
    }

    #[test]
    fn an_unreadable_duration_has_the_duration_home_message() {
        let env = env(&[("UPSTREAM_TIMEOUT", "soon")]);
        let mut reader = reader_of(&env);
        reader.duration("UPSTREAM_TIMEOUT", Duration::from_secs(2), ..);
        let err = reader.finish().unwrap_err();
        let expected = duration::parse("soon").unwrap_err();
        assert_eq!(
            err.0[0].to_string(),
            format!("UPSTREAM_TIMEOUT: {expected}")
        );
    }

    #[test]
    fn a_duration_outside_its_bounds_names_them() {
        let env = env(&[("HEADER_READ_TIMEOUT", "2h")]);
        let mut reader = reader_of(&env);
        let d = reader.duration(
            "HEADER_READ_TIMEOUT",
            Duration::from_secs(10),
            Duration::from_secs(1)..=Duration::from_secs(3600),
        );
        assert_eq!(d, Duration::from_secs(10));
        let text = reader.finish().unwrap_err().to_string();
        assert!(text.contains("expected a duration from 1s to 1h"), "{text}");
    }

    #[test]
    fn a_retired_seconds_variable_names_its_replacement_and_value() {
        let env = env(&[("SHUTDOWN_TIMEOUT_SECS", "10")]);
        let mut reader = reader_of(&env);
        reader.duration("SHUTDOWN_TIMEOUT", Duration::from_secs(20), ..);
        let err = reader.finish().unwrap_err();
        assert_eq!(err.0.len(), 1);
        assert_eq!(err.0[0].var, "SHUTDOWN_TIMEOUT_SECS");
        assert!(
            err.0[0]
                .to_string()
                .starts_with("SHUTDOWN_TIMEOUT_SECS: no longer read; set SHUTDOWN_TIMEOUT=10s"),
            "{err}"
        );
    }

    #[test]
    fn a_retired_milliseconds_variable_names_its_replacement_and_value() {
        let env = env(&[("UPSTREAM_TIMEOUT_MS", "1500")]);
        let mut reader = reader_of(&env);
        reader.duration("UPSTREAM_TIMEOUT", Duration::from_secs(2), ..);
        let text = reader.finish().unwrap_err().to_string();
        assert!(
            text.contains("UPSTREAM_TIMEOUT_MS: no longer read; set UPSTREAM_TIMEOUT=1s 500ms"),
            "{text}"
        );
    }

    #[test]
    fn a_retired_variable_with_a_bad_value_suggests_the_default() {
        let env = env(&[("BRAIN_THINK_MS", "soon")]);
        let mut reader = reader_of(&env);
        reader.duration("BRAIN_THINK", Duration::from_millis(10), ..);
        let text = reader.finish().unwrap_err().to_string();
        assert!(text.contains("set BRAIN_THINK=10ms"), "{text}");
    }

    #[test]
    fn only_the_first_problem_of_a_variable_is_kept() {
        let env = env(&[]);
        let mut reader = reader_of(&env);
        reader.error("A", "first");
        reader.error("A", "second");
        reader.error("B", "other");
        let err = reader.finish().unwrap_err();
        assert_eq!(err.0.len(), 2);
        assert_eq!(err.0[0].reason, "first");
        assert!(
            err.to_string()
                .starts_with("invalid configuration (2 problems)")
        );
    }

    #[test]
    fn an_empty_value_counts_as_unset() {
        let env = env(&[("LISTEN_ADDR", "  ")]);
        assert_eq!(reader_of(&env).optional("LISTEN_ADDR"), None);
    }

    #[test]
    fn a_url_loses_its_trailing_slash_and_needs_a_scheme() {
        let env = env(&[
            ("HEART_URL", "http://heart:8081/"),
            ("BRAIN_URL", "ftp://x"),
        ]);
        let mut reader = reader_of(&env);
        assert_eq!(reader.url("HEART_URL", ""), "http://heart:8081");
        reader.url("BRAIN_URL", "");
        let err = reader.finish().unwrap_err();
        assert_eq!(err.0[0].var, "BRAIN_URL");
    }
}
