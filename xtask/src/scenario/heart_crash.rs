//! heart-crash: heart crashes; the health-monitor sees it down, the healer restarts it, people
//! get one firing and one resolved email.

use std::time::Duration;

use serde_json::json;

use super::harness::{HEART, Outcome, World, first_action, now_rfc3339, secs, until};

pub(super) async fn run(w: &World) -> Outcome {
    let mut o = Outcome::new("heart-crash", "heart: /chaos crash_after_s=1");
    let since = now_rfc3339();
    if let Err(e) = w.chaos(HEART, json!({"crash_after_s": 1})).await {
        o.expect(false, format!("{e:#}"));
        return o;
    }
    let Some((_, t_fault)) = until(
        Duration::from_secs(5),
        Duration::from_millis(20),
        || async { (!w.ok(HEART, "/healthz").await).then_some(()) },
    )
    .await
    else {
        o.expect(false, "heart did not crash");
        return o;
    };
    let detected = until(
        Duration::from_secs(10),
        Duration::from_millis(50),
        || async {
            w.findings()
                .await
                .into_iter()
                .find(|f| f["finding"] == "service-down" && f["service"] == "heart")
        },
    )
    .await;
    if let Some((_, t)) = &detected {
        o.mttd = Some(t.duration_since(t_fault));
        o.detected_by = "health-monitor (service-down)".into();
    }
    o.expect(
        detected.is_some(),
        "no service-down finding for heart within 10 s",
    );
    let healthy = w
        .ready_again(HEART, Duration::from_secs(20), Duration::from_millis(50))
        .await;
    if let Some(t) = healthy {
        o.mttr = Some(t.duration_since(t_fault));
    }
    o.expect(healthy.is_some(), "heart not healthy again within 20 s");
    o.expect(
        o.mttr.is_some_and(|d| d < Duration::from_secs(5)),
        format!("crash → healthy took {} (target < 5 s)", secs(o.mttr)),
    );
    let acted = w.actions_about("heart", &since).await;
    o.action = first_action(&acted);
    o.expect(o.action != "none", "the healer recorded no action on heart");
    let mails = until(
        Duration::from_secs(30),
        Duration::from_millis(200),
        || async {
            let (f, r) = w.mails("ServiceDown");
            (f >= 1 && r >= 1).then_some((f, r))
        },
    )
    .await;
    let (f, r) = w.mails("ServiceDown");
    o.notifications = format!("{f} firing, {r} resolved (email)");
    o.expect(
        mails.is_some(),
        "expected one firing and one resolved email about heart",
    );
    o
}
