//! The memory-leak fault: a background task that maps, writes and keeps memory at a set rate.
//!
//! Memory is taken as anonymous mappings (`memmap2`), not from the allocator's heap, so that
//! freeing it really returns it to the kernel and the resident set drops at once; every byte is
//! written so that it counts in the resident set while held.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use memmap2::MmapMut;
use tokio_util::sync::CancellationToken;

/// Allocation happens in ten slices per second, so the resident set grows smoothly.
const TICK: Duration = Duration::from_millis(100);
const TICKS_PER_SECOND: u64 = 10;
const MIB: u64 = 1024 * 1024;

pub(crate) struct Leak {
    held: Arc<Held>,
    shutdown: CancellationToken,
    task: Mutex<Option<CancellationToken>>,
}

#[derive(Default)]
struct Held {
    maps: Mutex<Vec<MmapMut>>,
    bytes: AtomicU64,
}

impl Held {
    fn maps(&self) -> MutexGuard<'_, Vec<MmapMut>> {
        self.maps
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Leak {
    pub(crate) fn new(shutdown: CancellationToken) -> Self {
        Self {
            held: Arc::default(),
            shutdown,
            task: Mutex::new(None),
        }
    }

    /// Bytes held right now.
    pub(crate) fn held_bytes(&self) -> u64 {
        self.held.bytes.load(Ordering::Relaxed)
    }

    /// Leaks `mb_per_s` MiB per second from now on (0 stops growing; what is held stays held).
    pub(crate) fn set_rate(&self, mb_per_s: u64) {
        let mut task = self
            .task
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(previous) = task.take() {
            previous.cancel();
        }
        if mb_per_s == 0 {
            return;
        }
        let stop = self.shutdown.child_token();
        *task = Some(stop.clone());
        let held = self.held.clone();
        let slice = usize::try_from(mb_per_s * MIB / TICKS_PER_SECOND).unwrap_or(usize::MAX);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(TICK);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = stop.cancelled() => break,
                    _ = ticks.tick() => {}
                }
                // Writing tens of MiB takes milliseconds: keep it off the async workers.
                let taken = tokio::task::spawn_blocking(move || {
                    let mut map = MmapMut::map_anon(slice)?;
                    map.fill(0xA5);
                    Ok::<_, std::io::Error>(map)
                })
                .await;
                match taken {
                    Ok(Ok(map)) => {
                        // Checked under the lock that `free` takes after cancelling, so a slice
                        // mapped while memory is being freed is dropped, never kept.
                        let mut maps = held.maps();
                        if stop.is_cancelled() {
                            break;
                        }
                        maps.push(map);
                        held.bytes.fetch_add(slice as u64, Ordering::Relaxed);
                    }
                    Ok(Err(e)) => {
                        tracing::error!(error = %e, "chaos: the leak fault could not map memory; stopping it");
                        break;
                    }
                    Err(_) => break,
                }
            }
        });
    }

    /// Stops growing and releases everything held.
    pub(crate) fn free(&self) {
        self.set_rate(0);
        let maps = std::mem::take(&mut *self.held.maps());
        self.held.bytes.store(0, Ordering::Relaxed);
        let bytes: usize = maps.iter().map(|m| m.len()).sum();
        drop(maps);
        if bytes > 0 {
            tracing::info!(freed_bytes = bytes, "chaos: leaked memory freed");
        }
    }
}
