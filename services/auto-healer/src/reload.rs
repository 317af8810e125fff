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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{History, Metrics};
    use crate::local::FileStore;
    use crate::platform::LeaderFlag;

    #[test]
    fn a_changed_policy_is_applied_and_an_invalid_one_keeps_the_old() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("policy.yaml");
        let first = "rules:\n- name: a\n  match: {alertname: X}\n  actions: [{kind: delete-pod}]\n";
        std::fs::write(&path, first).unwrap();
        let registry = prometheus::Registry::new();
        let engine = Engine::new(
            Arc::new(Policy::from_yaml(first).unwrap()),
            Arc::new(crate::local::LocalPlatform::new(
                "http://127.0.0.1:9",
                None,
                None,
                telemetry::client::HttpClient::new(
                    telemetry::client::ClientMetrics::new(&prometheus::Registry::new()).unwrap(),
                ),
            )),
            Arc::new(FileStore::new(dir.path())),
            Arc::new(LeaderFlag::new(true)),
            false,
            Metrics::new(&registry).unwrap(),
            History::new(1),
            None,
        )
        .with_dry_run_override(None);
        let mut last = std::fs::read_to_string(&path).ok();
        assert_eq!(check(&engine, &path, &mut last), Reload::Unchanged);

        std::fs::write(
            &path,
            "guards: {dry_run: true}\nrules:\n- name: b\n  match: {alertname: Y}\n  actions: [{kind: notify}]\n",
        )
        .unwrap();
        assert_eq!(check(&engine, &path, &mut last), Reload::Applied);
        assert_eq!(engine.policy().rules[0].name, "b");
        assert!(engine.dry_run(), "dry run follows the reloaded policy");

        std::fs::write(&path, "rules:\n- name: c\n  actions: [{kind: explode}]\n").unwrap();
        match check(&engine, &path, &mut last) {
            Reload::Rejected(why) => {
                assert!(why.contains("rules[0].actions[0].kind"), "{why}");
                assert!(why.contains("policy.yaml"), "{why}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(engine.policy().rules[0].name, "b", "the old policy stays");
        // Said once, not every poll.
        assert_eq!(check(&engine, &path, &mut last), Reload::Unchanged);
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(
            check(&engine, &path, &mut last),
            Reload::Rejected(_)
        ));
        assert_eq!(engine.policy().rules[0].name, "b");
        let m = &engine.metrics.policy_reloads;
        assert_eq!(m.with_label_values(&["success"]).get(), 1);
        assert_eq!(m.with_label_values(&["failure"]).get(), 2);
    }
}
