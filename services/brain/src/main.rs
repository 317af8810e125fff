//! The `brain` binary; see the [`brain`] library.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    service_kit::launch(
        brain::SERVICE,
        brain::PORT,
        env!("CARGO_PKG_VERSION"),
        brain::Config::read,
        |ctx, config| async move { brain::AppState::new(&ctx, config).map(brain::app) },
    )
    .await
}
