//! Failed-unlock accounting: the attempt log in the record's sector (one programmed word per
//! attempt, no erase per failure) and the delay policy [`unlock_delay`].
//!
//! After the record area of the current slot sector come entries of two flash words each:
//!
//! ```text
//! entry i at RECORD_AREA_LENGTH + i × 2 × WRITE_SIZE:
//!   attempt word  programmed (0x00…) *before* the passphrase is tried
//!   success word  programmed after the passphrase was proven right
//! ```
//!
//! An attempt is logged before the KDF runs, so cutting the power during a guess (to avoid
//! the count) does not help: the attempt already counts. A success marks its entry, which
//! resets the count without an erase. The consecutive failures are the used attempt words after
//! the last success entry, plus the record's `carried_failures` if the sector holds no success.
//! When the entries run out (≈ 480 attempts with 4 KiB sectors and 4-byte words), the record is
//! copied into the next slot sector with the current count carried over (one erase per ≈ 480
//! attempts). A word counts as used when any of its bits is programmed, so a torn word is never
//! programmed again.

/// Failed attempts without delay.
pub const FREE_ATTEMPTS: u32 = 3;
/// Delay after the first failure beyond the free ones; it doubles with each further failure.
pub const FIRST_DELAY_SECONDS: u64 = 2;
/// The longest delay (one hour).
pub const MAX_DELAY_SECONDS: u64 = 3600;

/// Seconds to wait after the last failure before the next attempt, given `failures`
/// consecutive failed attempts: none for the first [`FREE_ATTEMPTS`], then 2, 4, 8 … seconds,
/// capped at [`MAX_DELAY_SECONDS`].
pub fn unlock_delay(failures: u32) -> u64 {
    if failures <= FREE_ATTEMPTS {
        return 0;
    }
    let doublings = failures - FREE_ATTEMPTS - 1;
    if doublings >= 12 {
        return MAX_DELAY_SECONDS;
    }
    (FIRST_DELAY_SECONDS << doublings).min(MAX_DELAY_SECONDS)
}

/// What the attempt log of the current sector says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct AttemptLog {
    /// Consecutive failed attempts (an attempt in progress counts until it succeeds).
    pub(crate) failures: u32,
    /// The first entry after every used one (where the next attempt is logged).
    pub(crate) next_entry: u32,
}

/// Builds an [`AttemptLog`] from the entries in order.
pub(crate) struct AttemptLogScanner {
    carried_failures: u32,
    failures_after_success: u32,
    seen_success: bool,
    next_entry: u32,
}

impl AttemptLogScanner {
    /// A scanner for a sector whose record carries `carried_failures`.
    pub(crate) fn new(carried_failures: u32) -> Self {
        Self { carried_failures, failures_after_success: 0, seen_success: false, next_entry: 0 }
    }

    /// Feeds entry `index` (in increasing order): whether its words are programmed.
    pub(crate) fn observe(&mut self, index: u32, attempt_used: bool, success_used: bool) {
        if success_used {
            self.seen_success = true;
            self.failures_after_success = 0;
        } else if attempt_used {
            self.failures_after_success = self.failures_after_success.saturating_add(1);
        }
        if attempt_used || success_used {
            self.next_entry = index + 1;
        }
    }

    /// The result.
    pub(crate) fn finish(self) -> AttemptLog {
        let failures = if self.seen_success {
            self.failures_after_success
        } else {
            self.carried_failures.saturating_add(self.failures_after_success)
        };
        AttemptLog { failures, next_entry: self.next_entry }
    }
}

/// Whether a flash word is programmed (any bit cleared).
pub(crate) fn word_is_used(word: &[u8]) -> bool {
    word.iter().any(|&byte| byte != 0xFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_and_cap() {
        let delays: Vec<u64> = (0..20).map(unlock_delay).collect();
        assert_eq!(&delays[..8], &[0, 0, 0, 0, 2, 4, 8, 16]);
        assert_eq!(unlock_delay(15), 3600);
        assert_eq!(unlock_delay(14), 2048);
        assert_eq!(unlock_delay(u32::MAX), 3600);
        assert!(delays.windows(2).all(|pair| pair[0] <= pair[1]));
    }

    #[test]
    fn scanner_counts_since_last_success() {
        let mut scanner = AttemptLogScanner::new(5);
        scanner.observe(0, true, false);
        scanner.observe(1, true, false);
        assert_eq!(AttemptLogScanner { ..scanner_copy(&scanner) }.finish().failures, 7);
        scanner.observe(2, true, true);
        scanner.observe(3, true, false);
        scanner.observe(4, false, false);
        let log = scanner.finish();
        assert_eq!(log, AttemptLog { failures: 1, next_entry: 4 });
    }

    fn scanner_copy(scanner: &AttemptLogScanner) -> AttemptLogScanner {
        AttemptLogScanner {
            carried_failures: scanner.carried_failures,
            failures_after_success: scanner.failures_after_success,
            seen_success: scanner.seen_success,
            next_entry: scanner.next_entry,
        }
    }

    #[test]
    fn used_words() {
        assert!(!word_is_used(&[0xFF; 4]));
        assert!(word_is_used(&[0xFF, 0xFE, 0xFF, 0xFF]));
    }
}
