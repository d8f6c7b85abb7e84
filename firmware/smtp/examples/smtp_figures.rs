//! Prints the crate's figures: RAM per session and host throughput for a 10 KB message.
//! Figures are printed, never asserted. Run with
//! `cargo run -p homemx-smtp --release --example smtp_figures`.

use std::hint::black_box;
use std::mem::size_of;
use std::time::Instant;

use homemx_smtp::data::DataDecoder;
use homemx_smtp::{
    CommitResult, ConnectionCounter, ConnectionInfo, Event, IpPrefix, Now, RelayConfig, ServerConfig, ServerSession,
    StandardPolicy,
};

/// One complete SMTP transaction carrying a 10 KB body (80-octet lines, some dot-stuffed).
fn transaction() -> Vec<u8> {
    let mut script = b"EHLO client.example\r\nMAIL FROM:<sender@remote.example> SIZE=10240\r\n\
        RCPT TO:<alice@example.org>\r\nDATA\r\n"
        .to_vec();
    let mut body = Vec::new();
    let mut line = 0;
    while body.len() < 10 * 1024 {
        let lead = if line % 10 == 0 { "." } else { "x" };
        body.extend_from_slice(format!("{lead}{:077}\r\n", line).as_bytes());
        line += 1;
    }
    // Stuff leading dots.
    for text_line in body.split_inclusive(|&b| b == b'\n') {
        if text_line.first() == Some(&b'.') {
            script.push(b'.');
        }
        script.extend_from_slice(text_line);
    }
    script.extend_from_slice(b".\r\nQUIT\r\n");
    script
}

/// Runs one session over `script` in reads of `read_size`; returns body octets seen.
fn run_session(config: &ServerConfig<'_>, relay: &RelayConfig, script: &[u8], read_size: usize) -> (usize, usize) {
    let now = Now::new(1_700_000_000, 0);
    let connection = ConnectionInfo {
        client: "203.0.113.9".parse().unwrap(),
        session_id: 1,
        starttls_available: false,
        implicit_tls: None,
    };
    let mut session = ServerSession::new(config, connection, now);
    let mut policy = StandardPolicy { relay, locked: false, spool_free_bytes: 1 << 30, spool_reserve_bytes: 0 };
    let mut body = 0;
    let mut events = 0;
    let mut rest = script;
    loop {
        while let Some(event) = session.poll(now, &mut policy) {
            events += 1;
            match event {
                Event::MessageData(chunk) => body += black_box(chunk).len(),
                Event::MessageComplete { .. } => session.message_committed(CommitResult::Committed, now),
                Event::Close => return (body, events),
                _ => {}
            }
        }
        let sent = session.output().len();
        session.output_sent(sent);
        if rest.is_empty() {
            return (body, events);
        }
        let take = read_size.min(rest.len());
        let taken = session.receive(&rest[..take], now);
        rest = &rest[taken..];
    }
}

fn main() {
    let mut relay = RelayConfig::new();
    relay.add_domain("example.org").unwrap();
    relay.add_recipient("alice@example.org").unwrap();
    relay.add_lan_prefix(IpPrefix::parse("192.168.1.0/24").unwrap()).unwrap();
    let config = ServerConfig::mx("mx.example.org");

    println!("== RAM (size_of, host build; the same layout on thumbv7em up to pointer width)");
    println!("ServerSession (input {} + output {} + Received header or AUTH credentials {} buffers): {} bytes",
        homemx_smtp::server::INPUT_BUFFER_SIZE,
        homemx_smtp::server::OUTPUT_BUFFER_SIZE,
        homemx_smtp::server::HEADER_BUFFER_SIZE,
        size_of::<ServerSession<'static>>());
    println!("ServerConfig: {} bytes (each session keeps a copy)", size_of::<ServerConfig<'static>>());
    println!("RelayConfig (8 domains, 64 recipients, 8 prefixes): {} bytes (shared)", size_of::<RelayConfig>());
    println!("ConnectionCounter<8>: {} bytes", size_of::<ConnectionCounter<8>>());
    println!("AuthThrottle<16>: {} bytes", size_of::<homemx_smtp::AuthThrottle<16>>());
    println!("SubmissionQuota<16, 16>: {} bytes", size_of::<homemx_smtp::SubmissionQuota<16, 16>>());
    println!("DataDecoder: {} bytes", size_of::<DataDecoder>());
    println!("4 sessions: {} bytes", 4 * size_of::<ServerSession<'static>>());
    println!("ClientSession (input {} + output {} buffers): {} bytes",
        homemx_smtp::client::CLIENT_INPUT_BUFFER_SIZE,
        homemx_smtp::client::CLIENT_OUTPUT_BUFFER_SIZE,
        size_of::<homemx_smtp::ClientSession<'static>>());

    let script = transaction();
    println!("\n== host throughput, one 10 KB message per session ({} octets on the wire)", script.len());
    for read_size in [64usize, 536, 1460, 4096] {
        let (body, events) = run_session(&config, &relay, &script, read_size);
        let rounds = 2000;
        let started = Instant::now();
        for _ in 0..rounds {
            black_box(run_session(&config, &relay, black_box(&script), read_size));
        }
        let elapsed = started.elapsed().as_secs_f64();
        let per_message = elapsed / f64::from(rounds);
        println!(
            "reads of {read_size:>4} octets: {:>8.1} µs per session, {:>7.1} MB/s on the wire, {} events, {} body octets handed out",
            per_message * 1e6,
            script.len() as f64 / per_message / 1e6,
            events,
            body
        );
    }
}
