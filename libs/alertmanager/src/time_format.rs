//! RFC 3339 timestamps as Alertmanager writes them (Go `time.Time`, `RFC3339Nano`).
//!
//! Go marshals an unset `time.Time` as `0001-01-01T00:00:00Z`; Alertmanager does so for the
//! `endsAt` of a firing alert. [`go_optional`] maps that value (and `null`) to `None` and back.

use serde::{Deserialize, Deserializer, Serializer};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use time::macros::datetime;

/// Go's zero `time.Time`: January 1, year 1, 00:00:00 UTC.
pub(crate) const GO_ZERO_TIME: OffsetDateTime = datetime!(0001-01-01 00:00:00 UTC);

/// The text Go writes for its zero time.
pub(crate) const GO_ZERO_TIME_TEXT: &str = "0001-01-01T00:00:00Z";

pub(crate) fn parse(text: &str) -> Result<OffsetDateTime, time::error::Parse> {
    OffsetDateTime::parse(text, &Rfc3339)
}

pub(crate) fn format(value: OffsetDateTime) -> Result<String, time::error::Format> {
    value.format(&Rfc3339)
}

/// An RFC 3339 time; the error quotes the text it could not read.
pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<OffsetDateTime, D::Error> {
    let text = String::deserialize(deserializer)?;
    parse(&text).map_err(|e| serde::de::Error::custom(invalid(&text, &e)))
}

fn invalid(text: &str, e: &time::error::Parse) -> String {
    format!("invalid RFC 3339 time {text:?}: {e}")
}

/// `Option<OffsetDateTime>` where `None` is Go's zero time on the wire.
pub(crate) mod go_optional {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(
        value: &Option<OffsetDateTime>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            None => serializer.serialize_str(GO_ZERO_TIME_TEXT),
            Some(t) => serializer.serialize_str(&format(*t).map_err(serde::ser::Error::custom)?),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<OffsetDateTime>, D::Error> {
        match Option::<String>::deserialize(deserializer)? {
            None => Ok(None),
            Some(text) => {
                from_text(&text).map_err(|e| serde::de::Error::custom(invalid(&text, &e)))
            }
        }
    }

    /// Parses RFC 3339 text; Go's zero time becomes `None`.
    pub(crate) fn from_text(text: &str) -> Result<Option<OffsetDateTime>, time::error::Parse> {
        let t = parse(text)?;
        Ok((t != GO_ZERO_TIME).then_some(t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_zero_time_parses_to_none() {
        assert_eq!(go_optional::from_text(GO_ZERO_TIME_TEXT).unwrap(), None);
        assert_eq!(
            go_optional::from_text("0001-01-01T00:00:00.000Z").unwrap(),
            None
        );
        let t = go_optional::from_text("2026-11-02T10:11:12.5+01:00")
            .unwrap()
            .unwrap();
        assert_eq!(t, datetime!(2026-11-02 09:11:12.5 UTC));
    }

    #[test]
    fn formats_like_go_rfc3339nano() {
        // Go trims trailing zeros of the fraction and drops it when zero.
        assert_eq!(
            format(datetime!(2026-11-02 09:11:12 UTC)).unwrap(),
            "2026-11-02T09:11:12Z"
        );
        assert_eq!(
            format(datetime!(2026-11-02 09:11:12.120 UTC)).unwrap(),
            "2026-11-02T09:11:12.12Z"
        );
        assert_eq!(format(GO_ZERO_TIME).unwrap(), GO_ZERO_TIME_TEXT);
    }
}
