//! The provider's backup MX POP3 server for the end-to-end tests: a private Dovecot instance
//! (Debian's `dovecot-core` + `dovecot-pop3d`) with one passwd-file user and one Maildir.
//! The harness drops messages into the Maildir ([`BackupMx::deliver`]) as the backup MX would
//! after accepting them, the appliance collects them over POP3 (implicit TLS, STLS or, for
//! the negative tests, plaintext only), and the test reads back what is left
//! ([`BackupMx::remaining`]) and what Dovecot logged ([`BackupMx::logins`]).
//!
//! Isolation: a private instance ([`crate::dovecot`]) whose configuration includes nothing
//! from `/etc` and whose files (passwd-file, Maildir, base, state, log, a copy of the
//! certificate) live in a directory of its own under the system temp dir, reachable by the
//! `dovecot` and mail users even when the checkout sits below a mode-0700 home directory; the
//! test's directory gets copies of the log and configuration. The system's Dovecot service is
//! never touched. The master runs as root in the foreground, inside the test's network
//! namespace when one is given; mail processes run as `nobody`. It listens only where
//! [`crate::provider::address_allowed`] allows (loopback on the host, documentation ranges
//! inside a namespace) and is stopped by its PID on drop.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::dovecot::{check_passwd_text, chown, Dovecot, Service};
use crate::provider::{address_allowed, Leaf};
use crate::Result;

static DELIVERIES: AtomicU32 = AtomicU32::new(0);

/// How the POP3 server offers TLS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackupTls {
    /// POP3S: TLS from the first byte (TLS 1.3 only).
    Implicit,
    /// Plain POP3 that offers STLS and refuses USER/PASS/AUTH before it (TLS 1.3 only).
    StartTls,
    /// Plain POP3 without STLS in CAPA at all: plaintext login only.
    NoTls,
}

/// How to run the [`BackupMx`].
#[derive(Clone, Debug)]
pub struct BackupMxConfig {
    /// `ADDRESS:PORT` to listen on (IPv4).
    pub listen: String,
    /// How TLS is offered.
    pub tls: BackupTls,
    /// The certificate chain and key it presents (required unless [`BackupTls::NoTls`]).
    pub certificate: Option<(PathBuf, PathBuf)>,
    /// The one mailbox's user name.
    pub user: String,
    /// Its password.
    pub password: String,
}

impl BackupMxConfig {
    /// A server on `listen` in `tls` mode with the mailbox `user`/`password`, no certificate.
    pub fn new(listen: impl Into<String>, tls: BackupTls, user: &str, password: &str) -> Self {
        BackupMxConfig { listen: listen.into(), tls, certificate: None, user: user.to_string(), password: password.to_string() }
    }

    /// Presents `leaf` (its chain) as the server certificate.
    pub fn with_certificate(mut self, leaf: &Leaf) -> Self {
        self.certificate = Some((leaf.chain.clone(), leaf.key.clone()));
        self
    }
}

/// A running private Dovecot POP3 server, stopped by PID on drop.
pub struct BackupMx {
    config: BackupMxConfig,
    dovecot: Dovecot,
}

impl BackupMx {
    /// Starts Dovecot inside `namespace` (or on the host's loopback) with its files in a
    /// directory of its own under the system temp dir, and waits until it listens; `directory`
    /// (the test's) receives copies of its log and configuration.
    pub fn start(namespace: Option<&str>, config: &BackupMxConfig, directory: &Path) -> Result<Self> {
        let address: std::net::SocketAddrV4 = config.listen.parse().map_err(|_| format!("{:?} is not IPv4-ADDRESS:PORT", config.listen))?;
        if !address_allowed(namespace.is_some(), *address.ip()) || address.ip().is_unspecified() || address.port() == 0 {
            return Err(format!("refusing {}: not an address the backup MX may listen on here", config.listen).into());
        }
        check_passwd_text("backup MX user", &config.user)?;
        check_passwd_text("backup MX password", &config.password)?;
        if config.tls != BackupTls::NoTls && config.certificate.is_none() {
            return Err("the backup MX needs a certificate for TLS".into());
        }
        let (pop3_port, pop3s_port) = match config.tls {
            BackupTls::Implicit => (0, address.port()),
            BackupTls::StartTls | BackupTls::NoTls => (address.port(), 0),
        };
        // Without TLS, any certificate given is not used.
        let certificate = if config.tls == BackupTls::NoTls { None } else { config.certificate.clone() };
        let service = Service::Pop3 { address: *address.ip(), pop3_port, pop3s_port, certificate };
        let dovecot = Dovecot::start(namespace, service, &[(&config.user, &config.password)], directory)?;
        Ok(BackupMx { config: config.clone(), dovecot })
    }

    /// The master's process id.
    pub fn pid(&self) -> Option<u32> {
        self.dovecot.pid()
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &BackupMxConfig {
        &self.config
    }

    /// Its working directory under the system temp dir (dovecot.conf, passwd, dovecot.log,
    /// home/Maildir, state, tls), removed on drop.
    pub fn directory(&self) -> &Path {
        self.dovecot.directory()
    }

    /// The user's Maildir.
    pub fn maildir(&self) -> &Path {
        self.dovecot.maildir()
    }

    /// Puts `message` into the Maildir's `new/` (through `tmp/`, owned by the mail account)
    /// as the backup MX would after accepting it; returns its file name.
    pub fn deliver(&self, message: &[u8]) -> Result<String> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let name = format!(
            "{}.M{}P{}Q{}.homemx-backup-mx",
            now.as_secs(),
            now.subsec_micros(),
            std::process::id(),
            DELIVERIES.fetch_add(1, Ordering::Relaxed)
        );
        let temporary = self.maildir().join("tmp").join(&name);
        std::fs::write(&temporary, message)?;
        std::fs::set_permissions(&temporary, std::fs::Permissions::from_mode(0o600))?;
        let (uid, gid) = self.dovecot.mail_owner();
        chown(&temporary, uid, gid)?;
        std::fs::rename(&temporary, self.maildir().join("new").join(&name))?;
        Ok(name)
    }

    /// The messages still in the mailbox (`new/` and `cur/`, not deleted by a client), in
    /// file-name order.
    pub fn remaining(&self) -> Vec<Vec<u8>> {
        let mut paths: Vec<PathBuf> = ["new", "cur"]
            .iter()
            .flat_map(|folder| std::fs::read_dir(self.maildir().join(folder)).into_iter().flatten())
            .filter_map(|entry| entry.ok().map(|entry| entry.path()))
            .filter(|path| path.is_file())
            .collect();
        paths.sort_by_key(|path| path.file_name().map(|name| name.to_os_string()));
        paths.into_iter().filter_map(|path| std::fs::read(path).ok()).collect()
    }

    /// Dovecot's log so far (master, login, auth and pop3 processes).
    pub fn log(&self) -> String {
        self.dovecot.log()
    }

    /// What the master wrote on stderr (start-up errors).
    pub fn stderr(&self) -> String {
        self.dovecot.stderr()
    }

    /// Successful POP3 logins (`pop3-login: Info: Login: user=<...>`).
    pub fn logins(&self) -> usize {
        self.log().lines().filter(|line| line.contains("pop3-login: Info: Login: ")).count()
    }

    /// Logins the auth process refused (wrong password or unknown user), logged as soon as
    /// the client tried.
    pub fn failed_logins(&self) -> usize {
        self.log()
            .lines()
            .filter(|line| line.contains("auth: Info: passwd-file(") && (line.contains("Password mismatch") || line.contains("unknown user")))
            .count()
    }

    /// Plaintext PASS/AUTH attempts before TLS where TLS is required (refused by the login
    /// process without asking auth: `Login failed: Plaintext authentication disabled`).
    pub fn plaintext_refused(&self) -> usize {
        self.log().lines().filter(|line| line.contains("pop3-login: Info: Login failed: Plaintext authentication disabled")).count()
    }

    /// Every login attempt that sent a password: [`Self::logins`] + [`Self::failed_logins`] +
    /// [`Self::plaintext_refused`].
    pub fn login_attempts(&self) -> usize {
        self.logins() + self.failed_logins() + self.plaintext_refused()
    }

    /// Waits until the log holds a line containing `text`.
    pub fn wait_for_log(&self, text: &str, timeout: Duration) -> Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(line) = self.log().lines().find(|line| line.contains(text)) {
                return Ok(line.to_string());
            }
            if Instant::now() > deadline {
                return Err(format!("dovecot logged no {text:?} within {timeout:?}").into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops Dovecot and starts it again with the same configuration and Maildir (UIDLs
    /// survive: they are kept in the Maildir's `dovecot-uidlist`).
    pub fn restart(&mut self) -> Result<()> {
        self.dovecot.restart()
    }

    /// Stops it: SIGTERM to the master's PID (it ends its children), then SIGKILL if it has
    /// not exited within 5 s. Its files are removed when the value is dropped.
    pub fn stop(&mut self) {
        self.dovecot.stop();
    }
}
