//! The provider's smarthost as a real Postfix (Debian's `postfix`, 3.7) for the end-to-end
//! certificate tests: TLS 1.3 only with the certificate the test chose, STARTTLS on one port
//! and implicit TLS (`smtpd_tls_wrappermode`) on another, AUTH only inside TLS against a
//! private Dovecot's authentication socket (`smtpd_sasl_type = dovecot`), relaying only for
//! the authenticated client, to the capture peer (`qemu/peers/smarthost.py` without TLS, on
//! the same address) where the test reads each message byte for byte with its envelope.
//!
//! Isolation and process handling are [`crate::postfix_instance`]'s (a private instance in a
//! directory of its own, the master stopped by its PID); this role's settings are
//! `qemu/peers/postfix/smarthost.cf.template`.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::dovecot::{check_passwd_text, Dovecot, Service};
use crate::postfix_instance::PostfixInstance;
use crate::provider::{Leaf, Smarthost, SmarthostConfig, TlsMode, SMARTHOST_NAME};
use crate::Result;

const ROLE_TEMPLATE: &str = include_str!("../peers/postfix/smarthost.cf.template");
/// The name the capture peer greets with (not Postfix's own, or Postfix sees a mail loop).
const CAPTURE_HOSTNAME: &str = "capture.example.net";

/// How to run the [`PostfixSmarthost`].
#[derive(Clone, Debug)]
pub struct PostfixConfig {
    /// The address it listens on (loopback on the host, a documentation address inside a
    /// namespace).
    pub address: Ipv4Addr,
    /// The STARTTLS port (submission style, e.g. 587; 0: none).
    pub starttls_port: u16,
    /// The implicit-TLS port (submissions style, e.g. 465; 0: none).
    pub implicit_port: u16,
    /// The capture peer's port on the same address (where Postfix relays to).
    pub capture_port: u16,
    /// The certificate chain and key it presents (PEM).
    pub certificate: (PathBuf, PathBuf),
    /// The one SASL account (AUTH PLAIN/LOGIN inside TLS).
    pub user: String,
    /// Its password.
    pub password: String,
    /// `myhostname`: the greeting's name.
    pub hostname: String,
}

impl PostfixConfig {
    /// Postfix on `address` with STARTTLS on `starttls_port` and implicit TLS on
    /// `implicit_port`, presenting `leaf`, with the account `user`/`password`; the capture peer
    /// on port 10025 of the same address.
    pub fn new(address: Ipv4Addr, starttls_port: u16, implicit_port: u16, leaf: &Leaf, user: &str, password: &str) -> Self {
        PostfixConfig {
            address,
            starttls_port,
            implicit_port,
            capture_port: 10025,
            certificate: (leaf.chain.clone(), leaf.key.clone()),
            user: user.to_string(),
            password: password.to_string(),
            hostname: SMARTHOST_NAME.to_string(),
        }
    }
}

/// A running private Postfix with its SASL Dovecot and capture peer; all stopped by PID on drop.
pub struct PostfixSmarthost {
    config: PostfixConfig,
    capture: Smarthost,
    // Dropped after the master is stopped (Drop below), the instance's directory last.
    _authentication: Dovecot,
    instance: PostfixInstance,
}

impl PostfixSmarthost {
    /// Starts the capture peer, the SASL Dovecot and Postfix inside `namespace` (or on the
    /// host's loopback) and waits until Postfix listens; `directory` (the test's) receives the
    /// capture's spool and copies of the logs.
    pub fn start(namespace: Option<&str>, config: &PostfixConfig, directory: &Path) -> Result<Self> {
        if config.starttls_port == 0 && config.implicit_port == 0 {
            return Err("the Postfix smarthost needs a STARTTLS or an implicit-TLS port".into());
        }
        check_passwd_text("smarthost user", &config.user)?;
        check_passwd_text("smarthost password", &config.password)?;
        let ports: Vec<SocketAddrV4> =
            [config.starttls_port, config.implicit_port].into_iter().filter(|port| *port != 0).map(|port| SocketAddrV4::new(config.address, port)).collect();
        let instance = PostfixInstance::prepare("postfix", namespace, &ports, directory)?;
        let peer = instance.directory();
        let sasl_directory = peer.subdirectory("sasl", 0o755)?;
        let (chain, key) = peer.install_certificate("tls", &config.certificate.0, &config.certificate.1)?;

        let capture_listen = format!("{}:{}", config.address, config.capture_port);
        let mut capture_config = SmarthostConfig::new(capture_listen.clone(), TlsMode::None);
        capture_config.hostname = CAPTURE_HOSTNAME.to_string();
        let capture = Smarthost::start(namespace, &capture_config, &directory.join("capture"))?;

        let socket = sasl_directory.join("auth");
        let service = Service::Authentication { socket: socket.clone(), owner: "postfix" };
        let authentication = Dovecot::start(None, service, &[(&config.user, &config.password)], &directory.join("sasl-dovecot"))?;

        let listener = |port: u16, implicit: bool| -> String {
            if port == 0 {
                return String::new();
            }
            let mut line = format!("{}:{port} inet n - n - - smtpd", config.address);
            if implicit {
                line.push_str("\n  -o smtpd_tls_wrappermode=yes");
            }
            line
        };
        let listeners = format!("{}\n{}", listener(config.starttls_port, false), listener(config.implicit_port, true));
        let role_settings = ROLE_TEMPLATE
            .replace("@RELAY@", &format!("[{}]:{}", config.address, config.capture_port))
            .replace("@KEY@", &key.display().to_string())
            .replace("@CHAIN@", &chain.display().to_string())
            .replace("@SASL_SOCKET@", &socket.display().to_string());
        instance.configure(&config.hostname, &role_settings, &listeners)?;

        let mut server = PostfixSmarthost { config: config.clone(), capture, _authentication: authentication, instance };
        server.instance.run()?;
        Ok(server)
    }

    /// The master's process id.
    pub fn pid(&self) -> Option<u32> {
        self.instance.pid()
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &PostfixConfig {
        &self.config
    }

    /// Its working directory under the system temp dir (config, queue, data, tls, sasl,
    /// postfix.log), removed on drop.
    pub fn directory(&self) -> &Path {
        self.instance.directory().path()
    }

    /// Postfix's log so far (`maillog_file`).
    pub fn log(&self) -> String {
        self.instance.log()
    }

    /// What the master wrote on stderr.
    pub fn stderr(&self) -> String {
        self.instance.stderr()
    }

    /// The lines of its log containing `text`.
    pub fn log_lines(&self, text: &str) -> Vec<String> {
        self.log().lines().filter(|line| line.contains(text)).map(str::to_string).collect()
    }

    /// TLS sessions smtpd established (`... TLS connection established from ...: TLSv1.3 with
    /// cipher ... server-signature ...`).
    pub fn tls_sessions(&self) -> Vec<String> {
        self.log_lines("TLS connection established from")
    }

    /// Messages submitted after a successful AUTH (`smtpd ... client=..., sasl_method=...,
    /// sasl_username=...`).
    pub fn authenticated_submissions(&self) -> Vec<String> {
        self.log_lines(", sasl_method=")
    }

    /// AUTH attempts the SASL server refused (`SASL PLAIN authentication failed`).
    pub fn failed_authentications(&self) -> Vec<String> {
        self.log_lines("authentication failed")
    }

    /// Waits until the log holds a line containing `text`.
    pub fn wait_for_log(&self, text: &str, timeout: Duration) -> Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(line) = self.log().lines().find(|line| line.contains(text)) {
                return Ok(line.to_string());
            }
            if Instant::now() > deadline {
                return Err(format!("postfix logged no {text:?} within {timeout:?}").into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Every message relayed to the capture peer (bytes as Postfix sent them, after
    /// dot-unstuffing) with its sidecar (envelope), oldest first.
    pub fn messages(&self) -> Vec<(Vec<u8>, Value)> {
        self.capture.messages()
    }

    /// Waits until at least `count` messages reached the capture peer.
    pub fn wait_for_messages(&self, count: usize, timeout: Duration) -> Result<Vec<(Vec<u8>, Value)>> {
        self.capture.wait_for_messages(count, timeout)
    }

    /// Presents `leaf` from now on: stops the master, installs the new chain and key, starts
    /// it again (queue, log and capture stay).
    pub fn restart_with_certificate(&mut self, leaf: &Leaf) -> Result<()> {
        self.stop();
        self.instance.directory().install_certificate("tls", &leaf.chain, &leaf.key)?;
        self.config.certificate = (leaf.chain.clone(), leaf.key.clone());
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.instance.any_listening() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        self.instance.run()
    }

    /// Stops the master by its PID (see [`crate::postfix_instance`]); the log and
    /// configuration are copied to the test's directory.
    pub fn stop(&mut self) {
        self.instance.stop();
    }
}

impl Drop for PostfixSmarthost {
    fn drop(&mut self) {
        self.stop();
    }
}
