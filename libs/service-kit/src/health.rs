//! Liveness and readiness. `/healthz` answers while the process can serve; `/readyz` runs every
//! registered check (concurrently, each bounded in time) and answers 503 naming the failing ones.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use futures::future::{BoxFuture, join_all};
use http::StatusCode;
use serde_json::json;

/// A readiness check: `Ok(())` when ready, `Err(reason)` when not.
pub type CheckFn = Arc<dyn Fn() -> BoxFuture<'static, Result<(), String>> + Send + Sync>;

/// The longest one readiness check may take before it counts as failing.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(1);

/// The set of readiness checks of a service.
#[derive(Clone, Default)]
pub struct Readiness {
    checks: Arc<RwLock<Vec<(String, CheckFn)>>>,
}

impl std::fmt::Debug for Readiness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<String> = self
            .checks
            .read()
            .map(|c| c.iter().map(|(n, _)| n.clone()).collect())
            .unwrap_or_default();
        f.debug_struct("Readiness").field("checks", &names).finish()
    }
}

impl Readiness {
    /// Adds a named asynchronous check.
    pub fn add<F>(&self, name: impl Into<String>, check: F)
    where
        F: Fn() -> BoxFuture<'static, Result<(), String>> + Send + Sync + 'static,
    {
        if let Ok(mut checks) = self.checks.write() {
            checks.push((name.into(), Arc::new(check)));
        }
    }

    /// Adds a check backed by a flag that code flips; starts ready.
    pub fn flag(&self, name: impl Into<String>, reason_when_down: impl Into<String>) -> ReadyFlag {
        let flag = ReadyFlag(Arc::new(AtomicBool::new(true)));
        let probe = flag.clone();
        let reason: Arc<str> = reason_when_down.into().into();
        self.add(name, move || {
            let up = probe.is_up();
            let reason = reason.clone();
            Box::pin(async move { if up { Ok(()) } else { Err(reason.to_string()) } })
        });
        flag
    }

    /// Runs every check; the failing ones with their reasons.
    pub async fn evaluate(&self) -> (BTreeMap<String, String>, Vec<(String, String)>) {
        let checks: Vec<(String, CheckFn)> =
            self.checks.read().map(|c| c.clone()).unwrap_or_default();
        let results = join_all(checks.iter().map(|(name, check)| {
            let fut = check();
            async move {
                let outcome = match tokio::time::timeout(CHECK_TIMEOUT, fut).await {
                    Ok(r) => r,
                    Err(_) => Err(format!("check timed out after {CHECK_TIMEOUT:?}")),
                };
                (name.clone(), outcome)
            }
        }))
        .await;
        let mut all = BTreeMap::new();
        let mut failing = Vec::new();
        for (name, outcome) in results {
            match outcome {
                Ok(()) => {
                    all.insert(name, "ok".to_owned());
                }
                Err(reason) => {
                    all.insert(name.clone(), "failing".to_owned());
                    failing.push((name, reason));
                }
            }
        }
        (all, failing)
    }
}

/// A readiness flag: `set_down` makes `/readyz` fail until `set_up`.
#[derive(Clone, Debug)]
pub struct ReadyFlag(Arc<AtomicBool>);

impl ReadyFlag {
    /// Marks ready.
    pub fn set_up(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
    /// Marks not ready.
    pub fn set_down(&self) {
        self.0.store(false, Ordering::Relaxed);
    }
    /// Whether ready.
    pub fn is_up(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

pub(crate) async fn healthz() -> Response {
    axum::Json(json!({"status": "alive"})).into_response()
}

pub(crate) async fn readyz(State(readiness): State<Readiness>) -> Response {
    let (checks, failing) = readiness.evaluate().await;
    if failing.is_empty() {
        axum::Json(json!({"status": "ready", "checks": checks})).into_response()
    } else {
        let failing: Vec<_> = failing
            .into_iter()
            .map(|(check, reason)| json!({"check": check, "reason": reason}))
            .collect();
        (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({"status": "not ready", "failing": failing, "checks": checks})),
        )
            .into_response()
    }
}
