//! SMTP command lines: checked, zero-copy parsing of one line (without its CRLF) into a command.

use crate::address::{parse_forward_path, parse_reverse_path, AddressError, ForwardPath, ReversePath};

/// The body type a client declared with `MAIL FROM:<…> BODY=` (RFC 6152).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum BodyType {
    /// `BODY=7BIT` or nothing declared.
    #[default]
    SevenBit,
    /// `BODY=8BITMIME`.
    EightBitMime,
}

/// The `MAIL FROM` parameters the server supports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct MailParameters {
    /// `SIZE=` (RFC 1870), saturating at `u64::MAX`.
    pub size: Option<u64>,
    /// `BODY=` (RFC 6152).
    pub body: BodyType,
}

/// A parsed command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command<'a> {
    /// `HELO domain`.
    Helo(&'a str),
    /// `EHLO domain`.
    Ehlo(&'a str),
    /// `MAIL FROM:<reverse-path> [parameters]`.
    Mail {
        /// The sender.
        reverse_path: ReversePath<'a>,
        /// SIZE and BODY.
        parameters: MailParameters,
    },
    /// `RCPT TO:<forward-path>`.
    Recipient(ForwardPath<'a>),
    /// `DATA`.
    Data,
    /// `RSET`.
    Reset,
    /// `NOOP [string]`.
    Noop,
    /// `QUIT`.
    Quit,
    /// `VRFY string` (answered 252, never confirming a user).
    Verify,
    /// `EXPN string`.
    Expand,
    /// `HELP [string]`.
    Help,
    /// `STARTTLS` (RFC 3207).
    StartTls,
    /// `AUTH mechanism [initial-response]` (RFC 4954). The initial response is the base64
    /// text as sent (`=` for an empty one); it is decoded by the session.
    Auth {
        /// The SASL mechanism named.
        mechanism: AuthMechanism,
        /// The initial response, if the client sent one.
        initial_response: Option<&'a [u8]>,
    },
}

/// The SASL mechanisms of `AUTH` (RFC 4954): the two the server offers, or another one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthMechanism {
    /// `PLAIN` (RFC 4616): `[authzid] NUL authcid NUL passwd` in one response.
    Plain,
    /// `LOGIN` (draft-murchison-sasl-login): the user name, then the password.
    Login,
    /// A syntactically valid mechanism name the server does not offer (`504 5.5.4`).
    Unsupported,
}

/// Why a command line was not accepted as a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommandError {
    /// An unknown verb (`500 5.5.1`).
    Unrecognized,
    /// A known SMTP verb this server does not implement, e.g. BDAT, ETRN (`502 5.5.1`).
    NotImplemented,
    /// The line is another protocol (HTTP `GET`/`POST`, …): a cross-protocol attempt (`421`).
    NotSmtp,
    /// Arguments where none are allowed, or missing or malformed ones (`501 5.5.4`).
    Syntax,
    /// The reverse path of MAIL is malformed (`501 5.1.7`).
    SenderAddress(AddressError),
    /// The forward path of RCPT is malformed (`501 5.1.3`).
    RecipientAddress(AddressError),
    /// A MAIL or RCPT parameter that is not supported (`555 5.5.4`).
    UnsupportedParameter,
}

/// Parses one command line, given without its terminating CRLF.
pub fn parse_command(line: &[u8]) -> Result<Command<'_>, CommandError> {
    let verb_end = line.iter().position(|&b| b == b' ').unwrap_or(line.len());
    let verb = &line[..verb_end];
    let arguments = line.get(verb_end + 1..).unwrap_or(&[]);
    let is = |name: &str| verb.eq_ignore_ascii_case(name.as_bytes());
    if is("EHLO") || is("HELO") {
        let domain = parse_greeting_argument(arguments)?;
        return Ok(if is("EHLO") { Command::Ehlo(domain) } else { Command::Helo(domain) });
    }
    if is("MAIL") {
        let rest = strip_keyword(arguments, b"FROM:").ok_or(CommandError::Syntax)?;
        let (reverse_path, rest) = parse_reverse_path(trim_start(rest)).map_err(CommandError::SenderAddress)?;
        let parameters = parse_mail_parameters(rest)?;
        return Ok(Command::Mail { reverse_path, parameters });
    }
    if is("RCPT") {
        let rest = strip_keyword(arguments, b"TO:").ok_or(CommandError::Syntax)?;
        let (forward_path, rest) =
            parse_forward_path(trim_start(rest)).map_err(CommandError::RecipientAddress)?;
        if !trim_start(rest).is_empty() {
            // No RCPT parameters (DSN NOTIFY/ORCPT) are offered.
            return Err(if rest.first() == Some(&b' ') {
                CommandError::UnsupportedParameter
            } else {
                CommandError::Syntax
            });
        }
        return Ok(Command::Recipient(forward_path));
    }
    let no_arguments = |command: Command<'static>| {
        if trim_start(arguments).is_empty() && (verb_end == line.len() || arguments.iter().all(|&b| b == b' ')) {
            Ok(command)
        } else {
            Err(CommandError::Syntax)
        }
    };
    if is("DATA") {
        return no_arguments(Command::Data);
    }
    if is("RSET") {
        return no_arguments(Command::Reset);
    }
    if is("QUIT") {
        return no_arguments(Command::Quit);
    }
    if is("STARTTLS") {
        return no_arguments(Command::StartTls);
    }
    if is("NOOP") {
        return Ok(Command::Noop);
    }
    if is("HELP") {
        return Ok(Command::Help);
    }
    if is("VRFY") {
        return if trim_start(arguments).is_empty() { Err(CommandError::Syntax) } else { Ok(Command::Verify) };
    }
    if is("EXPN") {
        return if trim_start(arguments).is_empty() { Err(CommandError::Syntax) } else { Ok(Command::Expand) };
    }
    if is("AUTH") {
        return parse_auth(arguments);
    }
    const NOT_IMPLEMENTED: [&str; 7] = ["BDAT", "ETRN", "TURN", "ATRN", "SEND", "SOML", "SAML"];
    if NOT_IMPLEMENTED.iter().any(|name| is(name)) {
        return Err(CommandError::NotImplemented);
    }
    const OTHER_PROTOCOLS: [&str; 9] = ["GET", "POST", "HEAD", "PUT", "CONNECT", "OPTIONS", "USER", "PASS", "CAPA"];
    if OTHER_PROTOCOLS.iter().any(|name| is(name)) {
        return Err(CommandError::NotSmtp);
    }
    Err(CommandError::Unrecognized)
}

/// `mechanism [SP initial-response]`: a mechanism name of 1 to 20 upper-case letters, digits,
/// `-` or `_` (RFC 4954 section 4, any case accepted), and an optional response of base64
/// characters or `=` (checked when it is decoded).
fn parse_auth(arguments: &[u8]) -> Result<Command<'_>, CommandError> {
    let arguments = trim_end(arguments);
    let (name, response) = match arguments.iter().position(|&b| b == b' ') {
        Some(space) => (&arguments[..space], Some(&arguments[space + 1..])),
        None => (arguments, None),
    };
    let name_is_valid = (1..=20).contains(&name.len()) && name.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_');
    if !name_is_valid || response.is_some_and(|response| response.is_empty() || response.contains(&b' ')) {
        return Err(CommandError::Syntax);
    }
    let mechanism = if name.eq_ignore_ascii_case(b"PLAIN") {
        AuthMechanism::Plain
    } else if name.eq_ignore_ascii_case(b"LOGIN") {
        AuthMechanism::Login
    } else {
        AuthMechanism::Unsupported
    };
    Ok(Command::Auth { mechanism, initial_response: response })
}

/// The domain or address literal of HELO/EHLO: one printable token of at most 255 octets.
/// Names that are not valid domains are accepted (real clients send them) but are never
/// written into headers as given.
fn parse_greeting_argument(arguments: &[u8]) -> Result<&str, CommandError> {
    let token = trim_end(trim_start(arguments));
    if token.is_empty() || token.len() > 255 || !token.iter().all(|&b| (0x21..0x7f).contains(&b)) {
        return Err(CommandError::Syntax);
    }
    core::str::from_utf8(token).map_err(|_| CommandError::Syntax)
}

/// `SP keyword=value` pairs after the reverse path.
fn parse_mail_parameters(mut rest: &[u8]) -> Result<MailParameters, CommandError> {
    let mut parameters = MailParameters::default();
    let mut seen_size = false;
    let mut seen_body = false;
    loop {
        rest = trim_end(rest);
        if rest.is_empty() {
            return Ok(parameters);
        }
        if rest[0] != b' ' {
            return Err(CommandError::Syntax);
        }
        rest = trim_start(rest);
        let end = rest.iter().position(|&b| b == b' ').unwrap_or(rest.len());
        let parameter = &rest[..end];
        rest = &rest[end..];
        let (keyword, value) = match parameter.iter().position(|&b| b == b'=') {
            Some(equals) => (&parameter[..equals], Some(&parameter[equals + 1..])),
            None => (parameter, None),
        };
        if keyword.eq_ignore_ascii_case(b"SIZE") {
            let value = value.ok_or(CommandError::Syntax)?;
            if seen_size || value.is_empty() || value.len() > 20 || !value.iter().all(u8::is_ascii_digit) {
                return Err(CommandError::Syntax);
            }
            seen_size = true;
            let size = value
                .iter()
                .fold(0u64, |total, &digit| total.saturating_mul(10).saturating_add(u64::from(digit - b'0')));
            parameters.size = Some(size);
        } else if keyword.eq_ignore_ascii_case(b"BODY") {
            let value = value.ok_or(CommandError::Syntax)?;
            if seen_body {
                return Err(CommandError::Syntax);
            }
            seen_body = true;
            parameters.body = if value.eq_ignore_ascii_case(b"7BIT") {
                BodyType::SevenBit
            } else if value.eq_ignore_ascii_case(b"8BITMIME") {
                BodyType::EightBitMime
            } else {
                return Err(CommandError::UnsupportedParameter);
            };
        } else if keyword.is_empty() || !keyword.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'-') {
            return Err(CommandError::Syntax);
        } else {
            return Err(CommandError::UnsupportedParameter);
        }
    }
}

/// `input` after `keyword` (any case), or `None`.
fn strip_keyword<'a>(input: &'a [u8], keyword: &[u8]) -> Option<&'a [u8]> {
    if input.len() >= keyword.len() && input[..keyword.len()].eq_ignore_ascii_case(keyword) {
        Some(&input[keyword.len()..])
    } else {
        None
    }
}

fn trim_start(mut input: &[u8]) -> &[u8] {
    while let [b' ', rest @ ..] = input {
        input = rest;
    }
    input
}

fn trim_end(mut input: &[u8]) -> &[u8] {
    while let [rest @ .., b' '] = input {
        input = rest;
    }
    input
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greetings() {
        assert_eq!(parse_command(b"EHLO client.example"), Ok(Command::Ehlo("client.example")));
        assert_eq!(parse_command(b"helo [192.0.2.1]"), Ok(Command::Helo("[192.0.2.1]")));
        assert_eq!(parse_command(b"EHLO"), Err(CommandError::Syntax));
        assert_eq!(parse_command(b"EHLO a b"), Err(CommandError::Syntax));
        assert_eq!(parse_command(b"EHLO a\x01"), Err(CommandError::Syntax));
    }

    #[test]
    fn mail_with_parameters() {
        let command = parse_command(b"MAIL FROM:<a@b.example> SIZE=1000 BODY=8BITMIME").unwrap();
        match command {
            Command::Mail { reverse_path: ReversePath::Path(path), parameters } => {
                assert_eq!(path.mailbox.as_str(), "a@b.example");
                assert_eq!(parameters.size, Some(1000));
                assert_eq!(parameters.body, BodyType::EightBitMime);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse_command(b"mail from: <>"),
            Ok(Command::Mail { reverse_path: ReversePath::Null, .. })
        ));
        assert_eq!(parse_command(b"MAIL FROM:<> SIZE=99999999999999999999999"), Err(CommandError::Syntax));
        assert!(matches!(
            parse_command(b"MAIL FROM:<> SIZE=99999999999999999999"),
            Ok(Command::Mail { parameters: MailParameters { size: Some(u64::MAX), .. }, .. })
        ));
        assert_eq!(parse_command(b"MAIL FROM:<> SIZE=1 SIZE=2"), Err(CommandError::Syntax));
        assert_eq!(parse_command(b"MAIL FROM:<> SMTPUTF8"), Err(CommandError::UnsupportedParameter));
        assert_eq!(parse_command(b"MAIL FROM:<> BODY=BINARYMIME"), Err(CommandError::UnsupportedParameter));
        assert_eq!(parse_command(b"MAIL FROM:<>SIZE=1"), Err(CommandError::Syntax));
        assert_eq!(parse_command(b"MAIL TO:<>"), Err(CommandError::Syntax));
        assert_eq!(
            parse_command(b"MAIL FROM:a@b.example"),
            Err(CommandError::SenderAddress(AddressError::MissingAngleBrackets))
        );
    }

    #[test]
    fn recipients() {
        assert_eq!(parse_command(b"RCPT TO:<Postmaster>"), Ok(Command::Recipient(ForwardPath::Postmaster)));
        assert!(matches!(parse_command(b"rcpt to: <u@d.example>  "), Ok(Command::Recipient(_))));
        assert_eq!(parse_command(b"RCPT TO:<u@d.example> NOTIFY=NEVER"), Err(CommandError::UnsupportedParameter));
        assert_eq!(
            parse_command(b"RCPT TO:<u@d.example.>"),
            Err(CommandError::RecipientAddress(AddressError::DomainSyntax))
        );
    }

    #[test]
    fn simple_commands() {
        assert_eq!(parse_command(b"DATA"), Ok(Command::Data));
        assert_eq!(parse_command(b"data "), Ok(Command::Data));
        assert_eq!(parse_command(b"DATA x"), Err(CommandError::Syntax));
        assert_eq!(parse_command(b"RSET"), Ok(Command::Reset));
        assert_eq!(parse_command(b"QUIT"), Ok(Command::Quit));
        assert_eq!(parse_command(b"NOOP anything"), Ok(Command::Noop));
        assert_eq!(parse_command(b"HELP"), Ok(Command::Help));
        assert_eq!(parse_command(b"VRFY root"), Ok(Command::Verify));
        assert_eq!(parse_command(b"VRFY"), Err(CommandError::Syntax));
        assert_eq!(parse_command(b"EXPN list"), Ok(Command::Expand));
        assert_eq!(parse_command(b"STARTTLS"), Ok(Command::StartTls));
        assert_eq!(parse_command(b"STARTTLS now"), Err(CommandError::Syntax));
        assert_eq!(parse_command(b"BDAT 10 LAST"), Err(CommandError::NotImplemented));
        assert_eq!(parse_command(b"ETRN example.org"), Err(CommandError::NotImplemented));
        assert_eq!(parse_command(b"GET / HTTP/1.1"), Err(CommandError::NotSmtp));
        assert_eq!(parse_command(b"XYZZY"), Err(CommandError::Unrecognized));
        assert_eq!(parse_command(b""), Err(CommandError::Unrecognized));
    }

    #[test]
    fn auth() {
        assert_eq!(parse_command(b"AUTH PLAIN"), Ok(Command::Auth { mechanism: AuthMechanism::Plain, initial_response: None }));
        assert_eq!(
            parse_command(b"auth plain AHVzZXIAc2VjcmV0"),
            Ok(Command::Auth { mechanism: AuthMechanism::Plain, initial_response: Some(b"AHVzZXIAc2VjcmV0") })
        );
        assert_eq!(parse_command(b"AUTH LOGIN dXNlcg== "), Ok(Command::Auth { mechanism: AuthMechanism::Login, initial_response: Some(b"dXNlcg==") }));
        assert_eq!(parse_command(b"AUTH CRAM-MD5"), Ok(Command::Auth { mechanism: AuthMechanism::Unsupported, initial_response: None }));
        assert_eq!(parse_command(b"AUTH PLAIN ="), Ok(Command::Auth { mechanism: AuthMechanism::Plain, initial_response: Some(b"=") }));
        assert_eq!(parse_command(b"AUTH"), Err(CommandError::Syntax));
        assert_eq!(parse_command(b"AUTH PLAIN a b"), Err(CommandError::Syntax));
        assert_eq!(parse_command(b"AUTH PLAIN  a"), Err(CommandError::Syntax));
        assert_eq!(parse_command(b"AUTH PL@IN"), Err(CommandError::Syntax));
        assert_eq!(parse_command(b"AUTH ABCDEFGHIJKLMNOPQRSTU"), Err(CommandError::Syntax));
    }
}
