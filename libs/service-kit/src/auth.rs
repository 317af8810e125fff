//! Bearer-token checks for mutating endpoints, compared in constant time.

use http::HeaderMap;
use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;

use crate::error::ApiError;

/// Passes when no token is configured, or when `Authorization: Bearer <token>` matches it.
pub fn require_bearer(headers: &HeaderMap, token: Option<&SecretString>) -> Result<(), ApiError> {
    let Some(expected) = token else {
        return Ok(());
    };
    let presented = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .unwrap_or_default();
    let expected = expected.expose_secret().as_bytes();
    if !presented.is_empty() && bool::from(presented.as_bytes().ct_eq(expected)) {
        Ok(())
    } else {
        Err(ApiError::unauthorized())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(value: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(v) = value {
            h.insert(http::header::AUTHORIZATION, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn token_rules() {
        let token = SecretString::from("s3cret");
        assert!(
            require_bearer(&headers(None), None).is_ok(),
            "open without a token"
        );
        assert!(require_bearer(&headers(Some("Bearer s3cret")), Some(&token)).is_ok());
        assert!(require_bearer(&headers(None), Some(&token)).is_err());
        assert!(require_bearer(&headers(Some("Bearer wrong")), Some(&token)).is_err());
        assert!(require_bearer(&headers(Some("Bearer ")), Some(&token)).is_err());
        assert!(require_bearer(&headers(Some("s3cret")), Some(&token)).is_err());
    }
}
