//! The `user-service` binary; see the [`user_service`] library.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    service_kit::launch(
        user_service::SERVICE,
        user_service::PORT,
        env!("CARGO_PKG_VERSION"),
        user_service::Config::read,
        |ctx, config| async move {
            let state = user_service::AppState::new(&ctx, config).await?;
            Ok::<_, user_service::StartError>(user_service::app(state))
        },
    )
    .await
}
