//! The one duration syntax of the workspace, for variables and config files alike: humantime
//! (`250ms`, `5s`, `10m`, `2h`, `1d`, `1h 30m`). The old bare number of seconds is refused with a
//! message that gives the form to write instead (`60` → `60s`).
//!
//! Config-file fields use [`deserialize`]/[`serialize`] through
//! `#[serde(with = "env_config::duration")]` (or `service_kit::duration`).

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serializer};

/// Examples of the syntax, for error messages.
pub const EXAMPLES: &str = "e.g. 250ms, 5s, 10m, 2h, 1d or 1h 30m";

/// Why a bare number `n` is not read as a duration.
pub fn bare_number(n: &str) -> String {
    format!("a bare number is not a duration any more: write {n}s ({EXAMPLES})")
}

/// Parses humantime text; a bare number is refused with the form to write instead.
pub fn parse(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bare_number(t));
    }
    humantime::parse_duration(t).map_err(|e| format!("invalid duration {text:?}: {e} ({EXAMPLES})"))
}

/// Humantime text for `d` (`90s` → `1m 30s`), which [`parse`] reads back.
pub fn format(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// Reads a duration field: humantime text; a YAML/JSON number is refused as [`parse`] does.
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Number(u64),
        Text(String),
    }
    match Raw::deserialize(d)? {
        Raw::Number(n) => Err(serde::de::Error::custom(bare_number(&n.to_string()))),
        Raw::Text(t) => parse(&t).map_err(serde::de::Error::custom),
    }
}

/// Writes a duration field as humantime text.
pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format(*d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn humantime_units_are_read() {
        assert_eq!(parse("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse(" 1h 30m "), Ok(Duration::from_secs(5400)));
    }

    #[test]
    fn a_bare_number_is_refused_with_the_form_to_write() {
        let e = parse("60").unwrap_err();
        assert!(e.contains("write 60s"), "{e}");
    }

    #[test]
    fn garbage_is_refused_with_examples() {
        let e = parse("soon").unwrap_err();
        assert!(e.contains("\"soon\"") && e.contains("1h 30m"), "{e}");
    }

    #[derive(Debug, serde::Deserialize, serde::Serialize, PartialEq)]
    struct Field {
        #[serde(with = "super")]
        every: Duration,
    }

    #[test]
    fn a_field_reads_text_refuses_numbers_and_writes_text_back() {
        let f: Field = serde_json::from_str(r#"{"every":"1m 30s"}"#).unwrap();
        assert_eq!(f.every, Duration::from_secs(90));
        assert_eq!(serde_json::to_string(&f).unwrap(), r#"{"every":"1m 30s"}"#);
        let e = serde_json::from_str::<Field>(r#"{"every":90}"#).unwrap_err();
        assert!(e.to_string().contains("write 90s"), "{e}");
    }
}
