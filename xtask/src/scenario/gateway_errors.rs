//! gateway-errors: every gateway request fails; the error-ratio rule fires, escalates to the pager
//! when nobody acknowledges, and the signed ack link silences it.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::harness::{ALERTS, GATEWAY, Outcome, World, load, until};

pub(super) async fn run(w: &World) -> Outcome {
    let mut o = Outcome::new("gateway-errors", "api-gateway: /chaos error_rate=1.0");
    let busy = load(
        &w.http,
        format!("http://127.0.0.1:{GATEWAY}/user/123"),
        Duration::from_millis(20),
    );
    let t_fault = Instant::now();
    if let Err(e) = w.chaos(GATEWAY, json!({"error_rate": 1.0})).await {
        busy.abort();
        o.expect(false, format!("{e:#}"));
        return o;
    }
    let firing = o
        .wait_firing(w, "GatewayErrorRatioHigh", t_fault, Duration::from_secs(30))
        .await;
    let escalated = wait_escalation(&mut o, w, firing.as_ref()).await;
    // Acknowledge: a silence in Alertmanager, and no more notifications.
    acknowledge(&mut o, w, firing.as_ref(), escalated.as_ref()).await;
    let new_mail = check_quiet_after_ack(&mut o, w).await;
    busy.abort();
    w.clear_chaos().await;
    o.action = "none (errors are not fixed by restarting); escalated, then acknowledged".into();
    o.notifications = format!(
        "{} email(s), {} pager call(s), silence after ack",
        new_mail,
        w.pager
            .requests()
            .iter()
            .filter(|r| r.body_text().contains("GatewayErrorRatioHigh"))
            .count()
    );
    o
}

/// Not acknowledged: the pager (tier 2) hears about it after the escalation delay. Returns the
/// pager's request.
async fn wait_escalation(
    o: &mut Outcome,
    w: &World,
    firing: Option<&(Value, Instant)>,
) -> Option<(testbed::RecordedRequest, Instant)> {
    let escalated = until(
        Duration::from_secs(30),
        Duration::from_millis(200),
        || async {
            w.pager
                .requests()
                .into_iter()
                .find(|r| r.body_text().contains("GatewayErrorRatioHigh"))
        },
    )
    .await;
    if let (Some((_, t)), Some((_, t_alert))) = (&escalated, firing) {
        o.figures.insert(
            "escalated_after_s".into(),
            json!(t.duration_since(*t_alert).as_secs_f64()),
        );
    }
    o.expect(
        escalated.is_some(),
        "no escalation to the pager tier within 30 s",
    );
    escalated
}

/// Acknowledge through the pager message's link: a silence in Alertmanager.
async fn acknowledge(
    o: &mut Outcome,
    w: &World,
    firing: Option<&(Value, Instant)>,
    escalated: Option<&(testbed::RecordedRequest, Instant)>,
) {
    let fingerprint = firing
        .and_then(|(a, _)| a["fingerprint"].as_str())
        .unwrap_or_default()
        .to_owned();
    // The signed, single-use link the pager message carries (acks are capabilities).
    let ack_url = escalated
        .and_then(|(r, _)| r.json()["alerts"][0]["ack_url"].as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("http://127.0.0.1:{ALERTS}/api/v1/alerts/{fingerprint}/ack"));
    let ack = w
        .http
        .post(ack_url)
        .json(&json!({"by": "scenario", "comment": "looking into it", "duration_minutes": 10}))
        .send()
        .await;
    let ack_ok = ack.as_ref().is_ok_and(|r| r.status().is_success());
    o.expect(ack_ok, format!("ack failed: {:?}", ack.map(|r| r.status())));
    let silenced = until(
        Duration::from_secs(10),
        Duration::from_millis(200),
        || async {
            let alerts = w.am_alerts("GatewayErrorRatioHigh").await;
            alerts
                .iter()
                .any(|a| {
                    a["status"]["state"] == "suppressed"
                        && !a["status"]["silencedBy"]
                            .as_array()
                            .is_none_or(Vec::is_empty)
                })
                .then_some(())
        },
    )
    .await;
    o.expect(
        silenced.is_some(),
        "the acknowledged alert is not silenced in Alertmanager",
    );
}

/// After the ack, the pager is not called again; returns the emails about the alert so far.
async fn check_quiet_after_ack(o: &mut Outcome, w: &World) -> usize {
    let before = (w.smtp.messages().len(), w.pager.requests().len());
    tokio::time::sleep(Duration::from_secs(8)).await;
    let after = (w.smtp.messages().len(), w.pager.requests().len());
    let new_mail = w.mail_texts("GatewayErrorRatioHigh").len();
    o.expect(
        after.1 == before.1,
        format!(
            "the pager was notified again after the ack ({} → {})",
            before.1, after.1
        ),
    );
    o.figures.insert("emails_about_it".into(), json!(new_mail));
    new_mail
}
