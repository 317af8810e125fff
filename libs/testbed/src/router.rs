//! Calling a service's router in tests: without a socket ([`TestRouter`], `oneshot`), or served
//! on 127.0.0.1:0 ([`Served`]) when a real client or another hop must reach it.
//!
//! Every organ's and lib's tests build their router the same way (`app(state)` behind
//! `service_kit::assemble`) and hand it to one of these, instead of each file writing its own
//! `call` helper.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use http::{HeaderMap, Method, Request, StatusCode, header};
use http_body_util::BodyExt as _;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tower::ServiceExt as _;

use crate::metrics::Metrics;

/// One answer: status, headers, the body as text, and as JSON when it parses as JSON.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The status.
    pub status: StatusCode,
    /// The headers.
    pub headers: HeaderMap,
    /// The body as text (lossy UTF-8).
    pub text: String,
    /// The body as JSON; [`Value::Null`] when empty or not JSON.
    pub body: Value,
}

impl Reply {
    /// Reads a whole response.
    pub async fn read(response: axum::response::Response) -> Self {
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("the body can be read")
            .to_bytes();
        Self::from_parts(status, headers, &bytes)
    }

    /// Reads a whole response that came over HTTP.
    pub async fn read_http(response: reqwest::Response) -> Self {
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.expect("the body can be read");
        Self::from_parts(status, headers, &bytes)
    }

    fn from_parts(status: StatusCode, headers: HeaderMap, bytes: &[u8]) -> Self {
        let text = String::from_utf8_lossy(bytes).into_owned();
        let body = serde_json::from_slice(bytes).unwrap_or(Value::Null);
        Self {
            status,
            headers,
            text,
            body,
        }
    }

    /// A header's value as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Whether the body is declared JSON (`application/json…`).
    pub fn is_json(&self) -> bool {
        self.header(header::CONTENT_TYPE.as_str())
            .is_some_and(|ct| ct.starts_with("application/json"))
    }

    /// `error.code` of a JSON error body.
    pub fn error_code(&self) -> Option<&str> {
        self.body["error"]["code"].as_str()
    }
}

/// A router called in a test: without a socket, each request sent with `oneshot` on a clone
/// ([`TestRouter::new`]), or over HTTP to a server on a socket ([`TestRouter::over_http`], e.g.
/// a [`Served`] router that another hop must reach too). The calls and the [`Reply`] are the
/// same either way.
#[derive(Debug, Clone)]
pub struct TestRouter {
    target: Target,
    bearer: Option<String>,
}

#[derive(Debug, Clone)]
enum Target {
    Router(Router),
    Http {
        base_url: String,
        client: reqwest::Client,
    },
}

impl TestRouter {
    /// Calls `router` as it is.
    pub fn new(router: Router) -> Self {
        Self {
            target: Target::Router(router),
            bearer: None,
        }
    }

    /// Calls the server at `base_url` (`http://127.0.0.1:PORT`) over HTTP, each request bounded
    /// (30 s) so a wedged server fails the test instead of hanging it.
    pub fn over_http(base_url: impl Into<String>) -> Self {
        Self {
            target: Target::Http {
                base_url: base_url.into(),
                client: crate::process::http_client(),
            },
            bearer: None,
        }
    }

    /// Sends `Authorization: Bearer <token>` with every request that has none of its own.
    pub fn with_bearer(mut self, token: impl Into<String>) -> Self {
        self.bearer = Some(token.into());
        self
    }

    /// The router, for tests that drive it themselves.
    ///
    /// # Panics
    /// When this calls a server over HTTP ([`TestRouter::over_http`]).
    pub fn router(&self) -> &Router {
        match &self.target {
            Target::Router(router) => router,
            Target::Http { base_url, .. } => {
                panic!("TestRouter::router: this one calls {base_url} over HTTP")
            }
        }
    }

    /// Sends `request` and reads the whole answer.
    pub async fn send(&self, mut request: Request<Body>) -> Reply {
        if let Some(token) = &self.bearer
            && !request.headers().contains_key(header::AUTHORIZATION)
        {
            let value = format!("Bearer {token}")
                .parse()
                .expect("a valid header value");
            request.headers_mut().insert(header::AUTHORIZATION, value);
        }
        match &self.target {
            Target::Router(router) => {
                let response = router
                    .clone()
                    .oneshot(request)
                    .await
                    .expect("a router's service never fails");
                Reply::read(response).await
            }
            Target::Http { base_url, client } => {
                Reply::read_http(send_http(client, base_url, request).await).await
            }
        }
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> Reply {
        self.call(Method::GET, path, None).await
    }

    /// `method path`, with `json` as an `application/json` body when given.
    pub async fn call(&self, method: Method, path: &str, json: Option<Value>) -> Reply {
        let builder = Request::builder().method(method).uri(path);
        let request = match json {
            Some(v) => builder
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(v.to_string())),
            None => builder.body(Body::empty()),
        };
        self.send(request.expect("a valid request")).await
    }

    /// `method path` with a raw body of `content_type`.
    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        content_type: &str,
        body: impl Into<Body>,
    ) -> Reply {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::CONTENT_TYPE, content_type)
            .body(body.into())
            .expect("a valid request");
        self.send(request).await
    }

    /// `GET /metrics`, ready to be read by sample.
    pub async fn metrics(&self) -> Metrics {
        let reply = self.get("/metrics").await;
        assert_eq!(reply.status, StatusCode::OK, "/metrics: {}", reply.text);
        Metrics::new(reply.text)
    }
}

/// Sends `request` (its path and query under `base_url`) with `client`.
async fn send_http(
    client: &reqwest::Client,
    base_url: &str,
    request: Request<Body>,
) -> reqwest::Response {
    let (parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .expect("a test request body can be read")
        .to_bytes();
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let url = format!("{base_url}{path}");
    client
        .request(parts.method.clone(), &url)
        .headers(parts.headers)
        .body(body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{} {url}: {e}", parts.method))
}

/// A router served on a real socket at 127.0.0.1 on a free port; stopped when dropped.
#[derive(Debug)]
pub struct Served {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl Served {
    /// Serves `router` on 127.0.0.1:0.
    pub async fn start(router: Router) -> Self {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), router).await
    }

    /// Serves `router` on `addr` (e.g. the address of a server stopped before, to restart it).
    pub async fn start_on(addr: SocketAddr, router: Router) -> Self {
        let listener = TcpListener::bind(addr).await.expect("bind the test server");
        let addr = listener.local_addr().expect("a bound address");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await
        });
        Self {
            addr,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// The address served.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A [`TestRouter`] calling this server over HTTP.
    pub fn client(&self) -> TestRouter {
        TestRouter::over_http(self.url())
    }

    /// Stops serving and waits (at most 10 s) until the listener is closed.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let task = self.task.take().expect("stopped once");
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("the test server stops within 10 s")
            .expect("the server task did not panic")
            .expect("the server ran without an I/O error");
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use serde_json::json;

    fn router() -> Router {
        Router::new()
            .route("/json", get(|| async { axum::Json(json!({"ok": true})) }))
            .route(
                "/whoami",
                get(|headers: HeaderMap| async move {
                    headers
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("nobody")
                        .to_owned()
                }),
            )
    }

    #[tokio::test]
    async fn a_json_answer_is_parsed() {
        let reply = TestRouter::new(router()).get("/json").await;
        assert_eq!(reply.status, StatusCode::OK);
        assert!(reply.is_json());
        assert_eq!(reply.body, json!({"ok": true}));
    }

    #[tokio::test]
    async fn the_bearer_token_is_sent_unless_the_request_has_its_own() {
        let app = TestRouter::new(router()).with_bearer("t0k");
        assert_eq!(app.get("/whoami").await.text, "Bearer t0k");
        let own = Request::get("/whoami")
            .header("authorization", "Basic x")
            .body(Body::empty())
            .unwrap();
        assert_eq!(app.send(own).await.text, "Basic x");
    }

    #[tokio::test]
    async fn a_served_router_is_called_over_http_like_one_without_a_socket() {
        let served = Served::start(router()).await;
        let app = served.client().with_bearer("t0k");
        let reply = app.get("/json").await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.body, json!({"ok": true}));
        assert_eq!(app.get("/whoami").await.text, "Bearer t0k");
    }

    #[tokio::test]
    async fn a_served_router_answers_on_its_port_until_stopped() {
        let served = Served::start(router()).await;
        let url = format!("{}/json", served.url());
        let body: Value = crate::http_client()
            .get(&url)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(body, json!({"ok": true}));
        let addr = served.addr();
        served.stop().await;
        assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    }
}
