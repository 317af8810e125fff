//! Outage: SMTP down, the alert is accepted, alert-service restarts in the middle (a new app on
//! the same SQLite file), SMTP comes back: the mail arrives exactly once.
//!
//! `ALERT_SERVICE_TEST_OUTAGE` sets how long SMTP stays down, as a duration (`4s` by default;
//! the scenario is `30s`).

use std::time::{Duration, Instant};

use testbed::SmtpSink;
use testbed::fixtures;

use crate::helpers::{FAST_DELIVERY, TestApp, db_dir};

#[tokio::test]
async fn mail_arrives_exactly_once_after_smtp_outage_and_restart() {
    assert!(
        std::env::var_os("ALERT_SERVICE_TEST_OUTAGE_SECS").is_none(),
        "ALERT_SERVICE_TEST_OUTAGE_SECS is no longer read; set ALERT_SERVICE_TEST_OUTAGE=30s"
    );
    let outage = match std::env::var("ALERT_SERVICE_TEST_OUTAGE") {
        Ok(v) => humantime::parse_duration(&v)
            .unwrap_or_else(|e| panic!("ALERT_SERVICE_TEST_OUTAGE={v:?}: {e} (e.g. 30s)")),
        Err(_) => Duration::from_secs(4),
    };
    let mut smtp = SmtpSink::start().await;
    let dir = db_dir();
    let yaml = format!(
        "smtp:\n  host: 127.0.0.1\n  port: {}\n  tls: none\n  to: [oncall@example.org]\n  timeout: 2s\nroutes:\n  - channels: [email]\n{FAST_DELIVERY}",
        smtp.port()
    );
    smtp.stop();
    let down_at = Instant::now();

    let app = TestApp::spawn(&yaml, &[], dir.path()).await;
    let msg = fixtures::pod_crash_looping("alert-service");
    let r = app.post_message(&msg).await;
    assert_eq!(r["notifications"][0]["result"], "queued");
    // It is tried and fails while SMTP is down.
    let failed = testbed::wait_until(Duration::from_secs(10), || async {
        app.metrics()
            .await
            .text()
            .contains("alert_service_notifications_total{channel=\"email\",result=\"failed\"}")
    })
    .await;
    assert!(
        failed,
        "no failed attempt seen:\n{}",
        app.metrics().await.text()
    );

    // Restart in the middle of the outage.
    app.stop().await;
    let app = TestApp::spawn(&yaml, &[], dir.path()).await;
    assert_eq!(
        app.outbox().await["counts"]["pending"],
        1,
        "the accepted alert survived the restart"
    );
    // A re-delivery of the same webhook by Alertmanager after the restart is not a second mail.
    let again = app.post_message(&msg).await;
    assert_eq!(again["notifications"][0]["result"], "duplicate");

    let remaining = outage.saturating_sub(down_at.elapsed());
    tokio::time::sleep(remaining).await;
    smtp.start_again().await;
    let mails = smtp.wait_for_messages(1, Duration::from_secs(15)).await;
    assert_eq!(
        mails[0].subject.as_deref(),
        Some("[FIRING:1] PodCrashLooping")
    );
    // Give a duplicate every chance to show up.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(smtp.messages().len(), 1, "exactly once");
    let counts = app.outbox().await["counts"].clone();
    assert_eq!(counts["sent"], 1, "{counts}");
    assert!(counts.get("pending").is_none(), "{counts}");
    app.stop().await;
}
