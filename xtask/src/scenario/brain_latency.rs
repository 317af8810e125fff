//! brain-latency: brain slows down; the latency rule fires, people are told (with a link to the
//! slow traces) and told again when it clears; the healer does not restart for latency.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::harness::{BRAIN, Outcome, World, load, now_rfc3339, until};

pub(super) async fn run(w: &World) -> Outcome {
    let mut o = Outcome::new("brain-latency", "brain: /chaos latency_ms=800");
    let since = now_rfc3339();
    let busy = load(
        &w.http,
        format!("http://127.0.0.1:{BRAIN}/think?ms=1"),
        Duration::from_millis(50),
    );
    let t_fault = Instant::now();
    if let Err(e) = w.chaos(BRAIN, json!({"latency_ms": 800})).await {
        busy.abort();
        o.expect(false, format!("{e:#}"));
        return o;
    }
    let firing = o
        .wait_firing(w, "BrainLatencyHigh", t_fault, Duration::from_secs(30))
        .await;
    check_notified(&mut o, w, firing.as_ref().map(|(_, t)| *t)).await;
    busy.abort();
    w.clear_chaos().await;
    check_resolved(&mut o, w).await;
    let restarts: Vec<Value> = w
        .actions_about("brain", &since)
        .await
        .into_iter()
        .filter(|a| a["result"] == "acted" || a["result"] == "healed")
        .collect();
    o.action = if restarts.is_empty() {
        "none (latency is not fixed by restarting)".into()
    } else {
        format!("{} action(s)", restarts.len())
    };
    o.expect(restarts.is_empty(), "the healer acted on a latency alert");
    let (f, r) = w.mails("BrainLatencyHigh");
    o.notifications = format!("{f} firing, {r} resolved (email)");
    o
}

/// People get a firing email with a link to the slow traces within 2 s of the alert.
async fn check_notified(o: &mut Outcome, w: &World, t_alert: Option<Instant>) {
    let notified = until(
        Duration::from_secs(10),
        Duration::from_millis(100),
        || async {
            let texts = w.mail_texts("BrainLatencyHigh");
            texts.into_iter().find(|t| t.contains("== FIRING:"))
        },
    )
    .await;
    if let (Some((text, t)), Some(t_alert)) = (&notified, &t_alert) {
        o.figures.insert(
            "alert_to_notification_s".into(),
            json!(t.duration_since(*t_alert).as_secs_f64()),
        );
        o.expect(
            t.duration_since(*t_alert) < Duration::from_secs(2),
            format!(
                "alert → notification took {:.1} s (target < 2 s)",
                t.duration_since(*t_alert).as_secs_f64()
            ),
        );
        o.expect(
            text.contains("Traces (Grafana Explore, Tempo)"),
            "the notification has no link to the slow traces",
        );
    }
    o.expect(notified.is_some(), "no firing email for BrainLatencyHigh");
}

/// Under normal load again, the alert clears and people get a resolved email.
async fn check_resolved(o: &mut Outcome, w: &World) {
    let busy = load(
        &w.http,
        format!("http://127.0.0.1:{BRAIN}/think?ms=1"),
        Duration::from_millis(50),
    );
    let resolved = until(
        Duration::from_secs(60),
        Duration::from_millis(500),
        || async {
            w.am_alerts("BrainLatencyHigh")
                .await
                .is_empty()
                .then_some(())
        },
    )
    .await;
    busy.abort();
    o.expect(
        resolved.is_some(),
        "BrainLatencyHigh did not clear within 60 s of removing the fault",
    );
    let resolved_mail = until(
        Duration::from_secs(15),
        Duration::from_millis(200),
        || async { (w.mails("BrainLatencyHigh").1 >= 1).then_some(()) },
    )
    .await;
    o.expect(
        resolved_mail.is_some(),
        "no resolved email for BrainLatencyHigh",
    );
}
