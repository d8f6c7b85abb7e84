//! The provider's smarthost: an SMTP server (RFC 5321) at `smarthost.example.net` that takes
//! the device's outbound mail, written from the RFCs independently of the device's client.
//! The seed chooses STARTTLS on 587 (RFC 3207) or implicit TLS on 465 (RFC 8314) and which AUTH
//! mechanisms it offers (PLAIN, RFC 4616, and/or LOGIN); AUTH is offered only inside TLS and
//! MAIL needs a login, as at a real provider. It keeps every message it answers `250` for in the
//! shared records (destination [`Destination::Smarthost`]) and misbehaves on purpose as the
//! seed says: a `421` greeting, a `451` to the data, the connection dropped in the middle of
//! the data or after it, and now and then an impostor's certificate (the provider's CA, another
//! name) in its place.
//!
//! A command that must come inside TLS (AUTH, MAIL, RCPT, DATA) arriving in clear is recorded
//! as a violation (the device must never send it; `crate::wiretap` checks the bytes on the
//! wire independently). A wrong password or user name is one too: the device has the right ones.
//!
//! Owns: the smarthost's sessions. Calls: `peers` (records, line reading), `tls_peer`.

use std::sync::Arc;

use base64::Engine as _;
use embassy_net::tcp::TcpSocket;
use embassy_net::Stack;
use embassy_time::Duration;
use embedded_io_async::{Read, Write};
use rand::Rng;
use rand_chacha::ChaCha20Rng;
use rustls::ServerConfig;

use crate::peers::{self, Delivery, Destination, SharedRecords};
use crate::tls_peer::TlsStream;

/// How TLS starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SmarthostTls {
    /// Plain on 587 until STARTTLS.
    StartTls,
    /// TLS from the first byte on 465.
    Implicit,
}

impl SmarthostTls {
    /// The port it listens on.
    pub const fn port(self) -> u16 {
        match self {
            Self::StartTls => 587,
            Self::Implicit => 465,
        }
    }
}

/// What the seed chose for the smarthost.
#[derive(Clone, Debug)]
pub struct SmarthostPlan {
    /// How TLS starts.
    pub tls: SmarthostTls,
    /// Offers AUTH PLAIN.
    pub plain: bool,
    /// Offers AUTH LOGIN.
    pub login: bool,
    /// The account's user name and password.
    pub user: String,
    /// The password.
    pub password: String,
    /// Sessions greeted with `421` (per mille).
    pub busy_per_mille: u32,
    /// Messages answered `451` (per mille).
    pub refuse_per_mille: u32,
    /// Connections dropped after the data without an answer (per mille).
    pub drop_per_mille: u32,
    /// Connections on which an impostor answers: a certificate from the provider's CA for
    /// another name (`pop.example.net`), which the device must refuse, sending nothing (per
    /// mille).
    pub impostor_per_mille: u32,
}

/// The TLS configurations the smarthost presents: its own, and the impostor's.
pub struct SmarthostCertificates {
    /// `smarthost.example.net`'s.
    pub genuine: Arc<ServerConfig>,
    /// A certificate for another name.
    pub impostor: Arc<ServerConfig>,
}

/// How a session (or its plain part) ended.
enum Ending {
    /// QUIT, or the client hung up.
    Over,
    /// STARTTLS was accepted: the handshake follows.
    StartTls,
    /// The smarthost drops the connection on purpose (abort, no FIN).
    Drop,
}

/// The state of one session that survives STARTTLS (RFC 3207 4.2: everything else is reset).
struct Session<'r> {
    connection: u32,
    plan: &'r SmarthostPlan,
    records: &'r SharedRecords,
    random: &'r mut ChaCha20Rng,
    tls: bool,
    authenticated: bool,
    in_transaction: bool,
    recipients: Vec<String>,
    /// Deliveries of this connection whose `250` the device has not yet shown it read.
    unconfirmed: Vec<usize>,
}

impl Session<'_> {
    fn violation(&self, text: String) {
        if std::env::var_os("HOMEMX_SIM_TRACE").is_some() {
            eprintln!("{} ms: smarthost: {text}", embassy_time::Instant::now().as_millis());
        }
        self.records.borrow_mut().cleartext.push(format!("smarthost connection {}: {text}", self.connection));
    }

    /// Serves commands over `stream` until the session ends or STARTTLS is accepted.
    async fn serve<S: Read + Write>(&mut self, stream: &mut S) -> Option<Ending> {
        let mut pending = Vec::new();
        loop {
            let command = peers::line(stream, &mut pending).await?;
            for index in self.unconfirmed.drain(..) {
                self.records.borrow_mut().delivered[index].confirmed = true;
            }
            let text = String::from_utf8_lossy(&command).into_owned();
            let upper = text.to_ascii_uppercase();
            let verb = upper.split(' ').next().unwrap_or_default().to_string();
            if !self.tls && matches!(verb.as_str(), "AUTH" | "MAIL" | "RCPT" | "DATA") {
                self.violation(format!("{verb} in clear, before TLS"));
            }
            match verb.as_str() {
                "EHLO" => {
                    let mut reply = String::from("250-smarthost.example.net\r\n250-PIPELINING\r\n250-SIZE 20971520\r\n250-8BITMIME\r\n");
                    if !self.tls {
                        reply.push_str("250-STARTTLS\r\n");
                    } else if self.plan.plain || self.plan.login {
                        let mechanisms: Vec<&str> = [("PLAIN", self.plan.plain), ("LOGIN", self.plan.login)]
                            .into_iter()
                            .filter_map(|(name, offered)| offered.then_some(name))
                            .collect();
                        reply.push_str(&format!("250-AUTH {}\r\n", mechanisms.join(" ")));
                    }
                    reply.push_str("250 ENHANCEDSTATUSCODES\r\n");
                    stream.write_all(reply.as_bytes()).await.ok()?;
                }
                "HELO" => stream.write_all(b"250 smarthost.example.net\r\n").await.ok()?,
                "STARTTLS" if !self.tls => {
                    stream.write_all(b"220 2.0.0 ready to start TLS\r\n").await.ok()?;
                    stream.flush().await.ok()?;
                    // Whatever the client sent after STARTTLS in clear is dropped (CVE-2011-0411).
                    return Some(Ending::StartTls);
                }
                "STARTTLS" => stream.write_all(b"503 5.5.1 TLS already active\r\n").await.ok()?,
                "AUTH" if !self.tls => stream.write_all(b"538 5.7.11 encryption required for AUTH\r\n").await.ok()?,
                "AUTH" if self.authenticated => stream.write_all(b"503 5.5.1 already authenticated\r\n").await.ok()?,
                "AUTH" => {
                    let accepted = self.authenticate(stream, &text, &mut pending).await?;
                    if accepted {
                        self.authenticated = true;
                        self.records.borrow_mut().smarthost_logins += 1;
                        stream.write_all(b"235 2.7.0 authentication successful\r\n").await.ok()?;
                    } else {
                        stream.write_all(b"535 5.7.8 authentication credentials invalid\r\n").await.ok()?;
                    }
                }
                "MAIL" if !self.tls => stream.write_all(b"530 5.7.0 must issue a STARTTLS command first\r\n").await.ok()?,
                "MAIL" if !self.authenticated => stream.write_all(b"530 5.7.0 authentication required\r\n").await.ok()?,
                "MAIL" => {
                    self.in_transaction = true;
                    self.recipients.clear();
                    stream.write_all(b"250 2.1.0 ok\r\n").await.ok()?;
                }
                "RCPT" if !self.in_transaction => stream.write_all(b"503 5.5.1 MAIL first\r\n").await.ok()?,
                "RCPT" => {
                    let address = text.split_once('<').and_then(|(_, rest)| rest.split_once('>')).map(|(address, _)| address.to_string());
                    self.recipients.push(address.unwrap_or_default());
                    stream.write_all(b"250 2.1.5 ok\r\n").await.ok()?;
                }
                "DATA" if self.recipients.is_empty() => stream.write_all(b"503 5.5.1 RCPT first\r\n").await.ok()?,
                "DATA" => {
                    stream.write_all(b"354 end data with <CR><LF>.<CR><LF>\r\n").await.ok()?;
                    stream.flush().await.ok()?;
                    let roll = self.random.gen_range(0..1000);
                    if roll < self.plan.drop_per_mille / 2 {
                        // Gone in the middle of the data: a few lines read, then the reset.
                        for _ in 0..self.random.gen_range(1..20) {
                            peers::line(stream, &mut pending).await?;
                        }
                        self.records.borrow_mut().smarthost_drops += 1;
                        return Some(Ending::Drop);
                    }
                    let content = peers::read_data(stream, &mut pending).await?;
                    self.in_transaction = false;
                    if roll < self.plan.drop_per_mille {
                        // Gone after the data, before the answer.
                        self.records.borrow_mut().smarthost_drops += 1;
                        return Some(Ending::Drop);
                    }
                    if roll < self.plan.drop_per_mille + self.plan.refuse_per_mille {
                        self.records.borrow_mut().smarthost_refusals += 1;
                        self.recipients.clear();
                        stream.write_all(b"451 4.3.0 try again later\r\n").await.ok()?;
                    } else {
                        self.accept(content);
                        stream.write_all(b"250 2.0.0 queued\r\n").await.ok()?;
                    }
                }
                "RSET" => {
                    self.in_transaction = false;
                    self.recipients.clear();
                    stream.write_all(b"250 2.0.0 ok\r\n").await.ok()?;
                }
                "NOOP" => stream.write_all(b"250 2.0.0 ok\r\n").await.ok()?,
                "QUIT" => {
                    stream.write_all(b"221 2.0.0 bye\r\n").await.ok()?;
                    stream.flush().await.ok()?;
                    return Some(Ending::Over);
                }
                _ => stream.write_all(b"500 5.5.2 unknown command\r\n").await.ok()?,
            }
            stream.flush().await.ok()?;
        }
    }

    /// Keeps the message for every recipient of the transaction.
    fn accept(&mut self, content: Vec<u8>) {
        let mut records = self.records.borrow_mut();
        let boot = records.boot;
        for recipient in self.recipients.drain(..) {
            if std::env::var_os("HOMEMX_SIM_TRACE").is_some() {
                eprintln!("{} ms: smarthost takes a message for {recipient}, {} bytes", embassy_time::Instant::now().as_millis(), content.len());
            }
            self.unconfirmed.push(records.delivered.len());
            records.delivered.push(Delivery {
                recipient,
                content: content.clone(),
                confirmed: false,
                boot,
                connection: self.connection,
                destination: Destination::Smarthost,
            });
        }
    }

    /// Runs the AUTH exchange `command` started; whether the credentials are the account's (a
    /// wrong user or password is recorded as a violation: the device was given the right ones).
    async fn authenticate<S: Read + Write>(&mut self, stream: &mut S, command: &str, pending: &mut Vec<u8>) -> Option<bool> {
        let mut words = command.split(' ').skip(1);
        let mechanism = words.next().unwrap_or_default().to_ascii_uppercase();
        let initial = words.next().map(str::to_string);
        let decode = |text: &str| base64::engine::general_purpose::STANDARD.decode(text.trim()).ok();
        let (user, password) = match mechanism.as_str() {
            "PLAIN" if self.plan.plain => {
                let response = match initial {
                    Some(response) => response,
                    None => {
                        stream.write_all(b"334 \r\n").await.ok()?;
                        stream.flush().await.ok()?;
                        String::from_utf8_lossy(&peers::line(stream, pending).await?).into_owned()
                    }
                };
                // authzid NUL authcid NUL passwd (RFC 4616).
                let decoded = decode(&response).unwrap_or_default();
                let mut parts = decoded.split(|&byte| byte == 0);
                let (_authzid, user, password) = (parts.next(), parts.next(), parts.next());
                (user.map(<[u8]>::to_vec), password.map(<[u8]>::to_vec))
            }
            "LOGIN" if self.plan.login => {
                // "Username:" and "Password:", base64.
                stream.write_all(b"334 VXNlcm5hbWU6\r\n").await.ok()?;
                stream.flush().await.ok()?;
                let user = decode(&String::from_utf8_lossy(&peers::line(stream, pending).await?));
                stream.write_all(b"334 UGFzc3dvcmQ6\r\n").await.ok()?;
                stream.flush().await.ok()?;
                let password = decode(&String::from_utf8_lossy(&peers::line(stream, pending).await?));
                (user, password)
            }
            _ => {
                stream.write_all(b"504 5.5.4 mechanism not offered\r\n").await.ok()?;
                return Some(false);
            }
        };
        let accepted = user.as_deref() == Some(self.plan.user.as_bytes()) && password.as_deref() == Some(self.plan.password.as_bytes());
        if !accepted {
            self.violation(format!("AUTH {mechanism} with wrong credentials (user {:?})", user.map(|user| String::from_utf8_lossy(&user).into_owned())));
        }
        Some(accepted)
    }
}

/// The smarthost: serves connections on its port for ever.
pub async fn smarthost(stack: Stack<'static>, plan: SmarthostPlan, certificates: SmarthostCertificates, mut random: ChaCha20Rng, records: SharedRecords) {
    let mut receive_buffer = vec![0u8; 8192];
    let mut transmit_buffer = vec![0u8; 4096];
    loop {
        let mut socket = TcpSocket::new(stack, &mut receive_buffer, &mut transmit_buffer);
        socket.set_timeout(Some(Duration::from_secs(300)));
        if socket.accept(plan.tls.port()).await.is_err() {
            continue;
        }
        let connection = peers::connection_opened(&records, Destination::Smarthost);
        let ending = serve_connection(&mut socket, connection, &plan, &certificates, &mut random, &records).await;
        if std::env::var_os("HOMEMX_SIM_TRACE").is_some() {
            let how = match ending {
                Some(Ending::Over) => "over",
                Some(Ending::Drop) => "dropped on purpose",
                Some(Ending::StartTls) | None => "ended by the client or an error",
            };
            eprintln!("{} ms: smarthost connection {connection} {how}", embassy_time::Instant::now().as_millis());
        }
        peers::connection_ended(Destination::Smarthost, connection);
        peers::end_connection(&mut socket, matches!(ending, Some(Ending::Drop))).await;
    }
}

async fn serve_connection(
    socket: &mut TcpSocket<'_>,
    connection: u32,
    plan: &SmarthostPlan,
    certificates: &SmarthostCertificates,
    random: &mut ChaCha20Rng,
    records: &SharedRecords,
) -> Option<Ending> {
    let busy = random.gen_range(0..1000) < plan.busy_per_mille;
    let impostor = random.gen_range(0..1000) < plan.impostor_per_mille;
    let mut session = Session {
        connection,
        plan,
        records,
        random,
        tls: false,
        authenticated: false,
        in_transaction: false,
        recipients: Vec::new(),
        unconfirmed: Vec::new(),
    };
    let greeting: &[u8] = if busy { b"421 4.3.2 too busy, try again later\r\n" } else { b"220 smarthost.example.net ESMTP\r\n" };
    if plan.tls == SmarthostTls::StartTls {
        socket.write_all(greeting).await.ok()?;
        if busy {
            records.borrow_mut().smarthost_refusals += 1;
            return Some(Ending::Over);
        }
        match session.serve(socket).await? {
            Ending::StartTls => {}
            other => return Some(other),
        }
    }
    let config = if impostor { &certificates.impostor } else { &certificates.genuine };
    if impostor {
        records.borrow_mut().smarthost_impostors += 1;
    }
    let mut stream = match TlsStream::accept(&mut *socket, config.clone()).await {
        Ok(stream) => stream,
        Err(error) => {
            if std::env::var_os("HOMEMX_SIM_TRACE").is_some() {
                eprintln!("{} ms: smarthost connection {connection}: TLS handshake failed: {error:?}", embassy_time::Instant::now().as_millis());
            }
            return None;
        }
    };
    if impostor {
        // The device must refuse the certificate (its alert ends the handshake, or the first
        // read). Anything it sent instead is a violation (it would have gone to an impostor).
        let mut buffer = [0u8; 64];
        if let Ok(count @ 1..) = stream.read(&mut buffer).await {
            session.violation(format!("sent {count} bytes to an impostor whose certificate names another host"));
        }
        return Some(Ending::Drop);
    }
    session.tls = true;
    records.borrow_mut().smarthost_tls_sessions += 1;
    if plan.tls == SmarthostTls::Implicit {
        stream.write_all(greeting).await.ok()?;
        if busy {
            records.borrow_mut().smarthost_refusals += 1;
            let _ = stream.close().await;
            return Some(Ending::Over);
        }
    }
    let ending = session.serve(&mut stream).await;
    if matches!(ending, Some(Ending::Drop)) {
        stream.transport().abort();
    } else {
        let _ = stream.close().await;
    }
    ending
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::rc::Rc;

    use rand_core::SeedableRng;

    use super::*;
    use crate::peers::Records;
    use crate::tls_peer::testing::{pipe, PipeEnd};

    fn plan() -> SmarthostPlan {
        SmarthostPlan {
            tls: SmarthostTls::StartTls,
            plain: true,
            login: true,
            user: "user@provider.example".into(),
            password: "secret password".into(),
            busy_per_mille: 0,
            refuse_per_mille: 0,
            drop_per_mille: 0,
            impostor_per_mille: 0,
        }
    }

    /// Sends `command` (unless empty) and reads the whole reply.
    async fn say(end: &mut PipeEnd, pending: &mut Vec<u8>, command: &str) -> String {
        if !command.is_empty() {
            end.write_all(command.as_bytes()).await.unwrap();
        }
        let mut reply = String::new();
        loop {
            let line = String::from_utf8(peers::line(end, pending).await.expect("a reply")).unwrap();
            reply.push_str(&line);
            reply.push('\n');
            if line.as_bytes().get(3) != Some(&b'-') {
                return reply;
            }
        }
    }

    /// Runs a session (inside TLS or not) against the client `script`; what it ended with.
    fn session<F: core::future::Future<Output = ()>>(tls: bool, records: &SharedRecords, script: impl FnOnce(PipeEnd) -> F) -> Option<Ending> {
        let plan = plan();
        let mut random = ChaCha20Rng::seed_from_u64(1);
        let (mut server_end, client_end) = pipe();
        let mut session = Session {
            connection: 1,
            plan: &plan,
            records,
            random: &mut random,
            tls,
            authenticated: false,
            in_transaction: false,
            recipients: Vec::new(),
            unconfirmed: Vec::new(),
        };
        let (ending, ()) = embassy_futures::block_on(embassy_futures::join::join(session.serve(&mut server_end), script(client_end)));
        ending
    }

    #[test]
    fn in_clear_it_offers_starttls_only_and_records_what_must_wait_for_tls() {
        let records: SharedRecords = Rc::new(RefCell::new(Records::default()));
        let ending = session(false, &records, |mut end| async move {
            let mut pending = Vec::new();
            let capabilities = say(&mut end, &mut pending, "EHLO device.example\r\n").await;
            assert!(capabilities.contains("STARTTLS") && !capabilities.contains("AUTH"), "{capabilities}");
            assert!(say(&mut end, &mut pending, "AUTH PLAIN AHVzZXIAc2VjcmV0\r\n").await.starts_with("538"));
            assert!(say(&mut end, &mut pending, "MAIL FROM:<a@home.example>\r\n").await.starts_with("530"));
            assert!(say(&mut end, &mut pending, "STARTTLS\r\n").await.starts_with("220"));
        });
        assert!(matches!(ending, Some(Ending::StartTls)));
        let cleartext = records.borrow().cleartext.clone();
        assert_eq!(cleartext, ["smarthost connection 1: AUTH in clear, before TLS", "smarthost connection 1: MAIL in clear, before TLS"]);
    }

    #[test]
    fn inside_tls_it_takes_a_login_and_keeps_the_message_byte_exact() {
        let records: SharedRecords = Rc::new(RefCell::new(Records::default()));
        let ending = session(true, &records, |mut end| async move {
            let mut pending = Vec::new();
            let capabilities = say(&mut end, &mut pending, "EHLO device.example\r\n").await;
            assert!(capabilities.contains("AUTH PLAIN LOGIN") && !capabilities.contains("STARTTLS"), "{capabilities}");
            assert!(say(&mut end, &mut pending, "MAIL FROM:<a@home.example>\r\n").await.starts_with("530"), "login first");
            // LOGIN with a wrong password, then PLAIN with the right one.
            assert!(say(&mut end, &mut pending, "AUTH LOGIN\r\n").await.starts_with("334"));
            assert!(say(&mut end, &mut pending, "dXNlckBwcm92aWRlci5leGFtcGxl\r\n").await.starts_with("334"));
            assert!(say(&mut end, &mut pending, "d3Jvbmc=\r\n").await.starts_with("535"));
            let plain = base64::engine::general_purpose::STANDARD.encode(b"\0user@provider.example\0secret password");
            assert!(say(&mut end, &mut pending, &format!("AUTH PLAIN {plain}\r\n")).await.starts_with("235"));
            assert!(say(&mut end, &mut pending, "MAIL FROM:<a@home.example>\r\n").await.starts_with("250"));
            assert!(say(&mut end, &mut pending, "RCPT TO:<carol@elsewhere.example>\r\n").await.starts_with("250"));
            assert!(say(&mut end, &mut pending, "DATA\r\n").await.starts_with("354"));
            assert!(say(&mut end, &mut pending, "Subject: s\r\n\r\n..dot\r\nend\r\n.\r\n").await.starts_with("250"));
            assert!(say(&mut end, &mut pending, "QUIT\r\n").await.starts_with("221"));
        });
        assert!(matches!(ending, Some(Ending::Over)));
        let records = records.borrow();
        assert_eq!(records.cleartext, ["smarthost connection 1: AUTH LOGIN with wrong credentials (user Some(\"user@provider.example\"))"]);
        assert_eq!(records.smarthost_logins, 1);
        let delivery = &records.delivered[0];
        assert_eq!((delivery.recipient.as_str(), delivery.destination, delivery.confirmed), ("carol@elsewhere.example", Destination::Smarthost, true));
        assert_eq!(delivery.content, b"Subject: s\r\n\r\n.dot\r\nend\r\n");
    }
}
