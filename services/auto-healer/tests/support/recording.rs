//! A platform adapter that records what it is asked to do, when, and answers healthy: the far
//! end for intake tests and the intake benchmark (acting on a real cluster is what the kube
//! mock tests cover).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use auto_healer::core::{self, ClusterSnapshot, Labels, Target};
use auto_healer::platform::{AdapterError, AuditRecord, Platform};
use auto_healer::policy::Action;
use futures::future::BoxFuture;

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
    /// Notified on every `execute`.
    pub executed_signal: Arc<tokio::sync::Notify>,
}

#[allow(dead_code)]
impl Recording {
    pub fn executed(&self) -> Vec<Executed> {
        self.executed.lock().unwrap().clone()
    }
    pub fn records(&self) -> Vec<AuditRecord> {
        self.records.lock().unwrap().clone()
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
        Box::pin(async { Ok(()) })
    }
}
