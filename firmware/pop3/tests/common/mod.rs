//! Test harness: a scripted POP3 server and a scripted caller (the fetch loop the firmware
//! runs: retrieve what is not seen, commit, remember the UIDL, delete, quit).
#![allow(dead_code)]

use std::collections::VecDeque;

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};

use homemx_pop3::{
    record_holds, AbortReason, Failure, Inserted, ListingSummary, MessageCommand, Pop3Config, Pop3Event, Pop3Session,
    SeenRing, TlsMode, TlsProblem, SEEN_PAGES, SEEN_PAGE_MAX,
};

/// The caller's memory of committed UIDLs, kept as the firmware keeps it (`backup_mx.rs`): a
/// seen record per UIDL and the ring's pages in a key-value store (maps here), through
/// [`SeenRing`].
#[derive(Clone, Debug, Default)]
pub struct SeenStore {
    records: HashMap<u64, Vec<u8>>,
    pages: HashMap<usize, Vec<u8>>,
}

impl SeenStore {
    /// The record key of `uidl` (the firmware hashes it too).
    fn key(uidl: &str) -> u64 {
        let mut hasher = DefaultHasher::new();
        uidl.hash(&mut hasher);
        hasher.finish()
    }

    fn ring(&self) -> SeenRing {
        let mut ring = SeenRing::new();
        for page in 0..SEEN_PAGES {
            ring.load_page(self.pages.get(&page).map_or(&[][..], Vec::as_slice));
        }
        ring
    }

    fn store_dirty_pages(&mut self, ring: &mut SeenRing) {
        for page in ring.take_dirty_pages() {
            self.pages.insert(page, ring.encode_page(page, &mut [0; SEEN_PAGE_MAX]).to_vec());
        }
    }

    /// Whether `uidl` was committed.
    pub fn contains(&self, uidl: &str) -> bool {
        self.records.get(&Self::key(uidl)).is_some_and(|stored| record_holds(stored, uidl))
    }

    /// Remembers a committed `uidl`: its record, then the ring (the evicted record removed).
    pub fn insert(&mut self, uidl: &str) {
        let key = Self::key(uidl);
        self.records.insert(key, uidl.as_bytes().to_vec());
        let mut ring = self.ring();
        if let Inserted::EvictedOldest(oldest) = ring.insert(key) {
            self.records.remove(&oldest);
        }
        self.store_dirty_pages(&mut ring);
    }

    /// Forgets the UIDLs a complete listing no longer shows.
    pub fn prune<'u>(&mut self, listed: impl IntoIterator<Item = &'u str>) {
        let keys: Vec<u64> = listed.into_iter().map(Self::key).collect();
        let mut ring = self.ring();
        for key in ring.prune(&keys) {
            self.records.remove(&key);
        }
        self.store_dirty_pages(&mut ring);
    }

    /// How many UIDLs are remembered.
    pub fn len(&self) -> usize {
        self.ring().len()
    }

    /// The remembered UIDLs, oldest first.
    pub fn uidls(&self) -> Vec<String> {
        let ring = self.ring();
        ring.keys()
            .iter()
            .filter_map(|key| self.records.get(key))
            .map(|uidl| String::from_utf8(uidl.clone()).unwrap())
            .collect()
    }
}

/// What the fake server does with one client command.
#[derive(Clone, Debug)]
pub struct Step {
    /// The command line must start with this.
    pub expect: &'static str,
    /// The raw reply (may hold several lines or injected extras).
    pub reply: Vec<u8>,
    /// The server drops the connection after sending the reply.
    pub then_close: bool,
}

/// A step answering a command starting with `expect` with `reply`.
pub fn step(expect: &'static str, reply: impl AsRef<[u8]>) -> Step {
    Step { expect, reply: reply.as_ref().to_vec(), then_close: false }
}

/// A step after which the server drops the connection.
pub fn step_then_close(expect: &'static str, reply: impl AsRef<[u8]>) -> Step {
    Step { expect, reply: reply.as_ref().to_vec(), then_close: true }
}

/// How the simulated TLS handshake ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tls {
    /// Verified and established.
    Succeeds,
    /// Failed.
    Fails,
}

/// An event with its borrowed parts copied; consecutive data chunks are merged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ev {
    StartTls,
    TlsProblem(TlsProblem),
    Discarded(usize),
    PasswordNeeded,
    Listed(u32, u64, String),
    TooLarge(u32, u64, String),
    ListingComplete(ListingSummary),
    Begin(u32, u64),
    Data(Vec<u8>),
    End(u32, u64),
    Aborted(u32, AbortReason),
    Refused(u32, MessageCommand),
    Deleted(u32),
    Failed(Failure),
    Close(bool, u32),
}

impl Ev {
    fn from_event(event: &Pop3Event<'_>) -> Ev {
        match *event {
            Pop3Event::StartTls => Ev::StartTls,
            Pop3Event::TlsProblem(problem) => Ev::TlsProblem(problem),
            Pop3Event::PlaintextDiscarded { octets } => Ev::Discarded(octets),
            Pop3Event::PasswordNeeded => Ev::PasswordNeeded,
            Pop3Event::Listed(entry) => Ev::Listed(entry.number, entry.size, entry.uidl.to_string()),
            Pop3Event::TooLarge(entry) => Ev::TooLarge(entry.number, entry.size, entry.uidl.to_string()),
            Pop3Event::ListingComplete(summary) => Ev::ListingComplete(summary),
            Pop3Event::MessageBegin { number, size } => Ev::Begin(number, size),
            Pop3Event::MessageData(chunk) => Ev::Data(chunk.to_vec()),
            Pop3Event::MessageEnd { number, octets } => Ev::End(number, octets),
            Pop3Event::MessageAborted { number, reason } => Ev::Aborted(number, reason),
            Pop3Event::MessageRefused { number, command } => Ev::Refused(number, command),
            Pop3Event::Deleted { number } => Ev::Deleted(number),
            Pop3Event::Failed(failure) => Ev::Failed(failure),
            Pop3Event::Close { deletions_final, deleted } => Ev::Close(deletions_final, deleted),
        }
    }
}

/// What the caller does next.
#[derive(Clone, Debug)]
enum Action {
    Retrieve(u32, String),
    Delete(u32),
}

/// What a run did.
#[derive(Default, Debug)]
pub struct Run {
    /// Every command line the client sent, with whether TLS was active then.
    pub lines: Vec<(String, bool)>,
    /// Events in order (data chunks merged).
    pub events: Vec<Ev>,
    /// Messages committed to the "spool": (uidl, body).
    pub committed: Vec<(String, Vec<u8>)>,
    /// Data chunk count (to see streaming happen).
    pub chunks: usize,
    /// Largest data chunk.
    pub largest_chunk: usize,
    /// The seen records after the run.
    pub seen: SeenStore,
    /// The server steps not used.
    pub unused_steps: usize,
}

impl Run {
    /// The command verbs, in order.
    pub fn verbs(&self) -> Vec<String> {
        self.lines.iter().map(|(line, _)| line.split(' ').next().unwrap_or("").to_string()).collect()
    }

    /// Whether any line starting with `prefix` was sent.
    pub fn sent(&self, prefix: &str) -> bool {
        self.lines.iter().any(|(line, _)| line.starts_with(prefix))
    }

    /// The events without discarded-plaintext reports (their size depends on chunking).
    pub fn events_without_discards(&self) -> Vec<Ev> {
        self.events.iter().filter(|event| !matches!(event, Ev::Discarded(_))).cloned().collect()
    }
}

/// The driver's options.
#[derive(Clone, Debug)]
pub struct Options {
    pub tls: Tls,
    /// Sizes of the pieces server bytes arrive in (cycled); empty: everything at once.
    pub chunks: Vec<usize>,
    pub password: Vec<u8>,
    /// UIDLs already committed in earlier runs.
    pub seen: Vec<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options { tls: Tls::Succeeds, chunks: Vec::new(), password: b"secret".to_vec(), seen: Vec::new() }
    }
}

/// A configuration for `mode`.
pub fn config(mode: TlsMode) -> Pop3Config<'static> {
    Pop3Config { username: "user@example.org", tls: mode, message_size_max: 10_000, reply_timeout_ms: 60_000 }
}

/// Runs a whole session against the scripted server.
pub fn drive(config: &Pop3Config<'_>, greeting: &[u8], steps: Vec<Step>, options: &Options) -> Run {
    let mut now = 1_000u64;
    let mut session = Pop3Session::new(config, now).unwrap();
    let mut steps: VecDeque<Step> = steps.into();
    let mut run = Run::default();
    for uidl in &options.seen {
        run.seen.insert(uidl);
    }
    let mut to_client: Vec<u8> = greeting.to_vec();
    let mut from_client: Vec<(u8, bool)> = Vec::new();
    let mut close_after_reply = false;
    let mut closed = false;
    let mut chunk_index = 0;
    let mut actions: VecDeque<Action> = VecDeque::new();
    let mut listed_uidls: Vec<String> = Vec::new();
    let mut current: Option<(u32, String, Vec<u8>)> = None;
    let mut uidl_of = std::collections::HashMap::new();
    for _round in 0..100_000 {
        now += 10;
        let mut progressed = false;
        if !to_client.is_empty() {
            let size = if options.chunks.is_empty() {
                to_client.len()
            } else {
                options.chunks[chunk_index % options.chunks.len()].max(1)
            };
            chunk_index += 1;
            let size = size.min(to_client.len());
            let taken = session.receive(&to_client[..size], now);
            to_client.drain(..taken);
            progressed |= taken > 0;
        } else if close_after_reply && !closed {
            closed = true;
            session.connection_closed();
            progressed = true;
        }
        // Events, and the caller's answers to them.
        let mut next_action = false;
        while let Some(event) = session.poll(now) {
            progressed = true;
            let owned = Ev::from_event(&event);
            if let Ev::Data(chunk) = &owned {
                run.chunks += 1;
                run.largest_chunk = run.largest_chunk.max(chunk.len());
                if let Some((_, _, body)) = current.as_mut() {
                    body.extend_from_slice(chunk);
                }
                if let Some(Ev::Data(previous)) = run.events.last_mut() {
                    previous.extend_from_slice(chunk);
                    continue;
                }
            }
            run.events.push(owned.clone());
            match owned {
                Ev::StartTls => {
                    let output = session.output().to_vec();
                    from_client.extend(output.iter().map(|&b| (b, session.tls_active())));
                    session.output_sent(output.len());
                    // The socket switches to TLS: unread plaintext never reaches the session.
                    to_client.clear();
                    match options.tls {
                        Tls::Succeeds => session.tls_established(now),
                        Tls::Fails => session.tls_failed(),
                    }
                }
                Ev::PasswordNeeded => {
                    let _ = session.send_password(&options.password, now);
                }
                Ev::Listed(number, _, uidl) => {
                    listed_uidls.push(uidl.clone());
                    uidl_of.insert(number, uidl.clone());
                    if run.seen.contains(&uidl) {
                        actions.push_back(Action::Delete(number));
                    } else {
                        actions.push_back(Action::Retrieve(number, uidl));
                    }
                }
                Ev::TooLarge(_, _, uidl) => listed_uidls.push(uidl),
                Ev::ListingComplete(summary) => {
                    if summary.complete {
                        run.seen.prune(listed_uidls.iter().map(String::as_str));
                    }
                    next_action = true;
                }
                Ev::End(number, _) => {
                    let (_, uidl, body) = current.take().unwrap();
                    run.committed.push((uidl.clone(), body));
                    run.seen.insert(&uidl);
                    actions.push_front(Action::Delete(number));
                    next_action = true;
                }
                Ev::Aborted(_, reason) => {
                    current = None;
                    next_action = reason == AbortReason::TooLarge;
                }
                Ev::Refused(..) | Ev::Deleted(_) => next_action = true,
                _ => {}
            }
        }
        if next_action && session.is_ready() {
            match actions.pop_front() {
                Some(Action::Retrieve(number, uidl)) => {
                    session.retrieve(number, now).unwrap();
                    current = Some((number, uidl, Vec::new()));
                }
                Some(Action::Delete(number)) => session.delete(number, now).unwrap(),
                None => session.finish(now).unwrap(),
            }
            progressed = true;
        }
        // Output to the server; the server answers complete lines.
        let output = session.output().to_vec();
        if !output.is_empty() {
            progressed = true;
            from_client.extend(output.iter().map(|&b| (b, session.tls_active())));
            session.output_sent(output.len());
        }
        while let Some(end) = from_client.windows(2).position(|pair| pair[0].0 == b'\r' && pair[1].0 == b'\n') {
            let line: Vec<(u8, bool)> = from_client.drain(..end + 2).collect();
            let text = String::from_utf8_lossy(&line[..end].iter().map(|&(b, _)| b).collect::<Vec<_>>()).to_string();
            let tls = line.iter().all(|&(_, tls)| tls);
            run.lines.push((text.clone(), tls));
            if close_after_reply {
                continue;
            }
            match steps.pop_front() {
                Some(step) => {
                    assert!(text.starts_with(step.expect), "expected {:?}, client sent {:?}", step.expect, text);
                    to_client.extend_from_slice(&step.reply);
                    close_after_reply = step.then_close;
                }
                None => close_after_reply = true,
            }
        }
        if session.is_finished() {
            break;
        }
        if !progressed && to_client.is_empty() && !closed {
            // Nothing to say: the server hangs up.
            closed = true;
            session.connection_closed();
        }
    }
    assert!(session.is_finished(), "session did not finish: {session:?}");
    run.unused_steps = steps.len();
    run
}

/// The standard greeting.
pub const GREETING: &[u8] = b"+OK POP3 server ready <1896.697170952@dbc.mtview.ca.us>\r\n";
/// A Dovecot-like capability list offering STLS.
pub const CAPA_STLS: &str =
    "+OK\r\nCAPA\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nPIPELINING\r\nSTLS\r\nUSER\r\nSASL PLAIN\r\n.\r\n";
/// The capability list inside TLS.
pub const CAPA_TLS: &str = "+OK\r\nCAPA\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nUSER\r\nSASL PLAIN\r\n.\r\n";

/// The steps up to a successful login in STARTTLS mode.
pub fn login_steps() -> Vec<Step> {
    vec![
        step("CAPA", CAPA_STLS),
        step("STLS", "+OK Begin TLS negotiation\r\n"),
        step("CAPA", CAPA_TLS),
        step("USER user@example.org", "+OK\r\n"),
        step("PASS secret", "+OK Logged in.\r\n"),
    ]
}

/// Dot-stuffs `body` (CRLF lines) and adds the terminator, as a server does.
pub fn stuffed(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut at_line_start = true;
    for (index, &byte) in body.iter().enumerate() {
        if at_line_start && byte == b'.' {
            out.push(b'.');
        }
        out.push(byte);
        at_line_start = byte == b'\n' && index > 0 && body[index - 1] == b'\r';
    }
    if !body.is_empty() && !body.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

/// A RETR reply for `body`.
pub fn retr_reply(body: &[u8]) -> Vec<u8> {
    let mut reply = format!("+OK {} octets\r\n", body.len()).into_bytes();
    reply.extend_from_slice(&stuffed(body));
    reply
}
