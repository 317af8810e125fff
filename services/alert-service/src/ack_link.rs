//! Acknowledge links as capabilities.
//!
//! A link in a message is `{PUBLIC_URL}/api/v1/alerts/{fingerprint}/ack?exp=…&nonce=…&sig=…`:
//! `sig` is HMAC-SHA256, keyed with `ACK_SIGNING_KEY`, over the fingerprint, the expiry (Unix
//! seconds) and a random nonce. An ack is accepted only with a valid signature, before its
//! expiry, and once: the nonce is recorded in the outbox database when the ack is taken, so a
//! replay — even after a restart — is refused. Without `ACK_SIGNING_KEY` no link is signed and
//! every ack is refused (403): acks are never open because a variable is unset.

use std::fmt;
use std::time::Duration;

use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use service_kit::ApiError;
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The shortest key accepted, in bytes.
pub const MIN_KEY_LEN: usize = 32;

/// The query of a signed link.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct LinkQuery {
    /// Expiry, Unix seconds.
    pub exp: Option<String>,
    /// Random, single-use.
    pub nonce: Option<String>,
    /// Hex HMAC-SHA256.
    pub sig: Option<String>,
}

/// A checked link: what may be consumed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The nonce to record as used.
    pub nonce: String,
    /// Expiry, Unix seconds.
    pub expires_at: i64,
}

/// Signs and checks acknowledge links.
#[derive(Clone)]
pub struct Signer {
    key: SecretString,
    ttl: Duration,
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signer")
            .field("key", &"[redacted]")
            .field("ttl", &self.ttl)
            .finish()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok())
        .collect()
}

impl Signer {
    /// A signer with `key` (at least [`MIN_KEY_LEN`] bytes) whose links live `ttl`.
    pub fn new(key: SecretString, ttl: Duration) -> Result<Self, String> {
        if key.expose_secret().len() < MIN_KEY_LEN {
            return Err(format!(
                "must be at least {MIN_KEY_LEN} characters (e.g. `openssl rand -hex 32`)"
            ));
        }
        Ok(Self { key, ttl })
    }

    /// How long a link is valid.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    fn mac(&self, fingerprint: &str, exp: &str, nonce: &str) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(self.key.expose_secret().as_bytes())
            .expect("HMAC takes a key of any length");
        mac.update(b"organism-ack-v1\n");
        mac.update(fingerprint.as_bytes());
        mac.update(b"\n");
        mac.update(exp.as_bytes());
        mac.update(b"\n");
        mac.update(nonce.as_bytes());
        mac
    }

    /// The query string (`exp=…&nonce=…&sig=…`) of a fresh link for `fingerprint`, valid from
    /// `now` (Unix seconds) for the TTL.
    pub fn sign(&self, fingerprint: &str, now: i64) -> String {
        let exp = (now + self.ttl.as_secs() as i64).to_string();
        let nonce = hex(&rand::random::<[u8; 16]>());
        let sig = hex(&self.mac(fingerprint, &exp, &nonce).finalize().into_bytes());
        format!("exp={exp}&nonce={nonce}&sig={sig}")
    }

    /// Checks the link's signature (in constant time) and expiry at `now` (Unix seconds).
    /// Unsigned: 401; tampered (any part): 403; expired: 410. Use is checked by the caller.
    pub fn verify(
        &self,
        fingerprint: &str,
        query: &LinkQuery,
        now: i64,
    ) -> Result<Verified, ApiError> {
        let (Some(exp), Some(nonce), Some(sig)) = (&query.exp, &query.nonce, &query.sig) else {
            return Err(ApiError::new(
                http::StatusCode::UNAUTHORIZED,
                "unsigned_link",
                "an acknowledgement needs the signed link from the notification (exp, nonce and sig)",
            ));
        };
        let tampered = || {
            ApiError::forbidden(
                "bad_signature",
                "the link's signature does not match: use the link exactly as it was sent",
            )
        };
        let sig = unhex(sig).ok_or_else(tampered)?;
        if nonce.len() != 32 || unhex(nonce).is_none() {
            return Err(tampered());
        }
        self.mac(fingerprint, exp, nonce)
            .verify_slice(&sig)
            .map_err(|_| tampered())?;
        let expires_at: i64 = exp.parse().map_err(|_| tampered())?;
        if now > expires_at {
            return Err(ApiError::new(
                http::StatusCode::GONE,
                "link_expired",
                "this acknowledge link has expired; use the link of a newer notification",
            ));
        }
        Ok(Verified {
            nonce: nonce.clone(),
            expires_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> Signer {
        Signer::new(
            SecretString::from("k".repeat(32)),
            Duration::from_secs(3600),
        )
        .unwrap()
    }

    fn query(text: &str) -> LinkQuery {
        let mut q = LinkQuery::default();
        for pair in text.split('&') {
            let (k, v) = pair.split_once('=').unwrap();
            let v = Some(v.to_owned());
            match k {
                "exp" => q.exp = v,
                "nonce" => q.nonce = v,
                "sig" => q.sig = v,
                _ => {}
            }
        }
        q
    }

    #[test]
    fn a_signed_link_verifies_until_it_expires() {
        let s = signer();
        let link = query(&s.sign("00000000000000aa", 1_000));
        let ok = s.verify("00000000000000aa", &link, 1_000).unwrap();
        assert_eq!(ok.expires_at, 4_600);
        assert!(s.verify("00000000000000aa", &link, 4_600).is_ok());
        let e = s.verify("00000000000000aa", &link, 4_601).unwrap_err();
        assert_eq!((e.status().as_u16(), e.code()), (410, "link_expired"));
    }

    #[test]
    fn unsigned_and_tampered_links_are_refused() {
        let s = signer();
        let good = query(&s.sign("00000000000000aa", 1_000));
        let e = s
            .verify("00000000000000aa", &LinkQuery::default(), 1_000)
            .unwrap_err();
        assert_eq!(e.status(), 401);
        // Another alert's fingerprint with this link.
        let e = s.verify("00000000000000ab", &good, 1_000).unwrap_err();
        assert_eq!((e.status().as_u16(), e.code()), (403, "bad_signature"));
        // A later expiry, another nonce, a flipped signature digit, a malformed signature.
        let mut later = good.clone();
        later.exp = Some("999999999999".into());
        let mut other_nonce = good.clone();
        other_nonce.nonce = Some("0".repeat(32));
        let mut flipped = good.clone();
        let mut sig = flipped.sig.clone().unwrap();
        let last = if sig.ends_with('0') { '1' } else { '0' };
        sig.pop();
        sig.push(last);
        flipped.sig = Some(sig);
        let mut junk = good.clone();
        junk.sig = Some("zz".into());
        for q in [later, other_nonce, flipped, junk] {
            let e = s.verify("00000000000000aa", &q, 1_000).unwrap_err();
            assert_eq!(e.status(), 403, "{q:?}");
        }
        // A link signed with another key.
        let other =
            Signer::new(SecretString::from("x".repeat(40)), Duration::from_secs(60)).unwrap();
        let foreign = query(&other.sign("00000000000000aa", 1_000));
        assert_eq!(
            s.verify("00000000000000aa", &foreign, 1_000)
                .unwrap_err()
                .status(),
            403
        );
    }

    #[test]
    fn short_keys_are_refused() {
        assert!(Signer::new(SecretString::from("short"), Duration::from_secs(1)).is_err());
    }
}
