//! Log lines longer than one [`LogEntry`](crate::message::LogEntry): formatted whole into a
//! larger buffer, then split at word boundaries into entry-sized pieces; every piece after the
//! first starts with [`CONTINUATION`]. Nothing is cut silently: a line longer even than the
//! formatting buffer ends in [`CUT_MARK`].

use core::fmt;

use heapless::String;

use crate::message::MAX_LOG_TEXT;

/// The start of every piece that continues the previous entry's line.
pub const CONTINUATION: &str = "\u{2026} ";
/// The end of a line that did not fit the formatting buffer.
pub const CUT_MARK: &str = " [\u{2026}cut]";

/// Formats `arguments` into at most `N` bytes. What does not fit is dropped at a character
/// boundary and the text ends in [`CUT_MARK`].
pub fn format_bounded<const N: usize>(arguments: fmt::Arguments<'_>) -> String<N> {
    let mut writer = Bounded::<N> { text: String::new(), overflowed: false };
    let _ = fmt::write(&mut writer, arguments);
    let mut text = writer.text;
    if writer.overflowed {
        let mut keep = N.saturating_sub(CUT_MARK.len()).min(text.len());
        while !text.is_char_boundary(keep) {
            keep -= 1;
        }
        text.truncate(keep);
        let _ = text.push_str(CUT_MARK);
    }
    text
}

struct Bounded<const N: usize> {
    text: String<N>,
    overflowed: bool,
}

impl<const N: usize> fmt::Write for Bounded<N> {
    fn write_str(&mut self, piece: &str) -> fmt::Result {
        if self.overflowed {
            return Ok(());
        }
        let room = N - self.text.len();
        if piece.len() <= room {
            let _ = self.text.push_str(piece);
            return Ok(());
        }
        let mut end = room;
        while !piece.is_char_boundary(end) {
            end -= 1;
        }
        let _ = self.text.push_str(&piece[..end]);
        self.overflowed = true;
        Ok(())
    }
}

/// The pieces of `line`, each at most [`MAX_LOG_TEXT`] bytes, split after the last space that
/// fits (a single word longer than a piece is split inside, the next piece still marked).
pub fn pieces(line: &str) -> Pieces<'_> {
    Pieces { rest: line, first: true }
}

/// Iterator of [`pieces`].
pub struct Pieces<'a> {
    rest: &'a str,
    first: bool,
}

impl Iterator for Pieces<'_> {
    type Item = String<MAX_LOG_TEXT>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() && !self.first {
            return None;
        }
        let prefix = if self.first { "" } else { CONTINUATION };
        self.first = false;
        let room = MAX_LOG_TEXT - prefix.len();
        let (piece, rest) = if self.rest.len() <= room {
            (self.rest, "")
        } else {
            let mut cut = room;
            while !self.rest.is_char_boundary(cut) {
                cut -= 1;
            }
            match self.rest[..cut].rfind(' ').filter(|&space| space >= room / 2) {
                Some(space) => (&self.rest[..space], &self.rest[space + 1..]),
                None => (&self.rest[..cut], &self.rest[cut..]),
            }
        };
        self.rest = rest;
        let mut text = String::new();
        let _ = text.push_str(prefix);
        let _ = text.push_str(piece);
        Some(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LONG: &str = "ALERT stripping_suspected: the smarthost did not offer STARTTLS: mail stays queued, \
                        nothing was sent in clear (possible STARTTLS stripping)";

    #[test]
    fn a_short_line_is_one_piece() {
        let all: std::vec::Vec<_> = pieces("unlocked").collect();
        assert_eq!(all, ["unlocked"]);
        assert_eq!(pieces("").count(), 1, "an empty line is still an entry");
    }

    #[test]
    fn a_long_line_is_split_between_words_and_nothing_is_lost() {
        assert!(LONG.len() > MAX_LOG_TEXT);
        let all: std::vec::Vec<_> = pieces(LONG).collect();
        assert_eq!(all.len(), 2);
        assert!(all.iter().all(|piece| piece.len() <= MAX_LOG_TEXT));
        assert!(all[1].starts_with(CONTINUATION));
        assert!(!all[0].ends_with(' ') && LONG.starts_with(all[0].as_str()));
        let first_end = all[0].len();
        assert_eq!(LONG.as_bytes()[first_end], b' ', "cut at a space, not inside a word");
        let joined = std::format!("{} {}", all[0], &all[1][CONTINUATION.len()..]);
        assert_eq!(joined, LONG);
    }

    #[test]
    fn a_word_longer_than_a_piece_is_split_and_marked() {
        let word = "é".repeat(120); // 240 bytes, no space
        let all: std::vec::Vec<_> = pieces(&word).collect();
        assert_eq!(all.len(), 3);
        let mut joined = std::string::String::new();
        for (index, piece) in all.iter().enumerate() {
            assert!(piece.len() <= MAX_LOG_TEXT);
            joined.push_str(if index == 0 { piece } else { piece.strip_prefix(CONTINUATION).unwrap() });
        }
        assert_eq!(joined, word);
    }

    #[test]
    fn formatting_keeps_what_fits_and_marks_the_cut() {
        let text: String<300> = format_bounded(format_args!("{}", LONG));
        assert_eq!(text.as_str(), LONG);
        let text: String<40> = format_bounded(format_args!("{} {}", "a".repeat(30), "b".repeat(30)));
        assert!(text.ends_with(CUT_MARK) && text.starts_with("aaaa"), "{text}");
        assert!(text.len() <= 40);
        let text: String<20> = format_bounded(format_args!("{}", "é".repeat(30)));
        assert!(text.ends_with(CUT_MARK), "{text}");
    }
}
