//! Server session on TLS and submission: STARTTLS (RFC 3207) with its injection, reset and
//! refusal rules, AUTH PLAIN and LOGIN (RFC 4954, RFC 4616) with the caller's verdict and
//! delay, and the submission policy (AUTH required, LAN relay only with AUTH or the opt-in).

mod common;

use common::{relay, LAN, TLS, WAN};
use homemx_smtp::policy::{ClientInfo, RecipientDecision, SenderDecision, SessionPolicy};
use homemx_smtp::{
    AuthCredentials, AuthResult, CommitResult, ConnectionInfo, Event, ForwardPath, Now, RelayConfig, ReversePath, ServerConfig,
    ServerSession, StandardPolicy,
};

/// The standard policy, plus the two questions the session asks the caller about TLS and AUTH.
struct TestPolicy<'a> {
    standard: StandardPolicy<'a>,
    tls_arena_free: bool,
    auth_permitted: bool,
}

impl SessionPolicy for TestPolicy<'_> {
    fn service_available(&mut self, client: &ClientInfo<'_>) -> bool {
        self.standard.service_available(client)
    }
    fn check_sender(&mut self, client: &ClientInfo<'_>, sender: &ReversePath<'_>, declared_size: Option<u64>) -> SenderDecision {
        self.standard.check_sender(client, sender, declared_size)
    }
    fn check_recipient(&mut self, client: &ClientInfo<'_>, recipient: &ForwardPath<'_>) -> RecipientDecision {
        self.standard.check_recipient(client, recipient)
    }
    fn start_tls_available(&mut self, _client: &ClientInfo<'_>) -> bool {
        self.tls_arena_free
    }
    fn may_authenticate(&mut self, _client: &ClientInfo<'_>) -> bool {
        self.auth_permitted
    }
}

/// The caller's password check: alice's password is "secret"; everything else is refused.
fn alice_only(credentials: &AuthCredentials<'_>) -> AuthResult {
    if credentials.username == b"alice" && credentials.password == b"secret" && !credentials.asks_for_another_identity() {
        AuthResult::Accepted
    } else {
        AuthResult::Refused { delay_milliseconds: 0 }
    }
}

/// One client connection driven like an application drives it.
struct Peer<'c> {
    session: ServerSession<'c>,
    policy: TestPolicy<'c>,
    now: Now,
    /// Replies not yet looked at.
    output: String,
    events: Vec<String>,
    /// (authorization identity, user, password) of every `Authenticate`.
    credentials: Vec<(String, String, String)>,
    verify: fn(&AuthCredentials<'_>) -> AuthResult,
    /// Whether the simulated TLS handshake is done as soon as the session asks for it.
    handshake_at_once: bool,
    messages: Vec<Vec<u8>>,
    message: Vec<u8>,
}

impl<'c> Peer<'c> {
    fn new(config: &'c ServerConfig<'c>, relay: &'c RelayConfig, client: &str, starttls_available: bool) -> Peer<'c> {
        let now = Now::new(1_700_000_000, 1_000);
        let connection = ConnectionInfo { client: client.parse().unwrap(), session_id: 9, starttls_available, implicit_tls: None };
        let mut peer = Peer {
            session: ServerSession::new(config, connection, now),
            policy: TestPolicy {
                standard: StandardPolicy { relay, locked: false, spool_free_bytes: 1 << 30, spool_reserve_bytes: 0 },
                tls_arena_free: true,
                auth_permitted: true,
            },
            now,
            output: String::new(),
            events: Vec::new(),
            credentials: Vec::new(),
            verify: alice_only,
            handshake_at_once: true,
            messages: Vec::new(),
            message: Vec::new(),
        };
        assert!(peer.replies().starts_with("220 "));
        peer
    }

    /// Sends `text` as one read and returns the replies it caused.
    fn send(&mut self, text: &str) -> String {
        let mut rest = text.as_bytes();
        while !rest.is_empty() {
            let taken = self.session.receive(rest, self.now);
            rest = &rest[taken..];
            self.poll();
        }
        self.replies()
    }

    /// Lets `milliseconds` pass and returns the replies that caused.
    fn wait(&mut self, milliseconds: u64) -> String {
        self.now.monotonic_milliseconds += milliseconds;
        self.replies()
    }

    fn replies(&mut self) -> String {
        self.poll();
        std::mem::take(&mut self.output)
    }

    fn flush(&mut self) {
        self.output.push_str(&String::from_utf8_lossy(self.session.output()));
        let length = self.session.output().len();
        self.session.output_sent(length);
    }

    fn poll(&mut self) {
        while let Some(event) = self.session.poll(self.now, &mut self.policy) {
            match event {
                Event::Authenticate(credentials) => {
                    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
                    self.credentials.push((text(credentials.authorization_identity), text(credentials.username), text(credentials.password)));
                    self.events.push(format!("{event:?}"));
                    let result = (self.verify)(&credentials);
                    self.session.authentication_result(result, self.now);
                }
                Event::StartTls => {
                    self.events.push("StartTls".into());
                    self.flush();
                    if self.handshake_at_once {
                        self.session.tls_established(TLS, self.now);
                    }
                }
                Event::MessageData(chunk) => self.message.extend_from_slice(chunk),
                Event::MessageComplete { .. } => {
                    self.messages.push(std::mem::take(&mut self.message));
                    self.session.message_committed(CommitResult::Committed, self.now);
                }
                other => self.events.push(format!("{other:?}")),
            }
            self.flush();
        }
        self.flush();
    }

    fn has_event(&self, text: &str) -> bool {
        self.events.iter().any(|event| event.contains(text))
    }
}

fn submission() -> ServerConfig<'static> {
    ServerConfig::submission("mx.example.org")
}

fn mx() -> ServerConfig<'static> {
    ServerConfig::mx("mx.example.org")
}

/// EHLO, STARTTLS, the handshake and EHLO again; returns the EHLO reply inside TLS.
fn into_tls(peer: &mut Peer<'_>) -> String {
    peer.send("EHLO client.example\r\n");
    assert_eq!(peer.send("STARTTLS\r\n"), "220 2.0.0 Ready to start TLS\r\n");
    assert!(peer.session.tls_active());
    peer.send("EHLO client.example\r\n")
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut text = String::new();
    for chunk in bytes.chunks(3) {
        let value = chunk.iter().enumerate().fold(0u32, |value, (index, &byte)| value | u32::from(byte) << (16 - 8 * index));
        for index in 0..4 {
            if index <= chunk.len() {
                text.push(ALPHABET[(value >> (18 - 6 * index) & 63) as usize] as char);
            } else {
                text.push('=');
            }
        }
    }
    text
}

fn plain(authorization: &str, user: &str, password: &str) -> String {
    base64(format!("{authorization}\0{user}\0{password}").as_bytes())
}

// --- STARTTLS ---------------------------------------------------------------------------

#[test]
fn starttls_is_advertised_in_ehlo_before_tls_only() {
    let config = mx();
    let relay = relay();
    let mut peer = Peer::new(&config, &relay, WAN, true);
    assert!(peer.send("EHLO client.example\r\n").contains("250-STARTTLS\r\n"));
    assert!(!peer.send("EHLO client.example\r\n").is_empty());
    peer.send("STARTTLS\r\n");
    assert!(!peer.send("EHLO client.example\r\n").contains("STARTTLS"));
    let mut without = Peer::new(&config, &relay, WAN, false);
    assert!(!without.send("EHLO client.example\r\n").contains("STARTTLS"));
}

#[test]
fn starttls_before_ehlo_is_refused() {
    let config = mx();
    let relay = relay();
    let mut peer = Peer::new(&config, &relay, WAN, true);
    assert_eq!(peer.send("STARTTLS\r\n"), "503 5.5.1 Send EHLO first\r\n");
    assert!(!peer.session.tls_active());
}

#[test]
fn pipelined_plaintext_after_starttls_is_never_answered() {
    // CVE-2011-0411: `STARTTLS\r\nRSET\r\n` in one read; the RSET must not be answered,
    // neither before the handshake nor inside TLS.
    let config = mx();
    let relay = relay();
    let mut peer = Peer::new(&config, &relay, WAN, true);
    peer.handshake_at_once = false;
    peer.send("EHLO client.example\r\n");
    assert_eq!(peer.send("STARTTLS\r\nRSET\r\n"), "220 2.0.0 Ready to start TLS\r\n");
    assert!(peer.has_event("PlaintextDiscarded { octets: 6 }"));
    // More plaintext before the handshake is dropped too.
    assert_eq!(peer.send("NOOP\r\n"), "");
    peer.session.tls_established(TLS, peer.now);
    let after = peer.replies() + &peer.send("EHLO client.example\r\n") + &peer.wait(1000);
    assert!(after.starts_with("250-mx.example.org\r\n"), "{after}");
    assert!(!after.contains("250 2.0.0 Ok"), "the RSET was answered: {after}");
    assert!(!after.contains("250 2.0.0 Ok") && !after.lines().any(|line| line.starts_with("250 2.0.0")), "{after}");
}

#[test]
fn the_handshake_resets_the_session_to_before_ehlo() {
    let config = mx();
    let relay = relay();
    let mut peer = Peer::new(&config, &relay, WAN, true);
    peer.send("EHLO old-name.example\r\n");
    peer.send("STARTTLS\r\n");
    assert_eq!(peer.send("MAIL FROM:<a@b.example>\r\n"), "503 5.5.1 Send EHLO or HELO first\r\n");
    peer.send("EHLO new-name.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\nhello\r\n.\r\n");
    let message = String::from_utf8(peer.messages[0].clone()).unwrap();
    assert!(message.starts_with("Received: from new-name.example "), "{message}");
    assert!(!message.contains("old-name"), "the earlier EHLO name is forgotten: {message}");
    assert!(message.contains("with ESMTPS\r\n"), "{message}");
}

#[test]
fn starttls_twice_with_parameters_or_in_a_transaction_is_refused() {
    let config = mx();
    let relay = relay();
    let mut peer = Peer::new(&config, &relay, WAN, true);
    peer.send("EHLO client.example\r\n");
    assert_eq!(peer.send("STARTTLS now\r\n"), "501 5.5.4 Syntax error in parameters or arguments\r\n");
    peer.send("MAIL FROM:<a@b.example>\r\n");
    assert_eq!(peer.send("STARTTLS\r\n"), "503 5.5.1 STARTTLS not permitted during a mail transaction\r\n");
    assert!(!peer.session.tls_active());
    assert!(!peer.has_event("TransactionAborted"), "the transaction goes on");
    assert_eq!(peer.send("RCPT TO:<alice@example.org>\r\n"), "250 2.1.5 Recipient OK\r\n");
    peer.send("RSET\r\n");
    peer.send("STARTTLS\r\n");
    assert!(peer.session.tls_active());
    peer.send("EHLO client.example\r\n");
    assert_eq!(peer.send("STARTTLS\r\n"), "503 5.5.1 TLS already active\r\n");
}

#[test]
fn starttls_without_a_free_tls_arena_is_a_temporary_refusal() {
    let config = mx();
    let relay = relay();
    let mut peer = Peer::new(&config, &relay, WAN, true);
    peer.policy.tls_arena_free = false;
    peer.send("EHLO client.example\r\n");
    assert_eq!(peer.send("STARTTLS\r\n"), "454 4.7.0 TLS not available due to temporary reason\r\n");
    assert!(!peer.has_event("StartTls"));
    assert!(peer.has_event("TlsTemporarilyUnavailable"));
    // The session goes on in clear (the sender may deliver without TLS).
    assert_eq!(peer.send("MAIL FROM:<a@b.example>\r\n"), "250 2.1.0 Sender OK\r\n");
}

// --- AUTH -------------------------------------------------------------------------------

#[test]
fn auth_is_offered_only_inside_tls_on_submission_listeners() {
    let config = submission();
    let relay = relay();
    let mut peer = Peer::new(&config, &relay, LAN, true);
    let before = peer.send("EHLO client.example\r\n");
    assert!(before.contains("250-STARTTLS\r\n") && !before.contains("AUTH"), "{before}");
    assert!(into_tls(&mut peer).contains("250-AUTH PLAIN LOGIN\r\n"));
    let config = mx();
    let mut public = Peer::new(&config, &relay, WAN, true);
    assert!(!into_tls(&mut public).contains("AUTH"), "never on the MX listener");
    assert_eq!(public.send(&format!("AUTH PLAIN {}\r\n", plain("", "alice", "secret"))), "502 5.5.1 Command not implemented\r\n");
    assert!(public.credentials.is_empty());
}

#[test]
fn auth_before_tls_needs_encryption() {
    // RFC 4954 section 6 has the exact code: 538 5.7.11 "Encryption required for requested
    // authentication mechanism" (530 5.7.0 says only that AUTH is needed, which it is not yet).
    let config = submission();
    let relay = relay();
    let mut peer = Peer::new(&config, &relay, LAN, true);
    peer.send("EHLO client.example\r\n");
    assert_eq!(
        peer.send(&format!("AUTH PLAIN {}\r\n", plain("", "alice", "secret"))),
        "538 5.7.11 Encryption required for requested authentication mechanism\r\n"
    );
    assert_eq!(peer.send("AUTH LOGIN\r\n"), "538 5.7.11 Encryption required for requested authentication mechanism\r\n");
    assert!(peer.credentials.is_empty(), "nothing handed out in clear");
    assert_eq!(peer.send("MAIL FROM:<alice@example.org>\r\n"), "530 5.7.0 Authentication required\r\n");
}

#[test]
fn auth_plain_with_an_initial_response() {
    let config = submission();
    let relay = relay();
    let mut peer = Peer::new(&config, &relay, LAN, true);
    into_tls(&mut peer);
    assert_eq!(peer.send(&format!("AUTH PLAIN {}\r\n", plain("", "alice", "secret"))), "235 2.7.0 Authentication successful\r\n");
    assert_eq!(peer.credentials, [(String::new(), "alice".into(), "secret".into())]);
    assert_eq!(peer.session.authenticated_user(), Some("alice"));
    assert!(!peer.events.iter().any(|event| event.contains("secret")), "Debug withholds the password: {:?}", peer.events);
    assert!(!peer.send("EHLO client.example\r\n").contains("AUTH"), "not offered again");
}

#[test]
fn auth_plain_and_login_with_334_continuations() {
    let config = submission();
    let relay = relay();
    let mut peer = Peer::new(&config, &relay, LAN, true);
    into_tls(&mut peer);
    assert_eq!(peer.send("AUTH PLAIN\r\n"), "334 \r\n");
    assert_eq!(peer.send(&format!("{}\r\n", plain("alice", "alice", "secret"))), "235 2.7.0 Authentication successful\r\n");
    assert_eq!(peer.credentials, [("alice".into(), "alice".into(), "secret".into())]);

    let mut login = Peer::new(&config, &relay, LAN, true);
    into_tls(&mut login);
    assert_eq!(login.send("auth login\r\n"), "334 VXNlcm5hbWU6\r\n");
    assert_eq!(login.send(&format!("{}\r\n", base64(b"alice"))), "334 UGFzc3dvcmQ6\r\n");
    assert_eq!(login.send(&format!("{}\r\n", base64(b"secret"))), "235 2.7.0 Authentication successful\r\n");
    assert_eq!(login.credentials, [(String::new(), "alice".into(), "secret".into())]);

    let mut initial = Peer::new(&config, &relay, LAN, true);
    into_tls(&mut initial);
    assert_eq!(initial.send(&format!("AUTH LOGIN {}\r\n", base64(b"alice"))), "334 UGFzc3dvcmQ6\r\n");
    assert_eq!(initial.send(&format!("{}\r\n", base64(b"secret"))), "235 2.7.0 Authentication successful\r\n");
}

#[test]
fn refused_credentials_get_one_answer_whether_or_not_the_user_exists() {
    let config = submission();
    let relay = relay();
    let mut answers = Vec::new();
    for (user, password) in [("alice", "wrong"), ("nobody", "secret"), ("nobody", "wrong")] {
        let mut peer = Peer::new(&config, &relay, LAN, true);
        into_tls(&mut peer);
        answers.push(peer.send(&format!("AUTH PLAIN {}\r\n", plain("", user, password))));
        assert_eq!(peer.session.authenticated_user(), None);
        assert_eq!(peer.send("MAIL FROM:<alice@example.org>\r\n"), "530 5.7.0 Authentication required\r\n");
    }
    assert_eq!(answers, ["535 5.7.8 Authentication credentials invalid\r\n"; 3]);
    // Proxy authorization is not offered: alice's password does not make her bob.
    let mut peer = Peer::new(&config, &relay, LAN, true);
    into_tls(&mut peer);
    assert_eq!(peer.send(&format!("AUTH PLAIN {}\r\n", plain("bob", "alice", "secret"))), "535 5.7.8 Authentication credentials invalid\r\n");
}

#[test]
fn the_refusal_waits_for_the_callers_delay() {
    let config = submission();
    let relay = relay();
    let mut peer = Peer::new(&config, &relay, LAN, true);
    peer.verify = |_| AuthResult::Refused { delay_milliseconds: 2000 };
    into_tls(&mut peer);
    let start = peer.now.monotonic_milliseconds;
    // A command pipelined behind AUTH waits for the AUTH answer.
    assert_eq!(peer.send(&format!("AUTH PLAIN {}\r\nNOOP\r\n", plain("", "alice", "guess"))), "");
    assert_eq!(peer.session.deadline(), Some(start + 2000));
    assert_eq!(peer.wait(1999), "");
    assert_eq!(peer.wait(1), "535 5.7.8 Authentication credentials invalid\r\n250 2.0.0 Ok\r\n");
    assert!(peer.has_event("AuthenticationFailed"));
    assert_eq!(peer.session.deadline(), Some(start + 2000 + 300_000), "back to the command timeout");
}

#[test]
fn a_temporary_failure_is_454() {
    let config = submission();
    let relay = relay();
    let mut peer = Peer::new(&config, &relay, LAN, true);
    peer.verify = |_| AuthResult::TemporaryFailure;
    into_tls(&mut peer);
    assert_eq!(peer.send(&format!("AUTH PLAIN {}\r\n", plain("", "alice", "secret"))), "454 4.7.0 Temporary authentication failure\r\n");
    assert_eq!(peer.session.authenticated_user(), None);
}

#[test]
fn auth_exchange_errors() {
    let config = submission();
    let relay = relay();
    let mut peer = Peer::new(&config, &relay, LAN, true);
    peer.send("EHLO client.example\r\nSTARTTLS\r\n");
    assert_eq!(peer.send("AUTH PLAIN\r\n"), "503 5.5.1 Send EHLO first\r\n", "the handshake forgot the EHLO");
    peer.send("EHLO client.example\r\n");
    assert_eq!(peer.send("AUTH PLAIN\r\n*\r\n"), "334 \r\n501 5.0.0 Authentication cancelled\r\n");
    assert_eq!(peer.send("AUTH LOGIN\r\n"), "334 VXNlcm5hbWU6\r\n");
    assert_eq!(peer.send("*\r\n"), "501 5.0.0 Authentication cancelled\r\n");
    assert_eq!(peer.send("AUTH PLAIN not*base64\r\n"), "501 5.5.2 Malformed authentication response\r\n");
    assert_eq!(peer.send("AUTH PLAIN\r\n%%%%\r\n"), "334 \r\n501 5.5.2 Malformed authentication response\r\n");
    assert_eq!(peer.send(&format!("AUTH PLAIN {}\r\n", base64(b"alice\0secret"))), "501 5.5.2 Malformed authentication response\r\n");
    assert_eq!(peer.send("AUTH CRAM-MD5\r\n"), "504 5.5.4 Unrecognized authentication type\r\n");
    assert_eq!(peer.send("AUTH\r\n"), "501 5.5.4 Syntax error in parameters or arguments\r\n");
    assert!(peer.credentials.is_empty());
    assert_eq!(peer.send(&format!("AUTH PLAIN {}\r\n", plain("", "alice", "secret"))), "235 2.7.0 Authentication successful\r\n");
    assert_eq!(peer.send(&format!("AUTH PLAIN {}\r\n", plain("", "alice", "secret"))), "503 5.5.1 Already authenticated\r\n");
    assert_eq!(peer.credentials.len(), 1);
}

#[test]
fn auth_inside_a_transaction_is_refused() {
    let config = ServerConfig { submission_requires_auth: false, ..submission() };
    let relay = relay();
    let mut peer = Peer::new(&config, &relay, LAN, true);
    into_tls(&mut peer);
    assert_eq!(peer.send("MAIL FROM:<alice@example.org>\r\n"), "250 2.1.0 Sender OK\r\n", "AUTH not required here");
    assert_eq!(
        peer.send(&format!("AUTH PLAIN {}\r\n", plain("", "alice", "secret"))),
        "503 5.5.1 AUTH not permitted during a mail transaction\r\n"
    );
    assert!(peer.credentials.is_empty());
}

#[test]
fn over_long_auth_lines_are_500_5_5_6() {
    let config = submission();
    let relay = relay();
    let mut peer = Peer::new(&config, &relay, LAN, true);
    into_tls(&mut peer);
    // A PLAIN line of 900 octets is within the AUTH limit (over the 512 of other commands).
    let long_password = "p".repeat(600);
    assert_eq!(peer.send(&format!("AUTH PLAIN {}\r\n", plain("", "alice", &long_password))), "535 5.7.8 Authentication credentials invalid\r\n");
    assert_eq!(peer.credentials[0].2, long_password);
    // Over the input buffer: refused, the rest of the line skipped, the session goes on.
    let reply = peer.send(&format!("AUTH PLAIN {}\r\nNOOP\r\n", "QUFB".repeat(300)));
    assert_eq!(reply, "500 5.5.6 Authentication line too long\r\n250 2.0.0 Ok\r\n");
    // LOGIN's two responses together over the credentials buffer.
    assert_eq!(peer.send(&format!("AUTH LOGIN {}\r\n", base64(&[b'u'; 500]))), "334 UGFzc3dvcmQ6\r\n");
    assert_eq!(peer.send(&format!("{}\r\n", base64(&[b'p'; 500]))), "500 5.5.6 Authentication response too long\r\n");
    assert_eq!(peer.credentials.len(), 1);
}

#[test]
fn a_blocked_address_gets_421_and_the_connection_closes() {
    let config = submission();
    let relay = relay();
    let mut peer = Peer::new(&config, &relay, LAN, true);
    into_tls(&mut peer);
    peer.policy.auth_permitted = false;
    assert_eq!(
        peer.send("AUTH LOGIN\r\n"),
        "421 4.7.0 mx.example.org Too many failed authentication attempts, closing connection\r\n"
    );
    assert!(peer.session.is_closed());
    assert!(peer.has_event("AuthenticationBlocked"));
}

// --- Submission policy ------------------------------------------------------------------

#[test]
fn submission_requires_auth_then_relays_and_says_esmtpsa() {
    let config = submission();
    let mut relay = relay();
    relay.set_lan_may_relay(true);
    let mut peer = Peer::new(&config, &relay, LAN, true);
    into_tls(&mut peer);
    assert_eq!(peer.send("MAIL FROM:<alice@example.org>\r\n"), "530 5.7.0 Authentication required\r\n");
    peer.send(&format!("AUTH PLAIN {}\r\n", plain("", "alice", "secret")));
    let replies = peer.send("MAIL FROM:<alice@example.org>\r\nRCPT TO:<friend@elsewhere.example>\r\nDATA\r\nhi\r\n.\r\n");
    assert!(replies.starts_with("250 2.1.0 Sender OK\r\n250 2.1.5 Recipient OK\r\n354 "), "{replies}");
    let message = String::from_utf8(peer.messages[0].clone()).unwrap();
    assert!(message.contains("by mx.example.org with ESMTPSA\r\n"), "{message}");
    // The same LAN client without AUTH, where AUTH is not required to send: no relaying.
    let config = ServerConfig { submission_requires_auth: false, ..submission() };
    let mut anonymous = Peer::new(&config, &relay, LAN, true);
    into_tls(&mut anonymous);
    let replies = anonymous.send("MAIL FROM:<alice@example.org>\r\nRCPT TO:<friend@elsewhere.example>\r\n");
    assert_eq!(replies, "250 2.1.0 Sender OK\r\n530 5.7.0 Authentication required\r\n");
    // With the owner's opt-in, the LAN address alone is enough again.
    let mut opted_in = common::relay();
    opted_in.set_lan_may_relay(true);
    opted_in.set_lan_relay_without_auth(true);
    let mut trusted = Peer::new(&config, &opted_in, LAN, true);
    into_tls(&mut trusted);
    assert_eq!(trusted.send("MAIL FROM:<a@example.org>\r\nRCPT TO:<friend@elsewhere.example>\r\n"), "250 2.1.0 Sender OK\r\n250 2.1.5 Recipient OK\r\n");
}

#[test]
fn the_policy_sees_the_authenticated_user() {
    struct Recorder(Vec<Option<String>>);
    impl SessionPolicy for Recorder {
        fn service_available(&mut self, _client: &ClientInfo<'_>) -> bool {
            true
        }
        fn check_sender(&mut self, client: &ClientInfo<'_>, _sender: &ReversePath<'_>, _size: Option<u64>) -> SenderDecision {
            self.0.push(client.authenticated_user.map(str::to_owned));
            SenderDecision::Accept
        }
        fn check_recipient(&mut self, _client: &ClientInfo<'_>, _recipient: &ForwardPath<'_>) -> RecipientDecision {
            RecipientDecision::Accept
        }
    }
    let config = ServerConfig { submission_requires_auth: false, ..submission() };
    let connection = ConnectionInfo { client: LAN.parse().unwrap(), session_id: 1, starttls_available: false, implicit_tls: Some(TLS) };
    let now = Now::new(1_700_000_000, 0);
    let mut session = ServerSession::new(&config, connection, now);
    let mut policy = Recorder(Vec::new());
    let script = format!("EHLO c.example\r\nMAIL FROM:<>\r\nRSET\r\nAUTH PLAIN {}\r\nMAIL FROM:<>\r\n", plain("", "alice", "secret"));
    session.receive(script.as_bytes(), now);
    while let Some(event) = session.poll(now, &mut policy) {
        if let Event::Authenticate(_) = event {
            session.authentication_result(AuthResult::Accepted, now);
        }
    }
    assert_eq!(policy.0, [None, Some("alice".to_owned())]);
    assert!(String::from_utf8_lossy(session.output()).contains("250-AUTH PLAIN LOGIN\r\n"), "implicit TLS (465) offers AUTH at once");
}
