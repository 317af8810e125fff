//! Durations in the routing file and the report's `window`: humantime's syntax (`250ms`, `5s`,
//! `10m`, `2h`, `1d`, `1h 30m`), the one the whole system uses. The old bare number of seconds is
//! refused with a message that gives the new form (`60` → `60s`).

use std::time::Duration;

use serde::Deserialize;

/// A duration as written in YAML, read later with its place in the file so that every problem is
/// reported at once: humantime text, or a bare number (kept only to refuse it clearly).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum DurationText {
    /// A bare number: the old whole-seconds form, no longer accepted.
    Number(u64),
    /// Humantime text.
    Text(String),
}

impl DurationText {
    /// The duration, or why the text is not one.
    pub fn parse(&self) -> Result<Duration, String> {
        match self {
            DurationText::Number(n) => Err(bare_number(&n.to_string())),
            DurationText::Text(t) => parse(t),
        }
    }
}

pub use service_kit::duration::{bare_number, parse};

/// `1h30m`-style text for messages (`90s` → `1m30s`); humantime reads it back.
pub fn display(d: Duration) -> String {
    let secs = d.as_secs();
    if secs == 0 {
        return format!("{}ms", d.as_millis());
    }
    let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 || out.is_empty() {
        out.push_str(&format!("{s}s"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn humantime_units_are_read() {
        assert_eq!(parse("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse("1d"), Ok(Duration::from_secs(86400)));
        assert_eq!(parse("1h 30m"), Ok(Duration::from_secs(5400)));
    }

    #[test]
    fn a_bare_number_is_refused_with_the_new_form() {
        for old in [
            DurationText::Number(5).parse(),
            DurationText::Text("5".to_owned()).parse(),
        ] {
            let e = old.unwrap_err();
            assert!(e.contains("write 5s"), "{e}");
        }
    }

    #[test]
    fn nonsense_is_refused_with_examples() {
        for text in ["", "-1s", "5 fortnights"] {
            let e = parse(text).unwrap_err();
            assert!(e.contains("e.g. 250ms"), "{text:?}: {e}");
        }
    }

    #[test]
    fn display_is_read_back_by_humantime() {
        for secs in [61, 5400, 86400, 0] {
            let d = Duration::from_secs(secs);
            assert_eq!(parse(&display(d)), Ok(d), "{}", display(d));
        }
        assert_eq!(display(Duration::from_secs(5400)), "1h30m");
        assert_eq!(display(Duration::from_secs(61)), "1m1s");
    }
}
