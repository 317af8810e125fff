//! The `heart` binary; see the [`heart`] library.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    service_kit::launch(
        heart::SERVICE,
        heart::PORT,
        env!("CARGO_PKG_VERSION"),
        heart::Config::read,
        |ctx, config| async move { heart::AppState::new(&ctx, config).map(heart::app) },
    )
    .await
}
