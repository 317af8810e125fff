//! Servers never outlive their test: dropped servers are gone, and a server whose owner vanished
//! without running `Drop` (a killed test) is killed by the kernel when its starting thread ends.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use testbed::{Postgres, SmtpSink, wait_until};

async fn refuses(addr: SocketAddr) -> bool {
    wait_until(Duration::from_secs(10), || async {
        tokio::net::TcpStream::connect(addr).await.is_err()
    })
    .await
}

/// Starts a server on a thread of its own, leaks it (no `Drop`, as when the test process is
/// killed), lets the thread end, and returns the address and the leaked temp dir.
fn start_and_abandon<F, Fut>(start: F) -> (SocketAddr, PathBuf)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = (SocketAddr, PathBuf)>,
{
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(start())
    })
    .join()
    .unwrap()
}

#[tokio::test]
async fn dropped_servers_are_gone() {
    let smtp = SmtpSink::start().await;
    let addr = smtp.addr();
    let maildir = smtp.maildir();
    assert!(tokio::net::TcpStream::connect(addr).await.is_ok());
    drop(smtp);
    assert!(
        refuses(addr).await,
        "the SMTP sink still accepts after drop"
    );
    assert!(!maildir.exists(), "the temp dir is removed");
}

#[tokio::test]
async fn abandoned_servers_die_with_their_thread() {
    let (smtp_addr, smtp_dir) = start_and_abandon(|| async {
        let smtp = SmtpSink::start().await;
        let found = (smtp.addr(), smtp.maildir().parent().unwrap().to_path_buf());
        std::mem::forget(smtp);
        found
    });
    let (pg_addr, pg_dir) = start_and_abandon(|| async {
        let pg = Postgres::start().await;
        let found = (
            SocketAddr::from(([127, 0, 0, 1], pg.port())),
            pg.data_dir().parent().unwrap().to_path_buf(),
        );
        std::mem::forget(pg);
        found
    });
    let smtp_gone = refuses(smtp_addr).await;
    let pg_gone = refuses(pg_addr).await;
    // Clean up what the leak left behind before asserting.
    let _ = std::fs::remove_dir_all(smtp_dir);
    let _ = std::fs::remove_dir_all(pg_dir);
    assert!(smtp_gone, "aiosmtpd outlived the thread that started it");
    assert!(pg_gone, "postgres outlived the thread that started it");
}
