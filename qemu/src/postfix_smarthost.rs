//! The provider's smarthost as a real Postfix (Debian's `postfix`, 3.7) for the end-to-end
//! certificate tests: TLS 1.3 only with the certificate the test chose, STARTTLS on one port
//! and implicit TLS (`smtpd_tls_wrappermode`) on another, AUTH only inside TLS against a
//! private Dovecot's authentication socket (`smtpd_sasl_type = dovecot`), relaying only for
//! the authenticated client, to the capture peer (`qemu/peers/smarthost.py` without TLS, on
//! the same address) where the test reads each message byte for byte with its envelope.
//!
//! Isolation: a private instance whose `config_directory`, `queue_directory` and
//! `data_directory` (configuration from `qemu/peers/postfix/*.template`) live in a directory
//! of its own under the system temp dir (the `postfix` user must reach them; the checkout may
//! sit below a mode-0700 home directory); its log (`maillog_file`) is copied to the test's
//! directory when it stops. The system's Postfix (setup.sh installs it without a
//! configuration) is never touched. The master runs as root in the foreground (`master -d`)
//! as the leader of its own process group, inside the test's network namespace when one is
//! given, and is stopped by its PID (it ends the rest of its group). It listens only where
//! [`crate::provider::address_allowed`] allows.

use std::net::Ipv4Addr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::dovecot::{account, check_passwd_text, chown, Dovecot, Service};
use crate::peer_directory::PeerDirectory;
use crate::provider::{address_allowed, Leaf, Smarthost, SmarthostConfig, TlsMode, READY_TIMEOUT, SMARTHOST_NAME};
use crate::Result;

const MAIN_TEMPLATE: &str = include_str!("../peers/postfix/main.cf.template");
const MASTER_TEMPLATE: &str = include_str!("../peers/postfix/master.cf.template");
/// Debian's Postfix master daemon.
const MASTER: &str = "/usr/lib/postfix/sbin/master";
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
    namespace: Option<String>,
    record: PathBuf,
    child: Option<Child>,
    capture: Smarthost,
    // Dropped after the master is stopped (Drop below), the directory last.
    _authentication: Dovecot,
    directory: PeerDirectory,
}

impl PostfixSmarthost {
    /// Starts the capture peer, the SASL Dovecot and Postfix inside `namespace` (or on the
    /// host's loopback) and waits until Postfix listens; `directory` (the test's) receives the
    /// capture's spool and copies of the logs.
    pub fn start(namespace: Option<&str>, config: &PostfixConfig, directory: &Path) -> Result<Self> {
        if !address_allowed(namespace.is_some(), config.address) || config.address.is_unspecified() {
            return Err(format!("refusing {}: not an address the Postfix smarthost may listen on here", config.address).into());
        }
        if config.starttls_port == 0 && config.implicit_port == 0 {
            return Err("the Postfix smarthost needs a STARTTLS or an implicit-TLS port".into());
        }
        check_passwd_text("smarthost user", &config.user)?;
        check_passwd_text("smarthost password", &config.password)?;
        if !Path::new(MASTER).exists() {
            return Err(format!("{MASTER} is missing: install postfix (host-tools/setup.sh)").into());
        }
        let (postfix_uid, postfix_gid) = account("postfix").ok_or("no postfix user: install postfix (host-tools/setup.sh)")?;
        std::fs::create_dir_all(directory)?;

        let peer = PeerDirectory::create("postfix")?;
        let config_directory = peer.subdirectory("config", 0o755)?;
        let queue_directory = peer.subdirectory("queue", 0o755)?;
        let data_directory = peer.subdirectory("data", 0o700)?;
        chown(&data_directory, postfix_uid, postfix_gid)?;
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
        std::fs::write(
            config_directory.join("master.cf"),
            MASTER_TEMPLATE
                .replace("@STARTTLS_LISTENER@", &listener(config.starttls_port, false))
                .replace("@IMPLICIT_LISTENER@", &listener(config.implicit_port, true)),
        )?;
        std::fs::write(
            config_directory.join("main.cf"),
            MAIN_TEMPLATE
                .replace("@CONFIG_DIRECTORY@", &config_directory.display().to_string())
                .replace("@QUEUE_DIRECTORY@", &queue_directory.display().to_string())
                .replace("@DATA_DIRECTORY@", &data_directory.display().to_string())
                .replace("@LOG@", &peer.join("postfix.log").display().to_string())
                .replace("@DIRECTORY@", &peer.path().display().to_string())
                .replace("@HOSTNAME@", &config.hostname)
                .replace("@ADDRESS@", &config.address.to_string())
                .replace("@RELAY@", &format!("[{}]:{}", config.address, config.capture_port))
                .replace("@KEY@", &key.display().to_string())
                .replace("@CHAIN@", &chain.display().to_string())
                .replace("@SASL_SOCKET@", &socket.display().to_string()),
        )?;
        // Creates the queue's subdirectories with Postfix's owners and modes, and checks the
        // configuration (inside the namespace: the listen address must exist).
        let mut check = match namespace {
            Some(namespace) => {
                let mut command = Command::new("ip");
                command.args(["netns", "exec", namespace, "/usr/sbin/postfix"]);
                command
            }
            None => Command::new("/usr/sbin/postfix"),
        };
        let check = check.arg("-c").arg(&config_directory).arg("check").output()?;
        if !check.status.success() {
            let log = std::fs::read_to_string(peer.join("postfix.log")).unwrap_or_default();
            peer.keep(&["postfix.log"], directory);
            return Err(format!(
                "postfix check failed: {}{}{}",
                String::from_utf8_lossy(&check.stdout).trim(),
                String::from_utf8_lossy(&check.stderr).trim(),
                log.trim()
            )
            .into());
        }

        let mut server = PostfixSmarthost {
            config: config.clone(),
            namespace: namespace.map(str::to_string),
            record: directory.to_path_buf(),
            child: None,
            capture,
            _authentication: authentication,
            directory: peer,
        };
        server.run()?;
        Ok(server)
    }

    fn config_directory(&self) -> PathBuf {
        self.directory.join("config")
    }

    /// Starts the master (in its own process group) and waits until every port listens.
    fn run(&mut self) -> Result<()> {
        let mut command = match &self.namespace {
            Some(namespace) => {
                let mut command = Command::new("ip");
                command.args(["netns", "exec", namespace, MASTER]);
                command
            }
            None => Command::new(MASTER),
        };
        command.arg("-c").arg(self.config_directory()).arg("-d").process_group(0);
        let child = command
            .stdin(Stdio::null())
            .stdout(std::fs::OpenOptions::new().create(true).append(true).open(self.directory.join("stdout.txt"))?)
            .stderr(std::fs::OpenOptions::new().create(true).append(true).open(self.directory.join("stderr.txt"))?)
            .spawn()
            .map_err(|error| format!("cannot start the Postfix master: {error}"))?;
        self.child = Some(child);
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if self.ports().iter().all(|port| self.listening(*port)) {
                return Ok(());
            }
            let exited = match self.child.as_mut() {
                Some(child) => child.try_wait()?,
                None => None,
            };
            if let Some(status) = exited {
                self.child = None;
                return Err(format!("postfix exited before it listened ({status}): {}{}", self.stderr().trim(), self.log().trim()).into());
            }
            if Instant::now() > deadline {
                self.stop();
                return Err(format!("postfix did not listen within {READY_TIMEOUT:?}: {}{}", self.stderr(), self.log()).into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn ports(&self) -> Vec<u16> {
        [self.config.starttls_port, self.config.implicit_port].into_iter().filter(|port| *port != 0).collect()
    }

    /// Whether a TCP socket listens on the address and `port` (checked with `ss`, inside the
    /// namespace if any, so readiness costs no connection in Postfix's log).
    fn listening(&self, port: u16) -> bool {
        let mut command = match &self.namespace {
            Some(namespace) => {
                let mut command = Command::new("ip");
                command.args(["netns", "exec", namespace, "ss"]);
                command
            }
            None => Command::new("ss"),
        };
        command.args(["-Hltn", &format!("sport = :{port}")]);
        let listen = format!("{}:{port}", self.config.address);
        command
            .output()
            .map(|output| String::from_utf8_lossy(&output.stdout).split_whitespace().any(|field| field == listen))
            .unwrap_or(false)
    }

    /// The master's process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &PostfixConfig {
        &self.config
    }

    /// Its working directory under the system temp dir (config, queue, data, tls, sasl,
    /// postfix.log), removed on drop.
    pub fn directory(&self) -> &Path {
        self.directory.path()
    }

    /// Postfix's log so far (`maillog_file`).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.directory.join("postfix.log")).unwrap_or_default()
    }

    /// What the master wrote on stderr.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.directory.join("stderr.txt")).unwrap_or_default()
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
        self.directory.install_certificate("tls", &leaf.chain, &leaf.key)?;
        self.config.certificate = (leaf.chain.clone(), leaf.key.clone());
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.ports().iter().any(|port| self.listening(*port)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        self.run()
    }

    /// Stops the master: SIGTERM to its PID (it ends the rest of its process group), then
    /// SIGKILL to that group if it has not exited within 5 s. The log is copied to the test's
    /// directory.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = child.id() as i32;
            // SAFETY: signalling the process this harness started, by its PID.
            unsafe { libc::kill(pid, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(5);
            let mut exited = false;
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    exited = true;
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            if !exited {
                // SAFETY: the process group this harness created for the master (process_group(0)).
                unsafe { libc::kill(-pid, libc::SIGKILL) };
                let _ = child.wait();
            }
        }
        self.directory.keep(&["postfix.log", "stderr.txt"], &self.record);
        let config = self.config_directory();
        for name in ["main.cf", "master.cf"] {
            let _ = std::fs::copy(config.join(name), self.record.join(name));
        }
    }
}

impl Drop for PostfixSmarthost {
    fn drop(&mut self) {
        self.stop();
    }
}
