//! The users resource as clients see it, and the rules a user's fields must follow.

use email_address::{EmailAddress, Options};
use serde::{Deserialize, Serialize};
use service_kit::ApiError;
use time::OffsetDateTime;

/// The longest name accepted, in characters.
pub const MAX_NAME_CHARS: usize = 100;
/// The longest e-mail address accepted, in bytes (RFC 5321 path limit).
pub const MAX_EMAIL_BYTES: usize = 254;

/// A stored user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct User {
    /// Assigned by the database; never reused.
    pub id: i64,
    /// Display name.
    pub name: String,
    /// E-mail address, unique regardless of case.
    pub email: String,
    /// When the user was created (RFC 3339).
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// When the user was last changed (RFC 3339).
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

/// The body of `POST /users` and `PUT /users/{id}`; any other field is rejected.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserInput {
    /// Display name: 1 to 100 characters after trimming, no control characters.
    pub name: String,
    /// E-mail address: `local@domain.tld`, at most 254 bytes.
    pub email: String,
}

/// A [`UserInput`] that passed validation: trimmed and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidUser {
    /// The trimmed name.
    pub name: String,
    /// The trimmed e-mail address.
    pub email: String,
}

/// Bidirectional embedding, override and isolate controls (U+202A–U+202E, U+2066–U+2069): they
/// reorder what is displayed around them, so a name could show something other than it is.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Characters that render as nothing: zero-width spaces and joiners, marks, word joiners, the
/// byte-order mark, the soft hyphen. Allowed inside a name (joiners belong to some scripts and
/// emoji), but a name made only of them is blank.
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{034F}'
            | '\u{180E}'
            | '\u{200B}'..='\u{200F}'
            | '\u{2060}'..='\u{2064}'
            | '\u{FEFF}'
    ) || is_bidi_control(c)
}

impl UserInput {
    /// Checks every field; the first invalid one is named in a 422.
    pub fn validate(self) -> Result<ValidUser, ApiError> {
        let name = self.name.trim();
        if name.is_empty() {
            return Err(ApiError::invalid_field("name", "name must not be empty"));
        }
        if name.chars().count() > MAX_NAME_CHARS {
            return Err(ApiError::invalid_field(
                "name",
                format!("name must be at most {MAX_NAME_CHARS} characters"),
            ));
        }
        if name.chars().any(char::is_control) {
            return Err(ApiError::invalid_field(
                "name",
                "name must not contain control characters",
            ));
        }
        if name.chars().any(is_bidi_control) {
            return Err(ApiError::invalid_field(
                "name",
                "name must not contain bidirectional override or isolate characters",
            ));
        }
        if name.chars().all(|c| c.is_whitespace() || is_invisible(c)) {
            return Err(ApiError::invalid_field(
                "name",
                "name must contain a visible character",
            ));
        }
        let email = self.email.trim();
        if email.len() > MAX_EMAIL_BYTES {
            return Err(ApiError::invalid_field(
                "email",
                format!("email must be at most {MAX_EMAIL_BYTES} bytes"),
            ));
        }
        let options = Options::default()
            .with_required_tld()
            .without_domain_literal()
            .without_display_text();
        if let Err(e) = EmailAddress::parse_with_options(email, options) {
            return Err(ApiError::invalid_field(
                "email",
                format!("email is not a valid address like name@example.org: {e}"),
            ));
        }
        Ok(ValidUser {
            name: name.to_owned(),
            email: email.to_owned(),
        })
    }
}

/// One page of `GET /users`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Page {
    /// Users in ascending id order.
    pub items: Vec<User>,
    /// The cursor of the next page (the last id of this one), `null` on the last page.
    pub next_cursor: Option<i64>,
    /// The link to the next page, `null` on the last page.
    pub next: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(name: &str, email: &str) -> UserInput {
        UserInput {
            name: name.to_owned(),
            email: email.to_owned(),
        }
    }

    #[test]
    fn valid_input_is_trimmed() {
        let v = input("  Ada Lovelace ", " ada@example.org ")
            .validate()
            .unwrap();
        assert_eq!(v.name, "Ada Lovelace");
        assert_eq!(v.email, "ada@example.org");
    }

    #[test]
    fn each_rule_names_its_field() {
        let long = "x".repeat(MAX_NAME_CHARS + 1);
        let long_email = format!("{}@example.org", "a".repeat(250));
        for (name, email, field) in [
            ("", "a@example.org", "name"),
            ("   ", "a@example.org", "name"),
            (long.as_str(), "a@example.org", "name"),
            ("bell\u{7}", "a@example.org", "name"),
            ("\u{200B}\u{200D}\u{FEFF}", "a@example.org", "name"),
            ("\u{2060} \u{200C}", "a@example.org", "name"),
            ("Ada\u{202E}gnp.exe", "a@example.org", "name"),
            ("\u{2067}Ada\u{2069}", "a@example.org", "name"),
            ("Ada", "", "email"),
            ("Ada", "not-an-email", "email"),
            ("Ada", "ada@localhost", "email"),
            ("Ada", "Ada <ada@example.org>", "email"),
            ("Ada", "ada@[127.0.0.1]", "email"),
            ("Ada", long_email.as_str(), "email"),
        ] {
            let err = input(name, email).validate().unwrap_err();
            assert_eq!(err.status().as_u16(), 422, "{name:?} {email:?}");
            assert_eq!(err.field(), Some(field), "{name:?} {email:?}: {err}");
        }
    }

    #[test]
    fn joiners_inside_a_visible_name_are_kept() {
        // U+200C ZERO WIDTH NON-JOINER is part of Persian spelling; U+200D joins emoji.
        assert!(input("می\u{200C}خواهم", "p@example.org").validate().is_ok());
        assert!(
            input("Ada \u{1F469}\u{200D}\u{1F4BB}", "a@example.org")
                .validate()
                .is_ok()
        );
    }

    #[test]
    fn names_are_counted_in_characters_not_bytes() {
        let name = "é".repeat(MAX_NAME_CHARS);
        assert!(input(&name, "e@example.org").validate().is_ok());
    }
}
