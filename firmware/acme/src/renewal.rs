//! When to try for a certificate next: a pure function of the current certificate's dates,
//! the CA's ARI window (RFC 9773), the failures so far and the server's `Retry-After`, with
//! the randomness supplied by the caller (so the schedule can be tested and replayed).
//!
//! - No failure since the last success: a time chosen uniformly in the ARI window if the CA
//!   gave one (section 4.2 of RFC 9773), else two thirds into the certificate's lifetime less
//!   a jitter of up to a fifteenth of it (spreading renewals, never later than two thirds).
//! - After `n` failures: the last attempt plus `BACKOFF_BASE · 2^(n-1)` capped at
//!   [`BACKOFF_CAP`] (plus up to a tenth of jitter), and never before the server's
//!   `Retry-After` has passed.
//!
//! The caller tries when `now >= next_attempt(…)`; an expired or unknown certificate gives a
//! time in the past (try now). Called by the firmware's ACME task; calls nothing.

/// First pause after a failure (seconds).
pub const BACKOFF_BASE: u64 = 10 * 60;
/// Longest pause between failed attempts (seconds).
pub const BACKOFF_CAP: u64 = 6 * 60 * 60;

/// What the schedule is computed from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Schedule {
    /// The current certificate's notBefore and notAfter (Unix seconds).
    pub not_before: u64,
    pub not_after: u64,
    /// ARI's suggested window (start, end), if the CA offers ARI.
    pub window: Option<(u64, u64)>,
    /// Failed attempts since the last success.
    pub failures: u32,
    /// When the last attempt was made (Unix seconds), if any.
    pub last_attempt: Option<u64>,
    /// The server's last `Retry-After` (seconds after the last attempt).
    pub retry_after: Option<u64>,
}

/// The time (Unix seconds) of the next attempt; `random` is a fresh random number from the
/// caller's entropy source.
pub fn next_attempt(schedule: &Schedule, random: u64) -> u64 {
    if schedule.failures > 0 {
        let last = schedule.last_attempt.unwrap_or(0);
        let exponent = (schedule.failures - 1).min(32);
        let backoff = BACKOFF_BASE.saturating_mul(1u64 << exponent).min(BACKOFF_CAP);
        let jitter = random % (backoff / 10 + 1);
        let pause = (backoff + jitter).max(schedule.retry_after.unwrap_or(0));
        return last.saturating_add(pause);
    }
    if let Some((start, end)) = schedule.window.filter(|(start, end)| end > start) {
        return start + random % (end - start);
    }
    let lifetime = schedule.not_after.saturating_sub(schedule.not_before);
    let two_thirds = schedule.not_before + lifetime / 3 * 2 + (lifetime % 3) * 2 / 3;
    let jitter = random % (lifetime / 15 + 1);
    let at = two_thirds - jitter.min(two_thirds);
    // A server's Retry-After is honoured even without a failure (an ARI poll may send one).
    match (schedule.last_attempt, schedule.retry_after) {
        (Some(last), Some(retry)) => at.max(last.saturating_add(retry)),
        _ => at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: u64 = 86_400;
    const START: u64 = 1_796_425_550;

    fn fresh(lifetime_days: u64) -> Schedule {
        Schedule {
            not_before: START,
            not_after: START + lifetime_days * DAY,
            window: None,
            failures: 0,
            last_attempt: None,
            retry_after: None,
        }
    }

    #[test]
    fn two_thirds_of_the_lifetime_with_bounded_jitter() {
        let schedule = fresh(90);
        assert_eq!(next_attempt(&schedule, 0), START + 60 * DAY);
        let mut earliest = u64::MAX;
        for random in [1, 7, 12345, u64::MAX / 3, u64::MAX] {
            let at = next_attempt(&schedule, random);
            assert!((START + 54 * DAY..=START + 60 * DAY).contains(&at), "{random}: {at}");
            earliest = earliest.min(at);
        }
        assert!(earliest < START + 60 * DAY, "the jitter moves some attempts earlier");
        // Short-lived (6-day) certificates: day 4, jitter under 10 hours.
        let at = next_attempt(&fresh(6), u64::MAX);
        assert!(at <= START + 4 * DAY && at > START + 4 * DAY - 10 * 3600);
    }

    #[test]
    fn ari_window_wins_when_given() {
        let schedule = Schedule { window: Some((START + 50 * DAY, START + 52 * DAY)), ..fresh(90) };
        for random in [0, 1, 99_999, u64::MAX] {
            let at = next_attempt(&schedule, random);
            assert!((START + 50 * DAY..START + 52 * DAY).contains(&at));
        }
        // A window in the past means now (the caller sees a time already passed).
        let past = Schedule { window: Some((START - 2 * DAY, START - DAY)), ..fresh(90) };
        assert!(next_attempt(&past, 5) < START);
        // An empty or reversed window is ignored.
        let reversed = Schedule { window: Some((START + 52 * DAY, START + 50 * DAY)), ..fresh(90) };
        assert_eq!(next_attempt(&reversed, 0), START + 60 * DAY);
    }

    #[test]
    fn failures_back_off_exponentially_up_to_the_cap() {
        let last = START + 60 * DAY;
        let pauses: Vec<u64> = (1..=10)
            .map(|failures| next_attempt(&Schedule { failures, last_attempt: Some(last), ..fresh(90) }, 0) - last)
            .collect();
        assert_eq!(pauses, [600, 1200, 2400, 4800, 9600, 19200, 21600, 21600, 21600, 21600]);
        let huge = next_attempt(&Schedule { failures: u32::MAX, last_attempt: Some(last), ..fresh(90) }, u64::MAX);
        assert!(huge - last <= BACKOFF_CAP + BACKOFF_CAP / 10);
    }

    #[test]
    fn retry_after_is_honoured() {
        let last = START + 60 * DAY;
        let schedule = Schedule { failures: 1, last_attempt: Some(last), retry_after: Some(3 * 3600), ..fresh(90) };
        assert_eq!(next_attempt(&schedule, 0), last + 3 * 3600);
        // A short Retry-After does not shorten the backoff.
        let short = Schedule { retry_after: Some(5), ..schedule };
        assert_eq!(next_attempt(&short, 0), last + BACKOFF_BASE);
        // Without a failure (an ARI poll answered Retry-After) it still holds.
        let polite = Schedule { failures: 0, last_attempt: Some(START + 59 * DAY), retry_after: Some(2 * DAY), ..fresh(90) };
        assert_eq!(next_attempt(&polite, 0), START + 61 * DAY);
    }

    #[test]
    fn odd_dates_do_not_panic() {
        let backwards = Schedule { not_before: START, not_after: START - DAY, ..fresh(90) };
        assert_eq!(next_attempt(&backwards, 3), START);
        let zero = Schedule { not_before: 0, not_after: 0, ..fresh(90) };
        assert_eq!(next_attempt(&zero, u64::MAX), 0);
        let end_of_time = Schedule { not_before: u64::MAX - 10, not_after: u64::MAX, ..fresh(90) };
        let _ = next_attempt(&end_of_time, u64::MAX);
    }
}
