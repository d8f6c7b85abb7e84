//! A bounded SMTP load generator: `senders` concurrent clients deliver `messages` messages of
//! `message_bytes` bytes to one recipient, one SMTP session per message (EHLO, MAIL, RCPT,
//! DATA, QUIT, no pipelining), each client from its own source address. A message counts as
//! accepted only when the server answered `250` after the final `.`; any other answer is a
//! failure with its reason. A temporary refusal (`4xx` at any step) or a connection that
//! fails is tried again, at most [`LoadConfig::temporary_retries`] times per message after a
//! pause that doubles from [`LoadConfig::retry_pause`] up to [`LoadConfig::longest_retry_pause`]
//! (a sending MTA backs off too, only in minutes), and every such retry is counted; a permanent refusal (`5xx`, or a reply that is not
//! SMTP) is not retried. The whole run is bounded by [`LoadConfig::deadline`]: messages not
//! started by then count as failed.
//!
//! The same generator drives the appliance and Postfix (the throughput comparison). It opens
//! sockets in the caller's network namespace: run it inside [`crate::network::IsolatedNetwork::run_inside`]
//! for the test network (its threads inherit the namespace). Calls [`crate::peers::connect_from`].

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::peers::connect_from;
use crate::Result;

/// What to send, where, and how patiently.
#[derive(Clone, Debug)]
pub struct LoadConfig {
    /// The server (port 25 of the MX under test).
    pub target: SocketAddrV4,
    /// Source addresses: client `n` binds `sources[n % sources.len()]`.
    pub sources: Vec<Ipv4Addr>,
    /// Clients sending at once.
    pub senders: usize,
    /// Messages in all.
    pub messages: usize,
    /// Size of each message as sent (headers and body, CRLF line ends, before dot-stuffing).
    pub message_bytes: usize,
    /// `MAIL FROM` address.
    pub sender_address: String,
    /// `RCPT TO` address.
    pub recipient: String,
    /// The `EHLO` name.
    pub client_name: String,
    /// Further tries of one message after a temporary refusal or a failed connection.
    pub temporary_retries: u32,
    /// The pause before the first such retry of a message; it doubles for each further one.
    pub retry_pause: Duration,
    /// The longest pause before a retry.
    pub longest_retry_pause: Duration,
    /// How long one reply (or one write) may take.
    pub reply_timeout: Duration,
    /// The bound on the whole run.
    pub deadline: Duration,
}

impl LoadConfig {
    /// `messages` messages of `message_bytes` to `recipient` at `target` from `senders`
    /// clients on `sources`; up to 10 retries per message after 0.1 s, 0.2 s, … at most 5 s
    /// (26 s in all), 60 s per reply, 30 min for the whole run.
    pub fn new(target: SocketAddrV4, sources: &[Ipv4Addr], senders: usize, messages: usize, message_bytes: usize, recipient: &str) -> Self {
        LoadConfig {
            target,
            sources: sources.to_vec(),
            senders,
            messages,
            message_bytes,
            sender_address: "load@sender.example".to_string(),
            recipient: recipient.to_string(),
            client_name: "load.sender.example".to_string(),
            temporary_retries: 10,
            retry_pause: Duration::from_millis(100),
            longest_retry_pause: Duration::from_secs(5),
            reply_timeout: Duration::from_secs(60),
            deadline: Duration::from_secs(30 * 60),
        }
    }
}

/// What a run did.
#[derive(Clone, Debug, Default)]
pub struct LoadReport {
    /// Messages answered `250` after the data.
    pub accepted: usize,
    /// Messages that were not (refused, retries used up, or not started before the deadline).
    pub failed: usize,
    /// Temporary refusals (`4xx`) seen, each followed by a retry or, after the last, a failure.
    pub temporary_refusals: usize,
    /// Connections that failed (connect, read or write error, timeout), counted like refusals.
    pub connection_failures: usize,
    /// Time the senders paused before retries, summed over the senders.
    pub paused: Duration,
    /// From the first connection to the last answer.
    pub elapsed: Duration,
    /// Connect to `250` of each accepted message (last try only), sorted.
    pub latencies: Vec<Duration>,
    /// When each accepted message got its `250`, from the start of the run, in order.
    pub accepted_at: Vec<Duration>,
    /// Why messages failed or were retried: reason → times.
    pub reasons: BTreeMap<String, usize>,
}

impl LoadReport {
    /// Accepted messages per second of the run.
    pub fn messages_per_second(&self) -> f64 {
        self.accepted as f64 / self.elapsed.as_secs_f64()
    }

    /// Accepted messages per second over the first `count` acceptances (from the start of the
    /// run to the `count`th `250`), or over all if there were fewer.
    pub fn messages_per_second_of_first(&self, count: usize) -> Option<f64> {
        let count = count.min(self.accepted_at.len());
        let at = self.accepted_at.get(count.checked_sub(1)?)?;
        Some(count as f64 / at.as_secs_f64())
    }

    /// The `fraction` quantile of the accepted messages' latencies (0.5: median).
    pub fn latency_quantile(&self, fraction: f64) -> Option<Duration> {
        let last = self.latencies.len().checked_sub(1)?;
        Some(self.latencies[(last as f64 * fraction).round() as usize])
    }

    /// One line: accepted, failed, retries, elapsed, rate, latencies.
    pub fn summary(&self) -> String {
        let milliseconds = |quantile| self.latency_quantile(quantile).map_or(f64::NAN, |latency: Duration| latency.as_secs_f64() * 1000.0);
        format!(
            "{} accepted, {} failed, {} temporary refusals, {} connection failures ({:.1} s of pauses before retries), {:.1} s, {:.2} messages/s, latency median {:.0} ms, 95% {:.0} ms, max {:.0} ms",
            self.accepted,
            self.failed,
            self.temporary_refusals,
            self.connection_failures,
            self.paused.as_secs_f64(),
            self.elapsed.as_secs_f64(),
            self.messages_per_second(),
            milliseconds(0.5),
            milliseconds(0.95),
            milliseconds(1.0)
        )
    }
}

/// A message of `size` bytes: headers naming it `number`, then 80-character lines (none
/// starts with a dot), CRLF line ends.
pub fn test_message(number: usize, recipient: &str, size: usize) -> Vec<u8> {
    let mut message =
        format!("From: Load Generator <load@sender.example>\r\nTo: <{recipient}>\r\nSubject: load message {number}\r\nMessage-ID: <load-{number}@sender.example>\r\n\r\n")
            .into_bytes();
    let mut line = 0usize;
    while message.len() < size {
        let text = format!("{number:06} {line:05} the quick brown fox jumps over the lazy dog 0123456789abcdefghijklmnopq\r\n");
        let room = size - message.len();
        if room == 1 {
            // No room for a line: the previous one grows by a character.
            message.insert(message.len() - 2, b'+');
            break;
        }
        if room < text.len() {
            // The last line is cut to fit, still CRLF-ended.
            message.extend_from_slice(&text.as_bytes()[..room - 2]);
            message.extend_from_slice(b"\r\n");
            break;
        }
        message.extend_from_slice(text.as_bytes());
        line += 1;
    }
    message
}

/// `message` as DATA content: lines starting with `.` get another, then `.` CRLF.
fn data_payload(message: &[u8]) -> Vec<u8> {
    let mut payload = Vec::with_capacity(message.len() + 8);
    let mut line_start = true;
    for &byte in message {
        if line_start && byte == b'.' {
            payload.push(b'.');
        }
        payload.push(byte);
        line_start = byte == b'\n';
    }
    if !line_start {
        payload.extend_from_slice(b"\r\n");
    }
    payload.extend_from_slice(b".\r\n");
    payload
}

/// How one try of one message ended.
enum Outcome {
    Accepted,
    /// `4xx` or a failed connection: may be tried again.
    Temporary {
        reason: String,
        connection: bool,
    },
    /// `5xx` or a reply that is not SMTP: not retried.
    Permanent(String),
}

/// One SMTP reply: its code and its last line.
fn read_reply(reader: &mut BufReader<TcpStream>) -> std::io::Result<(u16, String)> {
    let mut line = String::new();
    // Bounded: a reply of more than 100 lines is not SMTP.
    for _ in 0..100 {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "connection closed"));
        }
        let code = line.get(..3).and_then(|code| code.parse::<u16>().ok());
        match (code, line.as_bytes().get(3)) {
            (Some(_), Some(b'-')) => continue,
            (Some(code), _) => return Ok((code, line.trim_end().to_string())),
            (None, _) => return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, format!("not an SMTP reply: {:?}", line.trim_end()))),
        }
    }
    Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "a reply of over 100 lines"))
}

/// A reply's text shortened for the reasons table (queue ids and the like left in: they
/// only appear in failures, which are rare).
fn reason(step: &str, text: &str) -> String {
    let text: String = text.chars().take(100).collect();
    format!("{step}: {text}")
}

/// Sends one message in one session from `source`.
fn send_once(config: &LoadConfig, source: Ipv4Addr, payload: &[u8]) -> Outcome {
    let connection_failure = |step: &str, error: &dyn std::fmt::Display| Outcome::Temporary { reason: format!("{step}: {error}"), connection: true };
    let stream = match connect_from(source, config.target, config.reply_timeout) {
        Ok(stream) => stream,
        Err(error) => return connection_failure("connect", &error),
    };
    let _ = stream.set_nodelay(true);
    let mut writer = match stream.try_clone() {
        Ok(writer) => writer,
        Err(error) => return connection_failure("connect", &error),
    };
    let mut reader = BufReader::new(stream);
    let commands: [(&str, Vec<u8>, u16); 5] = [
        ("greeting", Vec::new(), 220),
        ("EHLO", format!("EHLO {}\r\n", config.client_name).into_bytes(), 250),
        ("MAIL", format!("MAIL FROM:<{}>\r\n", config.sender_address).into_bytes(), 250),
        ("RCPT", format!("RCPT TO:<{}>\r\n", config.recipient).into_bytes(), 250),
        ("DATA", b"DATA\r\n".to_vec(), 354),
    ];
    for (step, command, expected) in commands.iter().chain(std::iter::once(&("end of data", payload.to_vec(), 250))) {
        if !command.is_empty() {
            if let Err(error) = writer.write_all(command) {
                return connection_failure(step, &error);
            }
        }
        let (code, text) = match read_reply(&mut reader) {
            Ok(reply) => reply,
            Err(error) if error.kind() == std::io::ErrorKind::InvalidData => return Outcome::Permanent(reason(step, &error.to_string())),
            Err(error) => return connection_failure(step, &error),
        };
        if code != *expected {
            // Polite end of the session; its answer does not matter.
            let _ = writer.write_all(b"QUIT\r\n");
            let _ = read_reply(&mut reader);
            return if (400..500).contains(&code) {
                Outcome::Temporary { reason: reason(step, &text), connection: false }
            } else {
                Outcome::Permanent(reason(step, &text))
            };
        }
    }
    let _ = writer.write_all(b"QUIT\r\n");
    let _ = read_reply(&mut reader);
    Outcome::Accepted
}

/// Shared progress of a run.
struct Progress {
    next_message: AtomicUsize,
    report: Mutex<LoadReport>,
}

fn sender(config: &LoadConfig, source: Ipv4Addr, progress: &Progress, started: Instant, deadline: Instant) {
    loop {
        let number = progress.next_message.fetch_add(1, Ordering::Relaxed);
        if number >= config.messages || Instant::now() > deadline {
            return;
        }
        let payload = data_payload(&test_message(number, &config.recipient, config.message_bytes));
        let mut tries = 0;
        let mut pause = config.retry_pause;
        loop {
            let attempt_started = Instant::now();
            let outcome = send_once(config, source, &payload);
            let mut report = progress.report.lock().expect("no sender panics holding the report");
            match outcome {
                Outcome::Accepted => {
                    report.accepted += 1;
                    report.latencies.push(attempt_started.elapsed());
                    report.accepted_at.push(started.elapsed());
                    break;
                }
                Outcome::Permanent(reason) => {
                    report.failed += 1;
                    *report.reasons.entry(reason).or_default() += 1;
                    break;
                }
                Outcome::Temporary { reason, connection } => {
                    if connection {
                        report.connection_failures += 1;
                    } else {
                        report.temporary_refusals += 1;
                    }
                    *report.reasons.entry(reason).or_default() += 1;
                    if tries >= config.temporary_retries || Instant::now() + pause > deadline {
                        report.failed += 1;
                        break;
                    }
                    report.paused += pause;
                }
            }
            drop(report);
            tries += 1;
            std::thread::sleep(pause);
            pause = (pause * 2).min(config.longest_retry_pause);
        }
    }
}

/// Runs the load (see the module header) from the calling thread's network namespace and
/// returns what happened. Errors only if the configuration is unusable; refusals are in the
/// report.
pub fn run_load(config: &LoadConfig) -> Result<LoadReport> {
    if config.senders == 0 || config.sources.is_empty() || config.message_bytes < 256 {
        return Err("the load needs a sender, a source address and messages of at least 256 bytes".into());
    }
    let progress = Arc::new(Progress { next_message: AtomicUsize::new(0), report: Mutex::new(LoadReport::default()) });
    let started = Instant::now();
    let deadline = started + config.deadline;
    let threads: Vec<_> = (0..config.senders)
        .map(|index| {
            let (config, progress) = (config.clone(), Arc::clone(&progress));
            let source = config.sources[index % config.sources.len()];
            std::thread::spawn(move || sender(&config, source, &progress, started, deadline))
        })
        .collect();
    for thread in threads {
        thread.join().map_err(|_| "a load sender panicked")?;
    }
    let mut report = std::mem::take(&mut *progress.report.lock().expect("senders have ended"));
    report.elapsed = started.elapsed();
    // Messages never started (deadline) are failures too.
    let unsent = config.messages - report.accepted - report.failed;
    if unsent > 0 {
        report.failed += unsent;
        *report.reasons.entry("not sent before the deadline".to_string()).or_default() += unsent;
    }
    report.latencies.sort_unstable();
    report.accepted_at.sort_unstable();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_test_message_has_the_size_asked_for() {
        for size in (256..400).chain([1000, 10 * 1024, 10 * 1024 + 1]) {
            let message = test_message(7, "alice@example.org", size);
            assert_eq!(message.len(), size, "size {size}");
            assert!(message.ends_with(b"\r\n"));
            assert!(!message.windows(2).any(|pair| pair[1] == b'\n' && pair[0] != b'\r'), "CRLF only");
        }
    }

    #[test]
    fn dot_stuffing_and_the_end_marker() {
        assert_eq!(data_payload(b"a\r\n.b\r\n"), b"a\r\n..b\r\n.\r\n");
        assert_eq!(data_payload(b".x"), b"..x\r\n.\r\n");
    }

    /// A scripted server on loopback: answers each session from `answers` (one list per
    /// session, consumed in order), so the generator's counting is checked against a real
    /// socket.
    fn scripted_server(sessions: Vec<Vec<&'static str>>) -> SocketAddrV4 {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = match listener.local_addr().unwrap() {
            std::net::SocketAddr::V4(address) => address,
            _ => unreachable!(),
        };
        std::thread::spawn(move || {
            for answers in sessions {
                let (stream, _) = listener.accept().unwrap();
                let mut writer = stream.try_clone().unwrap();
                let mut reader = BufReader::new(stream);
                let mut answers = answers.into_iter();
                let mut in_data = false;
                let _ = writer.write_all(answers.next().unwrap().as_bytes());
                let mut line = String::new();
                while let Some(answer) = {
                    line.clear();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        None
                    } else if in_data && line != ".\r\n" {
                        Some("")
                    } else {
                        in_data = false;
                        answers.next()
                    }
                } {
                    if answer.starts_with("354") {
                        in_data = true;
                    }
                    let _ = writer.write_all(answer.as_bytes());
                }
            }
        });
        address
    }

    #[test]
    fn counts_only_250_after_data_and_retries_4xx_a_bounded_number_of_times() {
        let ok = vec!["220 hi\r\n", "250-hello\r\n250 SIZE\r\n", "250 ok\r\n", "250 ok\r\n", "354 go\r\n", "250 queued\r\n", "221 bye\r\n"];
        let busy = vec!["421 4.7.0 busy\r\n", "221 bye\r\n"];
        let refused_data = vec!["220 hi\r\n", "250 hello\r\n", "250 ok\r\n", "250 ok\r\n", "354 go\r\n", "554 5.6.0 no\r\n", "221 bye\r\n"];
        let unknown = vec!["220 hi\r\n", "250 hello\r\n", "250 ok\r\n", "550 5.1.1 unknown\r\n", "221 bye\r\n"];
        // One sender, in order: message 0 accepted; message 1 busy then accepted; message 2
        // refused after data; message 3 unknown recipient; message 4 busy three times (two
        // retries allowed: failed).
        let server = scripted_server(vec![ok.clone(), busy.clone(), ok, refused_data, unknown, busy.clone(), busy.clone(), busy]);
        let mut config = LoadConfig::new(server, &[Ipv4Addr::LOCALHOST], 1, 5, 1024, "alice@example.org");
        config.temporary_retries = 2;
        config.retry_pause = Duration::from_millis(10);
        config.reply_timeout = Duration::from_secs(5);
        let report = run_load(&config).unwrap();
        assert_eq!(report.accepted, 2, "{report:?}");
        assert_eq!(report.failed, 3, "{report:?}");
        assert_eq!(report.temporary_refusals, 4, "{report:?}");
        assert_eq!(report.paused, Duration::from_millis(10 + 10 + 20), "pauses double: {report:?}");
        assert_eq!(report.reasons.get("greeting: 421 4.7.0 busy"), Some(&4));
        assert_eq!(report.reasons.get("end of data: 554 5.6.0 no"), Some(&1));
        assert_eq!(report.reasons.get("RCPT: 550 5.1.1 unknown"), Some(&1));
        assert_eq!(report.latencies.len(), 2);
        assert_eq!(report.accepted_at.len(), 2);
        assert!(report.messages_per_second_of_first(1).unwrap() >= report.messages_per_second_of_first(2).unwrap());
    }

    #[test]
    fn a_server_that_is_not_there_fails_every_message_after_its_retries() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = match listener.local_addr().unwrap() {
            std::net::SocketAddr::V4(address) => address,
            _ => unreachable!(),
        };
        drop(listener);
        let mut config = LoadConfig::new(address, &[Ipv4Addr::LOCALHOST], 2, 3, 1024, "alice@example.org");
        config.temporary_retries = 1;
        config.retry_pause = Duration::from_millis(1);
        let report = run_load(&config).unwrap();
        assert_eq!((report.accepted, report.failed, report.connection_failures), (0, 3, 6), "{report:?}");
    }
}
