//! Exponential back-off with jitter, for reconnecting and re-sending.

use std::time::Duration;

const BACKOFF_MIN: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// Exponential back-off with "equal jitter": half the ceiling fixed, half random.
pub(crate) struct Backoff {
    attempt: u32,
    seed: u64,
}

impl Backoff {
    pub(crate) fn new(seed: u64) -> Self {
        Self {
            attempt: 0,
            seed: seed | 1,
        }
    }

    pub(crate) fn reset(&mut self) {
        self.attempt = 0;
    }

    pub(crate) fn next(&mut self) -> Duration {
        let ceiling = BACKOFF_MIN
            .saturating_mul(1 << self.attempt.min(16))
            .min(BACKOFF_MAX);
        self.attempt += 1;
        // xorshift64: cheap jitter that needs no shared generator.
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        let fraction = (self.seed >> 11) as f64 / (1u64 << 53) as f64;
        ceiling / 2 + ceiling.mul_f64(fraction) / 2
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_its_ceiling_with_jitter() {
        let mut backoff = Backoff::new(42);
        let delays: Vec<_> = (0..20).map(|_| backoff.next()).collect();
        assert!(
            delays
                .iter()
                .all(|d| *d >= BACKOFF_MIN / 2 && *d <= BACKOFF_MAX)
        );
        assert!(delays[15..].iter().any(|d| *d > Duration::from_secs(5)));
        assert!(delays.windows(2).any(|w| w[0] != w[1]));
        backoff.reset();
        assert!(backoff.next() <= BACKOFF_MIN);
    }
}
