//! Microsoft Teams (Workflows webhook): Adaptive Card checks and the message envelope. A leaf:
//! templates check rendered cards with it, channels send them.

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
                            return Err(format!("{p}.facts[{j}]: title and value must be strings"));
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
