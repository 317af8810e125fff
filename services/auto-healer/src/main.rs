//! The `auto-healer` binary; see the [`auto_healer`] library.

use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[tokio::main]
async fn main() -> ExitCode {
    // The leader-election task releases the Lease when shutdown starts; wait for it (bounded)
    // after the server stopped, so a rolling update hands over at once.
    let lease_task: Arc<Mutex<Option<tokio::task::JoinHandle<()>>>> = Arc::default();
    let slot = lease_task.clone();
    let code = service_kit::launch(
        auto_healer::SERVICE,
        auto_healer::PORT,
        env!("CARGO_PKG_VERSION"),
        auto_healer::Config::read,
        |ctx, config| async move {
            let state = auto_healer::AppState::new(&ctx, config).await?;
            if let Ok(mut s) = slot.lock() {
                *s = state.take_lease_task();
            }
            Ok::<_, auto_healer::StartError>(auto_healer::app(state))
        },
    )
    .await;
    let task = lease_task.lock().ok().and_then(|mut t| t.take());
    if let Some(task) = task {
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    }
    code
}
