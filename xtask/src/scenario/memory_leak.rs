//! memory-leak: heart leaks; the leak rule fires and the healer restarts heart.

use std::time::{Duration, Instant};

use serde_json::json;

use super::harness::{HEART, Outcome, World, first_action, now_rfc3339, until};

fn rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kib| kib / 1024.0)
}

pub(super) async fn run(w: &World) -> Outcome {
    let mut o = Outcome::new("memory-leak", "heart: /chaos leak_mb_per_s=16");
    let since = now_rfc3339();
    let Some(system) = &w.system else {
        return o;
    };
    let pid_before = system.launcher.pid("heart");
    let t_fault = Instant::now();
    if let Err(e) = w.chaos(HEART, json!({"leak_mb_per_s": 16})).await {
        o.expect(false, format!("{e:#}"));
        return o;
    }
    let firing = until(
        Duration::from_secs(40),
        Duration::from_millis(200),
        || async { w.am_alerts("ServiceMemoryLeak").await.into_iter().next() },
    )
    .await;
    let rss_at_detection = pid_before.and_then(rss_mib);
    if let Some((_, t)) = &firing {
        o.mttd = Some(t.duration_since(t_fault));
        o.detected_by = "Prometheus rule ServiceMemoryLeak".into();
        o.figures
            .insert("rss_mib_at_detection".into(), json!(rss_at_detection));
    }
    o.expect(
        firing.is_some(),
        "ServiceMemoryLeak did not fire within 40 s",
    );
    let restarted = until(
        Duration::from_secs(30),
        Duration::from_millis(100),
        || async {
            let pid = system.launcher.pid("heart");
            (pid.is_some() && pid != pid_before).then_some(pid)
        },
    )
    .await;
    o.expect(restarted.is_some(), "heart was not restarted");
    let healthy = w
        .ready_again(HEART, Duration::from_secs(20), Duration::from_millis(50))
        .await;
    if let Some(t) = healthy {
        o.mttr = Some(t.duration_since(t_fault));
    }
    if let Some((Some(pid), _)) = restarted {
        o.figures
            .insert("rss_mib_after_restart".into(), json!(rss_mib(pid)));
    }
    let acted = w.actions_about("heart", &since).await;
    o.action = first_action(&acted);
    o.expect(o.action != "none", "no healer action on the leaking heart");
    let resolved_mail = until(
        Duration::from_secs(40),
        Duration::from_millis(250),
        || async { (w.mails("ServiceMemoryLeak").1 >= 1).then_some(()) },
    )
    .await;
    o.expect(
        resolved_mail.is_some(),
        "no resolved email for ServiceMemoryLeak",
    );
    let (f, r) = w.mails("ServiceMemoryLeak");
    o.notifications = format!("{f} firing, {r} resolved (email)");
    o
}
