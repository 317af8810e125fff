//! The `heart` binary; see the [`heart`] library.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    service_kit::launch(
        heart::SERVICE,
        heart::PORT,
        env!("CARGO_PKG_VERSION"),
        heart::Config::read,
        |ctx, config| async move {
            let state = heart::AppState::new(&ctx, config);
            Ok::<_, std::convert::Infallible>(heart::app(state))
        },
    )
    .await
}
