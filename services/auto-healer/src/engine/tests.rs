//! Property: over random timelines the engine never loops.
//!
//! A timeline is a random sequence of: an alert fires (or repeats) for one of three workloads,
//! a late repeat arrives for an alert Alertmanager no longer holds, time passes, the healer
//! restarts from its persisted state (also in the middle of a verification), leadership moves
//! away or comes back. Each action succeeds or fails; each verification heals, fails or times
//! out (and a timeout takes the verification timeout off the clock). The real [`Engine`] runs
//! the timeline over a real [`FileStore`], with a scripted platform, a scripted clock and a
//! scripted Alertmanager. After every event the test asserts:
//!
//! 1. never more than K actions on one subject in any flap window (K = `flap_max_repairs`);
//! 2. never more actions than the rate limit in any rate window;
//! 3. never an action while a guard holds: not as a follower, not on an alert Alertmanager does
//!    not hold, not while a recorded stop holds;
//! 4. every stop escalated exactly once (one `escalated` record inside each stop, none outside),
//!    and a confirmed alert on a subject at its limit always finds a stop in force;
//! 5. the state round-trips through a restart unchanged, and every action is in it (no count
//!    lost).
//!
//! [`the_property_catches_counting_only_healed_attempts`] turns on the mutation the healer once
//! had (only healed attempts count toward the flap guard) and asserts the same property fails.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;

use futures::future::BoxFuture;
use proptest::prelude::*;
use proptest::test_runner::{Config as RunnerConfig, TestCaseError, TestError, TestRunner};
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

use super::*;
use crate::core::{ClusterSnapshot, GuardState, Labels, PlatformKind as Kind, mutation};
use crate::local::FileStore;
use crate::platform::{AdapterError, AlertSource, LeaderFlag};

const START: OffsetDateTime = datetime!(2026-11-01 12:00 UTC);
const WORKLOADS: usize = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verify {
    Healed,
    Failed,
    TimedOut,
    /// The healer process dies while verifying (restarts from persisted state).
    Crash,
    /// Leadership moves away while verifying.
    LoseLeadership,
}

#[derive(Debug, Clone)]
enum Event {
    /// The alert about `workload` fires or repeats; each action it leads to succeeds or not and
    /// verifies as scripted (the last entry repeats).
    Fire {
        workload: usize,
        pod: bool,
        script: Vec<(bool, Verify)>,
    },
    /// The alert resolves in Alertmanager.
    Resolve {
        workload: usize,
    },
    /// A late delivery of an alert Alertmanager does not hold (a replay or a forgery).
    Stale {
        workload: usize,
    },
    Advance {
        secs: u32,
    },
    Restart,
    Leader(bool),
}

#[derive(Debug, Clone)]
struct Timeline {
    k: u32,
    flap_window: u64,
    cooldown: u64,
    rate_max: u32,
    rate_window: u64,
    escalation_window: u64,
    verify_timeout: u64,
    actions: Vec<&'static str>,
    events: Vec<Event>,
}

fn verify_strategy() -> impl Strategy<Value = Verify> {
    prop_oneof![
        3 => Just(Verify::Healed),
        3 => Just(Verify::Failed),
        3 => Just(Verify::TimedOut),
        1 => Just(Verify::Crash),
        1 => Just(Verify::LoseLeadership),
    ]
}

fn event_strategy() -> impl Strategy<Value = Event> {
    prop_oneof![
        8 => (0..WORKLOADS, prop::bool::weighted(0.8), prop::collection::vec((prop::bool::weighted(0.85), verify_strategy()), 1..4))
            .prop_map(|(workload, pod, script)| Event::Fire { workload, pod, script }),
        1 => (0..WORKLOADS).prop_map(|workload| Event::Resolve { workload }),
        1 => (0..WORKLOADS).prop_map(|workload| Event::Stale { workload }),
        5 => prop_oneof![1u32..30, 30u32..300, 300u32..1200].prop_map(|secs| Event::Advance { secs }),
        1 => Just(Event::Restart),
        1 => any::<bool>().prop_map(Event::Leader),
    ]
}

fn timeline_strategy() -> impl Strategy<Value = Timeline> {
    (
        (1u32..5, 60u64..900, prop_oneof![Just(0u64), 1u64..120]),
        (1u32..12, 60u64..900),
        (prop_oneof![Just(0u64), 1u64..30, 30u64..900], 5u64..120),
        prop::collection::vec(
            prop_oneof![
                Just("delete-pod"),
                Just("rollout-restart"),
                Just("rollback"),
                Just("notify")
            ],
            1..6,
        ),
        prop::collection::vec(event_strategy(), 1..60),
    )
        .prop_map(
            |(
                (k, flap_window, cooldown),
                (rate_max, rate_window),
                (escalation_window, verify_timeout),
                actions,
                events,
            )| Timeline {
                k,
                flap_window,
                cooldown,
                rate_max,
                rate_window,
                escalation_window,
                verify_timeout,
                actions,
                events,
            },
        )
}

impl Timeline {
    fn policy(&self) -> Policy {
        let actions: Vec<String> = self
            .actions
            .iter()
            .map(|a| format!("{{kind: {a}}}"))
            .collect();
        Policy::from_yaml(&format!(
            "guards:\n  cooldown: {}s\n  rate_limit_max_actions: {}\n  rate_limit_window: {}s\n  \
             flap_max_repairs: {}\n  flap_window: {}s\n  verify_timeout: {}s\n  max_concurrent_actions: 2\n\
             rules:\n- name: crashing\n  match: {{remediation: restart-pod}}\n  escalation_window: {}s\n  actions: [{}]\n",
            self.cooldown,
            self.rate_max,
            self.rate_window,
            self.k,
            self.flap_window,
            self.verify_timeout,
            self.escalation_window,
            actions.join(", ")
        ))
        .expect("a valid generated policy")
    }
}

fn alert(workload: usize, pod: bool) -> AlertFacts {
    let mut labels: Labels = [
        ("alertname", "PodCrashLooping".to_owned()),
        ("namespace", "organism".to_owned()),
        ("workload", format!("w{workload}")),
        ("remediation", "restart-pod".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    if pod {
        labels.insert("pod".into(), format!("w{workload}-abc"));
    }
    AlertFacts {
        labels,
        starts_at: START,
    }
}

fn subject(workload: usize) -> String {
    format!("deployment/organism/w{workload}")
}

/// One action the platform was asked to carry out.
#[derive(Debug, Clone)]
struct Acted {
    /// Order among actions and audit records.
    seq: u64,
    subject: String,
    at: OffsetDateTime,
    leader: bool,
    confirmed: bool,
}

/// The world around the engine: clock, platform, Alertmanager, leadership.
struct World {
    clock: Arc<Mutex<OffsetDateTime>>,
    leader: LeaderFlag,
    active: Mutex<BTreeSet<usize>>,
    script: Mutex<Vec<(bool, Verify)>>,
    acted: Mutex<Vec<Acted>>,
    records: Mutex<Vec<(u64, AuditRecord)>>,
    seq: std::sync::atomic::AtomicU64,
    crash: tokio::sync::Notify,
    verify_timeout: u64,
}

impl World {
    fn now(&self) -> OffsetDateTime {
        *self.clock.lock().unwrap()
    }

    fn seq(&self) -> u64 {
        self.seq.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
    }

    fn next_outcome(&self) -> (bool, Verify) {
        let mut s = self.script.lock().unwrap();
        if s.len() > 1 { s.remove(0) } else { s[0] }
    }
}

fn workload_of(target: &Target) -> Option<usize> {
    let name = match target {
        Target::Pod { name, .. } => name.split('-').next()?,
        Target::Workload { name, .. } => name.as_str(),
        _ => return None,
    };
    name.strip_prefix('w')?.parse().ok()
}

struct SimPlatform(Arc<World>);

impl Platform for SimPlatform {
    fn kind(&self) -> Kind {
        Kind::Kubernetes
    }
    fn snapshot<'a>(
        &'a self,
        _t: &'a Target,
    ) -> BoxFuture<'a, Result<ClusterSnapshot, AdapterError>> {
        Box::pin(async { Ok(ClusterSnapshot::default()) })
    }
    fn execute<'a>(
        &'a self,
        _a: &'a Action,
        t: &'a Target,
        _l: &'a Labels,
    ) -> BoxFuture<'a, Result<String, AdapterError>> {
        let w = &self.0;
        let workload = workload_of(t).expect("a sim target");
        assert!(
            w.acted.lock().unwrap().len() < 10_000,
            "runaway: 10000 actions in one timeline"
        );
        let (ok, _) = w.script.lock().unwrap()[0];
        w.acted.lock().unwrap().push(Acted {
            seq: w.seq(),
            subject: subject(workload),
            at: w.now(),
            leader: w.leader.is_leader(),
            confirmed: w.active.lock().unwrap().contains(&workload),
        });
        Box::pin(async move {
            if ok {
                Ok("done".into())
            } else {
                let _ = self.0.next_outcome();
                Err(AdapterError::new("api", "refused"))
            }
        })
    }
    fn verify<'a>(
        &'a self,
        _a: &'a Action,
        _t: &'a Target,
        _d: StdDuration,
    ) -> BoxFuture<'a, Result<(), AdapterError>> {
        Box::pin(async move {
            let w = &self.0;
            match w.next_outcome().1 {
                Verify::Healed => Ok(()),
                Verify::Failed => Err(AdapterError::new("api", "still not ready")),
                Verify::TimedOut => {
                    *w.clock.lock().unwrap() += Duration::seconds(w.verify_timeout as i64);
                    Err(AdapterError::new("timeout", "not healthy in time"))
                }
                Verify::LoseLeadership => {
                    w.leader.set(false);
                    Err(AdapterError::new("api", "still not ready"))
                }
                Verify::Crash => {
                    w.crash.notify_one();
                    futures::future::pending().await
                }
            }
        })
    }
    fn record<'a>(&'a self, r: &'a AuditRecord) -> BoxFuture<'a, Result<(), AdapterError>> {
        self.0
            .records
            .lock()
            .unwrap()
            .push((self.0.seq(), r.clone()));
        Box::pin(async { Ok(()) })
    }
}

struct SimSource(Arc<World>);

impl AlertSource for SimSource {
    fn is_active<'a>(&'a self, labels: &'a Labels) -> BoxFuture<'a, Result<bool, String>> {
        let w: usize = labels["workload"][1..].parse().unwrap();
        let active = self.0.active.lock().unwrap().contains(&w);
        Box::pin(async move { Ok(active) })
    }
}

fn engine(world: &Arc<World>, dir: &std::path::Path, policy: &Policy) -> Arc<Engine> {
    let clock = world.clock.clone();
    Arc::new(
        Engine::new(
            Arc::new(policy.clone()),
            Arc::new(SimPlatform(world.clone())),
            Arc::new(FileStore::new(dir)),
            Arc::new(world.leader.clone()),
            false,
            Metrics::new(&prometheus::Registry::new()).unwrap(),
            History::new(50),
            None,
        )
        .with_alert_source(Some(Arc::new(SimSource(world.clone()))))
        .with_clock(Arc::new(move || *clock.lock().unwrap())),
    )
}

/// A stop as recorded in the guard state: (subject, at, until).
type StopSeen = (String, OffsetDateTime, OffsetDateTime);

async fn load(dir: &std::path::Path) -> GuardState {
    FileStore::new(dir).load().await.unwrap().0
}

/// Runs `t` and checks the five properties after every event.
async fn run_timeline(t: &Timeline) -> Result<(), TestCaseError> {
    let policy = t.policy();
    let dir = tempfile::tempdir_in("/dev/shm")
        .or_else(|_| tempfile::tempdir())
        .unwrap();
    let world = Arc::new(World {
        clock: Arc::new(Mutex::new(START)),
        leader: LeaderFlag::new(true),
        active: Mutex::new(BTreeSet::new()),
        script: Mutex::new(vec![(true, Verify::Healed)]),
        acted: Mutex::new(Vec::new()),
        records: Mutex::new(Vec::new()),
        seq: std::sync::atomic::AtomicU64::new(0),
        crash: tokio::sync::Notify::new(),
        verify_timeout: t.verify_timeout,
    });
    let mut eng = engine(&world, dir.path(), &policy);
    let mut stops: Vec<StopSeen> = Vec::new();
    for (i, event) in t.events.iter().enumerate() {
        let mut restart = false;
        match event {
            Event::Fire {
                workload,
                pod,
                script,
            } => {
                restart = fire(t, &world, &eng, dir.path(), (*workload, *pod, script), i).await?;
            }
            Event::Resolve { workload } => {
                world.active.lock().unwrap().remove(workload);
            }
            Event::Stale { workload } => {
                world.active.lock().unwrap().remove(workload);
                *world.script.lock().unwrap() = vec![(true, Verify::Healed)];
                eng.handle(alert(*workload, true)).await;
            }
            Event::Advance { secs } => {
                *world.clock.lock().unwrap() += Duration::seconds(i64::from(*secs));
            }
            Event::Restart => restart = true,
            Event::Leader(on) => world.leader.set(*on),
        }
        // Stops recorded so far (the state keeps ended stops until pruned; record each once).
        let state = load(dir.path()).await;
        for (s, r) in &state.subjects {
            if let Some(stop) = &r.stop
                && !stops.iter().any(|(ss, at, _)| ss == s && *at == stop.at)
            {
                stops.push((s.clone(), stop.at, stop.until));
            }
        }
        if restart {
            drop(eng);
            let after = load(dir.path()).await;
            prop_assert_eq!(
                &after,
                &state,
                "event {}: the state changed across a restart",
                i
            );
            eng = engine(&world, dir.path(), &policy);
        }
        check(t, &world, &state, &stops, i)?;
    }
    Ok(())
}

/// The alert about `workload` fires, its actions going as `script` says: the engine handles it
/// (or a crash in the middle of a verification ends the handling), and one alert never loops
/// and a confirmed alert on a subject at its limit finds a stop in force. Returns whether the
/// healer crashed.
async fn fire(
    t: &Timeline,
    world: &World,
    eng: &Engine,
    dir: &std::path::Path,
    (workload, pod, script): (usize, bool, &Vec<(bool, Verify)>),
    i: usize,
) -> Result<bool, TestCaseError> {
    world.active.lock().unwrap().insert(workload);
    *world.script.lock().unwrap() = script.clone();
    let a = alert(workload, pod);
    let before = world.now();
    let leader_before = world.leader.is_leader();
    let (model_count, _) = counts(world, &subject(workload), before, t.flap_window);
    let acted_before = world.acted.lock().unwrap().len();
    let handled = tokio::time::timeout(StdDuration::from_secs(2), async {
        tokio::select! {
            biased;
            _ = eng.handle(a) => false,
            () = world.crash.notified() => true,
        }
    })
    .await;
    prop_assert!(
        handled.is_ok(),
        "event {i}: the alert was not handled: the engine is stuck"
    );
    let restart = handled.unwrap_or(false);
    // One alert never loops: each retry takes a later step.
    let acted_now = world.acted.lock().unwrap().len() - acted_before;
    prop_assert!(
        acted_now <= t.actions.len(),
        "event {i}: one alert led to {acted_now} actions ({} steps)",
        t.actions.len()
    );
    // Liveness of the flap stop: a confirmed alert on a subject at its limit finds
    // a stop in force (escalated now, or earlier).
    if leader_before && model_count >= t.k as usize {
        let s = load(dir).await;
        let holds = s
            .subjects
            .get(&subject(workload))
            .and_then(|r| r.stop.as_ref())
            .is_some_and(|s| s.holds(before));
        prop_assert!(
            holds,
            "event {i}: {} had {model_count} actions in the window (K = {}) and no stop holds",
            subject(workload),
            t.k
        );
    }
    Ok(restart)
}

/// Actions on `subject` in the half-open window `(now - window, now]`, and in total.
fn counts(world: &World, subject: &str, now: OffsetDateTime, window: u64) -> (usize, usize) {
    let acted = world.acted.lock().unwrap();
    let on: Vec<&Acted> = acted.iter().filter(|a| a.subject == subject).collect();
    let recent = on
        .iter()
        .filter(|a| a.at > now - Duration::seconds(window as i64) && a.at <= now)
        .count();
    (recent, on.len())
}

/// The five properties after event `i`.
fn check(
    t: &Timeline,
    world: &World,
    state: &GuardState,
    stops: &[StopSeen],
    i: usize,
) -> Result<(), TestCaseError> {
    let acted = world.acted.lock().unwrap().clone();
    let records = world.records.lock().unwrap().clone();
    for a in &acted {
        check_limits(t, &acted, a, i)?;
        check_no_action_under_a_guard(a, &records, stops, i)?;
    }
    check_each_stop_escalated_once(&records, stops, i)?;
    check_no_action_lost(world, state, i)
}

/// 1. At most K actions per subject in any flap window; 2. the rate limit; both over the window
///    ending at action `a`.
fn check_limits(t: &Timeline, acted: &[Acted], a: &Acted, i: usize) -> Result<(), TestCaseError> {
    let in_window = acted
        .iter()
        .filter(|b| {
            b.subject == a.subject
                && b.at > a.at - Duration::seconds(t.flap_window as i64)
                && b.at <= a.at
        })
        .count();
    prop_assert!(
        in_window <= t.k as usize,
        "event {i}: {in_window} actions on {} within {} s (K = {}): {:?}",
        a.subject,
        t.flap_window,
        t.k,
        acted
            .iter()
            .filter(|b| b.subject == a.subject)
            .map(|b| (b.at - START).whole_seconds())
            .collect::<Vec<_>>()
    );
    let global = acted
        .iter()
        .filter(|b| b.at > a.at - Duration::seconds(t.rate_window as i64) && b.at <= a.at)
        .count();
    prop_assert!(
        global <= t.rate_max as usize,
        "event {i}: {global} actions within {} s (limit {})",
        t.rate_window,
        t.rate_max
    );
    Ok(())
}

/// 3. Action `a` was not taken while a guard held: as a follower, on an alert Alertmanager does
///    not hold, or while a recorded stop held.
fn check_no_action_under_a_guard(
    a: &Acted,
    records: &[(u64, AuditRecord)],
    stops: &[StopSeen],
    i: usize,
) -> Result<(), TestCaseError> {
    prop_assert!(a.leader, "event {i}: acted as a follower");
    prop_assert!(
        a.confirmed,
        "event {i}: acted on an alert Alertmanager does not hold"
    );
    for (s, at, until) in stops {
        // The stop is in force from its escalation on (found below, exactly one).
        let escalated = records.iter().find(|(_, r)| {
            r.result == "escalated" && &r.subject == s && r.at >= *at && r.at < *until
        });
        if let Some((e, _)) = escalated {
            prop_assert!(
                !(s == &a.subject && a.seq > *e && a.at < *until),
                "event {i}: acted on {s} at +{} s while its stop (+{} s .. +{} s) held",
                (a.at - START).whole_seconds(),
                (*at - START).whole_seconds(),
                (*until - START).whole_seconds()
            );
        }
    }
    Ok(())
}

/// 4. Every stop escalated exactly once; no escalation outside a stop.
fn check_each_stop_escalated_once(
    records: &[(u64, AuditRecord)],
    stops: &[StopSeen],
    i: usize,
) -> Result<(), TestCaseError> {
    for (s, at, until) in stops {
        let n = records
            .iter()
            .filter(|(_, r)| {
                r.result == "escalated" && &r.subject == s && r.at >= *at && r.at < *until
            })
            .count();
        prop_assert_eq!(
            n,
            1,
            "event {}: the stop of {} at +{} s was escalated {} times",
            i,
            s,
            (*at - START).whole_seconds(),
            n
        );
    }
    for (_, r) in records.iter().filter(|(_, r)| r.result == "escalated") {
        prop_assert!(
            stops
                .iter()
                .any(|(s, at, until)| s == &r.subject && *at <= r.at && r.at < *until),
            "event {i}: an escalation of {} at +{} s belongs to no recorded stop",
            r.subject,
            (r.at - START).whole_seconds()
        );
    }
    Ok(())
}

/// 5. Every action is counted in the persisted state, none lost (nothing is old enough to be
///    pruned in a timeline).
fn check_no_action_lost(world: &World, state: &GuardState, i: usize) -> Result<(), TestCaseError> {
    for w in 0..WORKLOADS {
        let s = subject(w);
        let (_, total) = counts(world, &s, world.now(), 0);
        let recorded = state.subjects.get(&s).map_or(0, |r| r.attempts.len());
        prop_assert_eq!(
            recorded,
            total,
            "event {}: {} actions on {} but {} attempts in the state",
            i,
            total,
            s,
            recorded
        );
    }
    Ok(())
}

/// A runtime on paused time: the engine's only timer here is the 2 s bound on handling one
/// alert, which then runs out only when the engine has nothing left to do (stuck), never
/// because the machine is slow.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: sim_cases(), max_shrink_iters: 20, ..ProptestConfig::default() })]
    #[test]
    fn the_healer_never_loops_over_random_timelines(t in timeline_strategy()) {
        runtime().block_on(run_timeline(&t))?;
    }
}

#[test]
fn the_property_catches_counting_only_healed_attempts() {
    mutation::set_healed_only(true);
    let mut runner = TestRunner::new(RunnerConfig {
        cases: 512,
        failure_persistence: None,
        ..RunnerConfig::default()
    });
    let result = runner.run(&timeline_strategy(), |t| {
        runtime().block_on(run_timeline(&t))
    });
    mutation::set_healed_only(false);
    match result {
        Err(TestError::Fail(why, minimal)) => {
            println!(
                "the mutation (only healed attempts count) is caught: {why}\nminimal timeline: {minimal:#?}"
            );
        }
        other => panic!("the property did not catch the mutation: {other:?}"),
    }
}

fn sim_cases() -> u32 {
    std::env::var("SIM_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(192)
}

/// Three steps (delete-pod, rollout-restart, notify) in a 10 m window, no cooldown.
fn escalating_policy() -> Policy {
    Policy::from_yaml(
        "guards: {cooldown: 0s, flap_max_repairs: 10}\nrules:\n- name: crashing\n  match: {remediation: restart-pod}\n  \
         escalation_window: 10m\n  actions: [{kind: delete-pod}, {kind: rollout-restart}, {kind: notify}]\n",
    )
    .unwrap()
}

/// A world for workload 0 whose every action heals.
fn healing_world() -> Arc<World> {
    Arc::new(World {
        clock: Arc::new(Mutex::new(START)),
        leader: LeaderFlag::new(true),
        active: Mutex::new([0].into()),
        script: Mutex::new(vec![(true, Verify::Healed)]),
        acted: Mutex::new(Vec::new()),
        records: Mutex::new(Vec::new()),
        seq: std::sync::atomic::AtomicU64::new(0),
        crash: tokio::sync::Notify::new(),
        verify_timeout: 5,
    })
}

/// A dry-run engine handles the same alert four times, 30 s apart; returns each result, action
/// and step.
async fn dry_run_four_times(
    world: &Arc<World>,
    dir: &std::path::Path,
    policy: &Policy,
) -> Vec<(String, Option<String>, Option<usize>)> {
    let clock = world.clock.clone();
    let dry = Engine::new(
        Arc::new(policy.clone()),
        Arc::new(SimPlatform(world.clone())),
        Arc::new(FileStore::new(dir)),
        Arc::new(world.leader.clone()),
        true,
        Metrics::new(&prometheus::Registry::new()).unwrap(),
        History::new(50),
        None,
    )
    .with_clock(Arc::new(move || *clock.lock().unwrap()));
    let mut seen = Vec::new();
    for _ in 0..4 {
        *world.clock.lock().unwrap() += Duration::seconds(30);
        let r = dry.handle(alert(0, true)).await;
        seen.push((r.result.clone(), r.action.clone(), r.step));
    }
    seen
}

#[tokio::test]
async fn dry_run_advances_the_escalation_as_the_real_run_would() {
    let (world, dir) = (healing_world(), tempfile::tempdir().unwrap());
    let seen = dry_run_four_times(&world, dir.path(), &escalating_policy()).await;
    assert_eq!(
        seen,
        [
            ("dry-run".into(), Some("delete-pod".into()), Some(0)),
            ("dry-run".into(), Some("rollout-restart".into()), Some(1)),
            ("escalated".into(), None, None),
            ("skipped".into(), None, None),
        ]
    );
    let records = world.records.lock().unwrap().clone();
    assert!(
        records[2]
            .1
            .message
            .starts_with("dry run: remediation stopped"),
        "{}",
        records[2].1.message
    );
}

#[tokio::test]
async fn a_dry_run_acts_on_nothing() {
    let (world, dir) = (healing_world(), tempfile::tempdir().unwrap());
    dry_run_four_times(&world, dir.path(), &escalating_policy()).await;
    assert!(world.acted.lock().unwrap().is_empty());
}

#[tokio::test]
async fn the_real_run_is_not_held_back_by_what_a_dry_run_decided() {
    let (world, dir) = (healing_world(), tempfile::tempdir().unwrap());
    let policy = escalating_policy();
    dry_run_four_times(&world, dir.path(), &policy).await;
    let real = engine(&world, dir.path(), &policy);
    let r = real.handle(alert(0, true)).await;
    assert_eq!((r.result.as_str(), r.step), ("healed", Some(0)));
}
