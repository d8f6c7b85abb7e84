//! The message listing of one run: scan listings from LIST and unique-id listings from UIDL
//! (RFC 1939 7), and the entries the session reports to its caller.

/// Most messages one run lists and may fetch; the rest wait for the next run (they keep
/// their place on the server, and the listing says it was not complete).
pub const LISTING_MAX: usize = 64;

/// Longest unique-id (RFC 1939 7: 1 to 70 characters in 0x21..=0x7E).
pub const UIDL_MAX: usize = 70;

/// One message the server holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListEntry<'a> {
    /// The message number in this session (RFC 1939: valid until QUIT).
    pub number: u32,
    /// The size LIST reported, in octets (dot-stuffed, CRLF line ends: an estimate).
    pub size: u64,
    /// The unique-id: stable across sessions, what [`crate::SeenRing`]'s records remember.
    pub uidl: &'a str,
}

/// The end of the listing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListingSummary {
    /// Messages LIST reported.
    pub messages: u32,
    /// Messages reported to the caller (`Listed` and `TooLarge` events).
    pub listed: u32,
    /// Whether every message on the server was reported: only then may the caller prune its
    /// [`crate::SeenRing`] with this listing.
    pub complete: bool,
}

/// Whether `uidl` is a valid unique-id: 1 to 70 octets in 0x21..=0x7E.
pub fn is_valid_uidl(uidl: &[u8]) -> bool {
    (1..=UIDL_MAX).contains(&uidl.len()) && uidl.iter().all(|&b| (0x21..=0x7E).contains(&b))
}

/// A message number: 1 to 10 decimal digits, not zero, fitting `u32`.
fn parse_number(digits: &[u8]) -> Option<u32> {
    if digits.is_empty() || digits.len() > 10 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let value = digits.iter().try_fold(0u64, |value, &digit| Some(value * 10 + u64::from(digit - b'0')))?;
    u32::try_from(value).ok().filter(|&number| number > 0)
}

/// Splits at the first space: (before, after).
fn split_space(line: &[u8]) -> Option<(&[u8], &[u8])> {
    let space = line.iter().position(|&b| b == b' ')?;
    Some((&line[..space], &line[space + 1..]))
}

/// Parses a scan listing `number SP size [SP anything]` (RFC 1939 5: what follows the size
/// is not specified and ignored).
pub fn parse_scan_line(line: &[u8]) -> Option<(u32, u64)> {
    let (number, rest) = split_space(line)?;
    let number = parse_number(number)?;
    let size_end = rest.iter().position(|&b| b == b' ').unwrap_or(rest.len());
    let size = &rest[..size_end];
    if size.is_empty() || size.len() > 19 || !size.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let size = size.iter().fold(0u64, |value, &digit| value * 10 + u64::from(digit - b'0'));
    Some((number, size))
}

/// Parses a unique-id listing `number SP unique-id`; the unique-id is returned unchecked
/// (see [`is_valid_uidl`]) up to the next space, if any.
pub fn parse_uidl_line(line: &[u8]) -> Option<(u32, &[u8])> {
    let (number, rest) = split_space(line)?;
    let number = parse_number(number)?;
    let end = rest.iter().position(|&b| b == b' ').unwrap_or(rest.len());
    Some((number, &rest[..end]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_lines() {
        assert_eq!(parse_scan_line(b"1 120"), Some((1, 120)));
        assert_eq!(parse_scan_line(b"42 0"), Some((42, 0)));
        assert_eq!(parse_scan_line(b"3 5000 extra info"), Some((3, 5000)));
        assert_eq!(parse_scan_line(b"4294967295 1"), Some((u32::MAX, 1)));
        assert_eq!(parse_scan_line(b"4294967296 1"), None);
        assert_eq!(parse_scan_line(b"0 1"), None);
        assert_eq!(parse_scan_line(b"1"), None);
        assert_eq!(parse_scan_line(b"1 "), None);
        assert_eq!(parse_scan_line(b" 1 2"), None);
        assert_eq!(parse_scan_line(b"1  2"), None);
        assert_eq!(parse_scan_line(b"1 -2"), None);
        assert_eq!(parse_scan_line(b"x 2"), None);
        assert_eq!(parse_scan_line(b"1 99999999999999999999"), None);
    }

    #[test]
    fn uidl_lines() {
        assert_eq!(parse_uidl_line(b"1 whqtswO00WBw418f9t5JxYwZ"), Some((1, &b"whqtswO00WBw418f9t5JxYwZ"[..])));
        assert_eq!(parse_uidl_line(b"2 QhdPYR:00WBw1Ph7x7 trailing"), Some((2, &b"QhdPYR:00WBw1Ph7x7"[..])));
        assert_eq!(parse_uidl_line(b"2 "), Some((2, &b""[..])));
        assert_eq!(parse_uidl_line(b"2"), None);
        assert_eq!(parse_uidl_line(b"-1 x"), None);
    }

    #[test]
    fn uidl_validity() {
        assert!(is_valid_uidl(b"000000014f4a2b8c"));
        assert!(is_valid_uidl(b"!~"));
        assert!(is_valid_uidl(&[b'a'; 70]));
        assert!(!is_valid_uidl(&[b'a'; 71]));
        assert!(!is_valid_uidl(b""));
        assert!(!is_valid_uidl(b"a b"));
        assert!(!is_valid_uidl(b"caf\xc3\xa9"));
        assert!(!is_valid_uidl(b"tab\t"));
    }
}
