//! Fuzz target: a whole server session fed arbitrary bytes in arbitrary chunks, with the
//! application's answers (commit result, TLS and its arena, lock, AUTH verdicts and delays,
//! the AUTH throttle) and the listener (MX or submission) chosen by the input too.
#![no_main]

use homemx_smtp::policy::{ClientInfo, RecipientDecision, SenderDecision, SessionPolicy};
use homemx_smtp::{
    AuthResult, CommitResult, ConnectionInfo, Event, ForwardPath, IpPrefix, Now, RelayConfig, ReversePath, ServerConfig,
    ServerSession, StandardPolicy, TlsDetails,
};

/// The standard policy with the TLS arena and the AUTH throttle answers drawn from the input.
struct FuzzPolicy<'a> {
    standard: StandardPolicy<'a>,
    tls_arena_free: bool,
    auth_permitted: bool,
}

impl SessionPolicy for FuzzPolicy<'_> {
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
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 4 {
        return;
    }
    let (settings, input) = data.split_at(4);
    let mut relay = RelayConfig::new();
    relay.add_domain("example.org").unwrap();
    relay.add_recipient("alice@example.org").unwrap();
    relay.add_lan_prefix(IpPrefix::parse("10.0.0.0/8").unwrap()).unwrap();
    relay.set_lan_may_relay(settings[0] & 1 != 0);
    relay.set_lan_relay_without_auth(settings[3] & 1 != 0);
    let mut config = ServerConfig {
        hostname: "mx.example.org",
        limits: Default::default(),
        require_tls: settings[0] & 2 != 0,
        submission: settings[3] & 2 != 0,
        submission_requires_auth: settings[3] & 4 != 0,
    };
    config.limits.message_size = 4096;
    config.limits.recipients_per_message = 5;
    let connection = ConnectionInfo {
        client: if settings[0] & 4 != 0 { "10.1.2.3".parse().unwrap() } else { "2001:db8::7".parse().unwrap() },
        session_id: 1,
        starttls_available: settings[0] & 8 != 0,
        implicit_tls: (settings[3] & 8 != 0).then_some(TlsDetails { protocol: "TLSv1.3", cipher: "TLS_CHACHA20_POLY1305_SHA256" }),
    };
    let commit = match settings[0] >> 6 {
        0 | 1 => CommitResult::Committed,
        2 => CommitResult::Failed,
        _ => CommitResult::InsufficientStorage,
    };
    let mut policy = FuzzPolicy {
        standard: StandardPolicy {
            relay: &relay,
            locked: settings[0] & 16 != 0,
            spool_free_bytes: u64::from(settings[1]) * 64,
            spool_reserve_bytes: 100,
        },
        tls_arena_free: settings[3] & 16 != 0,
        auth_permitted: settings[3] & 32 != 0,
    };
    // The verdicts, in turn: bits 6 and 7 of settings[3] rotate through them.
    let mut verdicts = [
        AuthResult::Accepted,
        AuthResult::Refused { delay_milliseconds: 0 },
        AuthResult::Refused { delay_milliseconds: 4000 },
        AuthResult::TemporaryFailure,
    ]
    .into_iter()
    .cycle()
    .skip(usize::from(settings[3] >> 6));
    let chunk = usize::from(settings[2] % 64) + 1;
    let mut now = Now::new(1_700_000_000, 0);
    let mut session = ServerSession::new(&config, connection, now);
    let mut message = 0usize;
    let mut closed = false;
    let mut output = Vec::new();
    let mut pending = input;
    'outer: loop {
        loop {
            let event = session.poll(now, &mut policy);
            match event {
                None => break,
                Some(Event::MessageData(chunk)) => {
                    message += chunk.len();
                    assert!(message <= 4096 + 768, "body beyond the size limit handed out");
                }
                Some(Event::MessageComplete { .. }) => {
                    message = 0;
                    session.message_committed(commit, now);
                }
                Some(Event::TransactionAborted(_)) => message = 0,
                Some(Event::StartTls) => {
                    output.extend_from_slice(session.output());
                    let length = session.output().len();
                    session.output_sent(length);
                    session.tls_established(TlsDetails { protocol: "TLSv1.3", cipher: "TLS_AES_128_GCM_SHA256" }, now);
                }
                Some(Event::Authenticate(credentials)) => {
                    assert!(!credentials.username.is_empty() && !credentials.password.is_empty());
                    // A name the session cannot keep is refused even when the caller accepts it.
                    let name = credentials.username;
                    let keepable = name.len() <= 64 && core::str::from_utf8(name).is_ok() && !name.iter().any(u8::is_ascii_control);
                    assert!(config.submission, "AUTH handed out on an MX listener");
                    assert!(session.tls_active(), "credentials handed out in clear");
                    let verdict = verdicts.next().unwrap();
                    session.authentication_result(verdict, now);
                    assert_eq!(session.authenticated_user().is_some(), verdict == AuthResult::Accepted && keepable);
                }
                Some(Event::TransactionStarted { .. }) => {
                    assert!(!(config.submission && config.submission_requires_auth) || session.authenticated_user().is_some(), "MAIL without AUTH");
                }
                Some(Event::Close) => {
                    closed = true;
                    break 'outer;
                }
                Some(_) => {}
            }
            output.extend_from_slice(session.output());
            let length = session.output().len();
            session.output_sent(length);
        }
        output.extend_from_slice(session.output());
        let length = session.output().len();
        session.output_sent(length);
        if pending.is_empty() {
            // Let time pass: a stalled session must time out and close.
            now.monotonic_milliseconds += 10 * 60 * 1000;
            if session.deadline().is_none() {
                break;
            }
            continue;
        }
        let take = chunk.min(pending.len());
        let taken = session.receive(&pending[..take], now);
        pending = &pending[taken..];
        if taken == 0 {
            // The input buffer is full while the session waits (an AUTH answer's delay): let time pass.
            now.monotonic_milliseconds += 1000;
        }
    }
    if closed {
        assert!(session.is_closed());
    }
    output.extend_from_slice(session.output());
    for line in output.split(|&b| b == b'\n').filter(|line| !line.is_empty()) {
        assert!(line.len() >= 5 && line[..3].iter().all(u8::is_ascii_digit), "{line:?}");
        assert_eq!(line.last(), Some(&b'\r'));
    }
});
