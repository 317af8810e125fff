//! Channels: rendering a message for a channel's kind and sending it.
//!
//! - `slack`: POST Block Kit JSON to an incoming webhook.
//! - `teams`: POST `{"type":"message","attachments":[{"contentType":
//!   "application/vnd.microsoft.card.adaptive","content":<AdaptiveCard 1.4>}]}` to a Workflows
//!   webhook.
//! - `email`: SMTP (lettre; STARTTLS, TLS or plain; `SMTP_USERNAME`/`SMTP_PASSWORD`),
//!   multipart text + HTML.
//! - `webhook`: POST the JSON the template renders (by default the whole message view).
//! - `log`: the text appended to a file or written to stdout.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use minijinja::Value;
use secrecy::{ExposeSecret, SecretString};
use telemetry::client::{HttpClient, Method};
use tokio::io::AsyncWriteExt as _;

use crate::settings::{ChannelConfig, ChannelKind, ChannelTarget, EmailTarget, TlsMode};
use crate::templates::{RenderError, Templates};
use crate::{slack, teams};

/// Rendered content, ready for a channel.
#[derive(Debug, Clone)]
pub enum Content {
    /// A log line (or lines).
    Text(String),
    /// A JSON body (Slack, Teams, webhook).
    Json(serde_json::Value),
    /// An email.
    Email {
        /// Subject (one line).
        subject: String,
        /// text/plain.
        text: String,
        /// text/html.
        html: String,
    },
}

/// Why a send failed, and whether trying again may help.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct SendError {
    /// No retry will help (a 4xx from the endpoint, a rejected address).
    pub permanent: bool,
    /// What happened (never contains a secret URL).
    pub message: String,
}

impl SendError {
    fn transient(message: impl Into<String>) -> Self {
        Self {
            permanent: false,
            message: message.into(),
        }
    }
    fn permanent(message: impl Into<String>) -> Self {
        Self {
            permanent: true,
            message: message.into(),
        }
    }
}

/// Renders a message (`digest = false`) or a digest for `channel` of `kind`.
pub fn render(
    templates: &Templates,
    channel: &str,
    kind: ChannelKind,
    digest: bool,
    ctx: Value,
) -> Result<Content, RenderError> {
    let name = |n: &'static str| -> &'static str {
        match (digest, n) {
            (false, n) => n,
            (true, "message") => "digest",
            (true, "subject") => "digest_subject",
            (true, "text") => "digest_text",
            (true, _) => "digest_html",
        }
    };
    let json = |text: String| {
        serde_json::from_str::<serde_json::Value>(&text)
            .map_err(|e| RenderError(format!("template output is not JSON: {e}")))
    };
    Ok(match kind {
        ChannelKind::Log => Content::Text(
            templates
                .render(channel, name("message"), ctx)?
                .trim_end()
                .to_owned(),
        ),
        ChannelKind::Webhook => {
            Content::Json(json(templates.render(channel, name("message"), ctx)?)?)
        }
        ChannelKind::Slack => {
            let mut v = json(templates.render(channel, name("message"), ctx)?)?;
            slack::fit(&mut v);
            Content::Json(v)
        }
        ChannelKind::Teams => Content::Json(teams::envelope(json(templates.render(
            channel,
            name("message"),
            ctx,
        )?)?)),
        ChannelKind::Email => Content::Email {
            subject: templates
                .render(channel, name("subject"), ctx.clone())?
                .lines()
                .map(str::trim)
                .collect::<Vec<_>>()
                .join(" ")
                .trim()
                .to_owned(),
            text: templates.render(channel, name("text"), ctx.clone())?,
            html: templates.render(channel, name("html"), ctx)?,
        },
    })
}

enum Sender {
    Log(Option<PathBuf>),
    Http(SecretString),
    Email(Box<EmailSender>),
}

struct EmailSender {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    to: Vec<Mailbox>,
}

/// The senders of every configured channel.
pub struct Channels {
    senders: BTreeMap<String, (ChannelKind, Sender)>,
    http: HttpClient,
}

impl std::fmt::Debug for Channels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channels")
            .field("names", &self.senders.keys().collect::<Vec<_>>())
            .finish()
    }
}

fn smtp_transport(t: &EmailTarget) -> Result<AsyncSmtpTransport<Tokio1Executor>, String> {
    let builder = match t.tls {
        TlsMode::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&t.host),
        TlsMode::Starttls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&t.host)
            .map_err(|e| e.to_string())?,
        TlsMode::Tls => {
            AsyncSmtpTransport::<Tokio1Executor>::relay(&t.host).map_err(|e| e.to_string())?
        }
    };
    let mut builder = builder.port(t.port).timeout(Some(t.timeout));
    if let (Some(user), Some(password)) = (&t.username, &t.password) {
        builder = builder.credentials(Credentials::new(
            user.clone(),
            password.expose_secret().to_owned(),
        ));
    }
    Ok(builder.build())
}

impl Channels {
    /// Senders for `channels`; HTTP channels send through `http` (made with
    /// [`HttpClient::redacting_url_paths`]: their URLs carry tokens).
    pub fn new(
        channels: &BTreeMap<String, ChannelConfig>,
        http: HttpClient,
    ) -> Result<Self, String> {
        let mut senders = BTreeMap::new();
        for (name, c) in channels {
            let sender = match &c.target {
                ChannelTarget::Log(path) => Sender::Log(path.clone()),
                ChannelTarget::Http(url) => Sender::Http(url.clone()),
                ChannelTarget::Email(t) => Sender::Email(Box::new(EmailSender {
                    transport: smtp_transport(t).map_err(|e| format!("channels.{name}: {e}"))?,
                    from: Mailbox::from_str(&t.from)
                        .map_err(|e| format!("channels.{name}.from: {e}"))?,
                    to: t
                        .to
                        .iter()
                        .map(|a| {
                            Mailbox::from_str(a).map_err(|e| format!("channels.{name}.to: {e}"))
                        })
                        .collect::<Result<_, _>>()?,
                })),
            };
            senders.insert(name.clone(), (c.kind, sender));
        }
        Ok(Self { senders, http })
    }

    /// The kind of a channel.
    pub fn kind(&self, channel: &str) -> Option<ChannelKind> {
        self.senders.get(channel).map(|(k, _)| *k)
    }

    /// Sends `content` on `channel`, bounded by `timeout`.
    pub async fn send(
        &self,
        channel: &str,
        content: Content,
        timeout: Duration,
    ) -> Result<(), SendError> {
        let Some((_, sender)) = self.senders.get(channel) else {
            return Err(SendError::permanent(format!(
                "channel {channel:?} is no longer configured"
            )));
        };
        match tokio::time::timeout(timeout, self.send_inner(sender, content)).await {
            Ok(r) => r,
            Err(_) => Err(SendError::transient(format!(
                "timed out after {}",
                crate::duration::display(timeout)
            ))),
        }
    }

    async fn send_inner(&self, sender: &Sender, content: Content) -> Result<(), SendError> {
        match (sender, content) {
            (Sender::Log(path), Content::Text(text)) => write_log(path.as_ref(), &text).await,
            (Sender::Http(url), Content::Json(body)) => self.post(url, &body).await,
            (
                Sender::Email(email),
                Content::Email {
                    subject,
                    text,
                    html,
                },
            ) => {
                let mut builder = Message::builder().from(email.from.clone()).subject(subject);
                for to in &email.to {
                    builder = builder.to(to.clone());
                }
                let message = builder
                    .multipart(MultiPart::alternative_plain_html(text, html))
                    .map_err(|e| SendError::permanent(format!("cannot build the email: {e}")))?;
                email.transport.send(message).await.map(drop).map_err(|e| {
                    let text = format!("SMTP: {e}");
                    if e.is_permanent() {
                        SendError::permanent(text)
                    } else {
                        SendError::transient(text)
                    }
                })
            }
            _ => Err(SendError::permanent(
                "content does not fit the channel kind",
            )),
        }
    }

    async fn post(&self, url: &SecretString, body: &serde_json::Value) -> Result<(), SendError> {
        let request = self
            .http
            .request(Method::POST, url.expose_secret())
            .json(body);
        let response = self
            .http
            .send(request)
            .await
            // `without_url`: the webhook URL carries its token; keep it out of errors and logs.
            .map_err(|e| SendError::transient(format!("HTTP: {}", e.without_url())))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let text = response.text().await.unwrap_or_default();
        let text: String = text.chars().take(200).collect();
        let message = format!("HTTP {status}: {text}");
        if status.is_server_error() || status.as_u16() == 429 || status.as_u16() == 408 {
            Err(SendError::transient(message))
        } else {
            Err(SendError::permanent(message))
        }
    }
}

async fn write_log(path: Option<&PathBuf>, text: &str) -> Result<(), SendError> {
    match path {
        None => {
            let mut out = std::io::stdout().lock();
            writeln!(out, "{text}").map_err(|e| SendError::transient(format!("stdout: {e}")))
        }
        Some(p) => {
            let mut f = tokio::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .await
                .map_err(|e| SendError::transient(format!("{}: {e}", p.display())))?;
            f.write_all(format!("{text}\n").as_bytes())
                .await
                .map_err(|e| SendError::transient(format!("{}: {e}", p.display())))?;
            f.flush()
                .await
                .map_err(|e| SendError::transient(format!("{}: {e}", p.display())))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn slack_checks_and_fits() {
        assert!(
            slack::check(
                &json!({"blocks": [{"type": "header", "text": {"type": "mrkdwn", "text": "x"}}]})
            )
            .is_err()
        );
        let long = "x".repeat(4000);
        let mut v =
            json!({"blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": long}}]});
        assert!(slack::check(&v).unwrap_err().contains("4000 characters"));
        slack::fit(&mut v);
        slack::check(&v).unwrap();
        assert_eq!(
            v["blocks"][0]["text"]["text"]
                .as_str()
                .unwrap()
                .chars()
                .count(),
            3000
        );
    }

    #[test]
    fn teams_card_basics() {
        let card = json!({"type": "AdaptiveCard", "version": "1.4", "body": [{"type": "TextBlock", "text": "hi"}]});
        teams::check_card(&card).unwrap();
        assert!(
            teams::check_card(&json!({"type": "AdaptiveCard", "body": []}))
                .unwrap_err()
                .starts_with("version")
        );
        assert!(teams::check_card(&json!({"type": "AdaptiveCard", "version": "1.4", "body": [{"type": "FactSet", "facts": [{"title": "a", "value": 1}]}]})).is_err());
        let env = teams::envelope(card.clone());
        assert_eq!(env["attachments"][0]["content"], card);
    }
}
