//! A real sending MTA of the internet: a private instance of Debian's Postfix
//! ([`crate::postfix_instance`]: own directory, master stopped by its PID) that takes mail on
//! one address inside the test namespace and relays everything to the appliance's port 25 with
//! `smtp_tls_security_level = encrypt` (a provider's TLS-required policy), optionally limited
//! to some TLS protocols (`smtp_tls_mandatory_protocols`). Its log (`smtp_tls_loglevel = 1`)
//! names the TLS version and cipher of every session: [`PostfixSender::tls_sessions`]. Its
//! settings are `qemu/peers/postfix/sender.cf.template`.
//!
//! Calls: [`crate::postfix_instance`].

use std::net::SocketAddrV4;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::postfix_instance::PostfixInstance;
use crate::Result;

const ROLE_TEMPLATE: &str = include_str!("../peers/postfix/sender.cf.template");

/// How to run the [`PostfixSender`].
#[derive(Clone, Debug)]
pub struct PostfixSenderConfig {
    /// Where it takes mail (a WAN address inside the namespace); it also sends from there, and
    /// only that address may relay through it.
    pub listen: SocketAddrV4,
    /// Where it delivers everything (the appliance's port 25).
    pub relayhost: SocketAddrV4,
    /// `smtp_tls_protocols` and `smtp_tls_mandatory_protocols` (Postfix's syntax, e.g.
    /// `>=TLSv1` or `!SSLv2,!SSLv3,!TLSv1,!TLSv1.1,!TLSv1.3`).
    pub tls_protocols: String,
    /// `myhostname`: the EHLO name.
    pub hostname: String,
    /// Settings appended after the role's (the later wins in `main.cf`), e.g. the `verify`
    /// policy of the ACME test; empty by default.
    pub extra_settings: String,
}

impl PostfixSenderConfig {
    /// Postfix on `listen` relaying to `relayhost` with Postfix's default protocols (TLS 1.3
    /// offered first).
    pub fn new(listen: SocketAddrV4, relayhost: SocketAddrV4) -> Self {
        PostfixSenderConfig { listen, relayhost, tls_protocols: "!SSLv2, !SSLv3".to_string(), hostname: "mta.sender.example".to_string(), extra_settings: String::new() }
    }
}

/// One TLS session in Postfix's log: `… TLS connection established to …: VERSION with cipher
/// CIPHER (…)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsSession {
    /// `Untrusted`, `Anonymous`, `Trusted` or `Verified`.
    pub trust: String,
    /// e.g. `TLSv1.3`.
    pub version: String,
    /// OpenSSL's name, e.g. `TLS_CHACHA20_POLY1305_SHA256`, `ECDHE-ECDSA-CHACHA20-POLY1305`.
    pub cipher: String,
    /// The whole log line.
    pub line: String,
}

/// A running sending Postfix; stopped by PID and its directory removed on drop.
pub struct PostfixSender {
    config: PostfixSenderConfig,
    instance: PostfixInstance,
}

impl PostfixSender {
    /// Writes its configuration, starts it inside `namespace` and waits until it listens;
    /// `record` (the caller's directory) receives copies of its log and configuration at stop.
    pub fn start(namespace: &str, config: &PostfixSenderConfig, record: &Path) -> Result<Self> {
        let allowed = |text: &str| text.chars().all(|character| character.is_ascii_alphanumeric() || "!.,>= ".contains(character));
        if !allowed(&config.tls_protocols) || !allowed(&config.hostname) {
            return Err(format!("{:?} / {:?}: not plain Postfix settings", config.tls_protocols, config.hostname).into());
        }
        let instance = PostfixInstance::prepare("postfix-sender", Some(namespace), &[config.listen], record)?;
        let role_settings = ROLE_TEMPLATE
            .replace("@CLIENT@", &config.listen.ip().to_string())
            .replace("@RELAYHOST@", &format!("[{}]:{}", config.relayhost.ip(), config.relayhost.port()))
            .replace("@PROTOCOLS@", &config.tls_protocols)
            + &config.extra_settings;
        let listener = format!("{} inet n - n - - smtpd", config.listen);
        instance.configure(&config.hostname, &role_settings, &listener)?;
        let mut sender = PostfixSender { config: config.clone(), instance };
        sender.instance.run()?;
        Ok(sender)
    }

    /// Its configuration.
    pub fn config(&self) -> &PostfixSenderConfig {
        &self.config
    }

    /// Postfix's log so far.
    pub fn log(&self) -> String {
        self.instance.log()
    }

    /// The TLS sessions its log names so far, oldest first.
    pub fn tls_sessions(&self) -> Vec<TlsSession> {
        self.log().lines().filter_map(tls_session).collect()
    }

    /// Waits until a log line contains one of `texts`; returns that line.
    pub fn wait_for_log(&self, texts: &[&str], timeout: Duration) -> Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(line) = self.log().lines().find(|line| texts.iter().any(|text| line.contains(text))) {
                return Ok(line.to_string());
            }
            if Instant::now() > deadline {
                return Err(format!("Postfix logged none of {texts:?} within {timeout:?}:\n{}", self.log()).into());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops the master by its PID (see [`crate::postfix_instance`]).
    pub fn stop(&mut self) {
        self.instance.stop();
    }
}

/// Reads Postfix's TLS line: `… smtp[…]: Untrusted TLS connection established to
/// host[addr]:25: TLSv1.3 with cipher TLS_CHACHA20_POLY1305_SHA256 (256/256 bits) …`.
pub fn tls_session(line: &str) -> Option<TlsSession> {
    let (before, after) = line.split_once(" TLS connection established to ")?;
    let trust = before.rsplit(' ').next()?.to_string();
    let (_, rest) = after.split_once("]:")?;
    let (_, rest) = rest.split_once(": ")?;
    let mut words = rest.split_whitespace();
    let version = words.next()?.to_string();
    (words.next()? == "with" && words.next()? == "cipher").then_some(())?;
    let cipher = words.next()?.to_string();
    Some(TlsSession { trust, version, cipher, line: line.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tls_line_gives_version_and_cipher() {
        let line = "Dec  4 17:01:02 mta postfix/smtp[123]: Untrusted TLS connection established to 192.168.77.2[192.168.77.2]:25: \
                    TLSv1.2 with cipher ECDHE-ECDSA-CHACHA20-POLY1305 (256/256 bits) key-exchange X25519 server-signature ECDSA (P-256)";
        let session = tls_session(line).unwrap();
        assert_eq!((session.trust.as_str(), session.version.as_str(), session.cipher.as_str()), ("Untrusted", "TLSv1.2", "ECDHE-ECDSA-CHACHA20-POLY1305"));
        assert_eq!(tls_session("postfix/smtp[1]: connect to 192.168.77.2[192.168.77.2]:25: Connection refused"), None);
    }
}
