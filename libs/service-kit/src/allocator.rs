//! The memory allocator of every service binary: mimalloc.
//!
//! Profiled (`perf`) on heart `/beat?work=0` under `wrk`, every request traced, logged and
//! exported: the allocator was the largest single cost of a request (~20% of its CPU in glibc's
//! malloc and free: telemetry records are made on request threads and freed on the exporters'),
//! and mimalloc took a median ~12% off heart's CPU per request (4 interleaved rounds on a loaded
//! 2-core machine: 19.9–30.9 µs against 24.7–31.0 µs with glibc). Linked here, in the crate every service
//! binary starts through, so that each gets it without a line of its own.

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
