//! The heart binary as a process: the crash fault really ends it with a non-zero status.

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use http::{Method, Request};
use testbed::TestRouter;

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `POST /chaos` of a crash fault, with `token` when given: the status.
async fn crash_after_a_second(heart: &TestRouter, token: Option<&str>) -> u16 {
    let mut request = Request::post("/chaos").header("content-type", "application/json");
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let request = request.body(r#"{"crash_after_s": 1}"#.into()).unwrap();
    heart.send(request).await.status.as_u16()
}

#[tokio::test]
async fn the_crash_fault_exits_non_zero_after_logging() {
    let port = testbed::free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_heart"))
        .env_clear()
        .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
        .env("CHAOS_TOKEN", "pump")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut heart = Killed(child);
    let api = TestRouter::over_http(format!("http://127.0.0.1:{port}"));

    let started = testbed::wait_until(Duration::from_secs(30), || async {
        api.send(Request::get("/healthz").body(Default::default()).unwrap())
            .await
            .status
            == 200
    })
    .await;
    assert!(started, "heart did not start");
    assert_eq!(api.call(Method::GET, "/beat", None).await.body["beat"], 1);

    assert_eq!(
        crash_after_a_second(&api, None).await,
        401,
        "the token from CHAOS_TOKEN is enforced"
    );
    assert_eq!(crash_after_a_second(&api, Some("pump")).await, 200);

    let crashed = testbed::wait_until(Duration::from_secs(30), || {
        let exited = heart.0.try_wait().unwrap().is_some();
        async move { exited }
    })
    .await;
    assert!(crashed, "heart did not crash");
    let status = heart.0.wait().unwrap();
    assert_eq!(status.code(), Some(1));
    let mut out = String::new();
    heart
        .0
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert!(
        out.contains("crash fault fired"),
        "the crash is logged first:\n{out}"
    );
}
