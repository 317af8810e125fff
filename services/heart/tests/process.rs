//! The heart binary as a process: the crash fault really ends it with a non-zero status.

use std::io::Read;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn the_crash_fault_exits_non_zero_after_logging() {
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_heart"))
        .env_clear()
        .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
        .env("CHAOS_TOKEN", "pump")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut heart = Killed(child);
    let base = format!("http://127.0.0.1:{port}");
    let client = testbed::http_client_builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();

    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Ok(r) = client.get(format!("{base}/healthz")).send().await
            && r.status() == 200
        {
            break;
        }
        assert!(Instant::now() < deadline, "heart did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let beat: serde_json::Value = client
        .get(format!("{base}/beat"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(beat["beat"], 1);

    let r = client
        .post(format!("{base}/chaos"))
        .header("content-type", "application/json")
        .body(r#"{"crash_after_s": 1}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "the token from CHAOS_TOKEN is enforced");
    let r = client
        .post(format!("{base}/chaos"))
        .bearer_auth("pump")
        .header("content-type", "application/json")
        .body(r#"{"crash_after_s": 1}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = heart.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "heart did not crash");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
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
