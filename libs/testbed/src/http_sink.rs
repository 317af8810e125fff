//! A local HTTP server that records requests: the far end of webhook, Slack and Teams deliveries.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use tokio::sync::{Notify, oneshot, watch};
use tokio::task::JoinHandle;

/// One request the sink received.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    /// The method.
    pub method: Method,
    /// The path, e.g. `/webhook/alertmanager`.
    pub path: String,
    /// The query string without `?`, if any.
    pub query: Option<String>,
    /// The headers.
    pub headers: HeaderMap,
    /// The body.
    pub body: Bytes,
}

impl RecordedRequest {
    /// A header's value as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body as (lossy) UTF-8.
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON.
    ///
    /// # Panics
    /// When the body is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "{} {} body is not JSON ({e}): {}",
                self.method,
                self.path,
                self.body_text()
            )
        })
    }
}

#[derive(Debug, Clone)]
struct CannedResponse {
    status: StatusCode,
    content_type: Option<HeaderValue>,
    body: Bytes,
}

#[derive(Debug)]
struct Shared {
    requests: Mutex<Vec<RecordedRequest>>,
    response: Mutex<CannedResponse>,
    arrived: Notify,
    /// `true` while answers are held back (see [`HttpSink::hold`]).
    held: watch::Sender<bool>,
}

/// An axum server on `127.0.0.1:0` that records every request (any method, any path) and answers
/// with a configurable status and body (default `200` with an empty body). Stopped on drop.
#[derive(Debug)]
pub struct HttpSink {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl HttpSink {
    /// Binds `127.0.0.1:0` and serves on the current Tokio runtime.
    pub async fn start() -> Self {
        let shared = Arc::new(Shared {
            requests: Mutex::new(Vec::new()),
            response: Mutex::new(CannedResponse {
                status: StatusCode::OK,
                content_type: None,
                body: Bytes::new(),
            }),
            arrived: Notify::new(),
            held: watch::Sender::new(false),
        });
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local address");
        let app = Router::new()
            .fallback(record)
            .with_state(Arc::clone(&shared));
        let (shutdown, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
        });
        Self {
            addr,
            shared,
            shutdown: Some(shutdown),
            task,
        }
    }

    /// `http://127.0.0.1:PORT` (append any path).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Answers every following request with `status` (body unchanged).
    pub fn set_status(&self, status: StatusCode) {
        lock(&self.shared.response).status = status;
    }

    /// Answers every following request with this status, `Content-Type` and body.
    pub fn set_response(&self, status: StatusCode, content_type: &str, body: impl Into<Bytes>) {
        let content_type = HeaderValue::from_str(content_type).expect("a valid content type");
        *lock(&self.shared.response) = CannedResponse {
            status,
            content_type: Some(content_type),
            body: body.into(),
        };
    }

    /// Holds back the answers: requests from now on are recorded as they arrive (so
    /// [`HttpSink::wait_for_requests`] sees them) but answered only after [`HttpSink::release`].
    /// A slow far end whose slowness the test controls: "X was answered while the far end still
    /// held Y" is an ordering fact, where a timing would be a bound the machine may not keep.
    pub fn hold(&self) {
        self.shared.held.send_replace(true);
    }

    /// Answers every held request, and the following ones at once.
    pub fn release(&self) {
        self.shared.held.send_replace(false);
    }

    /// Every request received so far, oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.shared.requests).clone()
    }

    /// The requests received so far to `path`.
    pub fn requests_to(&self, path: &str) -> Vec<RecordedRequest> {
        lock(&self.shared.requests)
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }

    /// Forgets the requests received so far.
    pub fn clear(&self) {
        lock(&self.shared.requests).clear();
    }

    /// Waits until at least `n` requests arrived and returns them all.
    ///
    /// # Panics
    /// When fewer than `n` arrive within `timeout`, listing what did arrive.
    pub async fn wait_for_requests(&self, n: usize, timeout: Duration) -> Vec<RecordedRequest> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.shared.arrived.notified();
            let requests = self.requests();
            if requests.len() >= n {
                return requests;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                let seen: Vec<String> = requests
                    .iter()
                    .map(|r| format!("{} {}", r.method, r.path))
                    .collect();
                panic!(
                    "HttpSink {}: expected {n} request(s) within {timeout:?}, got {}: {seen:?}",
                    self.url(),
                    requests.len()
                );
            }
        }
    }
}

impl Drop for HttpSink {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        self.task.abort();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

async fn record(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    lock(&shared.requests).push(RecordedRequest {
        method: parts.method,
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().map(str::to_owned),
        headers: parts.headers,
        body,
    });
    shared.arrived.notify_waiters();
    let _ = shared.held.subscribe().wait_for(|held| !held).await;
    let canned = lock(&shared.response).clone();
    let mut response = Response::new(Body::from(canned.body));
    *response.status_mut() = canned.status;
    if let Some(content_type) = canned.content_type {
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, content_type);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn records_requests_and_answers_the_configured_status() {
        let sink = HttpSink::start().await;
        let client = crate::http_client();
        let response = client
            .post(format!("{}/hooks/slack?x=1", sink.url()))
            .header("authorization", "Bearer t")
            .body("{\"text\":\"hi\"}")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);

        sink.set_status(StatusCode::SERVICE_UNAVAILABLE);
        let response = client
            .get(format!("{}/other", sink.url()))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);

        let requests = sink.wait_for_requests(2, Duration::from_secs(5)).await;
        assert_eq!(requests[0].method, Method::POST);
        assert_eq!(requests[0].path, "/hooks/slack");
        assert_eq!(requests[0].query.as_deref(), Some("x=1"));
        assert_eq!(requests[0].header("authorization"), Some("Bearer t"));
        assert_eq!(requests[0].json()["text"], "hi");
        assert_eq!(requests[1].path, "/other");
        assert_eq!(sink.requests_to("/other").len(), 1);

        sink.set_response(StatusCode::OK, "text/plain", "up 1\n");
        let body = client
            .get(sink.url())
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert_eq!(body, "up 1\n");
        sink.clear();
        assert!(sink.requests().is_empty());
    }

    #[tokio::test]
    async fn held_requests_are_recorded_at_once_and_answered_on_release() {
        let sink = HttpSink::start().await;
        sink.hold();
        let url = format!("{}/slow", sink.url());
        let call = tokio::spawn(async move {
            crate::process::http_client()
                .get(url)
                .send()
                .await
                .unwrap()
                .status()
        });
        sink.wait_for_requests(1, Duration::from_secs(5)).await;
        tokio::task::yield_now().await;
        assert!(!call.is_finished(), "answered while held");
        sink.release();
        assert_eq!(call.await.unwrap(), StatusCode::OK);
    }

    #[tokio::test]
    async fn stops_serving_when_dropped() {
        let sink = HttpSink::start().await;
        let url = sink.url();
        drop(sink);
        tokio::time::sleep(Duration::from_millis(50)).await;
        let result = crate::http_client()
            .get(&url)
            .timeout(Duration::from_secs(2))
            .send()
            .await;
        assert!(result.is_err(), "the sink still answers after drop");
    }

    #[tokio::test]
    #[should_panic(expected = "expected 1 request(s)")]
    async fn waiting_for_requests_that_never_come_panics() {
        let sink = HttpSink::start().await;
        sink.wait_for_requests(1, Duration::from_millis(100)).await;
    }
}
