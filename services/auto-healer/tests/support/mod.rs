//! auto-healer-specific test setup (the healer over a test platform, its alerts, a recording
//! platform); calls, replies and metrics reading go through testbed.

#![allow(dead_code)]

pub mod healer;
pub mod recording;
