//! Output into caller buffers: [`Sink`], a `core::fmt::Write` over a byte slice that can also
//! skip a prefix (to render a page in windows through a small buffer), the [`Overflow`]
//! error, and the escapers for HTML text and JSON strings.

use core::fmt::{self, Write};

/// The output did not fit the caller's buffer (nothing useful was written).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Overflow;

/// Writes rendered text into `out`, dropping the first `skip` bytes and counting everything.
///
/// Never fails: bytes past the end of `out` are counted and dropped, so one rendering pass
/// tells the full length even when the buffer is too small.
pub(crate) struct Sink<'a> {
    out: &'a mut [u8],
    skip: usize,
    written: usize,
    total: usize,
}

impl<'a> Sink<'a> {
    /// A sink that keeps the bytes from `skip` on, as many as fit into `out`.
    pub(crate) fn new(out: &'a mut [u8], skip: usize) -> Sink<'a> {
        Sink {
            out,
            skip,
            written: 0,
            total: 0,
        }
    }

    /// Bytes produced so far (kept or not).
    pub(crate) fn total(&self) -> usize {
        self.total
    }

    /// Bytes kept in `out`.
    pub(crate) fn written(&self) -> usize {
        self.written
    }

    /// Appends raw bytes.
    pub(crate) fn put(&mut self, bytes: &[u8]) {
        self.total = self.total.saturating_add(bytes.len());
        let skipped = bytes.len().min(self.skip);
        self.skip -= skipped;
        let rest = bytes.get(skipped..).unwrap_or_default();
        let room = self.out.len().saturating_sub(self.written);
        let kept = rest.len().min(room);
        if let (Some(target), Some(source)) = (
            self.out.get_mut(self.written..self.written + kept),
            rest.get(..kept),
        ) {
            target.copy_from_slice(source);
            self.written += kept;
        }
    }
}

impl Write for Sink<'_> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        self.put(text.as_bytes());
        Ok(())
    }
}

/// Renders a whole document with `render` into `out`: its length, or [`Overflow`].
pub(crate) fn render_into(
    out: &mut [u8],
    render: impl FnOnce(&mut Sink<'_>) -> fmt::Result,
) -> Result<usize, Overflow> {
    let capacity = out.len();
    let mut sink = Sink::new(out, 0);
    render(&mut sink).map_err(|_| Overflow)?;
    if sink.total() > capacity {
        return Err(Overflow);
    }
    Ok(sink.total())
}

/// Renders bytes `offset..` of a document into `out`; returns how many were written
/// (fewer than `out.len()` only at the end of the document).
pub(crate) fn render_window(
    out: &mut [u8],
    offset: usize,
    render: impl FnOnce(&mut Sink<'_>) -> fmt::Result,
) -> usize {
    let mut sink = Sink::new(out, offset);
    let _ = render(&mut sink);
    sink.written()
}

/// Length of a document in bytes.
pub(crate) fn rendered_length(render: impl FnOnce(&mut Sink<'_>) -> fmt::Result) -> usize {
    let mut sink = Sink::new(&mut [], 0);
    let _ = render(&mut sink);
    sink.total()
}

/// Text escaped for HTML element content and quoted attribute values.
///
/// `& < > " '` become entities; C0 controls and DEL (never meaningful in a host name) become
/// U+FFFD so a hostile DNS answer cannot smuggle anything into the page.
pub(crate) struct Html<'a>(pub &'a str);

impl fmt::Display for Html<'_> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut start = 0;
        for (index, character) in self.0.char_indices() {
            let replacement = match character {
                '&' => "&amp;",
                '<' => "&lt;",
                '>' => "&gt;",
                '"' => "&quot;",
                '\'' => "&#39;",
                c if c.is_ascii_control() => "\u{fffd}",
                _ => continue,
            };
            formatter.write_str(self.0.get(start..index).unwrap_or_default())?;
            formatter.write_str(replacement)?;
            start = index + character.len_utf8();
        }
        formatter.write_str(self.0.get(start..).unwrap_or_default())
    }
}

/// A JSON string literal, quotes included (RFC 8259 section 7).
///
/// Escapes `"` and `\`, every control character (as `\n`, `\r`, `\t`, `\b`, `\f` or `\u00XX`),
/// and also `<`, `>`, `&`, U+2028 and U+2029 so the output is inert if ever embedded in HTML
/// or JavaScript.
pub(crate) struct JsonString<'a>(pub &'a str);

impl fmt::Display for JsonString<'_> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_char('"')?;
        let mut start = 0;
        for (index, character) in self.0.char_indices() {
            let short = match character {
                '"' => "\\\"",
                '\\' => "\\\\",
                '\n' => "\\n",
                '\r' => "\\r",
                '\t' => "\\t",
                '\u{8}' => "\\b",
                '\u{c}' => "\\f",
                c if c.is_control() || matches!(c, '<' | '>' | '&' | '\u{2028}' | '\u{2029}') => "",
                _ => continue,
            };
            formatter.write_str(self.0.get(start..index).unwrap_or_default())?;
            if short.is_empty() {
                write!(formatter, "\\u{:04x}", u32::from(character))?;
            } else {
                formatter.write_str(short)?;
            }
            start = index + character.len_utf8();
        }
        formatter.write_str(self.0.get(start..).unwrap_or_default())?;
        formatter.write_char('"')
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sink_counts_past_the_end_and_keeps_a_window() {
        let mut buffer = [0u8; 4];
        let mut sink = Sink::new(&mut buffer, 3);
        sink.put(b"abcdefghij");
        assert_eq!((sink.total(), sink.written()), (10, 4));
        assert_eq!(&buffer, b"defg");
    }

    #[test]
    fn render_into_reports_overflow() {
        let mut buffer = [0u8; 5];
        assert_eq!(
            render_into(&mut buffer, |sink| sink.write_str("hello")),
            Ok(5)
        );
        assert_eq!(
            render_into(&mut buffer, |sink| sink.write_str("hello!")),
            Err(Overflow)
        );
    }

    #[test]
    fn html_escapes_markup_quotes_and_controls() {
        let escaped = std::format!(
            "{}",
            Html("<script>alert(\"x\")</script> & 'q'\u{0}\u{1b}é")
        );
        assert_eq!(
            escaped,
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;q&#39;\u{fffd}\u{fffd}é"
        );
    }

    #[test]
    fn json_escapes_table() {
        let table: &[(&str, &str)] = &[
            ("plain", "\"plain\""),
            ("a\"b", "\"a\\\"b\""),
            ("back\\slash", "\"back\\\\slash\""),
            ("\n\r\t\u{8}\u{c}", "\"\\n\\r\\t\\b\\f\""),
            ("\u{0}\u{1f}\u{7f}", "\"\\u0000\\u001f\\u007f\""),
            ("</script>&", "\"\\u003c/script\\u003e\\u0026\""),
            ("\u{2028}\u{2029}", "\"\\u2028\\u2029\""),
            ("é→😀", "\"é→😀\""),
        ];
        for (input, expected) in table {
            assert_eq!(
                std::format!("{}", JsonString(input)),
                *expected,
                "{input:?}"
            );
        }
    }

    proptest::proptest! {
        #[test]
        fn json_strings_round_trip(text in ".*") {
            let literal = std::format!("{}", JsonString(&text));
            let parsed: String = serde_json::from_str(&literal).unwrap();
            proptest::prop_assert_eq!(parsed, text);
        }

        #[test]
        fn html_escaped_text_has_no_markup(text in ".*") {
            let escaped = std::format!("{}", Html(&text));
            proptest::prop_assert!(!escaped.contains(['<', '>', '"', '\'']));
            proptest::prop_assert!(!escaped.chars().any(|c| c.is_ascii_control()));
        }
    }
}
