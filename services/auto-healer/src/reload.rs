//! Policy reload: the policy file (`AUTO_HEALER_POLICY`) is checked every `policy_poll` and put
//! in force when its content changed. An unreadable or invalid file keeps the policy in force,
//! says why (an error log naming the field path) and counts
//! `auto_healer_policy_reloads_total{result="failure"}`; a good one counts `result="success"`.
//!
//! Polling the content, not watching inotify events: a Kubernetes ConfigMap volume swaps a
//! symlink, which a content comparison sees the same way as an edit in place.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::engine::Engine;
use crate::policy::Policy;

/// What one check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reload {
    /// The file is as last seen.
    Unchanged,
    /// A new valid policy is in force.
    Applied,
    /// The file changed but cannot be used; the policy in force stays. Why.
    Rejected(String),
}

/// Checks `path` once against `last` (the content last seen) and applies a changed, valid
/// policy to `engine`.
pub fn check(engine: &Engine, path: &std::path::Path, last: &mut Option<String>) -> Reload {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            let why = format!("cannot read {}: {e}", path.display());
            if last.as_deref() == Some(why.as_str()) {
                return Reload::Unchanged;
            }
            *last = Some(why.clone());
            engine
                .metrics
                .policy_reloads
                .with_label_values(&["failure"])
                .inc();
            tracing::error!(policy = %path.display(), error = %why, "policy not reloaded: the policy in force stays");
            return Reload::Rejected(why);
        }
    };
    if last.as_deref() == Some(text.as_str()) {
        return Reload::Unchanged;
    }
    *last = Some(text.clone());
    match Policy::from_yaml(&text) {
        Ok(policy) => {
            let rules = policy.rules.len();
            let dry_run = policy.guards.dry_run;
            engine.set_policy(policy);
            engine
                .metrics
                .policy_reloads
                .with_label_values(&["success"])
                .inc();
            tracing::info!(policy = %path.display(), rules, dry_run = engine.dry_run(), policy_dry_run = dry_run, "policy reloaded");
            Reload::Applied
        }
        Err(e) => {
            engine
                .metrics
                .policy_reloads
                .with_label_values(&["failure"])
                .inc();
            let why = format!("{}: {e}", path.display());
            tracing::error!(policy = %path.display(), error = %e, "policy not reloaded: the policy in force stays");
            Reload::Rejected(why)
        }
    }
}

/// Checks `path` every `every` until `shutdown`. The content read at start is taken as the one
/// in force (the configuration already validated it).
pub async fn watch(
    engine: Arc<Engine>,
    path: PathBuf,
    every: Duration,
    shutdown: CancellationToken,
) {
    let mut last = std::fs::read_to_string(&path).ok();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
        let engine = engine.clone();
        let path = path.clone();
        let mut seen = last.take();
        // File reads are blocking I/O.
        let result = tokio::task::spawn_blocking(move || {
            let r = check(&engine, &path, &mut seen);
            (r, seen)
        })
        .await;
        match result {
            Ok((_, seen)) => last = seen,
            Err(e) => tracing::error!(error = %e, "policy reload check panicked"),
        }
    }
}
