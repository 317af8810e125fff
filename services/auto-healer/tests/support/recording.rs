//! A platform adapter that records what it is asked to do, when, and answers healthy: the far
//! end for intake tests and the intake benchmark (acting on a real cluster is what the kube
//! mock tests cover).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use auto_healer::core::{self, ClusterSnapshot, Labels, Target};
use auto_healer::platform::{AdapterError, AuditRecord, Platform};
use auto_healer::policy::Action;
use futures::future::BoxFuture;
use tokio::sync::watch;

/// How long [`Recording::wait_for`] waits: a bound for a test that went wrong, not a timing
/// requirement (under paused time it passes only once nothing else can run).
#[allow(dead_code)]
pub const RECORDING_WAIT: Duration = Duration::from_secs(60);

/// One `execute` call.
#[allow(dead_code)]
#[derive(Debug, Clone)]
pub struct Executed {
    pub action: String,
    pub target: Target,
    pub at: Instant,
}

/// Records `execute` calls and audit records.
#[allow(dead_code)]
#[derive(Debug, Clone, Default)]
pub struct Recording {
    pub executed: Arc<Mutex<Vec<Executed>>>,
    pub records: Arc<Mutex<Vec<AuditRecord>>>,
    pub snapshot: Arc<Mutex<ClusterSnapshot>>,
    pub fail_verify: Arc<Mutex<bool>>,
    /// How many `execute` calls and audit records there were; every one bumps it.
    pub changes: watch::Sender<u64>,
}

#[allow(dead_code)]
impl Recording {
    pub fn executed(&self) -> Vec<Executed> {
        self.executed.lock().unwrap().clone()
    }

    pub fn records(&self) -> Vec<AuditRecord> {
        self.records.lock().unwrap().clone()
    }

    /// The actions executed, in order.
    pub fn actions(&self) -> Vec<String> {
        self.executed().into_iter().map(|e| e.action).collect()
    }

    /// How many audit records have `result`.
    pub fn count(&self, result: &str) -> usize {
        self.records().iter().filter(|r| r.result == result).count()
    }

    /// Waits until `done` holds, checked after every `execute` call and audit record; panics,
    /// naming `what` and showing what was recorded, after [`RECORDING_WAIT`].
    pub async fn wait_for(&self, what: &str, done: impl Fn(&Self) -> bool) {
        let mut changes = self.changes.subscribe();
        let waited = tokio::time::timeout(RECORDING_WAIT, async {
            while !done(self) {
                changes
                    .changed()
                    .await
                    .expect("the recording outlives the wait");
            }
        })
        .await;
        assert!(
            waited.is_ok(),
            "{what}: not so after {RECORDING_WAIT:?}; executed {:?}, records {:?}",
            self.actions(),
            self.records()
        );
    }

    /// Waits for the one `escalated` record and returns it.
    pub async fn wait_for_escalation(&self) -> AuditRecord {
        self.wait_for("escalated", |p| p.count("escalated") == 1)
            .await;
        let records = self.records();
        records
            .into_iter()
            .find(|r| r.result == "escalated")
            .expect("the escalated record waited for")
    }

    fn changed(&self) {
        self.changes.send_modify(|n| *n += 1);
    }
}

impl Platform for Recording {
    fn kind(&self) -> core::PlatformKind {
        core::PlatformKind::Kubernetes
    }
    fn snapshot<'a>(
        &'a self,
        _t: &'a Target,
    ) -> BoxFuture<'a, Result<ClusterSnapshot, AdapterError>> {
        let s = self.snapshot.lock().unwrap().clone();
        Box::pin(async move { Ok(s) })
    }
    fn execute<'a>(
        &'a self,
        action: &'a Action,
        target: &'a Target,
        _alert: &'a Labels,
    ) -> BoxFuture<'a, Result<String, AdapterError>> {
        self.executed.lock().unwrap().push(Executed {
            action: action.name().to_owned(),
            target: target.clone(),
            at: Instant::now(),
        });
        self.changed();
        Box::pin(async move { Ok(format!("{} {}", action.name(), target.key())) })
    }
    fn verify<'a>(
        &'a self,
        _a: &'a Action,
        t: &'a Target,
        _timeout: Duration,
    ) -> BoxFuture<'a, Result<(), AdapterError>> {
        let fail = *self.fail_verify.lock().unwrap();
        Box::pin(async move {
            if fail {
                Err(AdapterError::new(
                    "timeout",
                    format!("{} did not become healthy", t.key()),
                ))
            } else {
                Ok(())
            }
        })
    }
    fn record<'a>(&'a self, r: &'a AuditRecord) -> BoxFuture<'a, Result<(), AdapterError>> {
        self.records.lock().unwrap().push(r.clone());
        self.changed();
        Box::pin(async { Ok(()) })
    }
}
