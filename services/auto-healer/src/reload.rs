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

    const FIRST: &str =
        "rules:\n- name: a\n  match: {alertname: X}\n  actions: [{kind: delete-pod}]\n";
    const SECOND: &str = "guards: {dry_run: true}\nrules:\n- name: b\n  match: {alertname: Y}\n  actions: [{kind: notify}]\n";
    const INVALID: &str = "rules:\n- name: c\n  actions: [{kind: explode}]\n";

    /// An engine on the policy `FIRST`, written to `policy.yaml` in a temp dir, and what the
    /// watcher last saw of that file.
    struct Watched {
        engine: Engine,
        path: std::path::PathBuf,
        last: Option<String>,
        _dir: tempfile::TempDir,
    }

    impl Watched {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("policy.yaml");
            std::fs::write(&path, FIRST).unwrap();
            let engine = Engine::new(
                Arc::new(Policy::from_yaml(FIRST).unwrap()),
                Arc::new(crate::local::LocalPlatform::new(
                    "http://127.0.0.1:9",
                    None,
                    None,
                    telemetry::client::HttpClient::new(
                        telemetry::client::ClientMetrics::new(&prometheus::Registry::new())
                            .unwrap(),
                    ),
                )),
                Arc::new(FileStore::new(dir.path())),
                Arc::new(LeaderFlag::new(true)),
                false,
                Metrics::new(&prometheus::Registry::new()).unwrap(),
                History::new(1),
                None,
            )
            .with_dry_run_override(None);
            let last = std::fs::read_to_string(&path).ok();
            Self {
                engine,
                path,
                last,
                _dir: dir,
            }
        }

        /// Writes `text` to the policy file and checks it.
        fn write_and_check(&mut self, text: &str) -> Reload {
            std::fs::write(&self.path, text).unwrap();
            self.check()
        }

        fn check(&mut self) -> Reload {
            check(&self.engine, &self.path, &mut self.last)
        }

        fn rule(&self) -> String {
            self.engine.policy().rules[0].name.clone()
        }
    }

    #[test]
    fn an_unchanged_file_is_not_reloaded() {
        let mut w = Watched::new();
        assert_eq!(w.check(), Reload::Unchanged);
    }

    #[test]
    fn a_changed_policy_is_applied() {
        let mut w = Watched::new();
        assert_eq!(w.write_and_check(SECOND), Reload::Applied);
        assert_eq!(w.rule(), "b");
    }

    #[test]
    fn dry_run_follows_the_reloaded_policy() {
        let mut w = Watched::new();
        assert!(!w.engine.dry_run());
        w.write_and_check(SECOND);
        assert!(w.engine.dry_run());
    }

    #[test]
    fn an_invalid_policy_is_rejected_naming_the_file_and_field_and_the_old_one_stays() {
        let mut w = Watched::new();
        match w.write_and_check(INVALID) {
            Reload::Rejected(why) => {
                assert!(why.contains("rules[0].actions[0].kind"), "{why}");
                assert!(why.contains("policy.yaml"), "{why}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(w.rule(), "a", "the old policy stays");
    }

    #[test]
    fn a_rejected_policy_is_said_once_not_every_poll() {
        let mut w = Watched::new();
        w.write_and_check(INVALID);
        assert_eq!(w.check(), Reload::Unchanged);
    }

    #[test]
    fn a_deleted_policy_file_is_rejected_and_the_old_policy_stays() {
        let mut w = Watched::new();
        std::fs::remove_file(&w.path).unwrap();
        assert!(matches!(w.check(), Reload::Rejected(_)));
        assert_eq!(w.rule(), "a");
    }

    #[test]
    fn reloads_are_counted_by_result() {
        let mut w = Watched::new();
        w.write_and_check(SECOND);
        w.write_and_check(INVALID);
        std::fs::remove_file(&w.path).unwrap();
        w.check();
        let m = &w.engine.metrics.policy_reloads;
        assert_eq!(m.with_label_values(&["success"]).get(), 1);
        assert_eq!(m.with_label_values(&["failure"]).get(), 2);
    }
}
