//! A strict, bounded JSON reader (RFC 8259) for the server's answers, and the string escaping
//! the request writers use.
//!
//! [`parse`] reads a whole document into a small tree ([`Value`]) and refuses, with the byte
//! offset: anything but one value with optional white space around it; bytes that are not
//! UTF-8; control characters in strings; invalid escapes and lone surrogates; numbers with
//! leading zeros, a fraction or exponent without digits; nesting deeper than [`MAX_DEPTH`];
//! strings longer than [`MAX_STRING`]; objects with more than [`MAX_MEMBERS`] members or a
//! member name given twice; arrays longer than [`MAX_ITEMS`]; more than [`MAX_VALUES`] values
//! in all; and documents longer than [`MAX_DOCUMENT`]. The heap it takes is bounded by these:
//! roughly three times the document's length.

use alloc::string::String;
use alloc::vec::Vec;

/// Longest document read (bytes).
pub const MAX_DOCUMENT: usize = 16 * 1024;
/// Deepest nesting of arrays and objects.
pub const MAX_DEPTH: usize = 8;
/// Longest string (decoded bytes), member names included.
pub const MAX_STRING: usize = 2048;
/// Most members of one object.
pub const MAX_MEMBERS: usize = 32;
/// Most items of one array.
pub const MAX_ITEMS: usize = 100;
/// Most values in one document (every string, number, literal, array and object).
pub const MAX_VALUES: usize = 1024;

/// A JSON value. Numbers are kept as their text (ACME uses only small integers).
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Number(String),
    String(String),
    Array(Vec<Value>),
    /// Members in document order; names are unique.
    Object(Vec<(String, Value)>),
}

impl Value {
    /// The member `name` of an object.
    pub fn get(&self, name: &str) -> Option<&Value> {
        match self {
            Value::Object(members) => members.iter().find(|(key, _)| key == name).map(|(_, value)| value),
            _ => None,
        }
    }

    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(text) => Some(text),
            _ => None,
        }
    }

    /// The number as an unsigned integer, if it is one that fits.
    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Value::Number(text) if text.bytes().all(|byte| byte.is_ascii_digit()) => text.parse().ok(),
            _ => None,
        }
    }
}

/// What was wrong with a document.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JsonErrorKind {
    /// Longer than [`MAX_DOCUMENT`].
    TooLarge,
    /// Ended in the middle of a value.
    Truncated,
    /// A byte that cannot start or continue the value here.
    Syntax,
    /// Not UTF-8.
    NotUtf8,
    /// A bad escape, a lone surrogate or a control character in a string.
    BadString,
    /// A number that is not in JSON's grammar.
    BadNumber,
    /// Nested deeper than [`MAX_DEPTH`].
    TooDeep,
    /// A string longer than [`MAX_STRING`].
    StringTooLong,
    /// More members, items or values than the limits allow.
    TooMany,
    /// A member name given twice in one object.
    DuplicateKey,
    /// Something other than white space after the value.
    TrailingData,
}

/// A refused document: what was wrong and where (byte offset).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JsonError {
    pub kind: JsonErrorKind,
    pub offset: usize,
}

struct Reader<'a> {
    input: &'a [u8],
    position: usize,
    values: usize,
}

/// Reads `input` as one JSON document within the limits of this module.
pub fn parse(input: &[u8]) -> Result<Value, JsonError> {
    if input.len() > MAX_DOCUMENT {
        return Err(JsonError { kind: JsonErrorKind::TooLarge, offset: MAX_DOCUMENT });
    }
    if core::str::from_utf8(input).is_err() {
        let offset = core::str::from_utf8(input).err().map_or(0, |error| error.valid_up_to());
        return Err(JsonError { kind: JsonErrorKind::NotUtf8, offset });
    }
    let mut reader = Reader { input, position: 0, values: 0 };
    let value = reader.value(0)?;
    reader.skip_white_space();
    if reader.position != input.len() {
        return Err(reader.error(JsonErrorKind::TrailingData));
    }
    Ok(value)
}

impl Reader<'_> {
    fn error(&self, kind: JsonErrorKind) -> JsonError {
        JsonError { kind, offset: self.position }
    }

    fn peek(&self) -> Option<u8> {
        self.input.get(self.position).copied()
    }

    fn next(&mut self) -> Result<u8, JsonError> {
        let byte = self.peek().ok_or(self.error(JsonErrorKind::Truncated))?;
        self.position += 1;
        Ok(byte)
    }

    fn skip_white_space(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.position += 1;
        }
    }

    fn expect_literal(&mut self, literal: &[u8]) -> Result<(), JsonError> {
        for &wanted in literal {
            if self.next()? != wanted {
                self.position -= 1;
                return Err(self.error(JsonErrorKind::Syntax));
            }
        }
        Ok(())
    }

    fn value(&mut self, depth: usize) -> Result<Value, JsonError> {
        self.skip_white_space();
        self.values += 1;
        if self.values > MAX_VALUES {
            return Err(self.error(JsonErrorKind::TooMany));
        }
        match self.peek().ok_or(self.error(JsonErrorKind::Truncated))? {
            b'{' => self.object(depth + 1),
            b'[' => self.array(depth + 1),
            b'"' => self.string().map(Value::String),
            b't' => self.expect_literal(b"true").map(|()| Value::Bool(true)),
            b'f' => self.expect_literal(b"false").map(|()| Value::Bool(false)),
            b'n' => self.expect_literal(b"null").map(|()| Value::Null),
            b'-' | b'0'..=b'9' => self.number(),
            _ => Err(self.error(JsonErrorKind::Syntax)),
        }
    }

    fn object(&mut self, depth: usize) -> Result<Value, JsonError> {
        if depth > MAX_DEPTH {
            return Err(self.error(JsonErrorKind::TooDeep));
        }
        self.position += 1;
        let mut members: Vec<(String, Value)> = Vec::new();
        self.skip_white_space();
        if self.peek() == Some(b'}') {
            self.position += 1;
            return Ok(Value::Object(members));
        }
        loop {
            self.skip_white_space();
            let start = self.position;
            if self.peek().ok_or(self.error(JsonErrorKind::Truncated))? != b'"' {
                return Err(self.error(JsonErrorKind::Syntax));
            }
            let name = self.string()?;
            if members.iter().any(|(key, _)| *key == name) {
                return Err(JsonError { kind: JsonErrorKind::DuplicateKey, offset: start });
            }
            if members.len() == MAX_MEMBERS {
                return Err(JsonError { kind: JsonErrorKind::TooMany, offset: start });
            }
            self.skip_white_space();
            if self.next()? != b':' {
                self.position -= 1;
                return Err(self.error(JsonErrorKind::Syntax));
            }
            let value = self.value(depth)?;
            members.push((name, value));
            self.skip_white_space();
            match self.next()? {
                b',' => {}
                b'}' => return Ok(Value::Object(members)),
                _ => {
                    self.position -= 1;
                    return Err(self.error(JsonErrorKind::Syntax));
                }
            }
        }
    }

    fn array(&mut self, depth: usize) -> Result<Value, JsonError> {
        if depth > MAX_DEPTH {
            return Err(self.error(JsonErrorKind::TooDeep));
        }
        self.position += 1;
        let mut items = Vec::new();
        self.skip_white_space();
        if self.peek() == Some(b']') {
            self.position += 1;
            return Ok(Value::Array(items));
        }
        loop {
            if items.len() == MAX_ITEMS {
                return Err(self.error(JsonErrorKind::TooMany));
            }
            items.push(self.value(depth)?);
            self.skip_white_space();
            match self.next()? {
                b',' => {}
                b']' => return Ok(Value::Array(items)),
                _ => {
                    self.position -= 1;
                    return Err(self.error(JsonErrorKind::Syntax));
                }
            }
        }
    }

    fn hex4(&mut self) -> Result<u32, JsonError> {
        let mut value = 0u32;
        for _ in 0..4 {
            let digit = char::from(self.next()?).to_digit(16).ok_or(self.error(JsonErrorKind::BadString))?;
            value = value * 16 + digit;
        }
        Ok(value)
    }

    fn string(&mut self) -> Result<String, JsonError> {
        self.position += 1;
        let mut out = String::new();
        loop {
            if out.len() > MAX_STRING {
                return Err(self.error(JsonErrorKind::StringTooLong));
            }
            let start = self.position;
            // Copy a run of plain characters at once (the input is known to be UTF-8).
            while let Some(byte) = self.peek() {
                if byte == b'"' || byte == b'\\' || byte < 0x20 {
                    break;
                }
                self.position += 1;
            }
            let run = self.input.get(start..self.position).unwrap_or(&[]);
            out.push_str(core::str::from_utf8(run).map_err(|_| self.error(JsonErrorKind::NotUtf8))?);
            if out.len() > MAX_STRING {
                return Err(self.error(JsonErrorKind::StringTooLong));
            }
            match self.next()? {
                b'"' => return Ok(out),
                b'\\' => {
                    let escaped = match self.next()? {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => {
                            let first = self.hex4()?;
                            let code = if (0xd800..0xdc00).contains(&first) {
                                if self.next()? != b'\\' || self.next()? != b'u' {
                                    return Err(self.error(JsonErrorKind::BadString));
                                }
                                let second = self.hex4()?;
                                if !(0xdc00..0xe000).contains(&second) {
                                    return Err(self.error(JsonErrorKind::BadString));
                                }
                                0x10000 + ((first - 0xd800) << 10) + (second - 0xdc00)
                            } else {
                                first
                            };
                            char::from_u32(code).ok_or(self.error(JsonErrorKind::BadString))?
                        }
                        _ => {
                            self.position -= 1;
                            return Err(self.error(JsonErrorKind::BadString));
                        }
                    };
                    out.push(escaped);
                }
                _ => {
                    self.position -= 1;
                    return Err(self.error(JsonErrorKind::BadString));
                }
            }
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.position;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.position += 1;
        }
        self.position - start
    }

    fn number(&mut self) -> Result<Value, JsonError> {
        let start = self.position;
        if self.peek() == Some(b'-') {
            self.position += 1;
        }
        let integer_start = self.position;
        let integer = self.digits();
        if integer == 0 || (integer > 1 && self.input.get(integer_start) == Some(&b'0')) {
            return Err(self.error(JsonErrorKind::BadNumber));
        }
        if self.peek() == Some(b'.') {
            self.position += 1;
            if self.digits() == 0 {
                return Err(self.error(JsonErrorKind::BadNumber));
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.position += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.position += 1;
            }
            if self.digits() == 0 {
                return Err(self.error(JsonErrorKind::BadNumber));
            }
        }
        if self.position - start > 40 {
            return Err(JsonError { kind: JsonErrorKind::BadNumber, offset: start });
        }
        let text = core::str::from_utf8(self.input.get(start..self.position).unwrap_or(&[])).unwrap_or("");
        Ok(Value::Number(String::from(text)))
    }
}

/// Appends `text` to `out` as a JSON string (quotes included), escaping `"`, `\` and control
/// characters.
pub fn push_string(out: &mut String, text: &str) {
    out.push('"');
    for character in text.chars() {
        match character {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            control if u32::from(control) < 0x20 || control == '\u{7f}' => {
                let code = u32::from(control);
                out.push_str("\\u00");
                out.push(char::from(b"0123456789abcdef"[(code >> 4) as usize]));
                out.push(char::from(b"0123456789abcdef"[(code & 0xf) as usize]));
            }
            other => out.push(other),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString as _;

    fn kind(input: &str) -> JsonErrorKind {
        parse(input.as_bytes()).unwrap_err().kind
    }

    #[test]
    fn reads_values() {
        let value = parse(br#" {"a": [1, -2.5e3, true, false, null], "b": {"c": "d\u00e9\ud83d\ude00\n\"\\\/"}} "#).unwrap();
        let items = match value.get("a").unwrap() {
            Value::Array(items) => items.clone(),
            other => panic!("{other:?}"),
        };
        assert_eq!(items[0].as_u64(), Some(1));
        assert_eq!(items[1], Value::Number("-2.5e3".to_string()));
        assert_eq!(items[1].as_u64(), None);
        assert_eq!(items[2..], [Value::Bool(true), Value::Bool(false), Value::Null]);
        assert_eq!(value.get("b").unwrap().get("c").unwrap().as_str(), Some("d\u{e9}\u{1f600}\n\"\\/"));
        assert_eq!(parse(b"[]").unwrap(), Value::Array(Vec::new()));
        assert_eq!(parse(b"{}").unwrap(), Value::Object(Vec::new()));
        assert_eq!(parse("\"\u{e9}\"".as_bytes()).unwrap().as_str(), Some("\u{e9}"));
    }

    #[test]
    fn refuses_malformed_documents() {
        use JsonErrorKind::*;
        let table: &[(&str, JsonErrorKind)] = &[
            ("", Truncated),
            ("{", Truncated),
            ("{\"a\"", Truncated),
            ("{\"a\":", Truncated),
            ("{\"a\":1", Truncated),
            ("[1,", Truncated),
            ("\"abc", Truncated),
            ("{a:1}", Syntax),
            ("{\"a\" 1}", Syntax),
            ("{\"a\":1,}", Syntax),
            ("[1,]", Syntax),
            ("[1 2]", Syntax),
            ("tru", Truncated),
            ("trux", Syntax),
            ("'a'", Syntax),
            ("01", BadNumber),
            ("-", BadNumber),
            ("1.", BadNumber),
            ("1e", BadNumber),
            ("+1", Syntax),
            ("\"a\u{1}b\"", BadString),
            ("\"\\x\"", BadString),
            ("\"\\ud800\"", BadString),
            ("\"\\ud800\\u0041\"", BadString),
            ("\"\\udc00\"", BadString),
            ("\"\\u12g4\"", BadString),
            ("{\"a\":1,\"a\":2}", DuplicateKey),
            ("{\"a\":1,\"\\u0061\":2}", DuplicateKey),
            ("{} {}", TrailingData),
            ("1 x", TrailingData),
        ];
        for (input, expected) in table {
            assert_eq!(kind(input), *expected, "{input:?}");
        }
        assert_eq!(parse(b"\"\xff\"").unwrap_err().kind, NotUtf8);
    }

    #[test]
    fn enforces_limits() {
        let deep = "[".repeat(MAX_DEPTH) + &"]".repeat(MAX_DEPTH);
        assert!(parse(deep.as_bytes()).is_ok());
        let deeper = "[".repeat(MAX_DEPTH + 1) + &"]".repeat(MAX_DEPTH + 1);
        assert_eq!(kind(&deeper), JsonErrorKind::TooDeep);
        // A deep prefix is refused before the parser recurses further (no stack growth).
        assert_eq!(kind(&"[".repeat(100_000.min(MAX_DOCUMENT))), JsonErrorKind::TooDeep);

        let long = format!("\"{}\"", "x".repeat(MAX_STRING + 1));
        assert_eq!(kind(&long), JsonErrorKind::StringTooLong);
        assert!(parse(format!("\"{}\"", "x".repeat(MAX_STRING)).as_bytes()).is_ok());
        let escaped = format!("\"{}\"", "\\n".repeat(MAX_STRING + 1));
        assert_eq!(kind(&escaped), JsonErrorKind::StringTooLong);

        let items = format!("[{}]", vec!["1"; MAX_ITEMS + 1].join(","));
        assert_eq!(kind(&items), JsonErrorKind::TooMany);
        let members: Vec<String> = (0..=MAX_MEMBERS).map(|index| format!("\"k{index}\":1")).collect();
        assert_eq!(kind(&format!("{{{}}}", members.join(","))), JsonErrorKind::TooMany);
        let values = format!("[{}]", vec!["[1,1,1,1,1,1,1,1,1,1]"; 99].join(","));
        assert_eq!(kind(&values), JsonErrorKind::TooMany);

        let mut big = vec![b' '; MAX_DOCUMENT + 1];
        big[0] = b'1';
        assert_eq!(kind(core::str::from_utf8(&big).unwrap()), JsonErrorKind::TooLarge);
    }

    #[test]
    fn every_truncation_of_a_document_is_refused_without_panic() {
        let document = br#"{"status":"valid","identifiers":[{"type":"dns","value":"mx.example.org"}],"n":-1.5e-3,"e":"\u00e9\ud83d\ude00"}"#;
        assert!(parse(document).is_ok());
        for end in 0..document.len() {
            assert!(parse(&document[..end]).is_err(), "prefix of {end} bytes");
        }
        // Any single byte changed: an answer or an error, never a panic.
        for position in 0..document.len() {
            for byte in [0u8, b'"', b'\\', b'{', b'}', b'[', b']', b',', b':', 0x7f, 0xc3, 0xff] {
                let mut changed = document.to_vec();
                changed[position] = byte;
                let _ = parse(&changed);
            }
        }
    }

    #[test]
    fn strings_are_escaped_and_read_back() {
        let mut out = String::new();
        push_string(&mut out, "a\"b\\c\nd\u{1}\u{7f}\u{e9}");
        assert_eq!(out, "\"a\\\"b\\\\c\\nd\\u0001\\u007f\u{e9}\"");
        assert_eq!(parse(out.as_bytes()).unwrap().as_str(), Some("a\"b\\c\nd\u{1}\u{7f}\u{e9}"));
    }
}
