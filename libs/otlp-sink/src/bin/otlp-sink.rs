//! A standalone OTLP/gRPC sink that decodes and counts what it receives, for measuring a
//! service's export cost by hand: `otlp-sink 127.0.0.1:4317` (prints counts every 5 s).

use std::time::Duration;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:4317".to_owned());
    let addr = addr.parse().map_err(|e| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{addr}: {e}"))
    })?;
    let sink = otlp_sink::OtlpSink::start_counting_on(addr).await?;
    println!(
        "otlp-sink listening on {} (gRPC) and {} (http/protobuf)",
        sink.endpoint(),
        sink.http_endpoint()
    );
    loop {
        tokio::time::sleep(Duration::from_secs(5)).await;
        println!("spans {} logs {}", sink.span_count(), sink.log_count());
    }
}
