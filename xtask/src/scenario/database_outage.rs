//! database-outage: user-service's PostgreSQL stops; the finding names the database, nobody
//! restarts user-service, and what was accepted before survives.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::harness::{GATEWAY, Outcome, USERS, World, now_rfc3339, until};

pub(super) async fn run(w: &mut World) -> Outcome {
    let mut o = Outcome::new("database-outage", "PostgreSQL of user-service stopped");
    let since = now_rfc3339();
    let pid_before = w
        .system
        .as_ref()
        .and_then(|s| s.launcher.pid("user-service"));
    let location = create_survivor(&mut o, w).await;
    let t_fault = Instant::now();
    w.postgres.stop().await;
    check_finding(&mut o, w, t_fault).await;
    check_gateway_degrades(&mut o, w).await;
    let named = until(
        Duration::from_secs(20),
        Duration::from_millis(250),
        || async {
            w.smtp.messages().into_iter().find(|m| {
                m.text.contains("user-service")
                    && m.text.contains("database")
                    && m.text.contains("== FIRING:")
            })
        },
    )
    .await;
    o.expect(named.is_some(), "no notification names the database");
    check_not_restarted(&mut o, w, pid_before, &since).await;
    recover(&mut o, w, t_fault, location).await;
    o.notifications = if named.is_some() {
        "email names the database".into()
    } else {
        "none".into()
    };
    o
}

/// A user accepted before the outage (it must survive it): its id.
async fn create_survivor(o: &mut Outcome, w: &World) -> Option<i64> {
    let created = w
        .http
        .post(format!("http://127.0.0.1:{GATEWAY}/users"))
        .json(&json!({"name": "Outage Survivor", "email": format!("survivor-{}@example.org", std::process::id())}))
        .send()
        .await;
    let location = match created {
        Ok(r) if r.status().is_success() => {
            r.json::<Value>().await.ok().and_then(|v| v["id"].as_i64())
        }
        _ => None,
    };
    o.expect(
        location.is_some(),
        "could not create a user before the outage",
    );
    location
}

/// The health-monitor reports user-service not ready because of its database, without asking
/// for a restart.
async fn check_finding(o: &mut Outcome, w: &World, t_fault: Instant) {
    let detected = until(
        Duration::from_secs(15),
        Duration::from_millis(100),
        || async {
            w.findings()
                .await
                .into_iter()
                .find(|f| f["service"] == "user-service" && f["finding"] == "service-not-ready")
        },
    )
    .await;
    if let Some((f, t)) = &detected {
        o.mttd = Some(t.duration_since(t_fault));
        o.detected_by = format!(
            "health-monitor (service-not-ready, dependency={})",
            f["dependency"].as_str().unwrap_or("none")
        );
        o.expect(
            f["dependency"] == "database",
            "the finding does not name the database",
        );
        o.expect(
            f.get("remediation").is_none_or(Value::is_null),
            "a dependency finding asks for a restart",
        );
    }
    o.expect(
        detected.is_some(),
        "no not-ready finding for user-service within 15 s",
    );
}

/// The gateway answers 503 for users meanwhile.
async fn check_gateway_degrades(o: &mut Outcome, w: &World) {
    let gateway_status = w
        .http
        .get(format!("http://127.0.0.1:{GATEWAY}/user/123"))
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0);
    o.figures
        .insert("gateway_status_during_outage".into(), json!(gateway_status));
    o.expect(
        gateway_status == 503,
        format!("gateway answered {gateway_status} during the outage, expected 503"),
    );
}

/// Nobody restarts user-service for its database's outage: what the healer decided instead.
async fn check_not_restarted(o: &mut Outcome, w: &World, pid_before: Option<u32>, since: &str) {
    tokio::time::sleep(Duration::from_secs(3)).await;
    let pid_during = w
        .system
        .as_ref()
        .and_then(|s| s.launcher.pid("user-service"));
    o.expect(
        pid_during == pid_before,
        "user-service was restarted during a database outage",
    );
    let decisions = w.actions_about("user-service", since).await;
    o.action = if pid_during == pid_before {
        match decisions.iter().find(|a| a["result"] == "skipped") {
            Some(a) => format!(
                "refused: {}",
                a["guard"].as_str().unwrap_or("no restart remediation")
            ),
            None => "none: the alert names a dependency, no restart".into(),
        }
    } else {
        "restarted user-service (wrong)".into()
    };
}

/// With the database back, user-service is ready again (MTTR) and the survivor is still there.
async fn recover(o: &mut Outcome, w: &mut World, t_fault: Instant, location: Option<i64>) {
    w.postgres.start_again().await;
    let recovered = w
        .ready_again(USERS, Duration::from_secs(30), Duration::from_millis(100))
        .await;
    if let Some(t) = recovered {
        o.mttr = Some(t.duration_since(t_fault));
    }
    o.expect(
        recovered.is_some(),
        "user-service did not recover after the database returned",
    );
    if let Some(id) = location {
        let still_there = w.ok(GATEWAY, &format!("/user/{id}")).await;
        o.expect(still_there, "the user created before the outage is gone");
    }
}
