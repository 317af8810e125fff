//! Starting, serving and stopping a service.
//!
//! [`launch`] is the whole life of a binary: configuration (every bad variable reported, exit
//! code 2) → telemetry → the service's router → bind → serve → drain on SIGTERM/SIGINT, bounded →
//! telemetry flushed last. [`assemble`] adds the standard endpoints and layers to a service's
//! routes; tests call it directly and drive the router without a socket.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::Arc;
use std::task::{Poll, ready};
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
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

/// Adds `/healthz`, `/readyz`, `/metrics`, `/admin/log-filter`, JSON 404/405, the body limit,
/// the request timeout, request ids, panic catching and HTTP telemetry to `routes`.
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
            .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
            .layer(PropagateRequestIdLayer::new(REQUEST_ID))
            .layer(ctx.server_metrics.layer())
            .layer(RequestTimeoutLayer(ctx.base.request_timeout))
            .layer(DefaultBodyLimit::max(ctx.base.body_limit)),
    )
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
    body: String,
) -> Response {
    if let Err(e) = crate::auth::require_bearer(&headers, admin.token.as_ref()) {
        return e.into_response();
    }
    let Some(filter) = admin.filter else {
        return ApiError::not_found("this process has no reloadable log filter").into_response();
    };
    match filter.set(body.trim()) {
        Ok(()) => {
            tracing::info!(filter = %body.trim(), "log filter changed");
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

/// Serves `app` on `listener` until `shutdown` is cancelled, then drains in-flight requests for
/// at most `drain`. Returns whether the drain finished in time.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: CancellationToken,
    drain: Duration,
) -> std::io::Result<bool> {
    let signal = shutdown.clone();
    let server = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move { signal.cancelled().await });
    let server = std::pin::pin!(server.into_future());
    let mut server = server;
    tokio::select! {
        result = &mut server => result.map(|()| true),
        () = async { shutdown.cancelled().await; tokio::time::sleep(drain).await } => Ok(false),
    }
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
    match serve(
        listener,
        app,
        ctx.shutdown.clone(),
        ctx.base.shutdown_timeout,
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
