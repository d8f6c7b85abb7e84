//! RFC 3339 timestamps (the `expires` of orders, ARI's `suggestedWindow`) to Unix seconds.
//! Accepted: `YYYY-MM-DDTHH:MM:SS`, an optional fraction (dropped), then `Z` or `±HH:MM`;
//! `t`/`z` in lower case too. Refused: other shapes, dates that do not exist, years before
//! 1970, leap seconds (`:60`; ACME servers do not send them).
//!
//! Also HTTP dates in the preferred IMF-fixdate form (RFC 9110 section 5.6.7, e.g. `Sun, 06
//! Nov 1994 08:49:37 GMT`) for `Retry-After`; the obsolete RFC 850 and asctime forms are not
//! read.

/// Days from 1970-01-01 to the given civil date (proleptic Gregorian).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month = i64::from(month);
    let day_of_year = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        _ => 28,
    }
}

fn number(bytes: &[u8]) -> Option<u32> {
    if bytes.is_empty() || !bytes.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(bytes.iter().fold(0, |value, &digit| value * 10 + u32::from(digit - b'0')))
}

/// The Unix time (seconds) of an RFC 3339 timestamp, or `None` if it is not one.
pub fn parse_rfc3339(text: &str) -> Option<u64> {
    let bytes = text.as_bytes();
    if bytes.len() < 20 || bytes.len() > 40 {
        return None;
    }
    let field = |start: usize, end: usize| bytes.get(start..end).and_then(number);
    let separators = [(4, b'-'), (7, b'-'), (13, b':'), (16, b':')];
    if separators.iter().any(|&(index, wanted)| bytes.get(index) != Some(&wanted)) || !matches!(bytes.get(10), Some(b'T' | b't')) {
        return None;
    }
    let year = i64::from(field(0, 4)?);
    let (month, day) = (field(5, 7)?, field(8, 10)?);
    let (hour, minute, second) = (field(11, 13)?, field(14, 16)?, field(17, 19)?);
    if year < 1970 || !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) || hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let mut rest = bytes.get(19..)?;
    if rest.first() == Some(&b'.') {
        let digits = rest.iter().skip(1).take_while(|byte| byte.is_ascii_digit()).count();
        if digits == 0 || digits > 9 {
            return None;
        }
        rest = rest.get(1 + digits..)?;
    }
    let offset: i64 = match rest {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let hours = number(&[*h1, *h2])?;
            let minutes = number(&[*m1, *m2])?;
            if hours > 23 || minutes > 59 {
                return None;
            }
            let seconds = i64::from(hours * 3600 + minutes * 60);
            if *sign == b'+' {
                seconds
            } else {
                -seconds
            }
        }
        _ => return None,
    };
    let local = days_from_civil(year, month, day) * 86_400 + i64::from(hour * 3600 + minute * 60 + second);
    u64::try_from(local - offset).ok()
}

const MONTHS: [&[u8; 3]; 12] = [b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec"];
const WEEKDAYS: [&[u8; 3]; 7] = [b"Thu", b"Fri", b"Sat", b"Sun", b"Mon", b"Tue", b"Wed"];

/// The Unix time of an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), or `None`; the weekday
/// must be the date's.
pub fn parse_http_date(text: &str) -> Option<u64> {
    let bytes = text.as_bytes();
    if bytes.len() != 29 || bytes.get(3..5) != Some(b", ") || bytes.get(25..) != Some(b" GMT") {
        return None;
    }
    let separators = [(7, b' '), (11, b' '), (16, b' '), (19, b':'), (22, b':')];
    if separators.iter().any(|&(index, wanted)| bytes.get(index) != Some(&wanted)) {
        return None;
    }
    let field = |start: usize, end: usize| bytes.get(start..end).and_then(number);
    let day = field(5, 7)?;
    let month = MONTHS.iter().position(|name| bytes.get(8..11) == Some(&name[..]))? as u32 + 1;
    let year = i64::from(field(12, 16)?);
    let (hour, minute, second) = (field(17, 19)?, field(20, 22)?, field(23, 25)?);
    if year < 1970 || day == 0 || day > days_in_month(year, month) || hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    if bytes.get(0..3) != Some(&WEEKDAYS[days.rem_euclid(7) as usize][..]) {
        return None;
    }
    u64::try_from(days * 86_400 + i64::from(hour * 3600 + minute * 60 + second)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_instants() {
        // Reference values from `date -u -d … +%s` (GNU coreutils).
        let table: &[(&str, u64)] = &[
            ("1970-01-01T00:00:00Z", 0),
            ("2000-02-29T12:34:56Z", 951_827_696),
            ("2016-01-01T00:00:00Z", 1_451_606_400),
            ("2026-12-04T23:05:50Z", 1_796_425_550),
            ("2038-01-19T03:14:08Z", 2_147_483_648),
            ("2100-03-01T00:00:00Z", 4_107_542_400),
            ("2025-01-02T04:00:00.123456789Z", 1_735_790_400),
            ("2025-01-02t05:30:00+01:30", 1_735_790_400),
            ("2025-01-01T23:00:00-05:00", 1_735_790_400),
        ];
        for (text, expected) in table {
            assert_eq!(parse_rfc3339(text), Some(*expected), "{text}");
        }
    }

    #[test]
    fn http_dates() {
        // RFC 9110's example, and `date -u -R`-checked instants.
        assert_eq!(parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"), Some(784_111_777));
        assert_eq!(parse_http_date("Fri, 04 Dec 2026 23:05:50 GMT"), Some(1_796_425_550));
        assert_eq!(parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        for bad in [
            "Mon, 06 Nov 1994 08:49:37 GMT",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
            "Sun, 06 Nov 1994 08:49:37 UTC",
            "Sun, 31 Nov 1994 08:49:37 GMT",
            "Sun, 06 Foo 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 24:49:37 GMT",
            "Sun, 6 Nov 1994 08:49:37 GMT",
            "",
        ] {
            assert_eq!(parse_http_date(bad), None, "{bad}");
        }
    }

    #[test]
    fn refuses_what_is_not_rfc3339() {
        for text in [
            "",
            "2025-01-02",
            "2025-01-02T04:00:00",
            "2025-01-02 04:00:00Z",
            "2025-13-02T04:00:00Z",
            "2025-02-29T04:00:00Z",
            "2100-02-29T04:00:00Z",
            "2025-01-32T04:00:00Z",
            "2025-01-02T24:00:00Z",
            "2025-01-02T04:60:00Z",
            "2025-01-02T04:00:60Z",
            "2025-01-02T04:00:00.Z",
            "2025-01-02T04:00:00+0100",
            "2025-01-02T04:00:00+24:00",
            "1969-12-31T23:59:59Z",
            "1970-01-01T00:00:00+00:01",
            "+025-01-02T04:00:00Z",
            "2025-01-02T04:00:00ZZ",
        ] {
            assert_eq!(parse_rfc3339(text), None, "{text}");
        }
    }
}
