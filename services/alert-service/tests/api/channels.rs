//! Every channel kind against a real far end: Slack, Teams and webhook bodies received by an
//! HttpSink and checked against the shapes those services accept; email through a real SMTP
//! server, with subject, text and HTML bodies and the links.

use std::time::Duration;

use alert_service::config::GrafanaLinks;
use alert_service::{slack, teams};
use serde_json::Value;
use testbed::fixtures;
use testbed::{HttpSink, SmtpSink};

use crate::helpers::{FAST_DELIVERY, TestApp, db_dir};

fn grafana(c: &mut alert_service::Config) {
    c.public_url = "https://alerts.organism.dev".to_owned();
    c.grafana = Some(GrafanaLinks {
        url: "https://grafana.organism.dev".into(),
        loki_uid: "loki".into(),
        tempo_uid: "tempo".into(),
    });
}

/// The crash-loop alert delivered to Slack, Teams and a webhook (all at `sink`), with Grafana
/// links and signed ack links on `https://alerts.organism.dev`.
struct Delivered {
    sink: HttpSink,
    fp: String,
    /// The start of every signed ack link: the base, then `?exp=…&nonce=…&sig=…`.
    ack: String,
    _dir: tempfile::TempDir,
}

async fn delivered_to_slack_teams_and_webhook() -> Delivered {
    let sink = HttpSink::start().await;
    let dir = db_dir();
    let yaml = format!(
        "routes:\n  - channels: [slack, teams, hook]\nchannels:\n  hook:\n    kind: webhook\n    url_env: HOOK_URL\n{FAST_DELIVERY}"
    );
    let slack_url = format!("{}/services/T000/B000/XXXX", sink.url());
    let teams_url = format!("{}/workflows/teams", sink.url());
    let hook_url = format!("{}/hook", sink.url());
    let env = [
        ("SLACK_WEBHOOK_URL", slack_url.as_str()),
        ("TEAMS_WEBHOOK_URL", teams_url.as_str()),
        ("HOOK_URL", hook_url.as_str()),
    ];
    let app = TestApp::spawn_with(&yaml, &env, dir.path(), grafana).await;
    let msg = fixtures::pod_crash_looping("alert-service");
    let fp = msg.alerts[0].fingerprint.to_string();
    let ack = format!("https://alerts.organism.dev/api/v1/alerts/{fp}/ack?exp=");
    app.post_message(&msg).await;
    sink.wait_for_requests(3, Duration::from_secs(15)).await;
    app.stop().await;
    Delivered {
        sink,
        fp,
        ack,
        _dir: dir,
    }
}

#[tokio::test]
async fn the_slack_payload_is_block_kit_with_the_links_in_mrkdwn() {
    let Delivered { sink, ack, .. } = delivered_to_slack_teams_and_webhook().await;
    // Slack: Block Kit with valid types and text limits, the links in mrkdwn.
    let s = &sink.requests_to("/services/T000/B000/XXXX")[0];
    assert_eq!(s.header("content-type"), Some("application/json"));
    let body = s.json();
    slack::check(&body).unwrap_or_else(|e| panic!("{e}: {body:#}"));
    assert_eq!(body["text"], "[FIRING:1] PodCrashLooping");
    let blocks = body["blocks"].as_array().unwrap();
    assert_eq!(blocks[0]["type"], "header");
    let all = body.to_string();
    assert!(all.contains(&format!("<{ack}")), "{all}");
    assert!(all.contains("|Acknowledge>"), "{all}");
    assert!(
        all.contains("<https://runbooks.organism.dev/PodCrashLooping|Runbook>"),
        "{all}"
    );
    assert!(
        all.contains("https://grafana.organism.dev/explore?"),
        "{all}"
    );
    assert!(
        all.contains("Pod organism/heart-7d9c8b6f5-abcde is crash-looping"),
        "{all}"
    );
}

#[tokio::test]
async fn the_teams_payload_is_an_adaptive_card_with_the_actions() {
    let Delivered { sink, ack, .. } = delivered_to_slack_teams_and_webhook().await;
    // Teams: a Workflows message with an Adaptive Card 1.4.
    let t = sink.requests_to("/workflows/teams")[0].json();
    assert_eq!(t["type"], "message");
    assert_eq!(
        t["attachments"][0]["contentType"],
        "application/vnd.microsoft.card.adaptive"
    );
    let card = &t["attachments"][0]["content"];
    teams::check_card(card).unwrap_or_else(|e| panic!("{e}: {card:#}"));
    assert_eq!(card["type"], "AdaptiveCard");
    assert_eq!(card["version"], "1.4");
    assert!(card["body"].as_array().unwrap().len() >= 3);
    let actions: Vec<Value> = card["body"][2]["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "ActionSet")
        .flat_map(|e| e["actions"].as_array().unwrap().clone())
        .collect();
    assert_eq!(actions[0]["title"], "Acknowledge");
    assert!(
        actions[0]["url"].as_str().unwrap().starts_with(&ack),
        "{actions:?}"
    );
    assert!(
        actions
            .iter()
            .any(|a| a["title"] == "Logs (Loki)" && a["url"].as_str().unwrap().contains("explore"))
    );
}

#[tokio::test]
async fn the_webhook_payload_is_the_whole_message_with_signed_and_log_links() {
    let Delivered { sink, ack, fp, .. } = delivered_to_slack_teams_and_webhook().await;
    // Webhook: the whole message as JSON.
    let h = sink.requests_to("/hook")[0].json();
    assert_eq!(h["status"], "firing");
    assert_eq!(h["alerts"][0]["fingerprint"], fp.as_str());
    let link = h["alerts"][0]["ack_url"].as_str().unwrap();
    assert!(link.starts_with(&ack) && link.contains("&sig="), "{link}");
    let logs = h["alerts"][0]["logs_url"].as_str().unwrap();
    let url = reqwest::Url::parse(logs).unwrap();
    let panes: Value =
        serde_json::from_str(&url.query_pairs().find(|(k, _)| k == "panes").unwrap().1).unwrap();
    assert_eq!(
        panes["alert"]["queries"][0]["expr"],
        "{k8s_namespace_name=\"organism\", k8s_pod_name=\"heart-7d9c8b6f5-abcde\"}"
    );
}

#[tokio::test]
async fn email_arrives_through_a_real_smtp_server() {
    let smtp = SmtpSink::start().await;
    let dir = db_dir();
    let yaml = format!(
        "smtp:\n  host: 127.0.0.1\n  port: {}\n  tls: none\n  from: alerts@organism.dev\n  to: [oncall@example.org]\nroutes:\n  - channels: [email]\n{FAST_DELIVERY}",
        smtp.port()
    );
    let app = TestApp::spawn_with(&yaml, &[], dir.path(), grafana).await;
    let msg = fixtures::pod_crash_looping("alert-service");
    let fp = msg.alerts[0].fingerprint.to_string();
    app.post_message(&msg).await;
    let mails = smtp.wait_for_messages(1, Duration::from_secs(15)).await;
    let m = &mails[0];
    assert_eq!(m.subject.as_deref(), Some("[FIRING:1] PodCrashLooping"));
    assert_eq!(m.from, ["alerts@organism.dev"]);
    assert_eq!(m.to, ["oncall@example.org"]);
    assert!(
        m.text
            .contains("FIRING: Pod organism/heart-7d9c8b6f5-abcde is crash-looping"),
        "{}",
        m.text
    );
    assert!(
        m.text.contains(&format!(
            "Acknowledge: https://alerts.organism.dev/api/v1/alerts/{fp}/ack?exp="
        )),
        "{}",
        m.text
    );
    assert!(
        m.text
            .contains("Runbook: https://runbooks.organism.dev/PodCrashLooping"),
        "{}",
        m.text
    );
    assert!(
        m.text
            .contains("Logs (Grafana Explore, Loki): https://grafana.organism.dev/explore?"),
        "{}",
        m.text
    );
    // minijinja's HTML escaping writes `/` as `&#x2f;` (valid in attributes); decode to compare.
    let html = m
        .html
        .as_deref()
        .expect("an HTML part")
        .replace("&#x2f;", "/");
    assert!(
        html.contains(&format!(
            "href=\"https://alerts.organism.dev/api/v1/alerts/{fp}/ack?exp="
        )),
        "{html}"
    );
    assert!(
        html.contains("Pod organism/heart-7d9c8b6f5-abcde is crash-looping"),
        "{html}"
    );
    assert!(
        html.contains("href=\"https://runbooks.organism.dev/PodCrashLooping\""),
        "{html}"
    );
    app.stop().await;
}

/// An app routing to a `broken` webhook (nothing listens) and to `hook` at `sink`.
async fn app_with_a_broken_channel(sink: &HttpSink, dir: &tempfile::TempDir) -> TestApp {
    let yaml = format!(
        "routes:\n  - channels: [broken, hook]\nchannels:\n  hook:\n    kind: webhook\n    url_env: HOOK_URL\n  broken:\n    kind: webhook\n    url: http://127.0.0.1:9/nothing-listens\n{FAST_DELIVERY}"
    );
    let hook = format!("{}/hook", sink.url());
    TestApp::spawn(&yaml, &[("HOOK_URL", hook.as_str())], dir.path()).await
}

#[tokio::test]
async fn a_failing_channel_does_not_block_intake_or_other_channels() {
    let sink = HttpSink::start().await;
    let dir = db_dir();
    let app = app_with_a_broken_channel(&sink, &dir).await;
    // Intake answers 202 (post_message asserts it) without waiting for any send; no
    // wall-clock bound, which a loaded machine could miss.
    app.post_message(&fixtures::pod_crash_looping("alert-service"))
        .await;
    sink.wait_for_requests(1, Duration::from_secs(10)).await;
    // The broken channel keeps retrying in the background.
    let failed = |metrics: &testbed::Metrics| {
        metrics.value(
            "alert_service_notifications_total",
            &[("channel", "broken"), ("result", "failed")],
        )
    };
    let ok = testbed::wait_until(Duration::from_secs(10), || async {
        failed(&app.metrics().await).is_some()
    })
    .await;
    assert!(ok, "{}", app.metrics().await.text());
    app.stop().await;
}

#[tokio::test]
async fn a_permanent_4xx_goes_dead_at_once() {
    let sink = HttpSink::start().await;
    sink.set_status(http::StatusCode::BAD_REQUEST);
    let dir = db_dir();
    let app = app_with_a_broken_channel(&sink, &dir).await;
    let msg = fixtures::webhook("alert-service")
        .alert(fixtures::alert("Other").firing())
        .build();
    app.post_message(&msg).await;
    let dead = testbed::wait_until(Duration::from_secs(10), || async {
        app.outbox().await["counts"]["dead"].as_i64() == Some(1)
    })
    .await;
    assert!(dead, "{}", app.outbox().await);
    app.stop().await;
}
