//! Requests hyper rejects before the router sees them still get a JSON error body.

use std::time::Duration;

use axum::Router;
use axum::routing::get;
use serde_json::Value;
use service_kit::server::{ConnectionLimits, serve_with_limits};
use service_kit::{CancellationToken, Context, assemble};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn start() -> (String, CancellationToken) {
    let ctx = Context::for_tests("parse-errors");
    let app = assemble(&ctx, Router::new().route("/hello", get(|| async { "hi" })));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let stop = CancellationToken::new();
    let limits = ConnectionLimits::default();
    tokio::spawn(serve_with_limits(
        listener,
        app,
        stop.clone(),
        Duration::from_secs(1),
        limits,
    ));
    (addr, stop)
}

/// Sends `bytes` on a fresh connection; returns the status, the headers and the JSON body.
async fn send(addr: &str, bytes: &[u8]) -> (u16, String, Value) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut out))
        .await
        .expect("the server closes the connection after its answer")
        .unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("a whole answer");
    let status = head[9..12].parse().unwrap();
    let json = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {text}"));
    (status, head.to_ascii_lowercase(), json)
}

#[tokio::test]
async fn a_malformed_request_line_gets_a_400_json() {
    let (addr, stop) = start().await;
    let (status, head, body) = send(&addr, b"GET /hello HTTP/1.1 extra\r\nhost: x\r\n\r\n").await;
    assert_eq!(status, 400);
    assert!(head.contains("content-type: application/json"), "{head}");
    assert_eq!(body["error"]["code"], "bad_request");
    stop.cancel();
}

#[tokio::test]
async fn a_malformed_header_gets_a_400_json() {
    let (addr, stop) = start().await;
    let (status, _, body) = send(&addr, b"GET /hello HTTP/1.1\r\nho st: x\r\n\r\n").await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "bad_request");
    stop.cancel();
}

#[tokio::test]
async fn too_many_headers_get_a_431_json() {
    let (addr, stop) = start().await;
    let mut request = b"GET /hello HTTP/1.1\r\nhost: x\r\n".to_vec();
    for i in 0..200 {
        request.extend_from_slice(format!("x-h{i}: v\r\n").as_bytes());
    }
    request.extend_from_slice(b"\r\n");
    let (status, _, body) = send(&addr, &request).await;
    assert_eq!(status, 431);
    assert_eq!(body["error"]["code"], "headers_too_large");
    stop.cancel();
}

#[tokio::test]
async fn a_router_error_is_left_as_the_router_wrote_it() {
    let (addr, stop) = start().await;
    let (status, _, body) = send(
        &addr,
        b"GET /nowhere HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "not_found");
    stop.cancel();
}
