//! Alertmanager API v2 types (`/api/v2/alerts`, `/api/v2/silences`), with the OpenAPI wire names.

use std::fmt;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::LabelSet;
use crate::fingerprint::Fingerprint;

/// An alert for `POST /api/v2/alerts`.
///
/// Alertmanager fills in `startsAt` (now) when absent, and resolves an alert without `endsAt`
/// after its `resolve_timeout`; to keep an alert firing, post it again before then (health-monitor
/// does on every check), and to resolve it, post it with `endsAt` set to now.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PostableAlert {
    /// Identifying labels; must include `alertname`.
    pub labels: LabelSet,
    /// Annotations (`summary`, `description`, `runbook_url`).
    #[serde(default, skip_serializing_if = "LabelSet::is_empty")]
    pub annotations: LabelSet,
    /// When the alert started.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    pub starts_at: Option<OffsetDateTime>,
    /// When the alert ends (or ended).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    pub ends_at: Option<OffsetDateTime>,
    /// Link to the alert's source.
    #[serde(
        rename = "generatorURL",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub generator_url: Option<String>,
}

impl PostableAlert {
    /// An alert with these labels and nothing else.
    pub fn new<K: Into<String>, V: Into<String>>(labels: impl IntoIterator<Item = (K, V)>) -> Self {
        Self {
            labels: labels
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
            ..Self::default()
        }
    }

    /// Adds (or replaces) an annotation.
    #[must_use]
    pub fn with_annotation(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.annotations.insert(name.into(), value.into());
        self
    }

    /// Sets `startsAt`.
    #[must_use]
    pub fn with_starts_at(mut self, t: OffsetDateTime) -> Self {
        self.starts_at = Some(t);
        self
    }

    /// Sets `endsAt`.
    #[must_use]
    pub fn with_ends_at(mut self, t: OffsetDateTime) -> Self {
        self.ends_at = Some(t);
        self
    }

    /// Sets `generatorURL`.
    #[must_use]
    pub fn with_generator_url(mut self, url: impl Into<String>) -> Self {
        self.generator_url = Some(url.into());
        self
    }

    /// The fingerprint Alertmanager will give this alert.
    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint::of_labels(&self.labels)
    }
}

/// An alert as `GET /api/v2/alerts` returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GettableAlert {
    /// Identifying labels.
    pub labels: LabelSet,
    /// Annotations.
    #[serde(default)]
    pub annotations: LabelSet,
    /// Receivers the alert routes to.
    #[serde(default)]
    pub receivers: Vec<Receiver>,
    /// The label-set fingerprint.
    pub fingerprint: Fingerprint,
    /// When it started.
    #[serde(with = "time::serde::rfc3339")]
    pub starts_at: OffsetDateTime,
    /// When Alertmanager last received it.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    /// When it ends (or ended, or will time out).
    #[serde(with = "time::serde::rfc3339")]
    pub ends_at: OffsetDateTime,
    /// Link to the alert's source.
    #[serde(rename = "generatorURL", default)]
    pub generator_url: String,
    /// Whether it is active, silenced or inhibited.
    pub status: AlertStatus,
}

/// A receiver reference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receiver {
    /// The receiver's name.
    pub name: String,
}

/// The `status` of a [`GettableAlert`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AlertStatus {
    /// `unprocessed`, `active` or `suppressed`.
    pub state: AlertState,
    /// Ids of the silences that mute it.
    #[serde(default)]
    pub silenced_by: Vec<String>,
    /// Fingerprints of the alerts that inhibit it.
    #[serde(default)]
    pub inhibited_by: Vec<String>,
}

/// The state of a [`GettableAlert`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    /// Received, not yet routed.
    Unprocessed,
    /// Routed and notified.
    Active,
    /// Silenced or inhibited.
    Suppressed,
}

/// A label matcher of a silence (`isEqual` needs Alertmanager ≥ 0.22; absent means `true`).
///
/// `Display` gives the filter syntax `GET /api/v2/alerts?filter=` takes: `name="value"`,
/// `name!="value"`, `name=~"regex"`, `name!~"regex"`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Matcher {
    /// Label name.
    pub name: String,
    /// Value or regular expression (anchored by Alertmanager).
    pub value: String,
    /// Whether `value` is a regular expression.
    pub is_regex: bool,
    /// `false` negates the match.
    #[serde(default = "default_true")]
    pub is_equal: bool,
}

fn default_true() -> bool {
    true
}

impl Matcher {
    fn new(
        name: impl Into<String>,
        value: impl Into<String>,
        is_regex: bool,
        is_equal: bool,
    ) -> Self {
        Self {
            name: name.into(),
            value: value.into(),
            is_regex,
            is_equal,
        }
    }

    /// `name="value"`.
    pub fn equal(name: impl Into<String>, value: impl Into<String>) -> Self {
        Self::new(name, value, false, true)
    }

    /// `name!="value"`.
    pub fn not_equal(name: impl Into<String>, value: impl Into<String>) -> Self {
        Self::new(name, value, false, false)
    }

    /// `name=~"regex"`.
    pub fn regex(name: impl Into<String>, regex: impl Into<String>) -> Self {
        Self::new(name, regex, true, true)
    }

    /// `name!~"regex"`.
    pub fn not_regex(name: impl Into<String>, regex: impl Into<String>) -> Self {
        Self::new(name, regex, true, false)
    }
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match (self.is_equal, self.is_regex) {
            (true, false) => "=",
            (false, false) => "!=",
            (true, true) => "=~",
            (false, true) => "!~",
        };
        write!(f, "{}{op}\"", self.name)?;
        for c in self.value.chars() {
            match c {
                '"' => f.write_str("\\\"")?,
                '\\' => f.write_str("\\\\")?,
                '\n' => f.write_str("\\n")?,
                c => write!(f, "{c}")?,
            }
        }
        f.write_str("\"")
    }
}

/// A silence for `POST /api/v2/silences` (an acknowledgement, in alert-service's terms).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PostableSilence {
    /// Set to update an existing silence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// All must match for an alert to be silenced.
    pub matchers: Vec<Matcher>,
    /// Start.
    #[serde(with = "time::serde::rfc3339")]
    pub starts_at: OffsetDateTime,
    /// End.
    #[serde(with = "time::serde::rfc3339")]
    pub ends_at: OffsetDateTime,
    /// Who (user or service).
    pub created_by: String,
    /// Why.
    pub comment: String,
}

impl PostableSilence {
    /// A new silence from now for `duration`.
    pub fn for_duration(
        matchers: Vec<Matcher>,
        duration: time::Duration,
        created_by: impl Into<String>,
        comment: impl Into<String>,
    ) -> Self {
        let now = OffsetDateTime::now_utc();
        Self {
            id: None,
            matchers,
            starts_at: now,
            ends_at: now + duration,
            created_by: created_by.into(),
            comment: comment.into(),
        }
    }
}

/// A silence as `GET /api/v2/silence{s}` returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GettableSilence {
    /// Silence id (a UUID).
    pub id: String,
    /// `pending`, `active` or `expired`.
    pub status: SilenceStatus,
    /// Last change.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    /// Matchers.
    pub matchers: Vec<Matcher>,
    /// Start.
    #[serde(with = "time::serde::rfc3339")]
    pub starts_at: OffsetDateTime,
    /// End (set to the expiry time when expired early).
    #[serde(with = "time::serde::rfc3339")]
    pub ends_at: OffsetDateTime,
    /// Who.
    pub created_by: String,
    /// Why.
    pub comment: String,
}

/// The `status` of a [`GettableSilence`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SilenceStatus {
    /// The state.
    pub state: SilenceState,
}

/// The state of a silence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SilenceState {
    /// Ended or expired.
    Expired,
    /// In force.
    Active,
    /// Starts later.
    Pending,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use time::macros::datetime;

    #[test]
    fn postable_alert_uses_wire_names_and_omits_unset_fields() {
        let alert = PostableAlert::new([("alertname", "HeartDown")])
            .with_annotation("summary", "down")
            .with_ends_at(datetime!(2026-11-02 10:00:00 UTC))
            .with_generator_url("http://hm:8084/findings");
        assert_eq!(
            serde_json::to_value(&alert).unwrap(),
            json!({
                "labels": {"alertname": "HeartDown"},
                "annotations": {"summary": "down"},
                "endsAt": "2026-11-02T10:00:00Z",
                "generatorURL": "http://hm:8084/findings"
            })
        );
        let bare = serde_json::to_value(PostableAlert::new([("alertname", "X")])).unwrap();
        assert_eq!(bare, json!({"labels": {"alertname": "X"}}));
    }

    #[test]
    fn gettable_alert_parses_alertmanager_json() {
        let v = json!({
            "annotations": {"summary": "s"},
            "endsAt": "2026-11-02T10:05:00.000Z",
            "fingerprint": "c4b8b52d0b3bbdfd",
            "receivers": [{"name": "webhook"}],
            "startsAt": "2026-11-02T10:00:00.000Z",
            "status": {"inhibitedBy": [], "silencedBy": ["7d8e"], "state": "suppressed"},
            "updatedAt": "2026-11-02T10:00:01.000Z",
            "generatorURL": "",
            "labels": {"alertname": "A"}
        });
        let alert: GettableAlert = serde_json::from_value(v).unwrap();
        assert_eq!(alert.status.state, AlertState::Suppressed);
        assert_eq!(alert.status.silenced_by, ["7d8e"]);
        assert_eq!(alert.fingerprint.to_string(), "c4b8b52d0b3bbdfd");
        assert_eq!(alert.receivers[0].name, "webhook");
    }

    #[test]
    fn silence_round_trips_and_is_equal_defaults_to_true() {
        let v = json!({
            "id": "abc", "status": {"state": "active"}, "updatedAt": "2026-11-02T10:00:00Z",
            "matchers": [{"name": "alertname", "value": "A", "isRegex": false}],
            "startsAt": "2026-11-02T10:00:00Z", "endsAt": "2026-11-02T11:00:00Z",
            "createdBy": "alert-service", "comment": "ack"
        });
        let s: GettableSilence = serde_json::from_value(v).unwrap();
        assert!(s.matchers[0].is_equal);
        assert_eq!(s.status.state, SilenceState::Active);
        let p = PostableSilence::for_duration(
            vec![Matcher::regex("pod", "heart-.*")],
            time::Duration::hours(1),
            "me",
            "why",
        );
        let w = serde_json::to_value(&p).unwrap();
        assert_eq!(
            w["matchers"][0],
            json!({"name": "pod", "value": "heart-.*", "isRegex": true, "isEqual": true})
        );
        assert_eq!(w["createdBy"], "me");
        assert!(w.get("id").is_none());
        assert_eq!(serde_json::from_value::<PostableSilence>(w).unwrap(), p);
    }

    #[test]
    fn matcher_filter_syntax() {
        assert_eq!(
            Matcher::equal("alertname", "A").to_string(),
            r#"alertname="A""#
        );
        assert_eq!(Matcher::not_equal("a", "x\"y").to_string(), r#"a!="x\"y""#);
        assert_eq!(Matcher::regex("a", r"\d+").to_string(), r#"a=~"\\d+""#);
        assert_eq!(Matcher::not_regex("a", "b").to_string(), r#"a!~"b""#);
    }
}
