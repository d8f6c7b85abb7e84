//! The CAPA response (RFC 2449): the capabilities the session cares about, and the detection
//! of an `STLS` overwritten by a middlebox (`XXXX`, the POP3 form of STARTTLS stripping).

/// What a server's CAPA list offered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// `STLS` (RFC 2595).
    pub stls: bool,
    /// A 4-letter capability that looks like an overwritten `STLS` (e.g. `XXXX`).
    pub stripped_stls: bool,
    /// `USER`: USER/PASS login.
    pub user: bool,
    /// `SASL` listing `PLAIN` (RFC 5034).
    pub sasl_plain: bool,
    /// `UIDL`.
    pub uidl: bool,
}

impl Capabilities {
    /// Notes one capability line (dot-unstuffed, CRLF removed).
    pub fn add_line(&mut self, line: &[u8]) {
        let keyword_end = line.iter().position(|&b| b == b' ').unwrap_or(line.len());
        let (keyword, arguments) = line.split_at(keyword_end);
        if keyword.eq_ignore_ascii_case(b"STLS") {
            self.stls = true;
        } else if keyword.eq_ignore_ascii_case(b"USER") {
            self.user = true;
        } else if keyword.eq_ignore_ascii_case(b"UIDL") {
            self.uidl = true;
        } else if keyword.eq_ignore_ascii_case(b"SASL") {
            if arguments.split(|&b| b == b' ').any(|mechanism| mechanism.eq_ignore_ascii_case(b"PLAIN")) {
                self.sasl_plain = true;
            }
        } else if looks_like_stripped_stls(keyword) {
            self.stripped_stls = true;
        }
    }
}

/// Whether a CAPA keyword looks like an `STLS` overwritten by a middlebox: four octets, at
/// least three of them `X` or `*`, and not `STLS` itself.
pub fn looks_like_stripped_stls(keyword: &[u8]) -> bool {
    keyword.len() == 4
        && !keyword.eq_ignore_ascii_case(b"STLS")
        && keyword.iter().filter(|&&b| matches!(b, b'X' | b'x' | b'*')).count() >= 3
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(lines: &[&str]) -> Capabilities {
        let mut capabilities = Capabilities::default();
        for line in lines {
            capabilities.add_line(line.as_bytes());
        }
        capabilities
    }

    #[test]
    fn typical_lists() {
        let dovecot = parse(&[
            "CAPA",
            "TOP",
            "UIDL",
            "RESP-CODES",
            "PIPELINING",
            "AUTH-RESP-CODE",
            "STLS",
            "USER",
            "SASL PLAIN LOGIN",
        ]);
        assert_eq!(
            dovecot,
            Capabilities { stls: true, stripped_stls: false, user: true, sasl_plain: true, uidl: true }
        );
        let plain_only = parse(&["SASL LOGIN plain", "IMPLEMENTATION XXXX-server"]);
        assert!(plain_only.sasl_plain && !plain_only.user && !plain_only.stls && !plain_only.stripped_stls);
        assert!(!parse(&["SASL LOGIN CRAM-MD5"]).sasl_plain);
        assert!(parse(&["stls"]).stls);
    }

    #[test]
    fn stripped_stls() {
        assert!(parse(&["USER", "XXXX"]).stripped_stls);
        assert!(looks_like_stripped_stls(b"XXXX"));
        assert!(looks_like_stripped_stls(b"XXXS"));
        assert!(looks_like_stripped_stls(b"****"));
        assert!(!looks_like_stripped_stls(b"STLS"));
        assert!(!looks_like_stripped_stls(b"USER"));
        assert!(!looks_like_stripped_stls(b"UIDL"));
        assert!(!looks_like_stripped_stls(b"XXX"));
        assert!(!looks_like_stripped_stls(b"XXXXX"));
        assert!(!looks_like_stripped_stls(b"STXX"));
    }
}
