//! Exponential backoff: one rule for every retry of the pipeline.
//!
//! A [`Backoff`] grows its delay by `factor` per failure, from `initial` up to `max`. Loops that
//! retry in process keep one and call [`Backoff::next_delay`] after each failure and
//! [`Backoff::reset`] after a success. Schedules kept elsewhere (a retry time stored with the
//! row, so any pod may make the next attempt) ask for the delay of a given attempt instead:
//! [`Backoff::ceiling`], or [`Backoff::full_jitter`] to spread retries that failed together.

use std::time::Duration;

/// How many failures grow the delay; past them it stays where it is (or at `max`, if lower).
/// Keeps the multiplication far from saturation whatever the attempt count.
const MAX_GROWTH_STEPS: u32 = 20;

/// An exponential backoff: `initial`, then `initial * factor`, `initial * factor²`, …, at most
/// `max`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backoff {
    /// The delay after the first failure.
    pub initial: Duration,
    /// The longest delay, however many failures follow.
    pub max: Duration,
    /// How much each failure multiplies the delay by.
    pub factor: u32,
    /// Failures since the last [`Backoff::reset`]: where [`Backoff::next_delay`] stands.
    failures: u32,
}

impl Backoff {
    /// Doubling from `initial` up to `max`.
    pub const fn new(initial: Duration, max: Duration) -> Backoff {
        Backoff {
            initial,
            max,
            factor: 2,
            failures: 0,
        }
    }

    /// The same backoff growing by `factor` per failure instead of doubling.
    pub const fn with_factor(mut self, factor: u32) -> Backoff {
        self.factor = factor;
        self
    }

    /// The delay after one more failure: `initial` the first time, then growing.
    pub fn next_delay(&mut self) -> Duration {
        self.failures = self.failures.saturating_add(1);
        self.ceiling(self.failures)
    }

    /// Back to `initial`, after a success.
    pub fn reset(&mut self) {
        self.failures = 0;
    }

    /// The delay after failed attempt number `attempt` (1 and 0 both give `initial`).
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let steps = attempt.saturating_sub(1).min(MAX_GROWTH_STEPS);
        self.initial
            .saturating_mul(self.factor.saturating_pow(steps))
            .min(self.max)
    }

    /// "Full jitter": a delay drawn uniformly, to the millisecond, from zero to
    /// [`Backoff::ceiling`] of `attempt` (a ceiling under 1 ms counts as 1 ms), picked by
    /// `random` (any value; the caller brings the randomness so the arithmetic stays testable).
    /// Receivers that failed together then come back spread out instead of all at once.
    pub fn full_jitter(&self, attempt: u32, random: u64) -> Duration {
        let ceiling_ms = u64::try_from(self.ceiling(attempt).as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        Duration::from_millis(random % ceiling_ms.saturating_add(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn delays_double_up_to_the_maximum_and_reset_starts_over() {
        let mut backoff = Backoff::new(50 * MS, 500 * MS);
        let delays: Vec<Duration> = (0..6).map(|_| backoff.next_delay()).collect();
        assert_eq!(
            delays,
            [50 * MS, 100 * MS, 200 * MS, 400 * MS, 500 * MS, 500 * MS]
        );
        backoff.reset();
        assert_eq!(backoff.next_delay(), 50 * MS);
    }

    #[test]
    fn the_factor_sets_the_growth() {
        let mut backoff = Backoff::new(10 * MS, Duration::from_secs(1)).with_factor(3);
        let delays: Vec<Duration> = (0..5).map(|_| backoff.next_delay()).collect();
        assert_eq!(delays, [10 * MS, 30 * MS, 90 * MS, 270 * MS, 810 * MS]);
        assert_eq!(backoff.next_delay(), Duration::from_secs(1));
    }

    #[test]
    fn attempt_zero_and_one_wait_the_initial_delay_and_growth_stops_after_twenty_steps() {
        let backoff = Backoff::new(MS, Duration::MAX);
        assert_eq!(backoff.ceiling(0), MS);
        assert_eq!(backoff.ceiling(1), MS);
        assert_eq!(backoff.ceiling(21), (1 << 20) * MS);
        assert_eq!(backoff.ceiling(u32::MAX), (1 << 20) * MS);
    }

    #[test]
    fn a_huge_factor_saturates_at_the_maximum() {
        let backoff =
            Backoff::new(Duration::from_secs(1), Duration::from_secs(60)).with_factor(u32::MAX);
        assert_eq!(backoff.ceiling(40), Duration::from_secs(60));
        let mut running = backoff.clone();
        for _ in 0..100 {
            assert!(running.next_delay() <= Duration::from_secs(60));
        }
    }

    #[test]
    fn full_jitter_covers_zero_to_the_ceiling() {
        let backoff = Backoff::new(100 * MS, Duration::from_secs(60));
        // Attempt 3: a ceiling of 400 ms, so 401 possible delays.
        assert_eq!(backoff.full_jitter(3, 0), Duration::ZERO);
        assert_eq!(backoff.full_jitter(3, 400), 400 * MS);
        assert_eq!(backoff.full_jitter(3, 401), Duration::ZERO);
        // A zero ceiling still leaves a choice between 0 and 1 ms.
        let zero = Backoff::new(Duration::ZERO, Duration::ZERO);
        assert_eq!(zero.full_jitter(1, 1), MS);
    }

    #[test]
    fn full_jitter_never_exceeds_the_ceiling() {
        let backoff = Backoff::new(100 * MS, Duration::from_secs(60));
        for attempt in 0..40 {
            let ceiling = backoff.ceiling(attempt);
            for random in [0, 1, 99, 100, 101, 59_999, 60_000, u64::MAX / 3, u64::MAX] {
                assert!(backoff.full_jitter(attempt, random) <= ceiling);
            }
        }
    }
}
