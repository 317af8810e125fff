//! The engine: takes alerts off the queue, asks the core, carries decisions out through the
//! platform, verifies, escalates, and audits every decision (platform record — a Kubernetes
//! Event —, structured log line, span, metrics, history).

use std::collections::{BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use alertmanager::{AlertmanagerClient, PostableAlert};
use prometheus::{Histogram, HistogramOpts, IntCounterVec, IntGauge, Opts, Registry};
use time::OffsetDateTime;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::core::{self, AlertFacts, Decision, Guard, Input, Outcome, Plan, Target, Trigger};
use crate::platform::{AuditRecord, Leadership, Platform, StateStore, StoreError, update_state};
use crate::policy::{Action, Policy};

/// Buckets of `auto_healer_time_to_heal_seconds`.
pub const HEAL_BUCKETS: &[f64] = &[
    1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0,
];

/// The engine's metrics.
#[derive(Debug, Clone)]
pub struct Metrics {
    /// `auto_healer_actions_total{action,result}`.
    pub actions: IntCounterVec,
    /// `auto_healer_time_to_heal_seconds`: alert start to verified healthy.
    pub time_to_heal: Histogram,
    /// `auto_healer_skips_total{guard}`.
    pub skips: IntCounterVec,
    /// `auto_healer_queue_depth`.
    pub queue_depth: IntGauge,
}

impl Metrics {
    /// Creates and registers the metrics on `registry`.
    pub fn new(registry: &Registry) -> prometheus::Result<Self> {
        let actions = IntCounterVec::new(
            Opts::new(
                "auto_healer_actions_total",
                "Remediation decisions by action and result (success, failure, skipped, dry_run, escalated).",
            ),
            &["action", "result"],
        )?;
        let time_to_heal = Histogram::with_opts(
            HistogramOpts::new(
                "auto_healer_time_to_heal_seconds",
                "Time from an alert's start to its target verified healthy after remediation.",
            )
            .buckets(HEAL_BUCKETS.to_vec()),
        )?;
        let skips = IntCounterVec::new(
            Opts::new(
                "auto_healer_skips_total",
                "Alerts left alone, by the guard that blocked.",
            ),
            &["guard"],
        )?;
        let queue_depth =
            IntGauge::new("auto_healer_queue_depth", "Alerts waiting to be processed.")?;
        registry.register(Box::new(actions.clone()))?;
        registry.register(Box::new(time_to_heal.clone()))?;
        registry.register(Box::new(skips.clone()))?;
        registry.register(Box::new(queue_depth.clone()))?;
        Ok(Self {
            actions,
            time_to_heal,
            skips,
            queue_depth,
        })
    }
}

/// Recent audit records, bounded, newest first.
#[derive(Debug, Clone)]
pub struct History {
    records: Arc<Mutex<VecDeque<AuditRecord>>>,
    capacity: usize,
}

impl History {
    /// A history of at most `capacity` records.
    pub fn new(capacity: usize) -> Self {
        Self {
            records: Arc::new(Mutex::new(VecDeque::with_capacity(capacity))),
            capacity: capacity.max(1),
        }
    }

    fn push(&self, r: AuditRecord) {
        if let Ok(mut q) = self.records.lock() {
            if q.len() == self.capacity {
                q.pop_back();
            }
            q.push_front(r);
        }
    }

    /// The newest `limit` records, newest first.
    pub fn recent(&self, limit: usize) -> Vec<AuditRecord> {
        self.records
            .lock()
            .map(|q| q.iter().take(limit).cloned().collect())
            .unwrap_or_default()
    }
}

/// Everything the engine works with.
pub struct Engine {
    /// The policy.
    pub policy: Arc<Policy>,
    /// Where actions go.
    pub platform: Arc<dyn Platform>,
    /// Where guard state lives.
    pub store: Arc<dyn StateStore>,
    /// Who may act.
    pub leader: Arc<dyn Leadership>,
    /// Decide and record only.
    pub dry_run: bool,
    /// Metrics.
    pub metrics: Metrics,
    /// Recent decisions.
    pub history: History,
    /// Where RemediationFailed goes.
    pub alertmanager: Option<AlertmanagerClient>,
    in_flight: Mutex<BTreeSet<String>>,
    decide_lock: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("dry_run", &self.dry_run)
            .finish()
    }
}

/// The outcome of handling one alert: the last decision's audit result (`healed`, `failed`,
/// `skipped`, `dry-run`, `escalated`).
pub type Handled = AuditRecord;

impl Engine {
    /// An engine over these parts.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        policy: Arc<Policy>,
        platform: Arc<dyn Platform>,
        store: Arc<dyn StateStore>,
        leader: Arc<dyn Leadership>,
        dry_run: bool,
        metrics: Metrics,
        history: History,
        alertmanager: Option<AlertmanagerClient>,
    ) -> Self {
        Self {
            policy,
            platform,
            store,
            leader,
            dry_run,
            metrics,
            history,
            alertmanager,
            in_flight: Mutex::new(BTreeSet::new()),
            decide_lock: tokio::sync::Mutex::new(()),
        }
    }

    /// Processes queued alerts until `shutdown`, at most `parallel` at once.
    pub async fn run(
        self: Arc<Self>,
        mut rx: mpsc::Receiver<AlertFacts>,
        parallel: usize,
        shutdown: CancellationToken,
    ) {
        let slots = Arc::new(tokio::sync::Semaphore::new(parallel.max(1)));
        loop {
            let alert = tokio::select! {
                () = shutdown.cancelled() => break,
                a = rx.recv() => match a { Some(a) => a, None => break },
            };
            self.metrics.queue_depth.set(rx.len() as i64);
            let Ok(permit) = slots.clone().acquire_owned().await else {
                break;
            };
            let engine = self.clone();
            tokio::spawn(async move {
                engine.handle(alert).await;
                drop(permit);
            });
        }
    }

    fn in_flight(&self) -> BTreeSet<String> {
        self.in_flight.lock().map(|s| s.clone()).unwrap_or_default()
    }

    fn set_in_flight(&self, subject: &str, on: bool) {
        if let Ok(mut s) = self.in_flight.lock() {
            if on {
                s.insert(subject.to_owned());
            } else {
                s.remove(subject);
            }
        }
    }

    /// Handles one alert to the end: decide, act, verify, escalate on failure, audit each step.
    /// Returns the last audit record.
    pub async fn handle(&self, alert: AlertFacts) -> Handled {
        let platform = self.platform.kind();
        let subject = core::subject_of(&alert.labels, platform);
        let alertname = alert.labels.get("alertname").cloned().unwrap_or_default();
        let span = tracing::info_span!("remediate", alertname = %alertname, subject = %subject, otel.kind = "internal");
        self.handle_inner(alert, subject, alertname)
            .instrument(span)
            .await
    }

    async fn handle_inner(&self, alert: AlertFacts, subject: String, alertname: String) -> Handled {
        let platform = self.platform.kind();
        let mut trigger = Trigger::Alert;
        let mut conflicts = 0;
        let base = AuditRecord {
            at: OffsetDateTime::now_utc(),
            alertname,
            subject: subject.clone(),
            result: String::new(),
            action: None,
            target: None,
            rule: None,
            step: None,
            guard: None,
            message: String::new(),
        };
        loop {
            let lock = self.decide_lock.lock().await;
            let now = OffsetDateTime::now_utc();
            if !self.leader.is_leader() {
                return self
                    .skip(
                        &base,
                        Guard::Leader,
                        "this instance is not the leader".into(),
                        None,
                        None,
                    )
                    .await;
            }
            let (state, version) = match self.store.load().await {
                Ok(s) => s,
                Err(e) => {
                    return self
                        .failed(&base, None, format!("cannot load guard state: {e}"))
                        .await;
                }
            };
            let snapshot = match core::plan(&alert, &self.policy, &state, now, platform) {
                Ok(p) => match self.platform.snapshot(&p.target).await {
                    Ok(s) => s,
                    Err(e) => {
                        return self
                            .failed(
                                &base,
                                Some(&p),
                                format!("cannot look at {}: {e}", p.target.key()),
                            )
                            .await;
                    }
                },
                Err(_) => core::ClusterSnapshot::default(),
            };
            let in_flight = self.in_flight();
            let decision = core::decide(Input {
                alert: &alert,
                policy: &self.policy,
                state: &state,
                cluster: &snapshot,
                in_flight: &in_flight,
                now,
                trigger,
                platform,
                dry_run: self.dry_run,
            });
            let plan = match decision {
                Decision::Skip {
                    guard,
                    reason,
                    target,
                } => {
                    let rule = self.policy.rule_for(&alert.labels).map(|r| r.name.clone());
                    return self.skip(&base, guard, reason, target, rule).await;
                }
                Decision::DryRun(plan) => {
                    drop(lock);
                    let r = self.audit(
                        &base,
                        "dry-run",
                        Some(&plan),
                        None,
                        format!(
                            "dry run: would {} {} (rule {}, step {})",
                            plan.action.name(),
                            plan.target.key(),
                            plan.rule,
                            plan.step
                        ),
                    );
                    self.metrics
                        .actions
                        .with_label_values(&[plan.action.name(), "dry_run"])
                        .inc();
                    return self.emit(r).await;
                }
                Decision::Escalate {
                    guard,
                    reason,
                    rule,
                } => {
                    drop(lock);
                    return self.escalate(&base, &alert, guard, reason, rule).await;
                }
                Decision::Act(plan) => plan,
            };
            let decided_at = now;
            // Save the attempt against the version the decision was made on: if someone else
            // wrote in between, decide again on fresh state.
            let mut next = state.clone();
            next.record_act(
                &subject,
                &plan,
                decided_at,
                self.policy.guards.cooldown_secs,
            );
            next.prune(decided_at, 7 * 24 * 3600);
            match self.store.save(&next, version.as_deref()).await {
                Ok(()) => {}
                Err(StoreError::Conflict) if conflicts < 8 => {
                    conflicts += 1;
                    continue;
                }
                Err(e) => {
                    return self
                        .failed(&base, Some(&plan), format!("cannot save guard state: {e}"))
                        .await;
                }
            }
            self.set_in_flight(&subject, true);
            drop(lock);

            let result = match self
                .platform
                .execute(&plan.action, &plan.target, &alert.labels)
                .await
            {
                Ok(detail) => {
                    let acted = self.audit(
                        &base,
                        "acted",
                        Some(&plan),
                        None,
                        format!("{detail} (rule {}, step {})", plan.rule, plan.step),
                    );
                    self.emit(acted).await;
                    self.verify(&alert, &plan).await.map(|()| detail)
                }
                Err(e) => Err(format!("{} failed: {e}", plan.action.name())),
            };
            self.set_in_flight(&subject, false);
            let outcome = if result.is_ok() {
                Outcome::Healed
            } else {
                Outcome::Failed
            };
            if let Err(e) = update_state(self.store.as_ref(), |s| {
                s.set_outcome(&subject, decided_at, outcome)
            })
            .await
            {
                tracing::error!(error = %e, "cannot record the outcome in the guard state");
            }
            match result {
                Ok(detail) => {
                    self.metrics
                        .actions
                        .with_label_values(&[plan.action.name(), "success"])
                        .inc();
                    let heal = (OffsetDateTime::now_utc() - alert.starts_at)
                        .as_seconds_f64()
                        .max(0.0);
                    self.metrics.time_to_heal.observe(heal);
                    let r = self.audit(
                        &base,
                        "healed",
                        Some(&plan),
                        None,
                        format!("{detail}; healthy again ({heal:.1} s after the alert started)"),
                    );
                    return self.emit(r).await;
                }
                Err(e) => {
                    self.metrics
                        .actions
                        .with_label_values(&[plan.action.name(), "failure"])
                        .inc();
                    let r = self.audit(&base, "failed", Some(&plan), None, e);
                    self.emit(r).await;
                    trigger = Trigger::Retry;
                }
            }
        }
    }

    async fn verify(&self, alert: &AlertFacts, plan: &Plan) -> Result<(), String> {
        let health = health_target(plan, alert);
        let timeout = Duration::from_secs(self.policy.guards.verify_timeout_secs);
        self.platform
            .verify(&plan.action, &health, timeout)
            .await
            .map_err(|e| format!("verification failed: {e}"))
    }

    fn audit(
        &self,
        base: &AuditRecord,
        result: &str,
        plan: Option<&Plan>,
        guard: Option<Guard>,
        message: String,
    ) -> AuditRecord {
        AuditRecord {
            at: OffsetDateTime::now_utc(),
            result: result.to_owned(),
            action: plan.map(|p| p.action.name().to_owned()),
            target: plan.map(|p| p.target.clone()),
            rule: plan.map(|p| p.rule.clone()),
            step: plan.map(|p| p.step),
            guard: guard.map(|g| g.as_str().to_owned()),
            message,
            ..base.clone()
        }
    }

    async fn skip(
        &self,
        base: &AuditRecord,
        guard: Guard,
        reason: String,
        target: Option<Target>,
        rule: Option<String>,
    ) -> Handled {
        self.metrics
            .skips
            .with_label_values(&[guard.as_str()])
            .inc();
        self.metrics
            .actions
            .with_label_values(&["none", "skipped"])
            .inc();
        let r = AuditRecord {
            at: OffsetDateTime::now_utc(),
            result: "skipped".into(),
            target,
            rule,
            guard: Some(guard.as_str().to_owned()),
            message: reason,
            ..base.clone()
        };
        self.emit(r).await
    }

    async fn failed(&self, base: &AuditRecord, plan: Option<&Plan>, message: String) -> Handled {
        let action = plan.map_or("none", |p| p.action.name());
        self.metrics
            .actions
            .with_label_values(&[action, "failure"])
            .inc();
        let r = self.audit(base, "failed", plan, None, message);
        self.emit(r).await
    }

    async fn escalate(
        &self,
        base: &AuditRecord,
        alert: &AlertFacts,
        guard: Option<Guard>,
        reason: String,
        rule: String,
    ) -> Handled {
        self.metrics
            .actions
            .with_label_values(&["notify", "escalated"])
            .inc();
        if let Some(g) = guard {
            self.metrics.skips.with_label_values(&[g.as_str()]).inc();
        }
        let target = core::workload_of(&alert.labels).or_else(|| {
            let l = &alert.labels;
            match (l.get("namespace"), l.get("pod"), l.get("node")) {
                (Some(ns), Some(pod), _) => Some(Target::Pod {
                    namespace: ns.clone(),
                    name: pod.clone(),
                }),
                (_, _, Some(node)) => Some(Target::Node { name: node.clone() }),
                _ => None,
            }
        });
        let mut message = format!("remediation stopped: {reason}");
        if !self.dry_run {
            match self.notify(alert, guard, &reason, &rule).await {
                Ok(true) => message.push_str("; RemediationFailed sent to Alertmanager"),
                Ok(false) => message.push_str("; no ALERTMANAGER_URL: RemediationFailed not sent"),
                Err(e) => {
                    tracing::error!(error = %e, kind = e.metric_label(), "cannot post RemediationFailed");
                    message.push_str(&format!("; posting RemediationFailed failed: {e}"));
                }
            }
        }
        let r = AuditRecord {
            at: OffsetDateTime::now_utc(),
            result: "escalated".into(),
            target,
            rule: Some(rule),
            guard: guard.map(|g| g.as_str().to_owned()),
            message,
            ..base.clone()
        };
        self.emit(r).await
    }

    /// Posts a `RemediationFailed` alert; `Ok(false)` when no Alertmanager is configured.
    async fn notify(
        &self,
        alert: &AlertFacts,
        guard: Option<Guard>,
        reason: &str,
        rule: &str,
    ) -> Result<bool, alertmanager::Error> {
        let Some(client) = &self.alertmanager else {
            return Ok(false);
        };
        let l = &alert.labels;
        let mut labels: Vec<(String, String)> = vec![
            ("alertname".into(), "RemediationFailed".into()),
            ("severity".into(), "critical".into()),
            ("rule".into(), rule.to_owned()),
            (
                "original_alertname".into(),
                l.get("alertname").cloned().unwrap_or_default(),
            ),
            ("service".into(), crate::SERVICE.to_owned()),
        ];
        if let Some(g) = guard {
            labels.push(("guard".into(), g.as_str().to_owned()));
        }
        for key in [
            "namespace",
            "pod",
            "node",
            "workload",
            "workload_kind",
            "finding",
        ] {
            if let Some(v) = l.get(key).filter(|v| !v.is_empty()) {
                labels.push((key.to_owned(), v.clone()));
            }
        }
        if let Some(s) = l.get("service").filter(|s| s.as_str() != crate::SERVICE) {
            labels.push(("target_service".into(), s.clone()));
        }
        let subject = core::subject_of(l, self.platform.kind());
        let posted = PostableAlert::new(labels)
            .with_annotation("summary", format!("auto-healer could not repair {subject}"))
            .with_annotation("description", reason.to_owned())
            .with_starts_at(OffsetDateTime::now_utc());
        client.post_alerts(&[posted]).await.map(|()| true)
    }

    async fn emit(&self, r: AuditRecord) -> Handled {
        tracing::info!(
            result = %r.result,
            alertname = %r.alertname,
            subject = %r.subject,
            action = r.action.as_deref().unwrap_or(""),
            target = r.target.as_ref().map(Target::key).unwrap_or_default(),
            rule = r.rule.as_deref().unwrap_or(""),
            step = r.step.map(|s| s as i64).unwrap_or(-1),
            guard = r.guard.as_deref().unwrap_or(""),
            dry_run = self.dry_run,
            "remediation decision: {}",
            r.message
        );
        if let Err(e) = self.platform.record(&r).await {
            tracing::warn!(error = %e, "cannot record the decision on the platform");
        }
        self.history.push(r.clone());
        r
    }
}

/// What must be healthy after `plan`: the workload a deleted pod belongs to (the pod itself
/// is gone), otherwise the target.
pub fn health_target(plan: &Plan, alert: &AlertFacts) -> Target {
    match (&plan.action, &plan.target) {
        (Action::DeletePod, Target::Pod { .. }) => {
            core::workload_of(&alert.labels).unwrap_or_else(|| plan.target.clone())
        }
        _ => plan.target.clone(),
    }
}
