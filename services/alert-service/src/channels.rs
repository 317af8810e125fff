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
use tokio::io::AsyncWriteExt as _;

use crate::config::{ChannelConfig, ChannelKind, ChannelTarget, EmailTarget, TlsMode};
use crate::templates::{RenderError, Templates};

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
    http: reqwest::Client,
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
    /// Senders for `channels`; HTTP channels send through `http`.
    pub fn new(
        channels: &BTreeMap<String, ChannelConfig>,
        http: reqwest::Client,
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
        let response = self
            .http
            .post(url.expose_secret())
            .json(body)
            .send()
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

/// Slack Block Kit: the shape checks Slack applies, and clipping to its limits.
pub mod slack {
    use serde_json::Value;

    /// Block types Slack accepts in messages.
    pub const BLOCK_TYPES: [&str; 11] = [
        "actions",
        "context",
        "divider",
        "file",
        "header",
        "image",
        "input",
        "markdown",
        "rich_text",
        "section",
        "video",
    ];
    /// At most this many blocks per message.
    pub const MAX_BLOCKS: usize = 50;
    /// Longest `section` text.
    pub const MAX_SECTION_TEXT: usize = 3000;
    /// Longest `header` text.
    pub const MAX_HEADER_TEXT: usize = 150;
    /// Longest `fields` entry.
    pub const MAX_FIELD_TEXT: usize = 2000;

    fn text_object(v: &Value, place: &str, max: usize, plain_only: bool) -> Result<(), String> {
        let kind = v["type"].as_str().unwrap_or_default();
        if kind != "plain_text" && (plain_only || kind != "mrkdwn") {
            return Err(format!(
                "{place}.type: {kind:?} is not a valid text object type"
            ));
        }
        let text = v["text"]
            .as_str()
            .ok_or_else(|| format!("{place}.text: missing"))?;
        let n = text.chars().count();
        if n == 0 || n > max {
            return Err(format!("{place}.text: {n} characters, must be 1..={max}"));
        }
        Ok(())
    }

    /// Checks a message body the way Slack's `invalid_blocks` does for the parts we use.
    pub fn check(v: &Value) -> Result<(), String> {
        let blocks = match v.get("blocks") {
            None => {
                return if v["text"].is_string() {
                    Ok(())
                } else {
                    Err("a Slack message needs text or blocks".to_owned())
                };
            }
            Some(Value::Array(b)) => b,
            Some(_) => return Err("blocks: must be an array".to_owned()),
        };
        if blocks.len() > MAX_BLOCKS {
            return Err(format!(
                "blocks: {} blocks, at most {MAX_BLOCKS}",
                blocks.len()
            ));
        }
        for (i, b) in blocks.iter().enumerate() {
            let place = format!("blocks[{i}]");
            let kind = b["type"].as_str().unwrap_or_default();
            if !BLOCK_TYPES.contains(&kind) {
                return Err(format!("{place}.type: {kind:?} is not a Slack block type"));
            }
            match kind {
                "header" => {
                    text_object(&b["text"], &format!("{place}.text"), MAX_HEADER_TEXT, true)?
                }
                "section" => {
                    if b.get("text").is_none() && b.get("fields").is_none() {
                        return Err(format!("{place}: a section needs text or fields"));
                    }
                    if let Some(t) = b.get("text") {
                        text_object(t, &format!("{place}.text"), MAX_SECTION_TEXT, false)?;
                    }
                    if let Some(f) = b.get("fields") {
                        let f = f
                            .as_array()
                            .ok_or_else(|| format!("{place}.fields: must be an array"))?;
                        if f.len() > 10 {
                            return Err(format!("{place}.fields: at most 10"));
                        }
                        for (j, t) in f.iter().enumerate() {
                            text_object(t, &format!("{place}.fields[{j}]"), MAX_FIELD_TEXT, false)?;
                        }
                    }
                }
                "context" => {
                    let e = b["elements"]
                        .as_array()
                        .ok_or_else(|| format!("{place}.elements: missing"))?;
                    if e.is_empty() || e.len() > 10 {
                        return Err(format!("{place}.elements: 1..=10 elements"));
                    }
                    for (j, t) in e.iter().enumerate() {
                        if t["type"] != "image" {
                            text_object(
                                t,
                                &format!("{place}.elements[{j}]"),
                                MAX_SECTION_TEXT,
                                false,
                            )?;
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn clip_text(v: &mut Value, max: usize) {
        if let Some(s) = v.get("text").and_then(Value::as_str)
            && s.chars().count() > max
        {
            let mut out: String = s.chars().take(max - 1).collect();
            out.push('…');
            v["text"] = Value::String(out);
        }
    }

    /// Clips texts and the block count to Slack's limits.
    pub fn fit(v: &mut Value) {
        let Some(blocks) = v.get_mut("blocks").and_then(Value::as_array_mut) else {
            return;
        };
        blocks.truncate(MAX_BLOCKS);
        for b in blocks {
            match b["type"].as_str() {
                Some("header") => clip_text(&mut b["text"], MAX_HEADER_TEXT),
                Some("section") => {
                    if b.get("text").is_some() {
                        clip_text(&mut b["text"], MAX_SECTION_TEXT);
                    }
                    if let Some(f) = b.get_mut("fields").and_then(Value::as_array_mut) {
                        f.iter_mut().for_each(|t| clip_text(t, MAX_FIELD_TEXT));
                    }
                }
                Some("context") => {
                    if let Some(e) = b.get_mut("elements").and_then(Value::as_array_mut) {
                        e.iter_mut().for_each(|t| clip_text(t, MAX_SECTION_TEXT));
                    }
                }
                _ => {}
            }
        }
    }
}

/// Microsoft Teams (Workflows webhook): Adaptive Card checks and the message envelope.
pub mod teams {
    use serde_json::{Value, json};

    /// The attachment content type of an Adaptive Card.
    pub const CARD_CONTENT_TYPE: &str = "application/vnd.microsoft.card.adaptive";

    /// Checks the basics of the Adaptive Card schema: `type`, `version`, `body` of typed elements.
    pub fn check_card(card: &Value) -> Result<(), String> {
        if card["type"] != "AdaptiveCard" {
            return Err(format!(
                "type: expected \"AdaptiveCard\", found {}",
                card["type"]
            ));
        }
        let version = card["version"]
            .as_str()
            .ok_or("version: missing (e.g. \"1.4\")")?;
        let ok = version
            .split_once('.')
            .is_some_and(|(a, b)| a == "1" && b.parse::<u32>().is_ok_and(|m| m <= 5));
        if !ok {
            return Err(format!(
                "version: {version:?} is not an Adaptive Card version Teams renders (1.0 to 1.5)"
            ));
        }
        let body = card["body"].as_array().ok_or("body: must be an array")?;
        fn elements(items: &[Value], place: &str) -> Result<(), String> {
            for (i, e) in items.iter().enumerate() {
                let p = format!("{place}[{i}]");
                let kind = e["type"]
                    .as_str()
                    .ok_or_else(|| format!("{p}.type: missing"))?;
                match kind {
                    "TextBlock" if !e["text"].is_string() => {
                        return Err(format!("{p}.text: a TextBlock needs text"));
                    }
                    "Container" => elements(
                        e["items"]
                            .as_array()
                            .ok_or_else(|| format!("{p}.items: missing"))?,
                        &format!("{p}.items"),
                    )?,
                    "FactSet" => {
                        for (j, f) in e["facts"]
                            .as_array()
                            .ok_or_else(|| format!("{p}.facts: missing"))?
                            .iter()
                            .enumerate()
                        {
                            if !f["title"].is_string() || !f["value"].is_string() {
                                return Err(format!(
                                    "{p}.facts[{j}]: title and value must be strings"
                                ));
                            }
                        }
                    }
                    "ActionSet" => {
                        for (j, a) in e["actions"]
                            .as_array()
                            .ok_or_else(|| format!("{p}.actions: missing"))?
                            .iter()
                            .enumerate()
                        {
                            if a["type"] == "Action.OpenUrl" && !a["url"].is_string() {
                                return Err(format!("{p}.actions[{j}].url: missing"));
                            }
                        }
                    }
                    _ => {}
                }
            }
            Ok(())
        }
        elements(body, "body")
    }

    /// The Workflows webhook body carrying `card`.
    pub fn envelope(card: Value) -> Value {
        json!({
            "type": "message",
            "attachments": [{"contentType": CARD_CONTENT_TYPE, "contentUrl": null, "content": card}]
        })
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
