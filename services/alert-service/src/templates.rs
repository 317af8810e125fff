//! Message templates (minijinja): shipped defaults per channel kind, overridable per channel
//! from the configuration file (`channels.<name>.templates.<template>`).
//!
//! Every template is compiled at load time and test-rendered with sample data; a JSON channel's
//! output must parse as JSON (and, for Slack and Teams, have the shape those services accept).
//! Errors name the place and line: `channels.slack.templates.message: line 3: syntax error: ...`.
//! At delivery, an override that fails to render falls back to the shipped default (logged), so
//! a bad template never loses a notification.

use std::collections::{BTreeMap, BTreeSet};

use minijinja::{AutoEscape, Environment, Value};
use serde::Serialize;

use crate::settings::ChannelKind;
use crate::template_data::{MessageView, Report, sample};

/// Which templates a channel kind has: (name, shipped source, whether the output is JSON).
pub fn template_names(kind: ChannelKind) -> &'static [(&'static str, &'static str, bool)] {
    match kind {
        ChannelKind::Log => &[
            (
                "message",
                include_str!("../templates/log_message.j2"),
                false,
            ),
            ("digest", include_str!("../templates/log_digest.j2"), false),
        ],
        ChannelKind::Slack => &[
            (
                "message",
                include_str!("../templates/slack_message.j2"),
                true,
            ),
            ("digest", include_str!("../templates/slack_digest.j2"), true),
        ],
        ChannelKind::Teams => &[
            (
                "message",
                include_str!("../templates/teams_message.j2"),
                true,
            ),
            ("digest", include_str!("../templates/teams_digest.j2"), true),
        ],
        ChannelKind::Webhook => &[
            (
                "message",
                include_str!("../templates/webhook_message.j2"),
                true,
            ),
            (
                "digest",
                include_str!("../templates/webhook_digest.j2"),
                true,
            ),
        ],
        ChannelKind::Email => &[
            (
                "subject",
                include_str!("../templates/email_subject.j2"),
                false,
            ),
            ("text", include_str!("../templates/email_text.j2"), false),
            ("html", include_str!("../templates/email_html.j2"), false),
            (
                "digest_subject",
                include_str!("../templates/email_digest_subject.j2"),
                false,
            ),
            (
                "digest_text",
                include_str!("../templates/email_digest_text.j2"),
                false,
            ),
            (
                "digest_html",
                include_str!("../templates/email_digest_html.j2"),
                false,
            ),
        ],
    }
}

/// Clips to `max` characters, ending with `…` when cut.
fn clip(s: String, max: usize) -> String {
    if s.chars().count() <= max {
        return s;
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Slack mrkdwn escaping: `&`, `<`, `>`.
fn mrkdwn(s: String) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.add_filter("clip", clip);
    env.add_filter("mrkdwn", mrkdwn);
    env.set_auto_escape_callback(|name| {
        if name.ends_with("/html") || name.ends_with("/digest_html") {
            AutoEscape::Html
        } else {
            AutoEscape::None
        }
    });
    env.set_trim_blocks(false);
    env
}

/// Every channel's compiled templates.
pub struct Templates {
    env: Environment<'static>,
    kinds: BTreeMap<String, ChannelKind>,
    overridden: BTreeSet<String>,
}

impl std::fmt::Debug for Templates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Templates")
            .field("channels", &self.kinds)
            .field("overridden", &self.overridden)
            .finish()
    }
}

/// A template rendering failure.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct RenderError(pub String);

fn describe(e: &minijinja::Error) -> String {
    let mut text = String::new();
    if let Some(line) = e.line() {
        text.push_str(&format!("line {line}: "));
    }
    text.push_str(&e.kind().to_string());
    if let Some(detail) = e.detail() {
        text.push_str(&format!(": {detail}"));
    }
    text
}

impl Templates {
    /// Compiles the shipped templates of each channel's kind plus the overrides; checks each
    /// with sample data. `overrides[channel][template] = source`.
    pub fn compile(
        kinds: &BTreeMap<String, ChannelKind>,
        overrides: &BTreeMap<String, BTreeMap<String, String>>,
    ) -> Result<Self, Vec<String>> {
        let mut env = environment();
        let mut errors = Vec::new();
        let mut overridden = BTreeSet::new();
        for kind in [
            ChannelKind::Log,
            ChannelKind::Slack,
            ChannelKind::Teams,
            ChannelKind::Webhook,
            ChannelKind::Email,
        ] {
            for (name, source, _) in template_names(kind) {
                env.add_template_owned(default_name(kind, name), *source)
                    .unwrap_or_else(|e| {
                        panic!(
                            "shipped template {}/{name}: {}",
                            kind.as_str(),
                            describe(&e)
                        )
                    });
            }
        }
        for (channel, templates) in overrides {
            let Some(kind) = kinds.get(channel) else {
                continue;
            };
            let known = template_names(*kind);
            for (name, source) in templates {
                let place = format!("channels.{channel}.templates.{name}");
                if !known.iter().any(|(n, _, _)| n == name) {
                    let names: Vec<&str> = known.iter().map(|(n, _, _)| *n).collect();
                    errors.push(format!(
                        "{place}: a {} channel has no template {name:?} (it has: {})",
                        kind.as_str(),
                        names.join(", ")
                    ));
                    continue;
                }
                match env.add_template_owned(format!("{channel}/{name}"), source.clone()) {
                    Ok(()) => {
                        overridden.insert(format!("{channel}/{name}"));
                    }
                    Err(e) => errors.push(format!("{place}: {}", describe(&e))),
                }
            }
        }
        let templates = Self {
            env,
            kinds: kinds.clone(),
            overridden,
        };
        // Test-render every template of every channel with sample data.
        for (channel, kind) in kinds {
            let message = sample::message(channel);
            let report = sample::report();
            for (name, _, _) in template_names(*kind) {
                let key = format!("{channel}/{name}");
                if !templates.overridden.contains(&key) {
                    continue;
                }
                let place = format!("channels.{channel}.templates.{name}");
                let result = if name.starts_with("digest") {
                    templates.render_one(&key, *kind, name, digest_context(&report))
                } else {
                    templates.render_one(&key, *kind, name, message_context(&message))
                };
                if let Err(e) = result {
                    errors.push(format!("{place}: {}", e.0));
                }
            }
        }
        if errors.is_empty() {
            Ok(templates)
        } else {
            Err(errors)
        }
    }

    fn render_one(
        &self,
        key: &str,
        kind: ChannelKind,
        name: &str,
        ctx: Value,
    ) -> Result<String, RenderError> {
        let tmpl = self
            .env
            .get_template(key)
            .map_err(|e| RenderError(describe(&e)))?;
        let out = tmpl.render(ctx).map_err(|e| RenderError(describe(&e)))?;
        let is_json = template_names(kind)
            .iter()
            .any(|(n, _, j)| *n == name && *j);
        if is_json {
            let v: serde_json::Value = serde_json::from_str(&out).map_err(|e| {
                RenderError(format!(
                    "the output is not JSON ({e}); use |tojson for values"
                ))
            })?;
            match kind {
                ChannelKind::Slack => crate::slack::check(&v).map_err(RenderError)?,
                ChannelKind::Teams => crate::teams::check_card(&v).map_err(RenderError)?,
                _ => {}
            }
        }
        Ok(out)
    }

    /// Renders `name` for `channel` with `ctx`: the override if any (falling back to the shipped
    /// template if it fails), else the shipped one.
    pub fn render(&self, channel: &str, name: &str, ctx: Value) -> Result<String, RenderError> {
        let kind = *self
            .kinds
            .get(channel)
            .ok_or_else(|| RenderError(format!("unknown channel {channel:?}")))?;
        let key = format!("{channel}/{name}");
        if self.overridden.contains(&key) {
            match self.render_one(&key, kind, name, ctx.clone()) {
                Ok(out) => return Ok(out),
                Err(e) => {
                    tracing::error!(channel, template = name, error = %e, "template override failed; using the shipped one")
                }
            }
        }
        self.render_one(&default_name(kind, name), kind, name, ctx)
    }
}

fn default_name(kind: ChannelKind, name: &str) -> String {
    format!("@default/{}/{name}", kind.as_str())
}

/// The context of a message template: the view's fields, plus `message` (the whole view).
pub fn message_context(view: &MessageView) -> Value {
    #[derive(Serialize)]
    struct Ctx<'a> {
        #[serde(flatten)]
        view: &'a MessageView,
        message: &'a MessageView,
    }
    Value::from_serialize(Ctx {
        view,
        message: view,
    })
}

/// The context of a digest template: `report` and `title`.
pub fn digest_context(report: &Report) -> Value {
    minijinja::context! { report => Value::from_serialize(report), title => report.title.clone() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(pairs: &[(&str, ChannelKind)]) -> BTreeMap<String, ChannelKind> {
        pairs.iter().map(|(n, k)| ((*n).to_owned(), *k)).collect()
    }

    fn overrides(
        channel: &str,
        name: &str,
        source: &str,
    ) -> BTreeMap<String, BTreeMap<String, String>> {
        [(
            channel.to_owned(),
            [(name.to_owned(), source.to_owned())].into_iter().collect(),
        )]
        .into_iter()
        .collect()
    }

    #[test]
    fn shipped_templates_render_for_every_kind() {
        let all = kinds(&[
            ("log", ChannelKind::Log),
            ("slack", ChannelKind::Slack),
            ("teams", ChannelKind::Teams),
            ("hook", ChannelKind::Webhook),
            ("mail", ChannelKind::Email),
        ]);
        let t = Templates::compile(&all, &BTreeMap::new()).unwrap();
        let msg = sample::message("x");
        let report = sample::report();
        for (channel, kind) in &all {
            for (name, _, _) in template_names(*kind) {
                let ctx = if name.starts_with("digest") {
                    digest_context(&report)
                } else {
                    message_context(&msg)
                };
                let out = t
                    .render_one(&default_name(*kind, name), *kind, name, ctx)
                    .unwrap_or_else(|e| panic!("{channel}/{name}: {e}"));
                assert!(!out.trim().is_empty(), "{channel}/{name}");
            }
        }
        let html = t.render("mail", "html", message_context(&msg)).unwrap();
        assert!(
            html.contains("heart-1 &lt;crash&gt; &amp; loops"),
            "HTML is escaped: {html}"
        );
        let text = t.render("mail", "text", message_context(&msg)).unwrap();
        assert!(text.contains("heart-1 <crash> & loops"), "{text}");
        assert!(text.contains(&msg.alerts[0].ack_url), "{text}");
        assert!(
            text.contains("Runbook: https://runbooks.organism.dev/PodCrashLooping"),
            "{text}"
        );
        let slack: serde_json::Value =
            serde_json::from_str(&t.render("slack", "message", message_context(&msg)).unwrap())
                .unwrap();
        assert!(
            slack["blocks"]
                .to_string()
                .contains("heart-1 &lt;crash&gt; &amp; loops")
        );
        let hook: serde_json::Value =
            serde_json::from_str(&t.render("hook", "message", message_context(&msg)).unwrap())
                .unwrap();
        assert_eq!(hook["alerts"][0]["fingerprint"], msg.alerts[0].fingerprint);
    }

    #[test]
    fn syntax_error_names_channel_template_and_line() {
        let e = Templates::compile(
            &kinds(&[("ops", ChannelKind::Slack)]),
            &overrides("ops", "message", "{\"text\": 1}\n{% if %}\n"),
        )
        .err()
        .unwrap();
        assert!(
            e[0].starts_with("channels.ops.templates.message: line 2: syntax error"),
            "{e:?}"
        );
    }

    #[test]
    fn non_json_output_and_bad_shapes_are_load_errors() {
        let e = Templates::compile(
            &kinds(&[("hook", ChannelKind::Webhook)]),
            &overrides("hook", "message", "alert {{ title }}"),
        )
        .err()
        .unwrap();
        assert!(
            e[0].contains("channels.hook.templates.message") && e[0].contains("not JSON"),
            "{e:?}"
        );
        let e = Templates::compile(
            &kinds(&[("s", ChannelKind::Slack)]),
            &overrides("s", "message", "{\"blocks\": [{\"type\": \"nonsense\"}]}"),
        )
        .err()
        .unwrap();
        assert!(e[0].contains("nonsense"), "{e:?}");
        let e = Templates::compile(
            &kinds(&[("s", ChannelKind::Slack)]),
            &overrides("s", "nope", "x"),
        )
        .err()
        .unwrap();
        assert!(e[0].contains("has no template \"nope\""), "{e:?}");
        let e = Templates::compile(
            &kinds(&[("l", ChannelKind::Log)]),
            &overrides("l", "message", "{{ title | nosuchfilter }}"),
        )
        .err()
        .unwrap();
        assert!(
            e[0].starts_with("channels.l.templates.message: line 1"),
            "{e:?}"
        );
    }

    #[test]
    fn overrides_are_used_and_fall_back_when_they_fail_at_runtime() {
        let t = Templates::compile(
            &kinds(&[("l", ChannelKind::Log)]),
            &overrides(
                "l",
                "message",
                "{% if alerts[0].labels.pod == 'boom' %}{{ 'a' + 1 }}{% endif %}custom {{ title }}",
            ),
        )
        .unwrap();
        let msg = sample::message("l");
        assert!(
            t.render("l", "message", message_context(&msg))
                .unwrap()
                .starts_with("custom [ESCALATED")
        );
        let mut boom = msg.clone();
        boom.alerts[0].labels.insert("pod".into(), "boom".into());
        let out = t.render("l", "message", message_context(&boom)).unwrap();
        assert!(
            out.starts_with("[ESCALATED tier 1]"),
            "fell back to the shipped template: {out}"
        );
    }
}
