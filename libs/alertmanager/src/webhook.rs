//! The Alertmanager webhook v4 payload: types, a validating parser and a builder.
//!
//! Receivers (auto-healer, alert-service) parse request bodies with [`WebhookMessage::from_slice`],
//! whose [`PayloadError`] names the offending field path and reason for a 400 JSON body.
//! health-monitor, when no Alertmanager runs, builds the same payloads with
//! [`WebhookMessage::builder`]: per-alert status, `endsAt` zeroed for firing alerts, alert order,
//! group key, group and common labels and fingerprints all follow Alertmanager 0.25.

use std::cmp::Ordering;
use std::fmt::Write as _;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use time::OffsetDateTime;

use crate::LabelSet;
use crate::fingerprint::Fingerprint;
use crate::time_format;

/// The only webhook payload version Alertmanager sends (since 0.6).
pub const WEBHOOK_VERSION: &str = "4";

/// The label every alert carries.
pub const ALERTNAME: &str = "alertname";

/// `firing` or `resolved`, for a whole notification or one alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// At least one alert (or this alert) is active.
    Firing,
    /// Every alert (or this alert) has ended.
    Resolved,
}

impl<'de> Deserialize<'de> for Status {
    /// By hand because serde_json reports a non-string where a derived enum is expected as a
    /// syntax error ("expected value"), not as the mistyped field it is.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        match text.as_str() {
            "firing" => Ok(Status::Firing),
            "resolved" => Ok(Status::Resolved),
            _ => Err(serde::de::Error::custom(format!(
                "invalid status {text:?}, expected \"firing\" or \"resolved\""
            ))),
        }
    }
}

impl Status {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Firing => "firing",
            Status::Resolved => "resolved",
        }
    }
}

/// One Alertmanager webhook v4 notification (`POST` body to a `webhook_config` URL).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookMessage {
    /// Always `"4"`.
    pub version: String,
    /// Identifies the alert group, e.g. `{}:{alertname="HeartDown"}`; stable across repeats.
    pub group_key: String,
    /// How many alerts `max_alerts` cut from `alerts`.
    pub truncated_alerts: u64,
    /// `firing` when any alert fires.
    pub status: Status,
    /// The receiver's name in the Alertmanager config.
    pub receiver: String,
    /// The labels the route groups by.
    #[serde(deserialize_with = "null_as_empty")]
    pub group_labels: LabelSet,
    /// Labels equal in every alert.
    #[serde(deserialize_with = "null_as_empty")]
    pub common_labels: LabelSet,
    /// Annotations equal in every alert.
    #[serde(deserialize_with = "null_as_empty")]
    pub common_annotations: LabelSet,
    /// Alertmanager's external URL, for links back.
    #[serde(rename = "externalURL")]
    pub external_url: String,
    /// The alerts of the group.
    pub alerts: Vec<Alert>,
}

/// One alert in a [`WebhookMessage`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Alert {
    /// `firing` or `resolved`.
    pub status: Status,
    /// Identifying labels (always including `alertname`).
    #[serde(deserialize_with = "null_as_empty")]
    pub labels: LabelSet,
    /// Non-identifying annotations (`summary`, `description`, `runbook_url`, ...).
    #[serde(deserialize_with = "null_as_empty")]
    pub annotations: LabelSet,
    /// When the alert started.
    #[serde(
        serialize_with = "time::serde::rfc3339::serialize",
        deserialize_with = "time_format::deserialize"
    )]
    pub starts_at: OffsetDateTime,
    /// When the alert ended; `None` (`0001-01-01T00:00:00Z` on the wire) while it fires.
    #[serde(with = "time_format::go_optional")]
    pub ends_at: Option<OffsetDateTime>,
    /// Link to the source of the alert (a Prometheus graph, a health-monitor finding); may be empty.
    #[serde(rename = "generatorURL")]
    pub generator_url: String,
    /// The label-set fingerprint, see [`Fingerprint::of_labels`].
    pub fingerprint: Fingerprint,
}

impl Alert {
    /// An alert with these fields; the fingerprint is computed from `labels` and the status is
    /// `resolved` exactly when `ends_at` is set and not after now.
    pub fn new(
        labels: LabelSet,
        annotations: LabelSet,
        starts_at: OffsetDateTime,
        ends_at: Option<OffsetDateTime>,
        generator_url: impl Into<String>,
    ) -> Self {
        let mut alert = Self {
            status: Status::Firing,
            fingerprint: Fingerprint::of_labels(&labels),
            labels,
            annotations,
            starts_at,
            ends_at,
            generator_url: generator_url.into(),
        };
        alert.refresh_status(OffsetDateTime::now_utc());
        alert
    }

    /// A firing alert with these labels, started now, no annotations.
    pub fn firing<K: Into<String>, V: Into<String>>(
        labels: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        let labels = labels
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        Self::new(labels, LabelSet::new(), OffsetDateTime::now_utc(), None, "")
    }

    /// Adds (or replaces) a label and recomputes the fingerprint.
    #[must_use]
    pub fn with_label(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(name.into(), value.into());
        self.fingerprint = Fingerprint::of_labels(&self.labels);
        self
    }

    /// Adds (or replaces) an annotation.
    #[must_use]
    pub fn with_annotation(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.annotations.insert(name.into(), value.into());
        self
    }

    /// Sets the start time.
    #[must_use]
    pub fn with_starts_at(mut self, starts_at: OffsetDateTime) -> Self {
        self.starts_at = starts_at;
        self
    }

    /// Sets the end time; the alert is `resolved` if that is not after now.
    #[must_use]
    pub fn with_ends_at(mut self, ends_at: OffsetDateTime) -> Self {
        self.ends_at = Some(ends_at);
        self.refresh_status(OffsetDateTime::now_utc());
        self
    }

    /// Marks the alert resolved now.
    #[must_use]
    pub fn resolved_now(self) -> Self {
        self.with_ends_at(OffsetDateTime::now_utc())
    }

    /// Sets the generator URL.
    #[must_use]
    pub fn with_generator_url(mut self, url: impl Into<String>) -> Self {
        self.generator_url = url.into();
        self
    }

    /// The `alertname` label.
    pub fn alertname(&self) -> Option<&str> {
        self.labels.get(ALERTNAME).map(String::as_str)
    }

    /// Whether the alert fires.
    pub fn is_firing(&self) -> bool {
        self.status == Status::Firing
    }

    /// Alertmanager's `Alert.ResolvedAt(now)`: resolved iff `endsAt` is set and not after `now`.
    fn refresh_status(&mut self, now: OffsetDateTime) {
        self.status = match self.ends_at {
            Some(end) if end <= now => Status::Resolved,
            _ => Status::Firing,
        };
    }
}

impl WebhookMessage {
    /// Parses and validates a webhook request body.
    ///
    /// Rejects malformed JSON, missing or mistyped fields, an invalid `status`, a `version`
    /// other than `"4"`, an empty `alerts` list and an alert without an `alertname` label.
    /// Unknown fields are ignored; `null` label maps are read as empty (as Go writes nil maps).
    /// The fields are read by the types' own `Deserialize` through `serde_path_to_error`, so an
    /// error names the path of the field it is about (`alerts[1].labels.severity`).
    pub fn from_slice(bytes: &[u8]) -> Result<Self, PayloadError> {
        if bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
            return Err(PayloadError::not_an_object("an array"));
        }
        let mut deserializer = serde_json::Deserializer::from_slice(bytes);
        let message: Self = serde_path_to_error::deserialize(&mut deserializer)
            .map_err(PayloadError::from_serde)?;
        // Trailing characters after the document are malformed JSON too.
        deserializer
            .end()
            .map_err(|e| PayloadError::from_json(e, String::new()))?;
        message.validate()
    }

    /// Validates an already parsed JSON value; see [`WebhookMessage::from_slice`].
    pub fn from_value(value: Value) -> Result<Self, PayloadError> {
        if value.is_array() {
            // serde reads a struct from an array too (by position); a webhook body never is one.
            return Err(PayloadError::not_an_object("an array"));
        }
        let message: Self =
            serde_path_to_error::deserialize(value).map_err(PayloadError::from_serde)?;
        message.validate()
    }

    /// What the types alone cannot say: the version, a non-empty list, an `alertname` on every
    /// alert.
    fn validate(self) -> Result<Self, PayloadError> {
        if self.version != WEBHOOK_VERSION {
            return Err(PayloadError::UnsupportedVersion {
                found: self.version,
            });
        }
        if self.alerts.is_empty() {
            return Err(PayloadError::EmptyAlerts);
        }
        if let Some(i) = self
            .alerts
            .iter()
            .position(|a| a.labels.get(ALERTNAME).is_none_or(String::is_empty))
        {
            return Err(PayloadError::MissingAlertname {
                path: format!("alerts[{i}].labels.{ALERTNAME}"),
            });
        }
        Ok(self)
    }

    /// A builder for the payload Alertmanager would send to `receiver`.
    pub fn builder(receiver: impl Into<String>) -> WebhookMessageBuilder {
        WebhookMessageBuilder::new(receiver)
    }

    /// Fixture shorthand: the message Alertmanager's root route (no `group_by`) would send to
    /// `receiver` for one alert with these labels, firing since now.
    pub fn firing<K: Into<String>, V: Into<String>>(
        receiver: impl Into<String>,
        labels: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        Self::builder(receiver).alert(Alert::firing(labels)).build()
    }

    /// Fixture shorthand: as [`WebhookMessage::firing`], with the alert resolved now.
    pub fn resolved<K: Into<String>, V: Into<String>>(
        receiver: impl Into<String>,
        labels: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        Self::builder(receiver)
            .alert(Alert::firing(labels).resolved_now())
            .build()
    }

    /// The alerts that fire.
    pub fn firing_alerts(&self) -> impl Iterator<Item = &Alert> {
        self.alerts.iter().filter(|a| a.is_firing())
    }

    /// The alerts that are resolved.
    pub fn resolved_alerts(&self) -> impl Iterator<Item = &Alert> {
        self.alerts.iter().filter(|a| !a.is_firing())
    }
}

/// Builds a [`WebhookMessage`] the way Alertmanager 0.25 does (`dispatch` + `notify/webhook` +
/// `template.Data`).
#[derive(Debug, Clone)]
pub struct WebhookMessageBuilder {
    receiver: String,
    route_key: String,
    group_by: GroupBy,
    external_url: String,
    max_alerts: usize,
    alerts: Vec<Alert>,
}

#[derive(Debug, Clone)]
enum GroupBy {
    Labels(Vec<String>),
    All,
}

impl WebhookMessageBuilder {
    fn new(receiver: impl Into<String>) -> Self {
        Self {
            receiver: receiver.into(),
            route_key: "{}".to_owned(),
            group_by: GroupBy::Labels(Vec::new()),
            external_url: String::new(),
            max_alerts: 0,
            alerts: Vec::new(),
        }
    }

    /// The route's key, the part of `groupKey` before `:`. The root route's is `{}` (default); a
    /// child route's is its parent's key, `/`, then its matchers, e.g. `{}/{severity="critical"}`.
    #[must_use]
    pub fn route_key(mut self, key: impl Into<String>) -> Self {
        self.route_key = key.into();
        self
    }

    /// The route's `group_by` label names (default: none, as Alertmanager's default).
    #[must_use]
    pub fn group_by<S: Into<String>>(mut self, names: impl IntoIterator<Item = S>) -> Self {
        self.group_by = GroupBy::Labels(names.into_iter().map(Into::into).collect());
        self
    }

    /// `group_by: ['...']`: every label groups.
    #[must_use]
    pub fn group_by_all(mut self) -> Self {
        self.group_by = GroupBy::All;
        self
    }

    /// Alertmanager's external URL.
    #[must_use]
    pub fn external_url(mut self, url: impl Into<String>) -> Self {
        self.external_url = url.into();
        self
    }

    /// The webhook config's `max_alerts` (0 = unlimited, the default).
    #[must_use]
    pub fn max_alerts(mut self, max: usize) -> Self {
        self.max_alerts = max;
        self
    }

    /// Adds an alert.
    #[must_use]
    pub fn alert(mut self, alert: Alert) -> Self {
        self.alerts.push(alert);
        self
    }

    /// Adds alerts.
    #[must_use]
    pub fn alerts(mut self, alerts: impl IntoIterator<Item = Alert>) -> Self {
        self.alerts.extend(alerts);
        self
    }

    /// Builds the message, judging every alert's status against the current time.
    pub fn build(self) -> WebhookMessage {
        self.build_at(OffsetDateTime::now_utc())
    }

    /// Builds the message, judging every alert's status against `now`.
    pub fn build_at(self, now: OffsetDateTime) -> WebhookMessage {
        let mut alerts = self.alerts;
        for alert in &mut alerts {
            alert.fingerprint = Fingerprint::of_labels(&alert.labels);
            alert.refresh_status(now);
            // dispatch: "Ensure that alerts don't resolve as time move forwards."
            if alert.is_firing() {
                alert.ends_at = None;
            }
        }
        let group_labels = match (&self.group_by, alerts.first()) {
            (_, None) => LabelSet::new(),
            (GroupBy::All, Some(first)) => first.labels.clone(),
            (GroupBy::Labels(names), Some(first)) => names
                .iter()
                .filter_map(|n| first.labels.get_key_value(n))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        };
        alerts.sort_by(alert_order);
        let mut truncated_alerts = 0;
        if self.max_alerts > 0 && alerts.len() > self.max_alerts {
            truncated_alerts = (alerts.len() - self.max_alerts) as u64;
            alerts.truncate(self.max_alerts);
        }
        let status = if alerts.iter().any(Alert::is_firing) {
            Status::Firing
        } else {
            Status::Resolved
        };
        let common_labels = common(alerts.iter().map(|a| &a.labels));
        let common_annotations = common(alerts.iter().map(|a| &a.annotations));
        WebhookMessage {
            version: WEBHOOK_VERSION.to_owned(),
            group_key: format!("{}:{}", self.route_key, label_set_string(&group_labels)),
            truncated_alerts,
            status,
            receiver: self.receiver,
            group_labels,
            common_labels,
            common_annotations,
            external_url: self.external_url,
            alerts,
        }
    }
}

/// Pairs present with the same value in every set.
fn common<'a>(mut sets: impl Iterator<Item = &'a LabelSet>) -> LabelSet {
    let Some(first) = sets.next() else {
        return LabelSet::new();
    };
    let mut common = first.clone();
    for set in sets {
        common.retain(|k, v| set.get(k) == Some(v));
    }
    common
}

/// Alertmanager `types.AlertSlice.Less`: by `job`, then `instance`, then label set.
fn alert_order(a: &Alert, b: &Alert) -> Ordering {
    for key in ["job", "instance"] {
        match (a.labels.get(key), b.labels.get(key)) {
            (None, None) => continue,
            (None, Some(_)) => return Ordering::Greater,
            (Some(_), None) => return Ordering::Less,
            (Some(x), Some(y)) if x != y => return x.cmp(y),
            _ => {}
        }
    }
    label_set_order(&a.labels, &b.labels)
}

/// prometheus/common `LabelSet.Before`: shorter sets first, then by the first differing pair.
fn label_set_order(a: &LabelSet, b: &LabelSet) -> Ordering {
    a.len().cmp(&b.len()).then_with(|| {
        let mut names: Vec<&String> = a.keys().chain(b.keys()).collect();
        names.sort();
        for name in names {
            match (a.get(name), b.get(name)) {
                (None, _) => return Ordering::Less,
                (_, None) => return Ordering::Greater,
                (Some(x), Some(y)) if x != y => return x.cmp(y),
                _ => {}
            }
        }
        Ordering::Equal
    })
}

/// prometheus/common `LabelSet.String`: `{a="1", b="2"}` with Go-quoted values.
pub fn label_set_string(labels: &LabelSet) -> String {
    let mut out = String::from("{");
    for (i, (name, value)) in labels.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(name);
        out.push('=');
        go_quote_into(&mut out, value);
    }
    out.push('}');
    out
}

/// Go `strconv.Quote` for the characters label values hold in practice.
fn go_quote_into(out: &mut String, value: &str) {
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{07}' => out.push_str("\\a"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{0b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

// ---------------------------------------------------------------------------------------------
// Validation errors

/// Why a webhook body was rejected. `path` uses `alerts[0].labels.alertname` notation (empty for
/// the document itself). Serializes to a JSON object for a 400 body:
/// `{"error": "<message>", "kind": "...", "path": "...", "reason": "..."}` (plus `line` and
/// `column` for malformed JSON).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PayloadError {
    /// Not JSON.
    #[error("malformed JSON at line {line} column {column}: {message}")]
    Syntax {
        /// 1-based line (serde_json).
        line: usize,
        /// 1-based column (serde_json).
        column: usize,
        /// serde_json's description, without the position.
        message: String,
    },
    /// `version` is not `"4"`.
    #[error("version: unsupported webhook version {found:?}, expected \"4\"")]
    UnsupportedVersion {
        /// The version sent.
        found: String,
    },
    /// A required field is absent.
    #[error("{path}: missing field")]
    MissingField {
        /// Where.
        path: String,
    },
    /// A field has the wrong type or an invalid value (e.g. `status: "pending"`).
    #[error("{path}: {reason}")]
    InvalidField {
        /// Where.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// `alerts` is `[]`.
    #[error("alerts: the list is empty")]
    EmptyAlerts,
    /// An alert lacks a non-empty `alertname` label.
    #[error("{path}: missing alertname label")]
    MissingAlertname {
        /// `alerts[i].labels.alertname`.
        path: String,
    },
}

impl PayloadError {
    /// The JSON path of the offending field (`""` for the document as a whole).
    pub fn path(&self) -> &str {
        match self {
            PayloadError::Syntax { .. } => "",
            PayloadError::UnsupportedVersion { .. } => "version",
            PayloadError::MissingField { path }
            | PayloadError::InvalidField { path, .. }
            | PayloadError::MissingAlertname { path } => path,
            PayloadError::EmptyAlerts => "alerts",
        }
    }

    /// What is wrong, without the path.
    pub fn reason(&self) -> String {
        match self {
            PayloadError::Syntax {
                line,
                column,
                message,
            } => format!("malformed JSON at line {line} column {column}: {message}"),
            PayloadError::UnsupportedVersion { found } => {
                format!("unsupported webhook version {found:?}, expected \"4\"")
            }
            PayloadError::MissingField { .. } => "missing field".to_owned(),
            PayloadError::InvalidField { reason, .. } => reason.clone(),
            PayloadError::EmptyAlerts => "the list is empty".to_owned(),
            PayloadError::MissingAlertname { .. } => "missing alertname label".to_owned(),
        }
    }

    /// A bounded label for metrics (`syntax`, `unsupported_version`, `missing_field`,
    /// `invalid_field`, `empty_alerts`, `missing_alertname`).
    pub fn metric_label(&self) -> &'static str {
        match self {
            PayloadError::Syntax { .. } => "syntax",
            PayloadError::UnsupportedVersion { .. } => "unsupported_version",
            PayloadError::MissingField { .. } => "missing_field",
            PayloadError::InvalidField { .. } => "invalid_field",
            PayloadError::EmptyAlerts => "empty_alerts",
            PayloadError::MissingAlertname { .. } => "missing_alertname",
        }
    }
}

impl Serialize for PayloadError {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let position = match self {
            PayloadError::Syntax { line, column, .. } => Some((*line, *column)),
            _ => None,
        };
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("error", &self.to_string())?;
        map.serialize_entry("kind", self.metric_label())?;
        map.serialize_entry("path", self.path())?;
        map.serialize_entry("reason", &self.reason())?;
        if let Some((line, column)) = position {
            map.serialize_entry("line", &line)?;
            map.serialize_entry("column", &column)?;
        }
        map.end()
    }
}

// ---------------------------------------------------------------------------------------------
// Reading serde's errors

impl PayloadError {
    /// The document is not a JSON object.
    fn not_an_object(found: &str) -> Self {
        PayloadError::InvalidField {
            path: String::new(),
            reason: format!("expected an object, found {found}"),
        }
    }

    /// A `PayloadError` from what serde_json and serde_path_to_error report: malformed JSON as
    /// [`PayloadError::Syntax`], a missing field with its full path, anything else with the path
    /// of the value it is about.
    fn from_serde(e: serde_path_to_error::Error<serde_json::Error>) -> Self {
        let path = match e.path().to_string() {
            root if root == "." => String::new(),
            path => path,
        };
        Self::from_json(e.into_inner(), path)
    }

    /// As [`PayloadError::from_serde`], for an error at `path` (empty: the document).
    fn from_json(inner: serde_json::Error, path: String) -> Self {
        let message = without_position(&inner);
        if matches!(
            inner.classify(),
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof
        ) {
            return PayloadError::Syntax {
                line: inner.line(),
                column: inner.column(),
                message,
            };
        }
        let missing = message
            .strip_prefix("missing field `")
            .and_then(|rest| rest.strip_suffix('`'));
        match missing {
            Some(name) if path.is_empty() => PayloadError::MissingField {
                path: name.to_owned(),
            },
            Some(name) => PayloadError::MissingField {
                path: format!("{path}.{name}"),
            },
            None => PayloadError::InvalidField {
                path,
                reason: message,
            },
        }
    }
}

/// serde_json's message without the " at line L column C" it appends (kept separately).
fn without_position(e: &serde_json::Error) -> String {
    let full = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    full.strip_suffix(&suffix).unwrap_or(&full).to_owned()
}

/// A label map where `null` (Go's nil map) reads as empty.
fn null_as_empty<'de, D: Deserializer<'de>>(deserializer: D) -> Result<LabelSet, D::Error> {
    Ok(Option::<LabelSet>::deserialize(deserializer)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::label_set as labels;
    use serde_json::json;
    use time::macros::datetime;

    /// A payload as Alertmanager 0.25 sends it (shape taken from a real delivery).
    fn sample() -> Value {
        json!({
            "receiver": "alert-service",
            "status": "firing",
            "alerts": [{
                "status": "firing",
                "labels": {"alertname": "HeartDown", "severity": "critical", "service": "heart"},
                "annotations": {"summary": "heart is down"},
                "startsAt": "2026-11-02T09:11:12.345Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://prometheus:9090/graph?g0.expr=up%3D%3D0",
                "fingerprint": "0123456789abcdef"
            }],
            "groupLabels": {"alertname": "HeartDown"},
            "commonLabels": {"alertname": "HeartDown", "severity": "critical", "service": "heart"},
            "commonAnnotations": {"summary": "heart is down"},
            "externalURL": "http://alertmanager:9093",
            "version": "4",
            "groupKey": "{}:{alertname=\"HeartDown\"}",
            "truncatedAlerts": 0
        })
    }

    fn parse(value: &Value) -> Result<WebhookMessage, PayloadError> {
        WebhookMessage::from_slice(&serde_json::to_vec(value).unwrap())
    }

    #[test]
    fn parses_an_alertmanager_payload() {
        let msg = parse(&sample()).unwrap();
        assert_eq!(msg.status, Status::Firing);
        assert_eq!(msg.receiver, "alert-service");
        assert_eq!(msg.group_key, "{}:{alertname=\"HeartDown\"}");
        let alert = &msg.alerts[0];
        assert_eq!(alert.alertname(), Some("HeartDown"));
        assert_eq!(alert.ends_at, None, "Go zero time means unset");
        assert_eq!(alert.starts_at, datetime!(2026-11-02 09:11:12.345 UTC));
        assert_eq!(alert.fingerprint, Fingerprint(0x0123_4567_89ab_cdef));
        // The derived Deserialize agrees with the validating parser.
        let derived: WebhookMessage = serde_json::from_value(sample()).unwrap();
        assert_eq!(derived, msg);
        // And serializing gives the wire names back, endsAt as Go's zero time.
        let back = serde_json::to_value(&msg).unwrap();
        assert_eq!(back["alerts"][0]["endsAt"], "0001-01-01T00:00:00Z");
        assert_eq!(back["externalURL"], "http://alertmanager:9093");
        assert_eq!(
            back["alerts"][0]["generatorURL"],
            sample()["alerts"][0]["generatorURL"]
        );
        assert_eq!(back["truncatedAlerts"], 0);
    }

    #[test]
    fn parses_and_rebuilds_a_payload_captured_from_alertmanager() {
        let bytes = include_bytes!("../tests/data/alertmanager-0.25-webhook.json");
        let msg = WebhookMessage::from_slice(bytes).unwrap();
        let alert = &msg.alerts[0];
        assert_eq!(alert.fingerprint.to_string(), "39f094049f559d7d");
        assert_eq!(alert.fingerprint, Fingerprint::of_labels(&alert.labels));
        assert_eq!(alert.ends_at, None);
        let rebuilt = WebhookMessage::builder(msg.receiver.clone())
            .group_by(["alertname"])
            .external_url(msg.external_url.clone())
            .alert(Alert::new(
                alert.labels.clone(),
                alert.annotations.clone(),
                alert.starts_at,
                None,
                alert.generator_url.clone(),
            ))
            .build();
        assert_eq!(rebuilt, msg);
        let original: Value = serde_json::from_slice(bytes).unwrap();
        assert_eq!(serde_json::to_value(&rebuilt).unwrap(), original);
    }

    #[test]
    fn malformed_json_reports_line_and_column() {
        let err = WebhookMessage::from_slice(b"{\n  \"version\": \"4\",\n  oops\n}").unwrap_err();
        let PayloadError::Syntax { line, column, .. } = &err else {
            panic!("expected a syntax error, got {err:?}");
        };
        assert_eq!((*line, *column), (3, 3));
        let body = serde_json::to_value(&err).unwrap();
        assert_eq!(body["kind"], "syntax");
        assert_eq!(body["line"], 3);
        assert_eq!(body["column"], 3);
        assert!(
            body["error"].as_str().unwrap().contains("line 3 column 3"),
            "{body}"
        );
        assert!(WebhookMessage::from_slice(b"").is_err());
    }

    #[test]
    fn trailing_characters_after_the_document_are_malformed_json() {
        let mut body = serde_json::to_vec(&sample()).unwrap();
        body.extend_from_slice(b" x");
        let err = WebhookMessage::from_slice(&body).unwrap_err();
        assert_eq!(err.metric_label(), "syntax", "{err}");
    }

    #[test]
    fn wrong_or_missing_version_is_rejected() {
        let mut v = sample();
        v["version"] = json!("3");
        let err = parse(&v).unwrap_err();
        assert_eq!(err, PayloadError::UnsupportedVersion { found: "3".into() });
        assert_eq!(err.path(), "version");
        v["version"] = json!(4);
        assert_eq!(parse(&v).unwrap_err().path(), "version");
        v.as_object_mut().unwrap().remove("version");
        assert_eq!(
            parse(&v).unwrap_err(),
            PayloadError::MissingField {
                path: "version".into()
            }
        );
    }

    #[test]
    fn missing_fields_are_named_with_their_path() {
        for field in [
            "groupKey",
            "truncatedAlerts",
            "status",
            "receiver",
            "groupLabels",
            "commonLabels",
            "commonAnnotations",
            "externalURL",
            "alerts",
        ] {
            let mut v = sample();
            v.as_object_mut().unwrap().remove(field);
            assert_eq!(
                parse(&v).unwrap_err(),
                PayloadError::MissingField { path: field.into() },
                "removing {field}"
            );
        }
        for field in [
            "status",
            "labels",
            "annotations",
            "startsAt",
            "endsAt",
            "generatorURL",
            "fingerprint",
        ] {
            let mut v = sample();
            v["alerts"][0].as_object_mut().unwrap().remove(field);
            assert_eq!(
                parse(&v).unwrap_err(),
                PayloadError::MissingField {
                    path: format!("alerts[0].{field}")
                },
                "removing alerts[0].{field}"
            );
        }
    }

    #[test]
    fn alert_without_alertname_is_rejected() {
        let mut v = sample();
        let second = {
            let mut a = v["alerts"][0].clone();
            a["labels"].as_object_mut().unwrap().remove("alertname");
            a
        };
        v["alerts"].as_array_mut().unwrap().push(second);
        let err = parse(&v).unwrap_err();
        assert_eq!(
            err,
            PayloadError::MissingAlertname {
                path: "alerts[1].labels.alertname".into()
            }
        );
        v["alerts"][1]["labels"]["alertname"] = json!("");
        assert_eq!(parse(&v).unwrap_err().metric_label(), "missing_alertname");
    }

    #[test]
    fn an_unknown_status_is_rejected_naming_it() {
        let mut v = sample();
        v["status"] = json!("pending");
        let err = parse(&v).unwrap_err();
        assert_eq!(err.path(), "status");
        assert!(err.reason().contains("\"pending\""), "{err}");
    }

    #[test]
    fn a_mistyped_field_names_its_path_and_the_value_found() {
        let mut v = sample();
        v["alerts"][0]["status"] = json!(1);
        let err = parse(&v).unwrap_err();
        assert_eq!(err.path(), "alerts[0].status");
        assert!(
            err.reason().starts_with("invalid type: integer `1`"),
            "{err}"
        );
    }

    #[test]
    fn an_empty_alert_list_is_rejected() {
        let mut v = sample();
        v["alerts"] = json!([]);
        assert_eq!(parse(&v).unwrap_err(), PayloadError::EmptyAlerts);
    }

    #[test]
    fn alerts_that_are_not_a_list_are_rejected() {
        let mut v = sample();
        v["alerts"] = json!({});
        assert_eq!(parse(&v).unwrap_err().path(), "alerts");
    }

    #[test]
    fn a_document_that_is_not_an_object_is_rejected() {
        let err = parse(&json!([1])).unwrap_err();
        assert_eq!(err.path(), "");
        assert_eq!(err.reason(), "expected an object, found an array");
        assert_eq!(
            WebhookMessage::from_value(json!([1])).unwrap_err().path(),
            ""
        );
    }

    #[test]
    fn a_mistyped_label_value_names_its_label() {
        let mut v = sample();
        v["alerts"][0]["labels"]["severity"] = json!(2);
        assert_eq!(parse(&v).unwrap_err().path(), "alerts[0].labels.severity");
    }

    #[test]
    fn an_invalid_time_is_quoted() {
        let mut v = sample();
        v["alerts"][0]["startsAt"] = json!("yesterday");
        let err = parse(&v).unwrap_err();
        assert_eq!(err.path(), "alerts[0].startsAt");
        assert!(err.reason().contains("\"yesterday\""), "{err}");
    }

    #[test]
    fn an_invalid_fingerprint_names_its_path() {
        let mut v = sample();
        v["alerts"][0]["fingerprint"] = json!("xyz");
        assert_eq!(parse(&v).unwrap_err().path(), "alerts[0].fingerprint");
    }

    #[test]
    fn a_negative_count_names_its_path() {
        let mut v = sample();
        v["truncatedAlerts"] = json!(-1);
        assert_eq!(parse(&v).unwrap_err().path(), "truncatedAlerts");
    }

    #[test]
    fn null_maps_and_unknown_fields_are_accepted() {
        let mut v = sample();
        v["commonAnnotations"] = Value::Null;
        v["alerts"][0]["annotations"] = Value::Null;
        v["alerts"][0]["endsAt"] = Value::Null;
        v["newField"] = json!({"x": 1});
        let msg = parse(&v).unwrap();
        assert!(msg.common_annotations.is_empty());
        assert!(msg.alerts[0].annotations.is_empty());
    }

    #[test]
    fn payload_error_serializes_for_a_400_body() {
        let err = PayloadError::MissingAlertname {
            path: "alerts[2].labels.alertname".into(),
        };
        assert_eq!(
            serde_json::to_value(&err).unwrap(),
            json!({
                "error": "alerts[2].labels.alertname: missing alertname label",
                "kind": "missing_alertname",
                "path": "alerts[2].labels.alertname",
                "reason": "missing alertname label"
            })
        );
    }

    #[test]
    fn builder_groups_sorts_and_computes_common_labels() {
        let now = datetime!(2026-11-02 10:00:00 UTC);
        let start = datetime!(2026-11-02 09:00:00 UTC);
        let a = Alert::new(
            labels(&[
                ("alertname", "PodCrashLooping"),
                ("pod", "heart-1"),
                ("severity", "critical"),
            ]),
            labels(&[("summary", "heart-1 crash-loops")]),
            start,
            Some(datetime!(2026-11-02 10:05:00 UTC)),
            "http://hm/findings/1",
        );
        let b = Alert::new(
            labels(&[
                ("alertname", "PodCrashLooping"),
                ("pod", "brain-0"),
                ("severity", "critical"),
            ]),
            labels(&[("summary", "brain-0 crash-loops")]),
            start,
            Some(datetime!(2026-11-02 09:30:00 UTC)),
            "",
        );
        let msg = WebhookMessage::builder("auto-healer")
            .group_by(["alertname", "namespace"])
            .external_url("http://127.0.0.1:9093")
            .alerts([a.clone(), b.clone()])
            .build_at(now);
        assert_eq!(msg.version, "4");
        assert_eq!(msg.group_key, "{}:{alertname=\"PodCrashLooping\"}");
        assert_eq!(
            msg.group_labels,
            labels(&[("alertname", "PodCrashLooping")])
        );
        assert_eq!(
            msg.common_labels,
            labels(&[("alertname", "PodCrashLooping"), ("severity", "critical")])
        );
        assert!(msg.common_annotations.is_empty());
        assert_eq!(msg.status, Status::Firing);
        // Sorted by label set: pod="brain-0" before pod="heart-1".
        assert_eq!(msg.alerts[0].labels["pod"], "brain-0");
        assert_eq!(msg.alerts[0].status, Status::Resolved);
        assert_eq!(
            msg.alerts[0].ends_at,
            Some(datetime!(2026-11-02 09:30:00 UTC))
        );
        assert_eq!(msg.alerts[1].status, Status::Firing);
        assert_eq!(
            msg.alerts[1].ends_at, None,
            "a firing alert's future endsAt is hidden"
        );
        assert_eq!(msg.alerts[1].fingerprint, Fingerprint::of_labels(&a.labels));
        // What the builder makes, the parser accepts unchanged.
        let bytes = serde_json::to_vec(&msg).unwrap();
        assert_eq!(WebhookMessage::from_slice(&bytes).unwrap(), msg);
    }

    #[test]
    fn builder_truncates_and_resolves() {
        let now = OffsetDateTime::now_utc();
        let alerts = (0..5).map(|i| {
            Alert::firing([
                ("alertname", "Many"),
                ("job", "heart"),
                ("instance", format!("h{i}").as_str()),
            ])
            .with_ends_at(now - time::Duration::minutes(1))
        });
        let msg = WebhookMessage::builder("r")
            .max_alerts(2)
            .alerts(alerts)
            .build();
        assert_eq!(msg.alerts.len(), 2);
        assert_eq!(msg.truncated_alerts, 3);
        assert_eq!(msg.status, Status::Resolved);
        assert_eq!(msg.alerts[0].labels["instance"], "h0");
        assert_eq!(msg.alerts[1].labels["instance"], "h1");
    }

    #[test]
    fn alerts_with_job_sort_before_alerts_without() {
        let a = Alert::firing([("alertname", "A")]);
        let b = Alert::firing([("alertname", "B"), ("job", "x")]);
        let msg = WebhookMessage::builder("r").alerts([a, b]).build();
        assert_eq!(msg.alerts[0].alertname(), Some("B"));
        let c = Alert::firing([("alertname", "C"), ("x", "1")]);
        let d = Alert::firing([("alertname", "C")]);
        let msg = WebhookMessage::builder("r").alerts([c, d]).build();
        assert_eq!(msg.alerts[0].labels.len(), 1, "shorter label sets first");
    }

    #[test]
    fn fixture_shorthands() {
        let msg = WebhookMessage::firing(
            "auto-healer",
            [
                ("alertname", "PodCrashLooping"),
                ("remediation", "restart-pod"),
            ],
        );
        assert_eq!(msg.status, Status::Firing);
        assert_eq!(msg.group_key, "{}:{}");
        assert_eq!(msg.alerts[0].alertname(), Some("PodCrashLooping"));
        let msg = WebhookMessage::resolved("auto-healer", [("alertname", "PodCrashLooping")]);
        assert_eq!(msg.status, Status::Resolved);
        assert!(msg.alerts[0].ends_at.is_some());
        assert_eq!(msg.resolved_alerts().count(), 1);
    }

    #[test]
    fn label_set_string_quotes_like_go() {
        assert_eq!(label_set_string(&LabelSet::new()), "{}");
        assert_eq!(
            label_set_string(&labels(&[("b", "x\"y\\z\n"), ("a", "1")])),
            r#"{a="1", b="x\"y\\z\n"}"#
        );
        assert_eq!(
            label_set_string(&labels(&[("a", "\u{1}é")])),
            "{a=\"\\x01é\"}"
        );
    }
}
