//! Test harness: drives a server session over scripted input and records what it did.
#![allow(dead_code)]

use std::net::IpAddr;

use homemx_smtp::{
    CommitResult, ConnectionInfo, Event, IpPrefix, Now, RelayConfig, ServerConfig, ServerSession, StandardPolicy,
    TlsDetails,
};

/// The TLS details the harness reports after a simulated handshake.
pub const TLS: TlsDetails = TlsDetails { protocol: "TLSv1.3", cipher: "TLS_AES_128_GCM_SHA256" };

/// A WAN client address.
pub const WAN: &str = "203.0.113.9";
/// A LAN client address.
pub const LAN: &str = "192.168.1.20";

/// The relay configuration of the tests: example.org with alice and bob, LAN 192.168.1.0/24.
pub fn relay() -> RelayConfig {
    let mut relay = RelayConfig::new();
    relay.add_domain("example.org").unwrap();
    relay.add_recipient("alice@example.org").unwrap();
    relay.add_recipient("bob@example.org").unwrap();
    relay.add_lan_prefix(IpPrefix::parse("192.168.1.0/24").unwrap()).unwrap();
    relay
}

/// The server configuration of the tests.
pub fn config() -> ServerConfig<'static> {
    ServerConfig { hostname: "mx.example.org", limits: Default::default(), require_tls: false, submission: false, submission_requires_auth: true }
}

/// Options of one scripted run.
#[derive(Clone, Copy)]
pub struct Options {
    pub client: &'static str,
    pub starttls_available: bool,
    pub locked: bool,
    pub spool_free_bytes: u64,
    pub commit: CommitResult,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            client: WAN,
            starttls_available: false,
            locked: false,
            spool_free_bytes: 1 << 30,
            commit: CommitResult::Committed,
        }
    }
}

/// What a run produced.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Transcript {
    /// Everything the session sent.
    pub output: Vec<u8>,
    /// Every event, in order, as debug text (`MessageData` is summarised).
    pub events: Vec<String>,
    /// Committed messages (Received header + body).
    pub messages: Vec<Vec<u8>>,
    /// Whether the session closed.
    pub closed: bool,
}

impl Transcript {
    /// The reply lines sent.
    pub fn lines(&self) -> Vec<String> {
        String::from_utf8_lossy(&self.output).split("\r\n").filter(|l| !l.is_empty()).map(str::to_owned).collect()
    }

    /// The last reply line sent.
    pub fn last_line(&self) -> String {
        self.lines().last().cloned().unwrap_or_default()
    }

    /// Whether some event's text contains `text`.
    pub fn has_event(&self, text: &str) -> bool {
        self.events.iter().any(|event| event.contains(text))
    }
}

/// Feeds `chunks` one after another (each as one read) and returns the transcript.
pub fn run_with(config: &ServerConfig<'_>, relay: &RelayConfig, options: Options, chunks: &[&[u8]]) -> Transcript {
    let now = Now::new(1_700_000_000, 1_000);
    let connection = ConnectionInfo {
        client: options.client.parse::<IpAddr>().unwrap(),
        session_id: 7,
        starttls_available: options.starttls_available,
        implicit_tls: None,
    };
    let mut session = ServerSession::new(config, connection, now);
    let mut policy = StandardPolicy {
        relay,
        locked: options.locked,
        spool_free_bytes: options.spool_free_bytes,
        spool_reserve_bytes: 4096,
    };
    let mut transcript = Transcript::default();
    let mut current = Vec::new();
    let mut chunks = chunks.iter();
    let mut pending: &[u8] = &[];
    loop {
        drive(&mut session, now, &mut policy, options, &mut transcript, &mut current);
        if transcript.closed {
            break;
        }
        if pending.is_empty() {
            match chunks.next() {
                Some(chunk) => pending = chunk,
                None => break,
            }
        }
        let taken = session.receive(pending, now);
        pending = &pending[taken..];
    }
    transcript
}

/// Polls until the session wants input, handling events as an application would.
pub fn drive(
    session: &mut ServerSession<'_>,
    now: Now,
    policy: &mut StandardPolicy<'_>,
    options: Options,
    transcript: &mut Transcript,
    current: &mut Vec<u8>,
) {
    loop {
        let event = session.poll(now, policy);
        let Some(event) = event else {
            flush(session, transcript);
            return;
        };
        match event {
            Event::MessageData(chunk) => {
                current.extend_from_slice(chunk);
                if transcript.events.last().is_none_or(|e| e != "MessageData") {
                    transcript.events.push("MessageData".into());
                }
            }
            Event::MessageComplete { .. } => {
                transcript.events.push(format!("{event:?}"));
                if options.commit == CommitResult::Committed {
                    transcript.messages.push(std::mem::take(current));
                } else {
                    current.clear();
                }
                session.message_committed(options.commit, now);
            }
            Event::TransactionAborted(_) => {
                transcript.events.push(format!("{event:?}"));
                current.clear();
            }
            Event::StartTls => {
                transcript.events.push("StartTls".into());
                flush(session, transcript);
                session.tls_established(TLS, now);
            }
            Event::Close => {
                transcript.events.push("Close".into());
                flush(session, transcript);
                transcript.closed = true;
                assert!(session.is_closed());
                return;
            }
            Event::OutputFull => flush(session, transcript),
            other => transcript.events.push(format!("{other:?}")),
        }
    }
}

fn flush(session: &mut ServerSession<'_>, transcript: &mut Transcript) {
    let output = session.output();
    transcript.output.extend_from_slice(output);
    let length = output.len();
    session.output_sent(length);
}

/// Runs with the default configuration.
pub fn run(options: Options, chunks: &[&[u8]]) -> Transcript {
    run_with(&config(), &relay(), options, chunks)
}

/// Runs one script as a single read.
pub fn run_script(script: &str) -> Transcript {
    run(Options::default(), &[script.as_bytes()])
}

/// The body part of a committed message (after the Received header).
pub fn body_of(message: &[u8]) -> &[u8] {
    assert!(message.starts_with(b"Received: from "));
    // The header ends with the date line: "\t<date>\r\n" is its last line.
    let text = message;
    let mut index = 0;
    loop {
        let line_end = text[index..].windows(2).position(|w| w == b"\r\n").unwrap() + index + 2;
        let next_is_continuation = text.get(line_end) == Some(&b'\t');
        index = line_end;
        if !next_is_continuation {
            return &text[index..];
        }
    }
}
