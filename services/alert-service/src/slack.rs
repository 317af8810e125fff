//! Slack Block Kit: the shape checks Slack applies to an incoming-webhook message, and clipping
//! to its limits. A leaf: templates check rendered messages with it, channels send them.

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
            "header" => text_object(&b["text"], &format!("{place}.text"), MAX_HEADER_TEXT, true)?,
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
