//! The `health-monitor` binary; see the [`health_monitor`] library.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    service_kit::launch(
        health_monitor::SERVICE,
        health_monitor::PORT,
        env!("CARGO_PKG_VERSION"),
        health_monitor::Config::read,
        |ctx, config| async move {
            let state = health_monitor::AppState::new(&ctx, config).await?;
            Ok::<_, health_monitor::StartError>(health_monitor::app(state))
        },
    )
    .await
}
