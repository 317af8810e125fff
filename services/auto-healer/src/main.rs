//! The `auto-healer` binary; see the [`auto_healer`] library.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    service_kit::launch(
        auto_healer::SERVICE,
        auto_healer::PORT,
        env!("CARGO_PKG_VERSION"),
        auto_healer::Config::read,
        |ctx, config| async move {
            let state = auto_healer::AppState::new(&ctx, config).await?;
            Ok::<_, auto_healer::StartError>(auto_healer::app(state))
        },
    )
    .await
}
