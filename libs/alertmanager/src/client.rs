//! An async client for the Alertmanager API v2.

use std::time::Duration;

use reqwest::{Method, StatusCode, Url};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use telemetry::client::HttpClient;

use crate::api::{GettableAlert, GettableSilence, Matcher, PostableAlert, PostableSilence};

/// The per-request timeout unless [`AlertmanagerClient::with_timeout`] sets another.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// How much of an error response body an [`Error::Status`] keeps.
const MAX_ERROR_BODY: usize = 512;

/// What can go wrong talking to Alertmanager.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The base URL does not parse or is not http(s).
    #[error("invalid Alertmanager URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL given.
        url: String,
        /// Why it is rejected.
        reason: String,
    },
    /// No answer within the timeout.
    #[error("Alertmanager request timed out")]
    Timeout(#[source] reqwest::Error),
    /// The connection could not be made.
    #[error("cannot connect to Alertmanager")]
    Connect(#[source] reqwest::Error),
    /// Any other transport failure.
    #[error("Alertmanager request failed")]
    Transport(#[source] reqwest::Error),
    /// The silence id is unknown.
    #[error("silence {id} not found")]
    SilenceNotFound {
        /// The id asked for.
        id: String,
    },
    /// A non-success status.
    #[error("Alertmanager answered {status}: {body}")]
    Status {
        /// The status.
        status: StatusCode,
        /// The start of the body (Alertmanager puts the reason there).
        body: String,
    },
    /// A success status with a body that is not the expected JSON.
    #[error("cannot decode Alertmanager's answer")]
    Decode(#[source] serde_json::Error),
}

impl Error {
    /// A bounded label for metrics: `invalid_url`, `timeout`, `connect`, `transport`,
    /// `not_found`, `http_4xx`, `http_5xx`, `http_other`, `decode`.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::InvalidUrl { .. } => "invalid_url",
            Error::Timeout(_) => "timeout",
            Error::Connect(_) => "connect",
            Error::Transport(_) => "transport",
            Error::SilenceNotFound { .. } => "not_found",
            Error::Status { status, .. } if status.is_client_error() => "http_4xx",
            Error::Status { status, .. } if status.is_server_error() => "http_5xx",
            Error::Status { .. } => "http_other",
            Error::Decode(_) => "decode",
        }
    }

    /// Whether trying again later may succeed (timeouts, connection failures, 5xx, 429).
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Timeout(_) | Error::Connect(_) | Error::Transport(_) => true,
            Error::Status { status, .. } => {
                status.is_server_error() || *status == StatusCode::TOO_MANY_REQUESTS
            }
            _ => false,
        }
    }

    fn from_reqwest(e: reqwest::Error) -> Self {
        if e.is_timeout() {
            Error::Timeout(e)
        } else if e.is_connect() {
            Error::Connect(e)
        } else {
            Error::Transport(e)
        }
    }
}

/// `Result` with this module's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A client for one Alertmanager, e.g. `http://alertmanager:9093` (a path prefix such as
/// `http://host/alertmanager` is kept), sending through the traced client: each call is a client
/// span and is timed in `http_client_request_duration_seconds`. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AlertmanagerClient {
    base: Url,
    http: HttpClient,
    timeout: Duration,
}

#[derive(Deserialize)]
struct SilenceCreated {
    #[serde(rename = "silenceID")]
    silence_id: String,
}

impl AlertmanagerClient {
    /// A client for the Alertmanager at `base_url`, sending through `http`, with
    /// [`DEFAULT_TIMEOUT`] per request.
    pub fn new(base_url: impl AsRef<str>, http: HttpClient) -> Result<Self> {
        let text = base_url.as_ref();
        let invalid = |reason: String| Error::InvalidUrl {
            url: text.to_owned(),
            reason,
        };
        let mut base = Url::parse(text).map_err(|e| invalid(e.to_string()))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(invalid("the scheme must be http or https".to_owned()));
        }
        if base.query().is_some() || base.fragment().is_some() {
            return Err(invalid("a query or fragment is not allowed".to_owned()));
        }
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        Ok(Self {
            base,
            http,
            timeout: DEFAULT_TIMEOUT,
        })
    }

    /// Sets the per-request timeout.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The base URL (always ending in `/`).
    pub fn base_url(&self) -> &Url {
        &self.base
    }

    /// `POST /api/v2/alerts`: creates or refreshes alerts.
    pub async fn post_alerts(&self, alerts: &[PostableAlert]) -> Result<()> {
        let req = self
            .request(Method::POST, &["api", "v2", "alerts"])
            .json(alerts);
        self.send(req).await.map(drop)
    }

    /// `GET /api/v2/alerts?filter=...`: the alerts matching every matcher (all when empty),
    /// including silenced and inhibited ones.
    pub async fn alerts(&self, filter: &[Matcher]) -> Result<Vec<GettableAlert>> {
        let query: Vec<(&str, String)> = filter.iter().map(|m| ("filter", m.to_string())).collect();
        let req = self
            .request(Method::GET, &["api", "v2", "alerts"])
            .query(&query);
        self.json(req).await
    }

    /// `POST /api/v2/silences`: creates (or, with `id` set, updates) a silence; returns its id.
    pub async fn create_silence(&self, silence: &PostableSilence) -> Result<String> {
        let req = self
            .request(Method::POST, &["api", "v2", "silences"])
            .json(silence);
        let created: SilenceCreated = self.json(req).await?;
        Ok(created.silence_id)
    }

    /// `GET /api/v2/silence/{id}`.
    pub async fn silence(&self, id: &str) -> Result<GettableSilence> {
        let req = self.request(Method::GET, &["api", "v2", "silence", id]);
        self.json(req).await.map_err(|e| not_found_as(e, id))
    }

    /// `GET /api/v2/silences`: every silence, expired ones included.
    pub async fn silences(&self) -> Result<Vec<GettableSilence>> {
        let req = self.request(Method::GET, &["api", "v2", "silences"]);
        self.json(req).await
    }

    /// `DELETE /api/v2/silence/{id}`: expires a silence now.
    pub async fn expire_silence(&self, id: &str) -> Result<()> {
        let req = self.request(Method::DELETE, &["api", "v2", "silence", id]);
        self.send(req)
            .await
            .map(drop)
            .map_err(|e| not_found_as(e, id))
    }

    /// `GET /-/ready`: `Ok` when Alertmanager is ready to serve.
    pub async fn ready(&self) -> Result<()> {
        let req = self.request(Method::GET, &["-", "ready"]);
        self.send(req).await.map(drop)
    }

    fn request(&self, method: Method, segments: &[&str]) -> reqwest::RequestBuilder {
        let mut url = self.base.clone();
        {
            // `new` rejected URLs that cannot be a base, so segments are always available.
            let mut path = url
                .path_segments_mut()
                .expect("http(s) URLs have path segments");
            path.pop_if_empty().extend(segments);
        }
        self.http
            .request(method, url.as_str())
            .timeout(self.timeout)
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<reqwest::Response> {
        let resp = self.http.send(req).await.map_err(Error::from_reqwest)?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let body = resp.text().await.unwrap_or_default();
        let mut body = body.trim().to_owned();
        if body.len() > MAX_ERROR_BODY {
            let mut cut = MAX_ERROR_BODY;
            while !body.is_char_boundary(cut) {
                cut -= 1;
            }
            body.truncate(cut);
            body.push('…');
        }
        Err(Error::Status { status, body })
    }

    async fn json<T: DeserializeOwned>(&self, req: reqwest::RequestBuilder) -> Result<T> {
        let resp = self.send(req).await?;
        let bytes = resp.bytes().await.map_err(Error::from_reqwest)?;
        serde_json::from_slice(&bytes).map_err(Error::Decode)
    }
}

fn not_found_as(e: Error, id: &str) -> Error {
    match e {
        Error::Status { status, .. } if status == StatusCode::NOT_FOUND => {
            Error::SilenceNotFound { id: id.to_owned() }
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn test_http() -> HttpClient {
        HttpClient::new(telemetry::client::ClientMetrics::unregistered())
    }

    #[test]
    fn base_url_keeps_a_path_prefix_and_rejects_bad_urls() {
        let c = AlertmanagerClient::new("http://am:9093/prefix", test_http()).unwrap();
        assert_eq!(c.base_url().as_str(), "http://am:9093/prefix/");
        let req = c
            .request(Method::GET, &["api", "v2", "silence", "a/b c"])
            .build()
            .unwrap();
        assert_eq!(
            req.url().as_str(),
            "http://am:9093/prefix/api/v2/silence/a%2Fb%20c"
        );
        assert_eq!(req.timeout(), Some(&DEFAULT_TIMEOUT));
        let c = AlertmanagerClient::new("http://am:9093", test_http()).unwrap();
        let req = c.request(Method::GET, &["-", "ready"]).build().unwrap();
        assert_eq!(req.url().as_str(), "http://am:9093/-/ready");

        for bad in ["not a url", "ftp://am", "http://am:9093/?x=1", "mailto:a@b"] {
            let err = AlertmanagerClient::new(bad, test_http()).unwrap_err();
            assert_eq!(err.metric_label(), "invalid_url", "{bad}");
        }
    }

    #[test]
    fn status_errors_have_bounded_labels() {
        let e = Error::Status {
            status: StatusCode::BAD_REQUEST,
            body: String::new(),
        };
        assert_eq!(e.metric_label(), "http_4xx");
        assert!(!e.is_transient());
        let e = Error::Status {
            status: StatusCode::BAD_GATEWAY,
            body: String::new(),
        };
        assert_eq!(e.metric_label(), "http_5xx");
        assert!(e.is_transient());
        assert_eq!(
            not_found_as(
                Error::Status {
                    status: StatusCode::NOT_FOUND,
                    body: String::new()
                },
                "x"
            )
            .metric_label(),
            "not_found"
        );
    }
}
