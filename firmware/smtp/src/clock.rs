//! Time passed in by the caller, and RFC 5322 date-time formatting from Unix time.

use core::fmt;

/// The time as the caller knows it; the sessions never read a clock themselves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Now {
    /// Seconds since 1970-01-01T00:00:00Z (wall clock, for `Received:` dates).
    pub unix_seconds: u64,
    /// A monotonic millisecond counter (for timeouts); any origin.
    pub monotonic_milliseconds: u64,
}

impl Now {
    /// A point in time from its two clocks.
    pub const fn new(unix_seconds: u64, monotonic_milliseconds: u64) -> Now {
        Now { unix_seconds, monotonic_milliseconds }
    }
}

/// A Unix time shown as an RFC 5322 `date-time` in UTC, e.g. `Tue, 1 Jul 2025 12:34:56 +0000`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rfc5322Date(pub u64);

impl fmt::Display for Rfc5322Date {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
        const MONTHS: [&str; 12] =
            ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
        let days = self.0 / 86_400;
        let seconds_of_day = self.0 % 86_400;
        let (year, month, day) = civil_from_days(days);
        write!(
            formatter,
            "{}, {} {} {} {:02}:{:02}:{:02} +0000",
            DAYS[(days % 7) as usize],
            day,
            MONTHS[(month - 1) as usize],
            year,
            seconds_of_day / 3600,
            seconds_of_day / 60 % 60,
            seconds_of_day % 60
        )
    }
}

/// Year, month (1–12) and day (1–31) of a day count since 1970-01-01 (proleptic Gregorian;
/// the algorithm of H. Hinnant, "chrono-compatible low-level date algorithms").
pub fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z - era * 146_097;
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 { month_index + 3 } else { month_index - 9 };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_and_known_dates() {
        assert_eq!(std::format!("{}", Rfc5322Date(0)), "Thu, 1 Jan 1970 00:00:00 +0000");
        assert_eq!(std::format!("{}", Rfc5322Date(951_782_400)), "Tue, 29 Feb 2000 00:00:00 +0000");
        assert_eq!(std::format!("{}", Rfc5322Date(1_700_000_000)), "Tue, 14 Nov 2023 22:13:20 +0000");
        assert_eq!(std::format!("{}", Rfc5322Date(4_102_444_799)), "Thu, 31 Dec 2099 23:59:59 +0000");
    }

    #[test]
    fn every_day_for_a_century_is_consecutive() {
        let (mut year, mut month, mut day) = civil_from_days(0);
        for days in 1..36_600u64 {
            let next = civil_from_days(days);
            let month_length = match month {
                2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
                2 => 28,
                4 | 6 | 9 | 11 => 30,
                _ => 31,
            };
            let expected = if day < month_length {
                (year, month, day + 1)
            } else if month < 12 {
                (year, month + 1, 1)
            } else {
                (year + 1, 1, 1)
            };
            assert_eq!(next, expected, "day {days}");
            (year, month, day) = next;
        }
    }
}
