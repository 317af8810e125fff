//! The proxied routes and the one function that forwards a request to an upstream.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, HeaderName, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};
use service_kit::ApiError;
use service_kit::extract::Path;
use telemetry::client::HttpClient;

use crate::AppState;

/// The request id header, forwarded upstream.
const REQUEST_ID: HeaderName = service_kit::server::REQUEST_ID;
/// Response headers passed back from an upstream (besides the status and body).
const PASSED_BACK: [HeaderName; 3] = [header::CONTENT_TYPE, header::LOCATION, header::RETRY_AFTER];
/// The longest one upstream readiness probe of `/upstreams` may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// One upstream service: its name, base URL, traced client and its own concurrency limit.
#[derive(Debug, Clone)]
pub struct Upstream {
    name: &'static str,
    base: String,
    client: HttpClient,
    timeout: Duration,
    /// Calls in flight to this upstream; beyond its limit a request is shed at once (503), so a
    /// slow upstream cannot take the capacity of the others.
    in_flight: Arc<tokio::sync::Semaphore>,
    max_in_flight: usize,
    failure_log: Arc<FailureLog>,
}

/// At most one upstream-failure log line per second per upstream; the rest are counted and
/// reported with the next line (`suppressed`).
#[derive(Debug, Default)]
struct FailureLog {
    last_second: AtomicU64,
    suppressed: AtomicU64,
}

impl FailureLog {
    /// `Some(suppressed since the last line)` when a line may be written now.
    fn admit(&self) -> Option<u64> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let last = self.last_second.load(Ordering::Relaxed);
        if now > last
            && self
                .last_second
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            Some(self.suppressed.swap(0, Ordering::Relaxed))
        } else {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

impl Upstream {
    /// `name` at `base` (no trailing slash), called with `client` (whose total timeout is
    /// `timeout`), at most `max_in_flight` calls at once.
    pub fn new(
        name: &'static str,
        base: &str,
        client: HttpClient,
        timeout: Duration,
        max_in_flight: usize,
    ) -> Self {
        Self {
            name,
            base: base.trim_end_matches('/').to_owned(),
            client,
            timeout,
            in_flight: Arc::new(tokio::sync::Semaphore::new(max_in_flight)),
            max_in_flight,
            failure_log: Arc::default(),
        }
    }

    /// The most calls in flight to this upstream.
    pub fn max_in_flight(&self) -> usize {
        self.max_in_flight
    }

    /// The upstream's service name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Sends `method path_and_query` upstream with the request id (and `body` with its content
    /// type) and answers what came back, or a 502/504 JSON error naming the upstream.
    pub async fn forward(
        &self,
        method: Method,
        path_and_query: &str,
        headers: &HeaderMap,
        body: Option<Bytes>,
    ) -> Response {
        let Ok(_permit) = self.in_flight.try_acquire() else {
            let mut response = ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "upstream_busy",
                format!(
                    "{} already has {} requests in flight from this gateway; retry shortly",
                    self.name, self.max_in_flight
                ),
            )
            .into_response();
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, http::HeaderValue::from_static("1"));
            return response;
        };
        let url = format!("{}{}", self.base, path_and_query);
        let mut request = self.client.request(method, &url);
        if let Some(id) = headers.get(&REQUEST_ID) {
            request = request.header(REQUEST_ID, id.clone());
        }
        if let Some(accept) = headers.get(header::ACCEPT) {
            request = request.header(header::ACCEPT, accept.clone());
        }
        if let Some(body) = body {
            if let Some(content_type) = headers.get(header::CONTENT_TYPE) {
                request = request.header(header::CONTENT_TYPE, content_type.clone());
            }
            request = request.body(body);
        }
        let response = match self.client.send(request).await {
            Ok(r) => r,
            Err(e) => return self.failure(&e),
        };
        let status = response.status();
        let mut passed = HeaderMap::new();
        for name in PASSED_BACK {
            if let Some(v) = response.headers().get(&name) {
                passed.insert(name, v.clone());
            }
        }
        match response.bytes().await {
            Ok(bytes) => (status, passed, bytes).into_response(),
            Err(e) => self.failure(&e),
        }
    }

    /// A 502/504 naming this upstream; the cause is logged once, here.
    fn failure(&self, error: &reqwest::Error) -> Response {
        let (status, code, message) = if error.is_timeout() {
            (
                StatusCode::GATEWAY_TIMEOUT,
                "upstream_timeout",
                format!(
                    "{} did not answer within {} ms",
                    self.name,
                    self.timeout.as_millis()
                ),
            )
        } else if error.is_connect() {
            (
                StatusCode::BAD_GATEWAY,
                "upstream_unreachable",
                format!("{} cannot be reached", self.name),
            )
        } else {
            (
                StatusCode::BAD_GATEWAY,
                "upstream_error",
                format!("{} answered with a broken response", self.name),
            )
        };
        if let Some(suppressed) = self.failure_log.admit() {
            tracing::warn!(
                upstream = self.name,
                error = %error,
                code,
                suppressed,
                "upstream call failed"
            );
        }
        let body = json!({"error": {"code": code, "message": message, "upstream": self.name}});
        (status, axum::Json(body)).into_response()
    }

    /// `GET /readyz` of the upstream, bounded by [`PROBE_TIMEOUT`].
    async fn probe(&self) -> Value {
        let start = Instant::now();
        let request = self.client.get(&format!("{}/readyz", self.base));
        let outcome = tokio::time::timeout(PROBE_TIMEOUT, async {
            let response = self.client.send(request).await?;
            let status = response.status();
            let body = response.json::<Value>().await.unwrap_or(Value::Null);
            Ok::<_, reqwest::Error>((status, body))
        })
        .await;
        let latency_ms = start.elapsed().as_secs_f64() * 1000.0;
        let (state, http_status, readyz) = match outcome {
            Ok(Ok((status, body))) if status.is_success() => ("ready", Some(status.as_u16()), body),
            Ok(Ok((status, body))) => ("not_ready", Some(status.as_u16()), body),
            Ok(Err(e)) if e.is_timeout() => ("timeout", None, Value::Null),
            Ok(Err(_)) => ("unreachable", None, Value::Null),
            Err(_) => ("timeout", None, Value::Null),
        };
        json!({
            "name": self.name,
            "url": self.base,
            "status": state,
            "http_status": http_status,
            "latency_ms": (latency_ms * 100.0).round() / 100.0,
            "readyz": readyz,
        })
    }
}

/// The proxied routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/user/{id}", get(get_user))
        .route("/users", get(users).post(users))
        .route(
            "/users/{id}",
            get(user_by_id).put(user_by_id).delete(user_by_id),
        )
        .route("/beat", get(beat))
        .route("/think", get(think))
        .route("/upstreams", get(upstreams))
}

/// The `{id}` path parameter: an integer, checked here so a bad one never goes upstream.
#[derive(Debug, Deserialize)]
struct UserId {
    id: i64,
}

/// `path` plus the request's query string, if any.
fn with_query(path: &str, uri: &Uri) -> String {
    match uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path.to_owned(),
    }
}

/// The body, or a 413/400 JSON when it cannot be read (too large, broken).
fn body_or_error(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "the request body is larger than this service accepts",
            )
        } else {
            ApiError::bad_request(format!(
                "the request body cannot be read: {}",
                rejection.body_text()
            ))
        }
    })
}

/// The body for a method that sends one upstream (POST, PUT); `None` for the others, whose body
/// is not passed on.
fn body_for(
    method: &Method,
    body: Result<Bytes, BytesRejection>,
) -> Result<Option<Bytes>, ApiError> {
    if matches!(*method, Method::POST | Method::PUT) {
        body_or_error(body).map(Some)
    } else {
        Ok(None)
    }
}

/// The old singular path: always a GET upstream, a HEAD here too.
async fn get_user(
    State(state): State<AppState>,
    Path(UserId { id }): Path<UserId>,
    headers: HeaderMap,
) -> Response {
    state
        .upstreams()
        .users
        .forward(Method::GET, &format!("/users/{id}"), &headers, None)
        .await
}

async fn users(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body_for(&method, body)?;
    let path = with_query("/users", &uri);
    Ok(state
        .upstreams()
        .users
        .forward(method, &path, &headers, body)
        .await)
}

async fn user_by_id(
    State(state): State<AppState>,
    Path(UserId { id }): Path<UserId>,
    method: Method,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body_for(&method, body)?;
    let path = format!("/users/{id}");
    Ok(state
        .upstreams()
        .users
        .forward(method, &path, &headers, body)
        .await)
}

async fn beat(State(state): State<AppState>, uri: Uri, headers: HeaderMap) -> Response {
    state
        .upstreams()
        .heart
        .forward(Method::GET, &with_query("/beat", &uri), &headers, None)
        .await
}

async fn think(State(state): State<AppState>, uri: Uri, headers: HeaderMap) -> Response {
    state
        .upstreams()
        .brain
        .forward(Method::GET, &with_query("/think", &uri), &headers, None)
        .await
}

/// Every upstream's readiness, probed now and concurrently. Always 200: the gateway itself is
/// fine; `all_ready` says whether everything behind it is.
async fn upstreams(State(state): State<AppState>) -> axum::Json<Value> {
    let probes = futures::future::join_all(state.upstreams().all().map(Upstream::probe)).await;
    let all_ready = probes.iter().all(|p| p["status"] == "ready");
    axum::Json(json!({"all_ready": all_ready, "upstreams": probes}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_strings_are_kept_as_sent() {
        let uri: Uri = "/think?difficulty=3&topic=a%20b".parse().unwrap();
        assert_eq!(
            with_query("/think", &uri),
            "/think?difficulty=3&topic=a%20b"
        );
        let bare: Uri = "/beat".parse().unwrap();
        assert_eq!(with_query("/beat", &bare), "/beat");
    }
}
