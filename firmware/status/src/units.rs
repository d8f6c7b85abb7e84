//! Human units for the page and the mail: durations (`3 d 4 h`), UTC date-times
//! (`2026-05-01 12:00 UTC`, ISO 8601 for `<time datetime>`) and byte sizes (`1.5 MiB`).

use core::fmt;

use homemx_smtp::clock::civil_from_days;

/// A duration in seconds, in its two largest units (a zero second unit left out): `45 s`,
/// `12 min`, `2 h 5 min`, `3 d 4 h`, `2 d`.
pub(crate) struct Span(pub u64);

impl fmt::Display for Span {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let seconds = self.0;
        let (days, hours, minutes) = (seconds / 86_400, seconds / 3600 % 24, seconds / 60 % 60);
        if days > 0 && hours > 0 {
            write!(formatter, "{days} d {hours} h")
        } else if days > 0 {
            write!(formatter, "{days} d")
        } else if hours > 0 && minutes > 0 {
            write!(formatter, "{hours} h {minutes} min")
        } else if hours > 0 {
            write!(formatter, "{hours} h")
        } else if minutes > 0 {
            write!(formatter, "{minutes} min")
        } else {
            write!(formatter, "{seconds} s")
        }
    }
}

/// How long ago, in seconds: `just now` under a minute, else `12 min ago`.
pub(crate) struct Ago(pub u64);

impl fmt::Display for Ago {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 < 60 {
            formatter.write_str("just now")
        } else {
            write!(formatter, "{} ago", Span(self.0))
        }
    }
}

/// A Unix time as `2026-05-01 12:00 UTC`.
pub(crate) struct Utc(pub u64);

impl fmt::Display for Utc {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (year, month, day) = civil_from_days(self.0 / 86_400);
        let seconds = self.0 % 86_400;
        write!(
            formatter,
            "{year}-{month:02}-{day:02} {:02}:{:02} UTC",
            seconds / 3600,
            seconds / 60 % 60
        )
    }
}

/// A Unix time as ISO 8601, `2026-05-01T12:00:00Z`.
pub(crate) struct Iso(pub u64);

impl fmt::Display for Iso {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (year, month, day) = civil_from_days(self.0 / 86_400);
        let seconds = self.0 % 86_400;
        write!(
            formatter,
            "{year}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
            seconds / 3600,
            seconds / 60 % 60,
            seconds % 60
        )
    }
}

/// A byte count with a binary unit and one decimal: `812 B`, `4.0 KiB`, `1.5 MiB`, `2.0 GiB`.
pub(crate) struct Bytes(pub u64);

impl fmt::Display for Bytes {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(u64, &str); 3] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
        for (size, unit) in UNITS {
            if self.0 >= size {
                let tenths = (u128::from(self.0) * 10 / u128::from(size)) as u64;
                return write!(formatter, "{}.{} {unit}", tenths / 10, tenths % 10);
            }
        }
        write!(formatter, "{} B", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let cases: &[(std::string::String, &str)] = &[
            (std::format!("{}", Span(0)), "0 s"),
            (std::format!("{}", Span(59)), "59 s"),
            (std::format!("{}", Span(60)), "1 min"),
            (std::format!("{}", Span(7_500)), "2 h 5 min"),
            (
                std::format!("{}", Span(3 * 86_400 + 4 * 3600 + 59)),
                "3 d 4 h",
            ),
            (std::format!("{}", Span(2 * 86_400 + 59 * 60)), "2 d"),
            (std::format!("{}", Span(5 * 3600 + 59)), "5 h"),
            (std::format!("{}", Ago(30)), "just now"),
            (std::format!("{}", Ago(600)), "10 min ago"),
            (
                std::format!("{}", Utc(1_700_000_000)),
                "2023-11-14 22:13 UTC",
            ),
            (
                std::format!("{}", Iso(1_700_000_000)),
                "2023-11-14T22:13:20Z",
            ),
            (std::format!("{}", Bytes(812)), "812 B"),
            (std::format!("{}", Bytes(4096)), "4.0 KiB"),
            (std::format!("{}", Bytes(1_572_864)), "1.5 MiB"),
            (std::format!("{}", Bytes(u64::MAX)), "17179869183.9 GiB"),
        ];
        for (got, expected) in cases {
            assert_eq!(got, expected);
        }
    }
}
