//! The ports between the engine and the outside: where actions go ([`Platform`]), where guard
//! state lives ([`StateStore`]) and who may act ([`Leadership`]). Adapters: [`crate::k8s`]
//! (Kubernetes) and [`crate::local`] (the local launcher).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::future::BoxFuture;
use serde::Serialize;

use crate::core::{self, ClusterSnapshot, GuardState, Labels, Target};
use crate::policy::Action;

/// Why an adapter call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct AdapterError {
    /// A bounded label: `api`, `not-found`, `conflict`, `refused`, `at-cap`, `unsupported`,
    /// `timeout`, `transport`.
    pub kind: &'static str,
    /// What happened.
    pub message: String,
}

impl AdapterError {
    /// An error of `kind`.
    pub fn new(kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
}

/// One audit record: every decision becomes one (and an Event, a log line, a span, a metric).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditRecord {
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    pub at: time::OffsetDateTime,
    /// The alert's name.
    pub alertname: String,
    /// The alert's subject (guard state key).
    pub subject: String,
    /// `acted`, `healed`, `failed`, `skipped`, `dry-run`, `escalated`.
    pub result: String,
    /// The action's name, when there is one.
    pub action: Option<String>,
    /// The target, when known.
    pub target: Option<Target>,
    /// The rule, when one matched.
    pub rule: Option<String>,
    /// The escalation step, when acting.
    pub step: Option<usize>,
    /// The blocking guard, for skips and escalations.
    pub guard: Option<String>,
    /// Human explanation.
    pub message: String,
}

/// Where actions are carried out.
pub trait Platform: Send + Sync + 'static {
    /// Which platform this is.
    fn kind(&self) -> core::PlatformKind;

    /// What the platform looks like around `target`.
    fn snapshot<'a>(
        &'a self,
        target: &'a Target,
    ) -> BoxFuture<'a, Result<ClusterSnapshot, AdapterError>>;

    /// Carries out `action` on `target`; returns what was done, for the audit trail.
    fn execute<'a>(
        &'a self,
        action: &'a Action,
        target: &'a Target,
        alert: &'a Labels,
    ) -> BoxFuture<'a, Result<String, AdapterError>>;

    /// Waits until `target` is healthy after `action`, at most `timeout`.
    fn verify<'a>(
        &'a self,
        action: &'a Action,
        target: &'a Target,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<(), AdapterError>>;

    /// Records an audit record on the platform (a Kubernetes Event on the target).
    fn record<'a>(&'a self, record: &'a AuditRecord) -> BoxFuture<'a, Result<(), AdapterError>>;
}

/// Why loading or saving guard state failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Someone else saved in between (optimistic concurrency): load and try again.
    #[error("the guard state changed since it was loaded")]
    Conflict,
    /// Anything else.
    #[error("guard state store: {0}")]
    Other(String),
}

/// Guard state outside process memory, saved with optimistic concurrency.
pub trait StateStore: Send + Sync + 'static {
    /// The state and its version (`None` when nothing was saved yet).
    fn load(&self) -> BoxFuture<'_, Result<(GuardState, Option<String>), StoreError>>;

    /// Saves `state` if the stored version is still `version`.
    fn save<'a>(
        &'a self,
        state: &'a GuardState,
        version: Option<&'a str>,
    ) -> BoxFuture<'a, Result<(), StoreError>>;
}

/// Loads, changes with `f` and saves the state, retrying on conflicts (at most 8 times).
pub async fn update_state<T>(
    store: &dyn StateStore,
    mut f: impl FnMut(&mut GuardState) -> T,
) -> Result<(GuardState, T), StoreError> {
    let mut last = StoreError::Conflict;
    for _ in 0..8 {
        let (mut state, version) = store.load().await?;
        let out = f(&mut state);
        match store.save(&state, version.as_deref()).await {
            Ok(()) => return Ok((state, out)),
            Err(StoreError::Conflict) => last = StoreError::Conflict,
            Err(e) => return Err(e),
        }
    }
    Err(last)
}

/// Whether this instance may act.
pub trait Leadership: Send + Sync + 'static {
    /// True while this instance holds leadership.
    fn is_leader(&self) -> bool;
}

/// Leadership held by a flag: always true locally (single instance, leader by definition);
/// the Lease elector flips it in a cluster.
#[derive(Debug, Clone)]
pub struct LeaderFlag(Arc<AtomicBool>);

impl LeaderFlag {
    /// A flag starting at `leader`.
    pub fn new(leader: bool) -> Self {
        Self(Arc::new(AtomicBool::new(leader)))
    }

    /// Sets it.
    pub fn set(&self, leader: bool) {
        self.0.store(leader, Ordering::SeqCst);
    }
}

impl Leadership for LeaderFlag {
    fn is_leader(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// Where the healer confirms an alert before acting on it: the alert must be active there with
/// exactly these labels (a payload alone is never trusted).
pub trait AlertSource: Send + Sync + 'static {
    /// `Ok(true)` when an alert with exactly `labels` is active (not resolved, silenced or
    /// inhibited); `Err` with why when the source cannot be asked.
    fn is_active<'a>(&'a self, labels: &'a Labels) -> BoxFuture<'a, Result<bool, String>>;
}

/// Alertmanager API v2: `GET /api/v2/alerts?filter=alertname="…"`, then an exact label-set
/// comparison among the active ones.
impl AlertSource for alertmanager::AlertmanagerClient {
    fn is_active<'a>(&'a self, labels: &'a Labels) -> BoxFuture<'a, Result<bool, String>> {
        Box::pin(async move {
            let name = labels.get("alertname").cloned().unwrap_or_default();
            let alerts = self
                .alerts(&[alertmanager::Matcher::equal("alertname", name)])
                .await
                .map_err(|e| e.to_string())?;
            Ok(alerts
                .iter()
                .any(|a| a.status.state == alertmanager::AlertState::Active && &a.labels == labels))
        })
    }
}
