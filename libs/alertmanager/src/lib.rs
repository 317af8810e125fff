//! Alertmanager, as organism's services speak to it.
//!
//! - [`webhook`]: the webhook v4 payload Alertmanager POSTs to receivers (auto-healer,
//!   alert-service), a validating parser whose errors name the bad field, and a builder that
//!   produces the same payloads Alertmanager would (health-monitor's direct delivery).
//! - [`fingerprint`]: the label-set fingerprint Alertmanager and Prometheus use as alert identity.
//! - [`api`]: API v2 types for alerts and silences.
//! - [`client`]: an async client for the API v2 ([`AlertmanagerClient`]).
//!
//! Ready-made alerts and payloads for tests are in `testbed::fixtures`.

pub mod api;
pub mod client;
pub mod fingerprint;
mod time_format;
pub mod webhook;

use std::collections::BTreeMap;

pub use api::{
    AlertState, AlertStatus, GettableAlert, GettableSilence, Matcher, PostableAlert,
    PostableSilence, SilenceState, SilenceStatus,
};
pub use client::{AlertmanagerClient, Error};
pub use fingerprint::Fingerprint;
pub use webhook::{Alert, PayloadError, Status, WebhookMessage, WebhookMessageBuilder};

/// Labels or annotations: names to values, in name order.
pub type LabelSet = BTreeMap<String, String>;

/// A [`LabelSet`] from borrowed pairs; a later pair wins over an earlier one with the same name.
///
/// ```
/// let set = alertmanager::label_set(&[("severity", "page"), ("alertname", "HeartDown")]);
/// assert_eq!(set.keys().collect::<Vec<_>>(), ["alertname", "severity"]);
/// ```
pub fn label_set(pairs: &[(&str, &str)]) -> LabelSet {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}
