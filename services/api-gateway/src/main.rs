//! The `api-gateway` binary; see the [`api_gateway`] library.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    service_kit::launch(
        api_gateway::SERVICE,
        api_gateway::PORT,
        env!("CARGO_PKG_VERSION"),
        api_gateway::Config::read,
        |ctx, config| async move {
            let state = api_gateway::AppState::new(&ctx, config)?;
            Ok::<_, prometheus::Error>(api_gateway::app(state))
        },
    )
    .await
}
