//! The `alert-service` binary; see the [`alert_service`] library.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    service_kit::launch(
        alert_service::SERVICE,
        alert_service::PORT,
        env!("CARGO_PKG_VERSION"),
        alert_service::Config::read,
        |ctx, config| async move {
            let state = alert_service::AppState::new(&ctx, config).await?;
            Ok::<_, alert_service::StartError>(alert_service::app(state))
        },
    )
    .await
}
