//! The one exponential backoff of the workspace: every retry waits as this policy says.
//!
//! A named policy ([`ExponentialBackoff`]: a first delay, doubled for each further retry, capped,
//! optionally jittered) answers one question, [`ExponentialBackoff::delay`]: how long to wait
//! before retry `n`. Callers keep their own count of failures — in memory (brain's pulse), per
//! target (a publisher), or in a database row that survives restarts (an outbox) — so the policy
//! is a pure function of that count rather than an iterator that must live as long as the
//! retries (which is what `backon`'s and `backoff`'s builders hand out, and why they are not
//! used here: a count read back from a row cannot resume an iterator, and `backon`'s jitter adds
//! up to a whole delay on top of the cap).
//!
//! ```
//! use std::time::Duration;
//! use service_kit::backoff::{ExponentialBackoff, Jitter};
//!
//! let policy = ExponentialBackoff::new(Duration::from_secs(1), Duration::from_secs(30));
//! assert_eq!(policy.delay(0), Duration::from_secs(1));
//! assert_eq!(policy.delay(3), Duration::from_secs(8));
//! assert_eq!(policy.delay(10), Duration::from_secs(30));
//!
//! let jittered = policy.with_jitter(Jitter::UpperHalf);
//! let d = jittered.delay(3);
//! assert!(d >= Duration::from_secs(4) && d <= Duration::from_secs(8));
//! ```

use std::time::Duration;

use rand::Rng as _;

/// How a delay is spread so that many clients failing together do not retry together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Jitter {
    /// The exact delay.
    #[default]
    None,
    /// Uniform between half the delay and the whole delay (never above the cap).
    UpperHalf,
}

/// `initial × 2^retry`, at most `max`, then jittered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExponentialBackoff {
    /// The delay before the first retry.
    pub initial: Duration,
    /// The longest delay.
    pub max: Duration,
    /// How the delay is spread.
    pub jitter: Jitter,
}

impl ExponentialBackoff {
    /// Starts at `initial`, doubles per retry, stops growing at `max`; no jitter.
    pub const fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max,
            jitter: Jitter::None,
        }
    }

    /// The same policy with `jitter`.
    pub const fn with_jitter(self, jitter: Jitter) -> Self {
        Self { jitter, ..self }
    }

    /// The delay before retry `retry` without jitter (`retry` 0 is the first retry, after one
    /// failure): `initial × 2^retry`, at most `max`.
    pub fn base_delay(&self, retry: u32) -> Duration {
        self.initial
            .saturating_mul(1u32 << retry.min(31))
            .min(self.max)
    }

    /// The delay before retry `retry` (0 is the first retry, after one failure).
    pub fn delay(&self, retry: u32) -> Duration {
        let base = self.base_delay(retry);
        match self.jitter {
            Jitter::None => base,
            Jitter::UpperHalf => {
                let ms = u64::try_from(base.as_millis()).unwrap_or(u64::MAX);
                if ms < 2 {
                    return base;
                }
                Duration::from_millis(rand::rng().random_range(ms / 2..=ms))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_retry_doubles_the_delay() {
        let p = ExponentialBackoff::new(Duration::from_millis(20), Duration::MAX);
        let delays: Vec<u128> = (0..4).map(|n| p.delay(n).as_millis()).collect();
        assert_eq!(delays, [20, 40, 80, 160]);
    }

    #[test]
    fn the_delay_stops_growing_at_the_cap() {
        let p = ExponentialBackoff::new(Duration::from_secs(2), Duration::from_secs(60));
        assert_eq!(p.delay(4), Duration::from_secs(32));
        assert_eq!(p.delay(5), Duration::from_secs(60));
        assert_eq!(p.delay(u32::MAX), Duration::from_secs(60));
    }

    #[test]
    fn an_uncapped_policy_saturates_instead_of_overflowing() {
        let p = ExponentialBackoff::new(Duration::from_secs(u64::MAX / 2), Duration::MAX);
        assert_eq!(p.delay(40), Duration::MAX);
    }

    #[test]
    fn upper_half_jitter_stays_between_half_and_the_whole_delay() {
        let p = ExponentialBackoff::new(Duration::from_secs(2), Duration::from_secs(60))
            .with_jitter(Jitter::UpperHalf);
        let delays: Vec<Duration> = (0..200).map(|_| p.delay(2)).collect();
        assert!(
            delays
                .iter()
                .all(|d| (Duration::from_secs(4)..=Duration::from_secs(8)).contains(d)),
            "{delays:?}"
        );
        assert!(
            delays.iter().any(|d| *d != delays[0]),
            "200 jittered delays were all {:?}",
            delays[0]
        );
        assert!(
            p.delay(30) <= Duration::from_secs(60),
            "jitter never exceeds the cap"
        );
    }
}
