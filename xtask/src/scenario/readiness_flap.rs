//! readiness-flap: brain is never ready however often it restarts; the healer stops after the
//! policy's flap limit and tells people, once.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::configs::FLAP_MAX_REPAIRS;
use super::harness::{BRAIN, Outcome, World, now_rfc3339, until};
use crate::launcher::wait_http_ok;
use crate::up::System;

pub(super) async fn run(w: &World) -> Outcome {
    let mut o = Outcome::new(
        "readiness-flap",
        "brain: /chaos fail_readiness=true, re-applied after every restart",
    );
    let since = now_rfc3339();
    let Some(system) = &w.system else {
        return o;
    };
    // Notifications about brain giving up that came before this scenario do not count.
    let gave_up_mails = |w: &World| {
        w.smtp
            .messages()
            .into_iter()
            .filter(|m| m.text.contains("RemediationFailed") && m.text.contains("brain"))
            .count()
    };
    let mails_before = gave_up_mails(w);
    let t_fault = Instant::now();
    let Flap {
        repairs,
        detected,
        escalated,
    } = drive(w, system, &since).await;
    if let Some(t) = detected {
        o.mttd = Some(t.duration_since(t_fault));
        o.detected_by = "health-monitor (service-not-ready)".into();
    }
    o.expect(detected.is_some(), "no service-not-ready finding for brain");
    o.expect(repairs >= 1, "brain was never restarted");
    // Every attempt counts: at most flap_max_repairs restarts, whatever their verification
    // said (the scenario policy's limit is 2).
    o.expect(
        repairs <= FLAP_MAX_REPAIRS,
        format!("brain was restarted {repairs} times (flap limit {FLAP_MAX_REPAIRS})"),
    );
    o.figures
        .insert("repairs_before_flap_stop".into(), json!(repairs));
    let results = healer_results(w, &since).await;
    o.figures.insert("healer_results".into(), json!(results));
    o.action = match &escalated {
        Some(e) => format!(
            "{repairs} restart(s), then left alone: {} ({})",
            e["result"].as_str().unwrap_or("?"),
            e["guard"].as_str().unwrap_or("notify step")
        ),
        None => format!("{repairs} restart(s), flap stop never engaged"),
    };
    o.expect(escalated.is_some(), "flap stop did not engage within 150 s");
    let says_so = check_recovery(&mut o, w, gave_up_mails, mails_before).await;
    check_told_once(&mut o, w, &since).await;
    o.notifications = if says_so {
        "RemediationFailed / flap-stop email received".into()
    } else {
        "none about the flap stop".into()
    };
    o
}

/// What happened while the fault was kept up.
struct Flap {
    /// Restarts of brain seen.
    repairs: usize,
    /// When the health-monitor first reported brain not ready.
    detected: Option<Instant>,
    /// The healer's decision to stop repairing (escalated, or a flap guard), if it came.
    escalated: Option<Value>,
}

/// Keeps brain unready (re-injecting the fault after every restart) until the healer stops
/// repairing it, or 150 s pass.
async fn drive(w: &World, system: &System, since: &str) -> Flap {
    let mut repairs = 0;
    let mut last_pid = system.launcher.pid("brain");
    let mut detected = None;
    // The fault persists across repairs: re-inject it each time heart comes back.
    // Generous: verification failures and the rate limit stretch the repairs out.
    let deadline = Instant::now() + Duration::from_secs(150);
    let mut escalated = None;
    while Instant::now() < deadline {
        let _ = w.chaos(BRAIN, json!({"fail_readiness": true})).await;
        if detected.is_none()
            && w.findings()
                .await
                .iter()
                .any(|f| f["finding"] == "service-not-ready" && f["service"] == "brain")
        {
            detected = Some(Instant::now());
        }
        let pid = system.launcher.pid("brain");
        if pid.is_some() && pid != last_pid {
            repairs += 1;
            last_pid = pid;
            let _ = wait_http_ok(BRAIN, "/healthz", Duration::from_secs(10)).await;
            continue;
        }
        let decisions = w.actions_about("brain", since).await;
        if let Some(e) = decisions.iter().find(|a| {
            a["result"] == "escalated" || a["guard"].as_str().is_some_and(|g| g.contains("flap"))
        }) {
            escalated = Some(e.clone());
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Flap {
        repairs,
        detected,
        escalated,
    }
}

/// What the healer made of each alert about brain, in order (why repairs did or did not count).
async fn healer_results(w: &World, since: &str) -> Vec<String> {
    w.actions_about("brain", since)
        .await
        .iter()
        .map(|a| {
            format!(
                "{}{}",
                a["result"].as_str().unwrap_or("?"),
                a["guard"]
                    .as_str()
                    .map(|g| format!(" ({g})"))
                    .unwrap_or_default()
            )
        })
        .collect()
}

/// Without the fault brain is ready again, and people were told the healer gave up on it.
/// Returns whether they were.
async fn check_recovery(
    o: &mut Outcome,
    w: &World,
    gave_up_mails: impl Fn(&World) -> usize,
    mails_before: usize,
) -> bool {
    w.clear_chaos().await;
    let healthy = w
        .ready_again(BRAIN, Duration::from_secs(20), Duration::from_millis(100))
        .await;
    o.expect(
        healthy.is_some(),
        "brain not ready after the fault was removed",
    );
    let says_so = until(
        Duration::from_secs(20),
        Duration::from_millis(250),
        || async { (gave_up_mails(w) > mails_before).then_some(()) },
    )
    .await;
    o.expect(
        says_so.is_some(),
        "no RemediationFailed notification about brain",
    );
    says_so.is_some()
}

/// Told once: later alerts about brain (Alertmanager repeats every 10 s) are left alone
/// without a second escalation.
async fn check_told_once(o: &mut Outcome, w: &World, since: &str) {
    tokio::time::sleep(Duration::from_secs(12)).await;
    let after: Vec<Value> = w.actions_about("brain", since).await;
    let escalations = after.iter().filter(|a| a["result"] == "escalated").count();
    o.figures.insert("escalations".into(), json!(escalations));
    o.expect(
        escalations == 1,
        format!("the healer escalated brain {escalations} times (expected once)"),
    );
}
