//! alert-storm: faults on every organ at once; the healer's guards (rate limit, cooldown) hold.

use std::collections::BTreeMap;

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::harness::{BRAIN, GATEWAY, HEART, Outcome, USERS, World, unix_to_rfc3339, until};

pub(super) async fn run(w: &World, policy: &StormLimits) -> Outcome {
    let mut o = Outcome::new("alert-storm", "faults on every organ at once");
    // Start on a fresh second so no earlier decision counts as part of the storm.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let since = unix_to_rfc3339(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs(),
    );
    let t_fault = Instant::now();
    inject(&mut o, w).await;
    let (first_decision, decisions) = watch(w, &since).await;
    // One action leaves an "acted" record, then "healed" or "failed": count the actions.
    let acted: Vec<&Value> = decisions
        .iter()
        .filter(|a| a["result"] == "acted")
        .collect();
    // Refusals: skipped by a guard, or escalated to people (flap stop, steps exhausted).
    let skipped: Vec<&Value> = decisions
        .iter()
        .filter(|a| a["result"] == "skipped" || a["result"] == "escalated")
        .collect();
    let mut guards: BTreeMap<String, usize> = BTreeMap::new();
    for s in &skipped {
        *guards
            .entry(s["guard"].as_str().unwrap_or("?").to_owned())
            .or_default() += 1;
    }
    o.mttd = first_decision.map(|t| t.duration_since(t_fault));
    o.detected_by = "health-monitor + Prometheus rules".into();
    o.figures.insert("decisions".into(), json!(decisions.len()));
    o.figures.insert("acted".into(), json!(acted.len()));
    o.figures.insert("skipped_by_guard".into(), json!(guards));
    o.expect(
        !decisions.is_empty(),
        "the healer recorded no decision during the storm",
    );
    o.expect(
        acted.len() <= policy.rate_limit,
        format!(
            "{} actions exceed the rate limit of {}",
            acted.len(),
            policy.rate_limit
        ),
    );
    o.expect(
        decisions.iter().all(|d| {
            d["result"] != "skipped" || d["guard"].as_str().is_some_and(|g| !g.is_empty())
        }),
        "a skipped decision does not name its guard",
    );
    o.action = format!(
        "{} acted, {} refused ({})",
        acted.len(),
        skipped.len(),
        guards
            .iter()
            .map(|(g, n)| format!("{g}: {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    w.clear_chaos().await;
    if let Some(t) = repair_leftovers(w).await {
        o.mttr = Some(t.duration_since(t_fault));
    }
    o.notifications = format!("{} email(s) in total so far", w.smtp.messages().len());
    o
}

/// The healer's limits the storm scenario checks against (from the scenario policy).
pub(super) struct StormLimits {
    pub(super) rate_limit: usize,
}

/// Faults on every organ at once.
async fn inject(o: &mut Outcome, w: &World) {
    for (port, body) in [
        (HEART, json!({"crash_after_s": 1})),
        (BRAIN, json!({"crash_after_s": 1})),
        (USERS, json!({"fail_readiness": true})),
        (GATEWAY, json!({"crash_after_s": 2})),
    ] {
        if let Err(e) = w.chaos(port, body).await {
            o.expect(false, format!("{e:#}"));
        }
    }
}

/// Watches the healer's decisions for 25 s: when the first came, and every decision since
/// `since`.
async fn watch(w: &World, since: &str) -> (Option<Instant>, Vec<Value>) {
    let mut first_decision = None;
    let watch_until = Instant::now() + Duration::from_secs(25);
    while Instant::now() < watch_until {
        if first_decision.is_none()
            && w.actions()
                .await
                .iter()
                .any(|a| a["at"].as_str().is_some_and(|at| at >= since))
        {
            first_decision = Some(Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let decisions: Vec<Value> = w
        .actions()
        .await
        .into_iter()
        .filter(|a| a["at"].as_str().is_some_and(|at| at >= since))
        .collect();
    (first_decision, decisions)
}

/// Repairs what the guards left broken so the run ends healthy: when every organ was ready.
async fn repair_leftovers(w: &World) -> Option<Instant> {
    if let Some(system) = &w.system {
        for name in ["heart", "brain"] {
            if !w
                .ok(if name == "heart" { HEART } else { BRAIN }, "/healthz")
                .await
            {
                let _ = system.launcher.restart(name).await;
            }
        }
    }
    let healthy = until(
        Duration::from_secs(30),
        Duration::from_millis(200),
        || async {
            let mut all = true;
            for port in [HEART, BRAIN, USERS, GATEWAY] {
                all &= w.ok(port, "/readyz").await;
            }
            all.then_some(())
        },
    )
    .await;
    healthy.map(|(_, t)| t)
}
