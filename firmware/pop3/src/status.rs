//! Status lines: `+OK` / `-ERR` (RFC 1939 3) and the extended response codes in brackets
//! after `-ERR` (RFC 2449 8, RFC 3206).

/// A server's status indicator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// `+OK`: the command succeeded.
    Ok,
    /// `-ERR`: the command failed.
    Err,
}

/// Parses a status line (CRLF already removed): `+OK` or `-ERR`, alone or followed by a space
/// and free text. Indicators are upper case (RFC 1939 3); anything else is `None`.
pub fn parse_status(line: &[u8]) -> Option<(Status, &[u8])> {
    let (status, rest) = if let Some(rest) = line.strip_prefix(b"+OK") {
        (Status::Ok, rest)
    } else if let Some(rest) = line.strip_prefix(b"-ERR") {
        (Status::Err, rest)
    } else {
        return None;
    };
    match rest.split_first() {
        None => Some((status, rest)),
        Some((b' ', text)) => Some((status, text)),
        Some(_) => None,
    }
}

/// The extended response code at the start of a `-ERR` text (RFC 2449 8, RFC 3206).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResponseCode {
    /// `[AUTH]`: the credentials are wrong.
    Auth,
    /// `[IN-USE]`: another session holds the mailbox.
    InUse,
    /// `[LOGIN-DELAY]`: logged in too soon after the last session.
    LoginDelay,
    /// `[SYS/TEMP]`: a temporary server problem.
    SysTemp,
    /// `[SYS/PERM]`: a permanent server problem.
    SysPerm,
    /// Another code, or none.
    None,
}

/// The response code of a `-ERR` line's text, e.g. `[AUTH] invalid login`.
pub fn response_code(text: &[u8]) -> ResponseCode {
    let Some(rest) = text.strip_prefix(b"[") else { return ResponseCode::None };
    let Some(end) = rest.iter().position(|&b| b == b']') else { return ResponseCode::None };
    let code = &rest[..end];
    // Hierarchical codes (`SYS/TEMP`) compare whole; the top level alone decides the rest.
    if code.eq_ignore_ascii_case(b"AUTH") {
        ResponseCode::Auth
    } else if code.eq_ignore_ascii_case(b"IN-USE") {
        ResponseCode::InUse
    } else if code.eq_ignore_ascii_case(b"LOGIN-DELAY") {
        ResponseCode::LoginDelay
    } else if code.eq_ignore_ascii_case(b"SYS/TEMP") {
        ResponseCode::SysTemp
    } else if code.eq_ignore_ascii_case(b"SYS/PERM") {
        ResponseCode::SysPerm
    } else {
        ResponseCode::None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines() {
        assert_eq!(parse_status(b"+OK"), Some((Status::Ok, &b""[..])));
        assert_eq!(parse_status(b"+OK POP3 ready"), Some((Status::Ok, &b"POP3 ready"[..])));
        assert_eq!(parse_status(b"-ERR no"), Some((Status::Err, &b"no"[..])));
        assert_eq!(parse_status(b"-ERR"), Some((Status::Err, &b""[..])));
        assert_eq!(parse_status(b"+OKAY"), None);
        assert_eq!(parse_status(b"+ok"), None);
        assert_eq!(parse_status(b"-ERROR"), None);
        assert_eq!(parse_status(b"* OK imap"), None);
        assert_eq!(parse_status(b""), None);
    }

    #[test]
    fn response_codes() {
        assert_eq!(response_code(b"[AUTH] bad password"), ResponseCode::Auth);
        assert_eq!(response_code(b"[in-use] locked"), ResponseCode::InUse);
        assert_eq!(response_code(b"[LOGIN-DELAY] wait"), ResponseCode::LoginDelay);
        assert_eq!(response_code(b"[SYS/TEMP] later"), ResponseCode::SysTemp);
        assert_eq!(response_code(b"[SYS/PERM] never"), ResponseCode::SysPerm);
        assert_eq!(response_code(b"[SYS] x"), ResponseCode::None);
        assert_eq!(response_code(b"[AUTH"), ResponseCode::None);
        assert_eq!(response_code(b"invalid password"), ResponseCode::None);
    }
}
