//! Human durations in the configuration file: `250ms`, `5s`, `10m`, `2h`, `1d`, or a bare number
//! of seconds.

use std::time::Duration;

use serde::Deserialize;

/// A duration as written in YAML: a string with a unit or a whole number of seconds.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum DurationText {
    /// Whole seconds.
    Seconds(u64),
    /// `<number><unit>` with unit `ms`, `s`, `m`, `h` or `d`.
    Text(String),
}

impl DurationText {
    /// The duration, or why the text is not one.
    pub fn parse(&self) -> Result<Duration, String> {
        match self {
            DurationText::Seconds(s) => Ok(Duration::from_secs(*s)),
            DurationText::Text(t) => parse(t),
        }
    }
}

/// Parses `250ms`, `5s`, `10m`, `2h`, `1d` (also a bare number of seconds).
pub fn parse(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("invalid duration {text:?}: expected e.g. 250ms, 5s, 10m, 2h, 1d"))?;
    let ms = match unit {
        "ms" => Some(n),
        "" | "s" => n.checked_mul(1000),
        "m" => n.checked_mul(60_000),
        "h" => n.checked_mul(3_600_000),
        "d" => n.checked_mul(86_400_000),
        _ => {
            return Err(format!(
                "invalid duration {text:?}: unknown unit {unit:?} (use ms, s, m, h or d)"
            ));
        }
    };
    ms.map(Duration::from_millis)
        .ok_or_else(|| format!("invalid duration {text:?}: too large"))
}

/// `1h30m`-style text for messages (`90s` → `1m30s`).
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
    fn units() {
        assert_eq!(parse("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse("5"), Ok(Duration::from_secs(5)));
        assert_eq!(parse("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse("1d"), Ok(Duration::from_secs(86400)));
        assert!(parse("5 minutes").unwrap_err().contains("unknown unit"));
        assert!(parse("").is_err());
        assert!(parse("-1s").is_err());
        assert_eq!(DurationText::Seconds(3).parse(), Ok(Duration::from_secs(3)));
        assert_eq!(display(Duration::from_secs(5400)), "1h30m");
        assert_eq!(display(Duration::from_secs(61)), "1m1s");
    }
}
