//! Starting, serving and stopping a service.
//!
//! [`launch`] is the whole life of a binary: configuration (every bad variable reported, exit
//! code 2) → telemetry → the service's router → bind → serve → drain on SIGTERM/SIGINT, bounded →
//! telemetry flushed last. [`assemble`] adds the standard endpoints and layers to a service's
//! routes; tests call it directly and drive the router without a socket.

use std::future::Future;
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::Arc;
use std::task::{Poll, ready};
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get};
use http::{HeaderMap, HeaderName, StatusCode};
use prometheus::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};

use crate::config::{BaseConfig, EnvReader, ProcessEnv};
use crate::error::ApiError;
use crate::health::{self, Readiness};
use telemetry::LogFilter;
use telemetry::client::{ClientMetrics, HttpClient};
use telemetry::http::ServerMetrics;

mod parse_errors;
pub use parse_errors::JsonParseErrors;

/// The request id header, set when absent and echoed on the response.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// What a service's router is built with.
#[derive(Clone, Debug)]
pub struct Context {
    /// Common configuration.
    pub base: Arc<BaseConfig>,
    /// The process's one metrics registry; each component registers its own metrics on it.
    pub registry: Registry,
    /// Readiness checks served at `/readyz`.
    pub readiness: Readiness,
    /// Cancelled when the service starts shutting down; background tasks stop on it.
    pub shutdown: CancellationToken,
    client_metrics: ClientMetrics,
    server_metrics: ServerMetrics,
    log_filter: Option<LogFilter>,
}

impl Context {
    /// A context over `base` with a fresh registry (process metrics included).
    pub fn new(base: BaseConfig) -> prometheus::Result<Self> {
        let registry = Registry::new();
        telemetry::metrics::register_process_metrics(&registry)?;
        Ok(Self {
            client_metrics: ClientMetrics::new(&registry)?,
            server_metrics: ServerMetrics::new(&registry)?
                .with_access_log(base.telemetry.access_log),
            base: Arc::new(base),
            registry,
            readiness: Readiness::default(),
            shutdown: CancellationToken::new(),
            log_filter: None,
        })
    }

    /// A context for tests: no exporter, listens on 127.0.0.1:0.
    pub fn for_tests(service: &'static str) -> Self {
        Self::new(BaseConfig::for_tests(service)).expect("a fresh registry has no name clashes")
    }

    /// A traced HTTP client with the default timeouts.
    pub fn http_client(&self) -> HttpClient {
        HttpClient::new(self.client_metrics.clone())
    }

    /// A traced HTTP client with its own timeouts.
    pub fn http_client_with_timeouts(&self, connect: Duration, total: Duration) -> HttpClient {
        HttpClient::with_timeouts(self.client_metrics.clone(), connect, total)
    }
}

/// The `GET /` route every service answers with: `{"service": ..., "version": ...}`. The caller
/// passes its own `env!("CARGO_PKG_VERSION")`, which names the service's crate, not this one.
pub fn identity<S>(service: &'static str, version: &'static str) -> MethodRouter<S>
where
    S: Clone + Send + Sync + 'static,
{
    get(
        move || async move { axum::Json(serde_json::json!({"service": service, "version": version})) },
    )
}

/// Adds `/healthz`, `/readyz`, `/metrics`, `/admin/log-filter`, JSON 404/405, the body limit,
/// the request timeout, request ids, panic catching and HTTP telemetry to `routes`.
///
/// Before anything else a request passes the guard: a `Content-Length` over the body limit is
/// answered 413 at once (the body is never read), an `x-request-id` over
/// [`MAX_REQUEST_ID_LEN`] bytes (or not printable ASCII) is dropped so that a fresh one is made,
/// and every error answer that is not JSON (axum's own rejections) is rewritten as the standard
/// JSON error body.
pub fn assemble(ctx: &Context, routes: Router) -> Router {
    let standard = Router::new()
        .route("/healthz", get(health::healthz))
        .route(
            "/readyz",
            get(health::readyz).with_state(ctx.readiness.clone()),
        )
        .route("/metrics", get(metrics).with_state(ctx.registry.clone()))
        .route(
            "/admin/log-filter",
            get(get_log_filter)
                .put(put_log_filter)
                .with_state(AdminState {
                    filter: ctx.log_filter.clone(),
                    token: ctx.base.admin_token.clone(),
                }),
        );
    let router = routes
        .merge(standard)
        .fallback(|| async { ApiError::not_found("no such route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this route does not accept that method",
            )
        });
    // One composite layer: the router boxes a route's service once per layer call, and each
    // box is cloned per request. Outermost first.
    router.layer(
        tower::ServiceBuilder::new()
            .layer(CatchPanicLayer::custom(|_| {
                ApiError::internal("a request handler panicked").into_response()
            }))
            .layer(GuardLayer {
                body_limit: ctx.base.body_limit,
            })
            .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
            .layer(PropagateRequestIdLayer::new(REQUEST_ID))
            .layer(ctx.server_metrics.layer())
            .layer(RequestTimeoutLayer(ctx.base.request_timeout))
            .layer(DefaultBodyLimit::max(ctx.base.body_limit)),
    )
}

/// The longest `x-request-id` accepted from a client; a longer one is replaced.
pub const MAX_REQUEST_ID_LEN: usize = 128;

/// The outermost guard; see [`assemble`].
#[derive(Clone, Copy, Debug)]
struct GuardLayer {
    body_limit: usize,
}

impl<S> tower::Layer<S> for GuardLayer {
    type Service = Guard<S>;

    fn layer(&self, inner: S) -> Guard<S> {
        Guard {
            inner,
            body_limit: self.body_limit,
        }
    }
}

#[derive(Clone, Debug)]
struct Guard<S> {
    inner: S,
    body_limit: usize,
}

fn request_id_ok(value: &http::HeaderValue) -> bool {
    let bytes = value.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= MAX_REQUEST_ID_LEN
        && bytes.iter().all(|b| b.is_ascii_graphic())
}

impl<S> tower::Service<Request> for Guard<S>
where
    S: tower::Service<Request, Response = Response> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = futures::future::BoxFuture<'static, Result<Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request) -> Self::Future {
        let too_large = req
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u128>().ok())
            .is_some_and(|n| n > self.body_limit as u128);
        if too_large {
            let limit = self.body_limit;
            return Box::pin(async move {
                let mut response = ApiError::payload_too_large(limit).into_response();
                response.headers_mut().insert(
                    http::header::CONNECTION,
                    http::HeaderValue::from_static("close"),
                );
                Ok(response)
            });
        }
        if req
            .headers()
            .get(&REQUEST_ID)
            .is_some_and(|v| !request_id_ok(v))
        {
            req.headers_mut().remove(&REQUEST_ID);
        }
        let fut = self.inner.call(req);
        Box::pin(async move {
            let response = fut.await?;
            Ok(json_errors(response).await)
        })
    }
}

/// Rewrites an error answer that is not JSON (axum's plain-text rejections) as the standard
/// JSON error body, keeping its status, headers and text as the message.
async fn json_errors(response: Response) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let is_json = response
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.contains("json"));
    if is_json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = match axum::body::to_bytes(body, 4096).await {
        Ok(b) => String::from_utf8_lossy(&b).trim().to_owned(),
        Err(_) => String::new(),
    };
    let message = if text.is_empty() {
        status
            .canonical_reason()
            .unwrap_or("request failed")
            .to_owned()
    } else {
        text
    };
    let code = match status {
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::REQUEST_TIMEOUT => "timeout",
        s if s.is_server_error() => "unavailable",
        _ => "bad_request",
    };
    let fresh = ApiError::new(status, code, message).into_response();
    let (fresh_parts, fresh_body) = fresh.into_parts();
    parts.headers.remove(http::header::CONTENT_LENGTH);
    for (name, value) in &fresh_parts.headers {
        parts.headers.insert(name.clone(), value.clone());
    }
    Response::from_parts(parts, fresh_body)
}

/// Answers 503 JSON (`timeout`) when the inner service takes longer than the limit.
#[derive(Clone, Copy, Debug)]
struct RequestTimeoutLayer(Duration);

impl<S> tower::Layer<S> for RequestTimeoutLayer {
    type Service = RequestTimeout<S>;

    fn layer(&self, inner: S) -> RequestTimeout<S> {
        RequestTimeout {
            inner,
            limit: self.0,
        }
    }
}

#[derive(Clone, Debug)]
struct RequestTimeout<S> {
    inner: S,
    limit: Duration,
}

impl<S> tower::Service<Request> for RequestTimeout<S>
where
    S: tower::Service<Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = TimeoutFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        TimeoutFuture {
            inner: tokio::time::timeout(self.limit, self.inner.call(req)),
            limit: self.limit,
        }
    }
}

pin_project_lite::pin_project! {
    struct TimeoutFuture<F> {
        #[pin]
        inner: tokio::time::Timeout<F>,
        limit: Duration,
    }
}

impl<F, E> Future for TimeoutFuture<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        Poll::Ready(match ready!(this.inner.poll(cx)) {
            Ok(result) => result,
            Err(_) => Ok(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "timeout",
                format!("the request took longer than {} s", this.limit.as_secs()),
            )
            .into_response()),
        })
    }
}

async fn metrics(State(registry): State<Registry>) -> Response {
    (
        [(http::header::CONTENT_TYPE, telemetry::metrics::CONTENT_TYPE)],
        telemetry::metrics::encode(&registry),
    )
        .into_response()
}

#[derive(Clone)]
struct AdminState {
    filter: Option<LogFilter>,
    token: Option<secrecy::SecretString>,
}

async fn get_log_filter(State(admin): State<AdminState>) -> Response {
    match admin.filter {
        Some(f) => axum::Json(serde_json::json!({"filter": f.current()})).into_response(),
        None => ApiError::not_found("this process has no reloadable log filter").into_response(),
    }
}

async fn put_log_filter(
    State(admin): State<AdminState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Err(e) = crate::auth::require_token(&headers, admin.token.as_ref(), "ADMIN_TOKEN")
        .and_then(|()| crate::auth::same_origin(&headers))
    {
        return e.into_response();
    }
    let Ok(text) = std::str::from_utf8(&body) else {
        return ApiError::bad_request("the log filter must be UTF-8 text")
            .with_field("filter")
            .into_response();
    };
    let directives = text.trim();
    if directives.is_empty() {
        return ApiError::bad_request(
            "an empty log filter would turn off every log line, errors included; send directives such as `info` or `info,api_gateway=debug`",
        )
        .with_field("filter")
        .into_response();
    }
    let Some(filter) = admin.filter else {
        return ApiError::not_found("this process has no reloadable log filter").into_response();
    };
    match filter.set(directives) {
        Ok(()) => {
            tracing::info!(filter = %directives, "log filter changed");
            axum::Json(serde_json::json!({"filter": filter.current()})).into_response()
        }
        Err(reason) => ApiError::bad_request(reason)
            .with_field("filter")
            .into_response(),
    }
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

/// Bounds on the connections one server holds.
#[derive(Clone, Copy, Debug)]
pub struct ConnectionLimits {
    /// Time allowed to send a request's headers, and to sit idle between keep-alive requests.
    pub header_read_timeout: Duration,
    /// Connections served at once; one more is answered 503 JSON and closed.
    pub max_connections: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            max_connections: 1024,
        }
    }
}

impl ConnectionLimits {
    /// The limits configured in `base`.
    pub fn of(base: &BaseConfig) -> Self {
        Self {
            header_read_timeout: base.header_read_timeout,
            max_connections: base.max_connections,
        }
    }
}

/// Serves `app` on `listener` until `shutdown` is cancelled, then drains in-flight requests for
/// at most `drain`. Returns whether the drain finished in time. Uses the default
/// [`ConnectionLimits`].
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: CancellationToken,
    drain: Duration,
) -> std::io::Result<bool> {
    serve_with_limits(listener, app, shutdown, drain, ConnectionLimits::default()).await
}

/// The answer to a connection over [`ConnectionLimits::max_connections`], written raw before
/// closing it.
const OVER_CAPACITY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: 84\r\n\r\n{\"error\":{\"code\":\"overloaded\",\"message\":\"too many open connections; retry shortly\"}}";

/// [`serve`] with explicit connection bounds: a header-read (and keep-alive idle) timeout and a
/// maximum number of open connections. Requests hyper cannot parse get the standard JSON error
/// body too ([`JsonParseErrors`]).
pub async fn serve_with_limits(
    listener: TcpListener,
    app: Router,
    shutdown: CancellationToken,
    drain: Duration,
    limits: ConnectionLimits,
) -> std::io::Result<bool> {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use hyper_util::server::conn::auto::Builder;
    use hyper_util::server::graceful::GracefulShutdown;
    use tokio::io::AsyncWriteExt;

    let permits = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(limits.header_read_timeout))
        .keep_alive_timeout(limits.header_read_timeout);
    let builder = Arc::new(builder);
    loop {
        let (stream, remote) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tokio::spawn(async move {
                let mut stream = stream;
                let _ = tokio::time::timeout(Duration::from_secs(1), async {
                    let _ = stream.write_all(OVER_CAPACITY).await;
                    let _ = stream.shutdown().await;
                })
                .await;
            });
            continue;
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let service =
            hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                let mut req = req.map(axum::body::Body::new);
                req.extensions_mut()
                    .insert(axum::extract::ConnectInfo(remote));
                tower::ServiceExt::oneshot(app.clone(), req)
            });
        let conn = builder
            .serve_connection_with_upgrades(TokioIo::new(JsonParseErrors::new(stream)), service)
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            let _ = conn.await;
            drop(permit);
        });
    }
    drop(listener);
    Ok(tokio::time::timeout(drain, graceful.shutdown())
        .await
        .is_ok())
}

/// Runs a service binary from start to exit.
///
/// `parse` reads the service's own variables through the shared reader (so every problem is
/// reported together with the common ones); `build` makes its routes.
pub async fn launch<C, P, B, F, E>(
    service: &'static str,
    default_port: u16,
    version: &str,
    parse: P,
    build: B,
) -> ExitCode
where
    P: FnOnce(&mut EnvReader<'_>) -> C,
    B: FnOnce(Context, C) -> F,
    F: Future<Output = Result<Router, E>>,
    E: std::fmt::Display,
{
    let env = ProcessEnv;
    let mut reader = EnvReader::new(&env);
    let base = BaseConfig::read(&mut reader, service, default_port, version);
    let own = parse(&mut reader);
    let base = match (reader.finish(), base) {
        (Ok(()), Some(base)) => base,
        (Err(e), _) => {
            report(service, &e);
            return ExitCode::from(2);
        }
        (Ok(()), None) => return ExitCode::from(2),
    };

    let mut ctx = match Context::new(base) {
        Ok(ctx) => ctx,
        Err(e) => {
            report(service, &e);
            return ExitCode::FAILURE;
        }
    };
    // Once per process, before any TLS client (kube's, the traced client's, the OTLP exporters').
    crypto_provider::install();
    let telemetry = match telemetry::init(&ctx.base.telemetry, &ctx.registry) {
        Ok(t) => t,
        Err(e) => {
            report(service, &e);
            return ExitCode::FAILURE;
        }
    };
    ctx.log_filter = Some(telemetry.log_filter.clone());
    let guard = telemetry.guard;
    let flush = Duration::from_millis(1500);

    let code = run(ctx, own, build).await;
    guard.shutdown(flush).await;
    code
}

async fn run<C, B, F, E>(ctx: Context, own: C, build: B) -> ExitCode
where
    B: FnOnce(Context, C) -> F,
    F: Future<Output = Result<Router, E>>,
    E: std::fmt::Display,
{
    let service = ctx.base.service;
    let routes = match build(ctx.clone(), own).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "{service} could not start");
            return ExitCode::FAILURE;
        }
    };
    let app = assemble(&ctx, routes);
    let listener = match TcpListener::bind(ctx.base.listen).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, addr = %ctx.base.listen, "cannot listen");
            return ExitCode::FAILURE;
        }
    };
    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    tracing::info!(addr = %addr, version = %ctx.base.telemetry.service_version, "{service} listening");

    let shutdown = ctx.shutdown.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutdown signal received; draining in-flight requests");
        shutdown.cancel();
    });
    match serve_with_limits(
        listener,
        app,
        ctx.shutdown.clone(),
        ctx.base.shutdown_timeout,
        ConnectionLimits::of(&ctx.base),
    )
    .await
    {
        Ok(true) => {
            tracing::info!("{service} stopped");
            ExitCode::SUCCESS
        }
        Ok(false) => {
            tracing::warn!(
                timeout_s = ctx.base.shutdown_timeout.as_secs(),
                "drain timed out; in-flight requests were cut"
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!(error = %e, "server failed");
            ExitCode::FAILURE
        }
    }
}

/// Reports a start-up failure on stderr (the log pipeline may not exist yet).
#[allow(clippy::print_stderr)]
fn report(service: &str, error: &dyn std::fmt::Display) {
    eprintln!("{service}: {error}");
}
