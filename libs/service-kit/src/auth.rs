//! Guards for endpoints that change state: bearer tokens compared in constant time (closed when
//! no token is configured — never open because a variable is unset), cross-site checks
//! (`Origin`/`Sec-Fetch-Site` against `Host`), and JSON-only bodies for webhooks.

use http::HeaderMap;
use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;

use crate::error::ApiError;

/// Passes only when a token is configured and `Authorization: Bearer <token>` matches it.
///
/// With no token configured the endpoint is closed: 403 `not_configured`. A missing or wrong
/// token is a 401 `unauthorized`.
pub fn require_bearer(headers: &HeaderMap, token: Option<&SecretString>) -> Result<(), ApiError> {
    require_token(headers, token, "its token variable")
}

/// [`require_bearer`], naming the variable that configures the token in the 403.
pub fn require_token(
    headers: &HeaderMap,
    token: Option<&SecretString>,
    var: &str,
) -> Result<(), ApiError> {
    let Some(expected) = token else {
        return Err(ApiError::forbidden(
            "not_configured",
            format!("this endpoint is closed: no token is configured (set {var})"),
        ));
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

/// Refuses a request a browser made on behalf of another site: `Sec-Fetch-Site` other than
/// `same-origin`/`none`, or an `Origin` whose host and port differ from `Host` (or `null`).
/// Requests without either header (curl, Alertmanager, Prometheus, our own clients) pass.
pub fn same_origin(headers: &HeaderMap) -> Result<(), ApiError> {
    if let Some(site) = headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        && !(site.eq_ignore_ascii_case("same-origin") || site.eq_ignore_ascii_case("none"))
    {
        return Err(cross_site(format!("Sec-Fetch-Site is {site:?}")));
    }
    let Some(origin) = headers.get(http::header::ORIGIN) else {
        return Ok(());
    };
    let origin = origin.to_str().unwrap_or("null").trim();
    let origin_host = origin
        .split_once("://")
        .map(|(_, rest)| rest.trim_end_matches('/'))
        .unwrap_or("");
    let host = headers
        .get(http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .unwrap_or("");
    if origin_host.is_empty() || host.is_empty() || !origin_host.eq_ignore_ascii_case(host) {
        return Err(cross_site(format!(
            "Origin {origin:?} does not match Host {host:?}"
        )));
    }
    Ok(())
}

fn cross_site(detail: String) -> ApiError {
    ApiError::forbidden(
        "cross_site",
        format!("cross-site requests may not change state here ({detail})"),
    )
}

/// Refuses a body that is not `Content-Type: application/json` (415): form and text bodies are
/// what a cross-site HTML form or `fetch` without a preflight can send.
pub fn json_only(headers: &HeaderMap) -> Result<(), ApiError> {
    let ctype = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = ctype.split(';').next().unwrap_or("").trim();
    if essence.eq_ignore_ascii_case("application/json") {
        Ok(())
    } else {
        Err(ApiError::new(
            http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!("expected Content-Type: application/json, got {ctype:?}"),
        ))
    }
}

/// Everything a webhook receiver checks, in order: the token named by `var`, a same-origin
/// request, a JSON body.
pub fn webhook_guard(
    headers: &HeaderMap,
    token: Option<&SecretString>,
    var: &str,
) -> Result<(), ApiError> {
    require_token(headers, token, var)?;
    same_origin(headers)?;
    json_only(headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    fn auth(value: Option<&str>) -> HeaderMap {
        match value {
            Some(v) => headers(&[("authorization", v)]),
            None => HeaderMap::new(),
        }
    }

    #[test]
    fn token_rules() {
        let token = SecretString::from("s3cret");
        let closed = require_bearer(&auth(None), None).unwrap_err();
        assert_eq!(closed.status(), 403, "closed without a token");
        assert_eq!(closed.code(), "not_configured");
        assert_eq!(
            require_bearer(&auth(Some("Bearer anything")), None)
                .unwrap_err()
                .status(),
            403
        );
        assert!(require_bearer(&auth(Some("Bearer s3cret")), Some(&token)).is_ok());
        for bad in [
            None,
            Some("Bearer wrong"),
            Some("Bearer "),
            Some("s3cret"),
            Some("Bearer s3cre"),
            Some("Bearer s3crett"),
        ] {
            let e = require_bearer(&auth(bad), Some(&token)).unwrap_err();
            assert_eq!(e.status(), 401, "{bad:?}");
        }
        let named = require_token(&auth(None), None, "CHAOS_TOKEN").unwrap_err();
        assert!(named.message().contains("CHAOS_TOKEN"), "{named}");
    }

    #[test]
    fn cross_site_requests_are_refused() {
        assert!(same_origin(&HeaderMap::new()).is_ok(), "curl sends neither");
        assert!(
            same_origin(&headers(&[
                ("host", "127.0.0.1:8086"),
                ("origin", "http://127.0.0.1:8086")
            ]))
            .is_ok()
        );
        for bad in [
            vec![
                ("host", "127.0.0.1:8086"),
                ("origin", "http://evil.example"),
            ],
            vec![("host", "127.0.0.1:8086"), ("origin", "null")],
            vec![
                ("host", "127.0.0.1:8086"),
                ("origin", "http://127.0.0.1:8087"),
            ],
            vec![("sec-fetch-site", "cross-site")],
            vec![("sec-fetch-site", "same-site")],
        ] {
            let e = same_origin(&headers(&bad)).unwrap_err();
            assert_eq!(
                (e.status().as_u16(), e.code()),
                (403, "cross_site"),
                "{bad:?}"
            );
        }
        assert!(same_origin(&headers(&[("sec-fetch-site", "same-origin")])).is_ok());
    }

    #[test]
    fn webhooks_take_json_only() {
        assert!(json_only(&headers(&[("content-type", "application/json")])).is_ok());
        assert!(
            json_only(&headers(&[(
                "content-type",
                "application/json; charset=utf-8"
            )]))
            .is_ok()
        );
        for bad in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data",
        ] {
            assert_eq!(
                json_only(&headers(&[("content-type", bad)]))
                    .unwrap_err()
                    .status(),
                415
            );
        }
        assert_eq!(json_only(&HeaderMap::new()).unwrap_err().status(), 415);
        let token = SecretString::from("t");
        let ok = headers(&[
            ("authorization", "Bearer t"),
            ("content-type", "application/json"),
        ]);
        assert!(webhook_guard(&ok, Some(&token), "T").is_ok());
    }
}
