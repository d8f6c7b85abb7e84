//! A real LMTP client session (homemx-smtp's) driven by the one driver loop against a
//! scripted mailbox host whose LHLO reply (2.6 KB) is larger than the session's input buffer
//! (1 KB) and arrives in one read: the session takes it in parts, and the message is still
//! delivered. Offering only what fits and dropping the rest loses the reply's last line: the
//! delivery would be deferred (the old loops did exactly that).

use std::collections::VecDeque;

use embassy_futures::block_on;
use embedded_io_async::{ErrorKind, ErrorType, Read, Write};
use homemx_exchange::{exchange, flush, Exchanged, Inbox};
use homemx_smtp::{ClientConfig, ClientEvent, ClientProtocol, ClientSession, Envelope, Now, Outcome, TlsRequirement};

/// The mailbox host: answers each command line with the next scripted reply; everything it
/// has to say is returned by one read; once it has nothing to say, the stream ends.
struct MailboxHost {
    script: VecDeque<(&'static str, String)>,
    to_client: Vec<u8>,
    from_client: Vec<u8>,
    in_data: bool,
    message: Vec<u8>,
    commands: Vec<String>,
}

impl MailboxHost {
    fn answer(&mut self) {
        loop {
            if self.in_data {
                let Some(end) = self.from_client.windows(5).position(|window| window == b"\r\n.\r\n") else { return };
                self.message.extend(self.from_client.drain(..end + 5));
                self.in_data = false;
                let (expect, reply) = self.script.pop_front().expect("a reply for the end of data");
                assert_eq!(expect, "<end of data>");
                self.to_client.extend_from_slice(reply.as_bytes());
                continue;
            }
            let Some(position) = self.from_client.windows(2).position(|window| window == b"\r\n") else { return };
            let line = String::from_utf8(self.from_client.drain(..position + 2).collect()).unwrap();
            let line = line.trim_end().to_string();
            let (expect, reply) = self.script.pop_front().unwrap_or_else(|| panic!("unexpected command {line:?}"));
            assert!(line.starts_with(expect), "expected {expect:?}, got {line:?}");
            self.in_data = line == "DATA";
            self.to_client.extend_from_slice(reply.as_bytes());
            self.commands.push(line);
        }
    }
}

impl ErrorType for MailboxHost {
    type Error = ErrorKind;
}

impl Read for MailboxHost {
    async fn read(&mut self, buffer: &mut [u8]) -> Result<usize, ErrorKind> {
        self.answer();
        let count = self.to_client.len().min(buffer.len());
        buffer[..count].copy_from_slice(&self.to_client[..count]);
        self.to_client.drain(..count);
        Ok(count)
    }
}

impl Write for MailboxHost {
    async fn write(&mut self, data: &[u8]) -> Result<usize, ErrorKind> {
        self.from_client.extend_from_slice(data);
        Ok(data.len())
    }
    async fn flush(&mut self) -> Result<(), ErrorKind> {
        Ok(())
    }
}

#[test]
fn a_reply_longer_than_the_session_buffer_is_taken_in_parts_and_the_message_delivered() {
    let mut lhlo = String::new();
    for number in 0..60 {
        lhlo.push_str(&format!("250-X-EXTENSION-NUMBER-{number:02}-WITH-A-LONG-NAME\r\n"));
    }
    lhlo.push_str("250 PIPELINING\r\n");
    assert!(lhlo.len() > 2 * homemx_smtp::client::CLIENT_INPUT_BUFFER_SIZE);
    let mut host = MailboxHost {
        script: [
            ("LHLO", lhlo),
            ("MAIL FROM:<alice@example.org>", "250 2.1.0 ok\r\n".into()),
            ("RCPT TO:<bob@example.org>", "250 2.1.5 ok\r\n".into()),
            ("DATA", "354 go ahead\r\n".into()),
            ("<end of data>", "250 2.0.0 delivered\r\n".into()),
            ("QUIT", "221 bye\r\n".into()),
        ]
        .into(),
        to_client: b"220 mailbox LMTP ready\r\n".to_vec(),
        from_client: Vec::new(),
        in_data: false,
        message: Vec::new(),
        commands: Vec::new(),
    };
    let config = ClientConfig { hostname: "mx.example.org", protocol: ClientProtocol::Lmtp, tls: TlsRequirement::Disabled, credentials: None };
    let recipients = ["bob@example.org"];
    let envelope = Envelope { sender: "alice@example.org", recipients: &recipients, size: None, eight_bit: false };
    let now = Now::new(1_700_000_000, 0);
    let mut session = ClientSession::new(&config, envelope, false, now).unwrap();
    let mut inbox = Inbox::<4096>::new();
    let mut results = Vec::new();
    let body = b"Subject: hello\r\n\r\nhi\r\n";
    for _turn in 0..1_000 {
        match session.poll(now) {
            Some(ClientEvent::SendBody) => {
                let mut rest = &body[..];
                while !rest.is_empty() {
                    let taken = session.send_body(rest);
                    rest = &rest[taken..];
                    if taken == 0 {
                        assert!(block_on(flush(&mut host, &mut session)));
                    }
                }
                assert!(session.end_body(now));
            }
            Some(ClientEvent::RecipientResult(result)) => results.push(result),
            Some(ClientEvent::OutputFull) => assert!(block_on(flush(&mut host, &mut session))),
            Some(ClientEvent::Close) => {
                assert!(block_on(flush(&mut host, &mut session)));
                break;
            }
            Some(other) => panic!("unexpected {other:?}"),
            None => {
                if session.is_finished() {
                    break;
                }
                let _: Exchanged = block_on(exchange(&mut host, &mut session, &mut inbox, || now));
            }
        }
    }
    host.answer();
    assert_eq!(results.len(), 1);
    assert_eq!(results[0].outcome, Outcome::Delivered, "{results:?}");
    assert_eq!(host.commands, ["LHLO mx.example.org", "MAIL FROM:<alice@example.org>", "RCPT TO:<bob@example.org>", "DATA", "QUIT"]);
    assert!(host.message.starts_with(b"Subject: hello\r\n"));
}
