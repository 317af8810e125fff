//! The engine: takes alerts off the queue, asks the core, carries decisions out through the
//! platform, verifies, escalates, and audits every decision (platform record — a Kubernetes
//! Event —, structured log line, span, metrics, history).

use std::collections::{BTreeSet, VecDeque};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use alertmanager::{AlertmanagerClient, PostableAlert};
use prometheus::{Histogram, HistogramOpts, IntCounterVec, IntGauge, Opts, Registry};
use time::OffsetDateTime;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::core::{self, AlertFacts, Decision, Guard, Input, Outcome, Plan, Stop, Target, Trigger};
use crate::platform::{
    AlertSource, AuditRecord, Leadership, Platform, StateStore, StoreError, update_state,
};
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
    /// `auto_healer_policy_reloads_total{result}`: `success`, or `failure` (the old policy stays).
    pub policy_reloads: IntCounterVec,
    /// `auto_healer_alerts_ignored_total{reason}`: alerts accepted at intake but not queued
    /// (`not-actionable`, `duplicate`).
    pub ignored: IntCounterVec,
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
        let policy_reloads = IntCounterVec::new(
            Opts::new(
                "auto_healer_policy_reloads_total",
                "Policy file reloads by result (success, failure: the old policy stays in force).",
            ),
            &["result"],
        )?;
        let ignored = IntCounterVec::new(
            Opts::new(
                "auto_healer_alerts_ignored_total",
                "Alerts accepted at intake but not queued, by reason (not-actionable, duplicate).",
            ),
            &["reason"],
        )?;
        registry.register(Box::new(policy_reloads.clone()))?;
        registry.register(Box::new(ignored.clone()))?;
        registry.register(Box::new(actions.clone()))?;
        registry.register(Box::new(time_to_heal.clone()))?;
        registry.register(Box::new(skips.clone()))?;
        registry.register(Box::new(queue_depth.clone()))?;
        Ok(Self {
            actions,
            time_to_heal,
            skips,
            queue_depth,
            policy_reloads,
            ignored,
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

/// The engine's clock (wall time); tests pass their own.
pub type Clock = Arc<dyn Fn() -> OffsetDateTime + Send + Sync>;

/// Everything the engine works with.
pub struct Engine {
    policy: RwLock<Arc<Policy>>,
    /// Where actions go.
    pub platform: Arc<dyn Platform>,
    /// Where guard state lives.
    pub store: Arc<dyn StateStore>,
    /// Who may act.
    pub leader: Arc<dyn Leadership>,
    /// Dry run set by the environment (overrides the policy's `guards.dry_run`).
    dry_run: Option<bool>,
    /// Metrics.
    pub metrics: Metrics,
    /// Recent decisions.
    pub history: History,
    /// Where RemediationFailed goes.
    pub alertmanager: Option<AlertmanagerClient>,
    /// Where alerts are confirmed before acting (Alertmanager when configured).
    source: Option<Arc<dyn AlertSource>>,
    clock: Clock,
    in_flight: Mutex<BTreeSet<String>>,
    decide_lock: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("dry_run", &self.dry_run())
            .finish()
    }
}

/// The outcome of handling one alert: the last decision's audit result (`healed`, `failed`,
/// `skipped`, `dry-run`, `escalated`).
pub type Handled = AuditRecord;

/// How many times a decision is taken again because another writer changed the guard state in
/// between, before the handling fails.
const MAX_STATE_CONFLICTS: u32 = 8;

/// Guard-state records older than this are pruned on every save (a week).
const PRUNE_AFTER_SECS: u64 = 7 * 24 * 3600;

/// The guard state one decision round loaded, and the round's settings.
#[derive(Clone, Copy)]
struct Loaded<'a> {
    stored: &'a core::GuardState,
    version: Option<&'a str>,
    now: OffsetDateTime,
    dry_run: bool,
    may_retry: bool,
}

/// An escalation decided by the core (see [`Decision::Escalate`]).
struct Escalation {
    guard: Option<Guard>,
    reason: String,
    rule: String,
    until: OffsetDateTime,
    again: Option<OffsetDateTime>,
}

/// A saved attempt, marked in flight, to carry out.
struct Attempt {
    plan: Plan,
    policy: Arc<Policy>,
    decided_at: OffsetDateTime,
}

/// What one decision round ends in.
enum Round {
    /// The alert is handled (skipped, escalated, failed, or reported as a dry run).
    Done(Handled),
    /// Another writer changed the guard state in between: decide again on fresh state.
    Conflict,
    /// The attempt is saved: carry it out.
    Act(Attempt),
}

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
        let source = alertmanager
            .clone()
            .map(|c| Arc::new(c.with_timeout(Duration::from_secs(3))) as Arc<dyn AlertSource>);
        Self {
            policy: RwLock::new(policy),
            platform,
            store,
            leader,
            dry_run: Some(dry_run),
            metrics,
            history,
            alertmanager,
            source,
            clock: Arc::new(OffsetDateTime::now_utc),
            in_flight: Mutex::new(BTreeSet::new()),
            decide_lock: tokio::sync::Mutex::new(()),
        }
    }

    /// Dry run as the environment set it (`None`: follow the policy's `guards.dry_run`, also
    /// after a reload).
    #[must_use]
    pub fn with_dry_run_override(mut self, dry_run: Option<bool>) -> Self {
        self.dry_run = dry_run;
        self
    }

    /// Confirms alerts with `source` before acting (`None`: trust the payload; only when no
    /// Alertmanager is configured).
    #[must_use]
    pub fn with_alert_source(mut self, source: Option<Arc<dyn AlertSource>>) -> Self {
        self.source = source;
        self
    }

    /// Reads the time from `clock` (tests drive time).
    #[must_use]
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// The policy in force.
    pub fn policy(&self) -> Arc<Policy> {
        self.policy
            .read()
            .map(|p| p.clone())
            .unwrap_or_else(|e| e.into_inner().clone())
    }

    /// Puts `policy` in force for every decision from now on.
    pub fn set_policy(&self, policy: Policy) {
        let policy = Arc::new(policy);
        match self.policy.write() {
            Ok(mut p) => *p = policy,
            Err(e) => *e.into_inner() = policy,
        }
    }

    /// Whether this engine only decides and records (environment first, then the policy).
    pub fn dry_run(&self) -> bool {
        self.dry_run.unwrap_or_else(|| self.policy().guards.dry_run)
    }

    fn now(&self) -> OffsetDateTime {
        (self.clock)()
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
        let base = AuditRecord {
            at: self.now(),
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
        if let Some(refused) = self.confirm(&alert, &base).await {
            return refused;
        }
        let mut trigger = Trigger::Alert;
        let mut conflicts = 0;
        loop {
            let may_retry = conflicts < MAX_STATE_CONFLICTS;
            let attempt = match self.decide_round(&alert, &base, trigger, may_retry).await {
                Round::Done(handled) => return handled,
                Round::Conflict => {
                    conflicts += 1;
                    continue;
                }
                Round::Act(attempt) => attempt,
            };
            match self.carry_out(&alert, &base, &attempt).await {
                Some(healed) => return healed,
                None => {
                    trigger = Trigger::Retry {
                        after: attempt.plan.step,
                    }
                }
            }
        }
    }

    /// The payload is not trusted: Alertmanager must hold the alert, active, with exactly these
    /// labels (asked once per alert, before anything is decided). `Some` is the refusal.
    async fn confirm(&self, alert: &AlertFacts, base: &AuditRecord) -> Option<Handled> {
        let source = self.source.as_ref()?;
        let rule = self
            .policy()
            .rule_for(&alert.labels)
            .map(|r| r.name.clone())?;
        let reason = match source.is_active(&alert.labels).await {
            Ok(true) => return None,
            Ok(false) => "Alertmanager holds no active alert with exactly these labels (resolved, \
                          silenced, or never sent by it)"
                .to_owned(),
            Err(e) => format!("cannot confirm the alert with Alertmanager: {e}"),
        };
        Some(
            self.skip(base, Guard::Unconfirmed, reason, None, Some(rule))
                .await,
        )
    }

    /// One decision under the decide lock, on the guard state as loaded: skip, escalate, or
    /// save the attempt (dry run: report it) and mark the subject in flight.
    async fn decide_round(
        &self,
        alert: &AlertFacts,
        base: &AuditRecord,
        trigger: Trigger,
        may_retry: bool,
    ) -> Round {
        let lock = self.decide_lock.lock().await;
        let now = self.now();
        let policy = self.policy();
        let dry_run = self.dry_run();
        if !self.leader.is_leader() {
            let reason = "this instance is not the leader".into();
            return Round::Done(self.skip(base, Guard::Leader, reason, None, None).await);
        }
        let (stored, version) = match self.store.load().await {
            Ok(s) => s,
            Err(e) => {
                let message = format!("cannot load guard state: {e}");
                return Round::Done(self.failed(base, None, message).await);
            }
        };
        let loaded = Loaded {
            stored: &stored,
            version: version.as_deref(),
            now,
            dry_run,
            may_retry,
        };
        let decision = match self.decide_on(alert, &policy, &loaded, trigger, base).await {
            Ok(d) => d,
            Err(failed) => return Round::Done(failed),
        };
        match decision {
            Decision::Skip {
                guard,
                reason,
                target,
            } => {
                let rule = policy.rule_for(&alert.labels).map(|r| r.name.clone());
                Round::Done(self.skip(base, guard, reason, target, rule).await)
            }
            Decision::Escalate {
                guard,
                reason,
                rule,
                until,
                again,
            } => {
                let escalation = Escalation {
                    guard,
                    reason,
                    rule,
                    until,
                    again,
                };
                self.stop_and_escalate(lock, alert, base, &loaded, escalation)
                    .await
            }
            Decision::DryRun(plan) | Decision::Act(plan) => {
                self.begin_attempt(lock, base, &loaded, plan, policy).await
            }
        }
    }

    /// The core's decision on the guard state as loaded and the cluster around the plan's
    /// target (`Err` when the cluster cannot be looked at: the handling failed).
    async fn decide_on(
        &self,
        alert: &AlertFacts,
        policy: &Policy,
        loaded: &Loaded<'_>,
        trigger: Trigger,
        base: &AuditRecord,
    ) -> Result<Decision, Handled> {
        let Loaded { now, dry_run, .. } = *loaded;
        // A dry run decides on its own record, exactly as the real run would on its.
        let state = loaded.stored.view(dry_run);
        let snapshot = self.look(alert, policy, &state, now, trigger, base).await?;
        let in_flight = self.in_flight();
        Ok(core::decide(Input {
            alert,
            policy,
            state: &state,
            cluster: &snapshot,
            in_flight: &in_flight,
            now,
            trigger,
            platform: self.platform.kind(),
            dry_run,
        }))
    }

    /// A plan decided: the attempt is saved, then a dry run reports it, a real run marks the
    /// subject in flight; either way the decide lock is released.
    async fn begin_attempt(
        &self,
        lock: tokio::sync::MutexGuard<'_, ()>,
        base: &AuditRecord,
        loaded: &Loaded<'_>,
        plan: Plan,
        policy: Arc<Policy>,
    ) -> Round {
        if let Err(round) = self.save_attempt(base, loaded, &plan, &policy).await {
            return round;
        }
        if loaded.dry_run {
            drop(lock);
            return Round::Done(self.report_dry_run(base, &plan).await);
        }
        self.set_in_flight(&base.subject, true);
        drop(lock);
        Round::Act(Attempt {
            plan,
            policy,
            decided_at: loaded.now,
        })
    }

    /// An escalation decided: the stop is recorded (unless it was already, and only its
    /// notification is due again) before anyone is told, so it is told once, even across
    /// restarts and leader changes; then the decide lock is released and the stop is told.
    async fn stop_and_escalate(
        &self,
        lock: tokio::sync::MutexGuard<'_, ()>,
        alert: &AlertFacts,
        base: &AuditRecord,
        loaded: &Loaded<'_>,
        escalation: Escalation,
    ) -> Round {
        let Escalation {
            guard,
            reason,
            rule,
            until,
            again,
        } = escalation;
        let Loaded { now, dry_run, .. } = *loaded;
        let at = match again {
            Some(at) => at,
            None => {
                let stop = Stop {
                    guard,
                    reason: reason.clone(),
                    rule: rule.clone(),
                    at: now,
                    until,
                    notified: dry_run || self.alertmanager.is_none(),
                };
                let record = |s: &mut core::GuardState| {
                    s.view_mut(dry_run).record_stop(&base.subject, stop);
                    s.prune(now, PRUNE_AFTER_SECS);
                };
                let saved = self.save_changed(loaded.stored, loaded.version, record);
                let saved = self.saved_or_round(saved.await, base, None, loaded.may_retry);
                if let Err(round) = saved.await {
                    return round;
                }
                now
            }
        };
        drop(lock);
        let handled = self
            .escalate(base, alert, guard, reason, rule, at, until, dry_run)
            .await;
        Round::Done(handled)
    }

    /// Saves the attempt against the version the decision was made on: if someone else wrote
    /// in between, the round ends in a conflict and the decision is taken again on fresh state.
    async fn save_attempt(
        &self,
        base: &AuditRecord,
        loaded: &Loaded<'_>,
        plan: &Plan,
        policy: &Policy,
    ) -> Result<(), Round> {
        let Loaded { now, dry_run, .. } = *loaded;
        let subject = base.subject.as_str();
        let record = |s: &mut core::GuardState| {
            let view = s.view_mut(dry_run);
            view.record_act(subject, plan, now, policy.guards.cooldown);
            if dry_run {
                view.set_outcome(subject, now, Outcome::DryRun);
            }
            s.prune(now, PRUNE_AFTER_SECS);
        };
        let saved = self
            .save_changed(loaded.stored, loaded.version, record)
            .await;
        self.saved_or_round(saved, base, Some(plan), loaded.may_retry)
            .await
    }

    /// The cluster as the plan's target shows it (empty when the alert plans nothing).
    async fn look(
        &self,
        alert: &AlertFacts,
        policy: &Policy,
        state: &core::GuardState,
        now: OffsetDateTime,
        trigger: Trigger,
        base: &AuditRecord,
    ) -> Result<core::ClusterSnapshot, Handled> {
        let Ok(p) = core::plan(alert, policy, state, now, self.platform.kind(), trigger) else {
            return Ok(core::ClusterSnapshot::default());
        };
        match self.platform.snapshot(&p.target).await {
            Ok(s) => Ok(s),
            Err(e) => {
                let message = format!("cannot look at {}: {e}", p.target.key());
                Err(self.failed(base, Some(&p), message).await)
            }
        }
    }

    /// Saves `stored` changed by `change` against `version`.
    async fn save_changed(
        &self,
        stored: &core::GuardState,
        version: Option<&str>,
        change: impl FnOnce(&mut core::GuardState),
    ) -> Result<(), StoreError> {
        let mut next = stored.clone();
        change(&mut next);
        self.store.save(&next, version).await
    }

    /// A save's result as the round goes on: a conflict decides again (a bounded number of
    /// times), any other failure ends the handling.
    async fn saved_or_round(
        &self,
        saved: Result<(), StoreError>,
        base: &AuditRecord,
        plan: Option<&Plan>,
        may_retry: bool,
    ) -> Result<(), Round> {
        match saved {
            Ok(()) => Ok(()),
            Err(StoreError::Conflict) if may_retry => Err(Round::Conflict),
            Err(e) => {
                let message = format!("cannot save guard state: {e}");
                Err(Round::Done(self.failed(base, plan, message).await))
            }
        }
    }

    async fn report_dry_run(&self, base: &AuditRecord, plan: &Plan) -> Handled {
        let mut message = format!(
            "dry run: would {} {} (rule {}, step {})",
            plan.action.name(),
            plan.target.key(),
            plan.rule,
            plan.step
        );
        passed_over_note(&mut message, plan);
        let r = self.audit(base, "dry-run", Some(plan), None, message);
        self.metrics
            .actions
            .with_label_values(&[plan.action.name(), "dry_run"])
            .inc();
        self.emit(r).await
    }

    /// Acts, verifies, records the outcome and audits it: `Some` when healed, `None` when the
    /// step failed (the next round decides the retry).
    async fn carry_out(
        &self,
        alert: &AlertFacts,
        base: &AuditRecord,
        attempt: &Attempt,
    ) -> Option<Handled> {
        let Attempt {
            plan,
            policy,
            decided_at,
        } = attempt;
        let result = match self
            .platform
            .execute(&plan.action, &plan.target, &alert.labels)
            .await
        {
            Ok(detail) => {
                let mut message = format!("{detail} (rule {}, step {})", plan.rule, plan.step);
                passed_over_note(&mut message, plan);
                let acted = self.audit(base, "acted", Some(plan), None, message);
                self.emit(acted).await;
                self.verify(alert, plan, policy).await.map(|()| detail)
            }
            Err(e) => Err(format!("{} failed: {e}", plan.action.name())),
        };
        let outcome = if result.is_ok() {
            Outcome::Healed
        } else {
            Outcome::Failed
        };
        if let Err(e) = update_state(self.store.as_ref(), |s| {
            s.set_outcome(&base.subject, *decided_at, outcome)
        })
        .await
        {
            tracing::error!(error = %e, "cannot record the outcome in the guard state");
        }
        self.set_in_flight(&base.subject, false);
        let action = plan.action.name();
        match result {
            Ok(detail) => {
                self.metrics
                    .actions
                    .with_label_values(&[action, "success"])
                    .inc();
                let heal = (self.now() - alert.starts_at).as_seconds_f64().max(0.0);
                self.metrics.time_to_heal.observe(heal);
                let message =
                    format!("{detail}; healthy again ({heal:.1} s after the alert started)");
                let r = self.audit(base, "healed", Some(plan), None, message);
                Some(self.emit(r).await)
            }
            Err(e) => {
                self.metrics
                    .actions
                    .with_label_values(&[action, "failure"])
                    .inc();
                let r = self.audit(base, "failed", Some(plan), None, e);
                self.emit(r).await;
                None
            }
        }
    }

    async fn verify(&self, alert: &AlertFacts, plan: &Plan, policy: &Policy) -> Result<(), String> {
        let health = health_target(plan, alert);
        let timeout = policy.guards.verify_timeout;
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
            at: self.now(),
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
            at: self.now(),
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

    #[allow(clippy::too_many_arguments)]
    async fn escalate(
        &self,
        base: &AuditRecord,
        alert: &AlertFacts,
        guard: Option<Guard>,
        reason: String,
        rule: String,
        stopped_at: OffsetDateTime,
        until: OffsetDateTime,
        dry_run: bool,
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
        let until_text = until
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        let mut message = format!(
            "remediation stopped ({}): {reason}; left alone until {until_text}",
            guard.map_or("notify step", Guard::as_str)
        );
        if dry_run {
            message.insert_str(0, "dry run: ");
            message.push_str("; RemediationFailed would be sent");
        } else {
            match self.notify(alert, guard, &reason, &rule, until).await {
                Ok(true) => {
                    message.push_str("; RemediationFailed sent to Alertmanager");
                    let subject = base.subject.clone();
                    if let Err(e) = update_state(self.store.as_ref(), |s| {
                        s.set_notified(&subject, stopped_at)
                    })
                    .await
                    {
                        tracing::error!(error = %e, "cannot record the notification in the guard state");
                    }
                }
                Ok(false) => message.push_str("; no ALERTMANAGER_URL: RemediationFailed not sent"),
                Err(e) => {
                    tracing::error!(error = %e, kind = e.metric_label(), "cannot post RemediationFailed");
                    message.push_str(&format!(
                        "; posting RemediationFailed failed ({e}): the next alert tries again"
                    ));
                }
            }
        }
        let r = AuditRecord {
            at: self.now(),
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
        until: OffsetDateTime,
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
            .with_starts_at(self.now())
            // Posted once per stop: it stays active exactly while the healer leaves the subject
            // alone.
            .with_ends_at(until);
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
            dry_run = self.dry_run(),
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

fn passed_over_note(message: &mut String, plan: &Plan) {
    if !plan.passed_over.is_empty() {
        message.push_str(&format!("; {}", plan.passed_over.join("; ")));
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

#[cfg(test)]
mod tests;
