//! The SMTP sink receives mail sent with lettre, survives an outage, and parses what it stored.

use std::time::Duration;

use lettre::message::MultiPart;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use testbed::SmtpSink;

fn transport(sink: &SmtpSink) -> AsyncSmtpTransport<Tokio1Executor> {
    AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(sink.host())
        .port(sink.port())
        .timeout(Some(Duration::from_secs(5)))
        .build()
}

fn mail(subject: &str) -> Message {
    Message::builder()
        .from("alert-service <alerts@organism.dev>".parse().unwrap())
        .to("On call <oncall@example.org>".parse().unwrap())
        .subject(subject)
        .multipart(MultiPart::alternative_plain_html(
            "HeartDown is firing.\nRunbook: https://runbooks.organism.dev/HeartDown\n".to_owned(),
            "<p>HeartDown is <b>firing</b>. <a href=\"https://runbooks.organism.dev/HeartDown\">Runbook</a></p>".to_owned(),
        ))
        .unwrap()
}

#[tokio::test]
async fn receives_mail_and_survives_an_outage() {
    let mut sink = SmtpSink::start().await;
    transport(&sink)
        .send(mail("[FIRING] HeartDown — heart"))
        .await
        .expect("send to the sink");

    let messages = sink.wait_for_messages(1, Duration::from_secs(10)).await;
    let email = &messages[0];
    assert_eq!(email.subject.as_deref(), Some("[FIRING] HeartDown — heart"));
    assert_eq!(email.from, ["alerts@organism.dev"]);
    assert_eq!(email.to, ["oncall@example.org"]);
    assert!(
        email
            .text
            .contains("Runbook: https://runbooks.organism.dev/HeartDown"),
        "{}",
        email.text
    );
    assert!(
        email
            .html
            .as_deref()
            .unwrap_or_default()
            .contains("<b>firing</b>")
    );
    assert_eq!(email.header("X-RcptTo"), Some("oncall@example.org"));

    sink.stop();
    let refused = transport(&sink).send(mail("during the outage")).await;
    assert!(refused.is_err(), "sending must fail while the sink is down");

    sink.start_again().await;
    transport(&sink)
        .send(mail("after the outage"))
        .await
        .expect("send after restart");
    let messages = sink.wait_for_messages(2, Duration::from_secs(10)).await;
    let subjects: Vec<_> = messages.iter().filter_map(|m| m.subject.clone()).collect();
    assert_eq!(subjects, ["[FIRING] HeartDown — heart", "after the outage"]);
}
