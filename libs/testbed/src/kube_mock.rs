//! A scripted Kubernetes API server for kube clients, over kube's `tower_test::mock::pair`.
//!
//! Kubernetes is the one part tests mock (no cluster runs here): each test says which requests
//! it expects, in order, and what the API server answers; every request's method, path, query
//! and (when asked) body is asserted, and a request that differs, or one that never comes, fails
//! the test.
//!
//! - [`scripted`] plays a whole script on its own task while the code under test runs;
//!   [`Script::done`] waits for every call and fails on any assertion.
//! - [`pair`] gives the server side to the test, which answers step by step with
//!   [`ApiServer::serve`] (for watches, where the test checks state between answers).
//!
//! ```no_run
//! # async fn demo() {
//! use testbed::kube_mock::{call, scripted};
//! let (client, script) = scripted(vec![
//!     call("DELETE", "/api/v1/namespaces/organism/pods/heart-abc", serde_json::json!({})),
//! ]);
//! // ... run the code under test with `client` ...
//! # drop(client);
//! script.done().await;
//! # }
//! ```

use std::time::Duration;

use http::{Request, Response};
use kube::Client;
use kube::client::Body;
use serde_json::Value;
use tower_test::mock::{Handle, SendResponse};

type BodyCheck = Box<dyn FnOnce(&Value) + Send>;

/// How long [`Script::done`] waits for the script's calls: a bound for a test that went wrong,
/// not a timing requirement.
pub const SCRIPT_WAIT: Duration = Duration::from_secs(30);

enum Answer {
    Bytes(Vec<u8>),
    /// Never answered: the request stays open until the server is dropped.
    Hold,
}

/// One expected request and the API server's answer.
pub struct Call {
    method: String,
    path: String,
    contains: Vec<String>,
    params: Vec<(String, Option<String>)>,
    content_type: Option<String>,
    body: Option<BodyCheck>,
    status: u16,
    answer: Answer,
}

impl std::fmt::Debug for Call {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.method, self.path)
    }
}

/// Expects `method path` and answers `200` with `answer` as JSON.
pub fn call(method: &str, path: impl Into<String>, answer: Value) -> Call {
    Call {
        method: method.to_owned(),
        path: path.into(),
        contains: Vec::new(),
        params: Vec::new(),
        content_type: None,
        body: None,
        status: 200,
        answer: Answer::Bytes(serde_json::to_vec(&answer).expect("JSON answer")),
    }
}

/// Expects `GET path` and answers `200` with `answer` as JSON.
pub fn get(path: impl Into<String>, answer: Value) -> Call {
    call("GET", path, answer)
}

impl Call {
    /// The raw query string must contain `part` (e.g. `fieldSelector=status.phase%3DFailed`).
    pub fn query(mut self, part: &str) -> Self {
        self.contains.push(part.to_owned());
        self
    }

    /// Query parameter `key` must be `value` (decoded).
    pub fn param(mut self, key: &str, value: &str) -> Self {
        self.params.push((key.to_owned(), Some(value.to_owned())));
        self
    }

    /// Query parameter `key` must be absent.
    pub fn no_param(mut self, key: &str) -> Self {
        self.params.push((key.to_owned(), None));
        self
    }

    /// The request's `Content-Type` must be `content_type` (e.g. a merge patch's).
    pub fn content_type(mut self, content_type: &str) -> Self {
        self.content_type = Some(content_type.to_owned());
        self
    }

    /// The request body must be JSON, checked by `check` (which asserts).
    pub fn body(mut self, check: impl FnOnce(&Value) + Send + 'static) -> Self {
        self.body = Some(Box::new(check));
        self
    }

    /// Answers with HTTP status `status` (the answer is then usually [`status_body`]).
    pub fn status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }

    /// Answers with these bytes instead (e.g. [`watch_events`]).
    pub fn raw(mut self, bytes: Vec<u8>) -> Self {
        self.answer = Answer::Bytes(bytes);
        self
    }

    /// Never answers: the request (a watch, say) stays open, silent, until the server is
    /// dropped.
    pub fn hold(mut self) -> Self {
        self.answer = Answer::Hold;
        self
    }

    fn matches_route(&self, req: &Request<Body>) -> bool {
        req.method().as_str() == self.method
            && req.uri().path() == self.path
            && self.params.iter().all(|(k, v)| param(req, k) == *v)
    }
}

/// A `metav1.Status` failure body, as the API server sends with a 4xx/5xx.
pub fn status_body(code: u16, reason: &str) -> Value {
    serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code,
        "reason": reason, "message": format!("{reason} ({code})")})
}

/// A watch response body: one JSON event per line.
pub fn watch_events(events: &[Value]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in events {
        out.extend(serde_json::to_vec(e).expect("JSON event"));
        out.push(b'\n');
    }
    out
}

fn param(req: &Request<Body>, key: &str) -> Option<String> {
    let query = req.uri().query().unwrap_or_default();
    form_urlencoded_pairs(query)
        .into_iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v)
}

fn form_urlencoded_pairs(query: &str) -> Vec<(String, String)> {
    reqwest::Url::parse(&format!("http://mock/?{query}"))
        .map(|u| {
            u.query_pairs()
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect()
        })
        .unwrap_or_default()
}

/// The API server side of a mocked kube client.
pub struct ApiServer {
    handle: Handle<Request<Body>, Response<Body>>,
    held: Vec<SendResponse<Response<Body>>>,
    served: usize,
}

impl std::fmt::Debug for ApiServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiServer")
            .field("served", &self.served)
            .field("held", &self.held.len())
            .finish()
    }
}

/// A kube [`Client`] and the API server it talks to, answered by the test.
pub fn pair() -> (Client, ApiServer) {
    let (svc, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let server = ApiServer {
        handle,
        held: Vec::new(),
        served: 0,
    };
    (Client::new(svc, "default"), server)
}

/// A kube [`Client`] whose API server plays `script` in order on its own task.
pub fn scripted(script: Vec<Call>) -> (Client, Script) {
    let (client, mut server) = pair();
    let task = tokio::spawn(async move {
        for c in script {
            server.serve(c).await;
        }
        server
    });
    (client, Script(task))
}

/// A script being played; see [`scripted`].
#[derive(Debug)]
pub struct Script(tokio::task::JoinHandle<ApiServer>);

impl Script {
    /// Stops playing (for a test that expects the code under test to give up before the script
    /// ends).
    pub fn abort(self) {
        self.0.abort();
    }

    /// Waits (at most [`SCRIPT_WAIT`]) until every scripted call came and was answered; panics
    /// if one never came or differed. Returns the server (holding any held requests).
    pub async fn done(self) -> ApiServer {
        tokio::time::timeout(SCRIPT_WAIT, self.0)
            .await
            .expect("the scripted calls did not all come")
            .expect("a scripted call's assertion failed")
    }
}

impl ApiServer {
    /// Waits for the next request, asserts it is `call` (method, path, query, content type,
    /// body) and answers it.
    pub async fn serve(&mut self, call: Call) {
        let i = self.served;
        let req = self.next(format!("{call:?}")).await;
        assert_eq!(
            req.method().as_str(),
            call.method,
            "call {i}: method for {}",
            req.uri()
        );
        assert_eq!(req.uri().path(), call.path, "call {i}: path");
        self.answer(i, req, call).await;
    }

    /// Serves `calls` in whatever order their requests come (matched by method, path and
    /// [`Call::param`]s), e.g. the initial lists of several watchers.
    pub async fn serve_any_order(&mut self, mut calls: Vec<Call>) {
        while !calls.is_empty() {
            let i = self.served;
            let req = self.next(format!("one of {calls:?}")).await;
            let at = calls
                .iter()
                .position(|c| c.matches_route(&req))
                .unwrap_or_else(|| {
                    panic!(
                        "call {i}: unexpected {} {}; expected one of {calls:?}",
                        req.method(),
                        req.uri()
                    )
                });
            let call = calls.remove(at);
            self.answer(i, req, call).await;
        }
    }

    async fn next(&mut self, expected: String) -> Request<Body> {
        let (req, send) = self
            .handle
            .next_request()
            .await
            .unwrap_or_else(|| panic!("call {} ({expected}): the client is gone", self.served));
        self.held.push(send);
        req
    }

    async fn answer(&mut self, i: usize, req: Request<Body>, call: Call) {
        let query = req.uri().query().unwrap_or_default().to_owned();
        for part in &call.contains {
            assert!(
                query.contains(part),
                "call {i}: query {query:?} lacks {part:?}"
            );
        }
        for (key, want) in &call.params {
            assert_eq!(
                param(&req, key).as_deref(),
                want.as_deref(),
                "call {i}: query parameter {key} in {query:?}"
            );
        }
        if let Some(want) = &call.content_type {
            let got = req
                .headers()
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok());
            assert_eq!(got, Some(want.as_str()), "call {i}: content type");
        }
        let bytes = req.into_body().collect_bytes().await.expect("request body");
        if let Some(check) = call.body {
            let body: Value = serde_json::from_slice(&bytes)
                .unwrap_or_else(|e| panic!("call {i}: body is not JSON: {e}"));
            check(&body);
        }
        self.served += 1;
        let send = self.held.pop().expect("the request's responder");
        match call.answer {
            Answer::Hold => self.held.push(send),
            Answer::Bytes(bytes) => send.send_response(
                Response::builder()
                    .status(call.status)
                    .header(http::header::CONTENT_TYPE, "application/json")
                    .body(Body::from(bytes))
                    .expect("a response"),
            ),
        }
    }
}
