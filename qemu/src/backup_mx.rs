//! The provider's backup MX POP3 server for the end-to-end tests: a private Dovecot instance
//! (Debian's `dovecot-core` + `dovecot-pop3d`) with one passwd-file user and one Maildir.
//! The harness drops messages into the Maildir ([`BackupMx::deliver`]) as the backup MX would
//! after accepting them, the appliance collects them over POP3 (implicit TLS, STLS or, for
//! the negative tests, plaintext only), and the test reads back what is left
//! ([`BackupMx::remaining`]) and what Dovecot logged ([`BackupMx::logins`]).
//!
//! Isolation: the configuration is generated from `qemu/peers/dovecot/dovecot.conf.template`
//! and includes nothing from `/etc`; base, state and log paths are in the test's directory;
//! the system's Dovecot service is never touched. The master runs as root in the foreground
//! (`dovecot -F -c ...`), inside the test's network namespace when one is given; mail
//! processes run as `nobody`. It listens only where [`crate::provider::address_allowed`]
//! allows (loopback on the host, documentation ranges inside a namespace) and is stopped by
//! its PID on drop.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::provider::{address_allowed, Leaf, READY_TIMEOUT};
use crate::Result;

/// The configuration template (placeholders `@NAME@`).
const TEMPLATE: &str = include_str!("../peers/dovecot/dovecot.conf.template");

/// Unix socket paths are limited to 108 bytes; Dovecot's longest below `base_dir` is about 30.
const MAX_BASE_DIR: usize = 70;

/// The Dovecot executable (Debian's; `dovecot` on PATH elsewhere).
fn dovecot() -> &'static str {
    if Path::new("/usr/sbin/dovecot").exists() {
        "/usr/sbin/dovecot"
    } else {
        "dovecot"
    }
}

static INSTANCES: AtomicU32 = AtomicU32::new(0);
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
    namespace: Option<String>,
    directory: PathBuf,
    base_dir: PathBuf,
    /// Whether `base_dir` is a short directory in /tmp this value must delete.
    own_base_dir: bool,
    maildir: PathBuf,
    uid: u32,
    gid: u32,
    child: Option<Child>,
}

/// The unprivileged account the mail processes run as: `nobody` and its group.
fn mail_account() -> (u32, u32) {
    // SAFETY: getpwnam with a NUL-terminated name; the result is read at once, single use.
    let entry = unsafe { libc::getpwnam(c"nobody".as_ptr()) };
    if entry.is_null() {
        (65534, 65534)
    } else {
        // SAFETY: non-null entry returned by getpwnam just above.
        unsafe { ((*entry).pw_uid, (*entry).pw_gid) }
    }
}

fn check_text(what: &str, value: &str) -> Result<()> {
    let forbidden = |c: char| c == ':' || c.is_control() || (what == "user" && c.is_whitespace());
    if value.is_empty() || value.chars().any(forbidden) {
        return Err(format!("backup MX {what} {value:?} cannot go into a passwd-file").into());
    }
    Ok(())
}

fn chown(path: &Path, uid: u32, gid: u32) -> Result<()> {
    std::os::unix::fs::chown(path, Some(uid), Some(gid)).map_err(|error| format!("chown {}: {error}", path.display()).into())
}

impl BackupMx {
    /// Writes the configuration, passwd-file and Maildir into `directory`, starts Dovecot
    /// inside `namespace` (or on the host's loopback) and waits until it listens.
    pub fn start(namespace: Option<&str>, config: &BackupMxConfig, directory: &Path) -> Result<Self> {
        let address: std::net::SocketAddrV4 = config.listen.parse().map_err(|_| format!("{:?} is not IPv4-ADDRESS:PORT", config.listen))?;
        if !address_allowed(namespace.is_some(), *address.ip()) || address.ip().is_unspecified() || address.port() == 0 {
            return Err(format!("refusing {}: not an address the backup MX may listen on here", config.listen).into());
        }
        check_text("user", &config.user)?;
        check_text("password", &config.password)?;
        std::fs::create_dir_all(directory)?;
        let directory = std::fs::canonicalize(directory)?;
        let (uid, gid) = mail_account();

        // Home and Maildir belong to the mail account; the test directory stays root's.
        let home = directory.join("home");
        let maildir = home.join("Maildir");
        for path in [&home, &maildir, &maildir.join("new"), &maildir.join("cur"), &maildir.join("tmp")] {
            std::fs::create_dir_all(path)?;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))?;
            chown(path, uid, gid)?;
        }
        for path in [&directory, &directory.join("state")] {
            std::fs::create_dir_all(path)?;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))?;
        }
        let passwd = directory.join("passwd");
        std::fs::write(&passwd, format!("{}:{{PLAIN}}{}:{uid}:{gid}::{}::\n", config.user, config.password, home.display()))?;
        // The auth process runs as the `dovecot` user and reads it.
        std::fs::set_permissions(&passwd, std::fs::Permissions::from_mode(0o644))?;

        let instance = INSTANCES.fetch_add(1, Ordering::Relaxed);
        let mut base_dir = directory.join("base");
        let mut own_base_dir = false;
        if base_dir.as_os_str().len() > MAX_BASE_DIR {
            base_dir = std::env::temp_dir().join(format!("homemx-dovecot-{}-{instance}", std::process::id()));
            own_base_dir = true;
        }
        let _ = std::fs::remove_dir_all(&base_dir);
        std::fs::create_dir_all(&base_dir)?;
        std::fs::set_permissions(&base_dir, std::fs::Permissions::from_mode(0o755))?;

        let tls = match (config.tls, &config.certificate) {
            (BackupTls::NoTls, _) => "ssl = no\ndisable_plaintext_auth = no\n".to_string(),
            (_, Some((chain, key))) => format!(
                "ssl = required\nssl_cert = <{}\nssl_key = <{}\nssl_min_protocol = TLSv1.3\ndisable_plaintext_auth = yes\n",
                chain.display(),
                key.display()
            ),
            (_, None) => return Err("the backup MX needs a certificate for TLS".into()),
        };
        let (pop3_port, pop3s_port) = match config.tls {
            BackupTls::Implicit => (0, address.port()),
            BackupTls::StartTls | BackupTls::NoTls => (address.port(), 0),
        };
        let text = TEMPLATE
            .replace("@ADDRESS@", &address.ip().to_string())
            .replace("@POP3_PORT@", &pop3_port.to_string())
            .replace("@POP3S_PORT@", &pop3s_port.to_string())
            .replace("@BASE_DIR@", &base_dir.display().to_string())
            .replace("@STATE_DIR@", &directory.join("state").display().to_string())
            .replace("@INSTANCE@", &format!("homemx-backup-mx-{}-{instance}", std::process::id()))
            .replace("@LOG@", &directory.join("dovecot.log").display().to_string())
            .replace("@PASSWD@", &passwd.display().to_string())
            .replace("@MAILDIR@", &maildir.display().to_string())
            .replace("@UID@", &uid.to_string())
            .replace("@GID@", &gid.to_string())
            .replace("@TLS@", &tls);
        std::fs::write(directory.join("dovecot.conf"), text)?;

        let mut server = BackupMx {
            config: config.clone(),
            namespace: namespace.map(str::to_string),
            directory,
            base_dir,
            own_base_dir,
            maildir,
            uid,
            gid,
            child: None,
        };
        server.run()?;
        Ok(server)
    }

    /// Starts the master process and waits until the port listens.
    fn run(&mut self) -> Result<()> {
        let mut command = match &self.namespace {
            Some(namespace) => {
                let mut command = Command::new("ip");
                command.args(["netns", "exec", namespace, dovecot()]);
                command
            }
            None => Command::new(dovecot()),
        };
        command.arg("-F").arg("-c").arg(self.directory.join("dovecot.conf"));
        let child = command
            .stdin(Stdio::null())
            .stdout(std::fs::OpenOptions::new().create(true).append(true).open(self.directory.join("stdout.txt"))?)
            .stderr(std::fs::OpenOptions::new().create(true).append(true).open(self.directory.join("stderr.txt"))?)
            .spawn()
            .map_err(|error| format!("cannot start dovecot (install dovecot-core dovecot-pop3d): {error}"))?;
        self.child = Some(child);
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if self.listening() {
                return Ok(());
            }
            let exited = match self.child.as_mut() {
                Some(child) => child.try_wait()?,
                None => None,
            };
            if let Some(status) = exited {
                self.child = None;
                return Err(format!("dovecot exited before it listened ({status}): {}{}", self.stderr().trim(), self.log().trim()).into());
            }
            if Instant::now() > deadline {
                self.stop();
                return Err(format!("dovecot did not listen on {} within {READY_TIMEOUT:?}: {}", self.config.listen, self.log()).into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Whether a TCP socket listens on the configured address (checked with `ss`, inside the
    /// namespace if any, so readiness costs no connection in Dovecot's log).
    fn listening(&self) -> bool {
        let mut command = match &self.namespace {
            Some(namespace) => {
                let mut command = Command::new("ip");
                command.args(["netns", "exec", namespace, "ss"]);
                command
            }
            None => Command::new("ss"),
        };
        let port = self.config.listen.rsplit(':').next().unwrap_or_default();
        command.args(["-Hltn", &format!("sport = :{port}")]);
        command
            .output()
            .map(|output| String::from_utf8_lossy(&output.stdout).split_whitespace().any(|field| field == self.config.listen))
            .unwrap_or(false)
    }

    /// The master's process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &BackupMxConfig {
        &self.config
    }

    /// Its directory (dovecot.conf, passwd, dovecot.log, home/Maildir, state).
    pub fn directory(&self) -> &Path {
        &self.directory
    }

    /// The user's Maildir.
    pub fn maildir(&self) -> &Path {
        &self.maildir
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
        let temporary = self.maildir.join("tmp").join(&name);
        std::fs::write(&temporary, message)?;
        std::fs::set_permissions(&temporary, std::fs::Permissions::from_mode(0o600))?;
        chown(&temporary, self.uid, self.gid)?;
        std::fs::rename(&temporary, self.maildir.join("new").join(&name))?;
        Ok(name)
    }

    /// The messages still in the mailbox (`new/` and `cur/`, not deleted by a client), in
    /// file-name order.
    pub fn remaining(&self) -> Vec<Vec<u8>> {
        let mut paths: Vec<PathBuf> = ["new", "cur"]
            .iter()
            .flat_map(|folder| std::fs::read_dir(self.maildir.join(folder)).into_iter().flatten())
            .filter_map(|entry| entry.ok().map(|entry| entry.path()))
            .filter(|path| path.is_file())
            .collect();
        paths.sort_by_key(|path| path.file_name().map(|name| name.to_os_string()));
        paths.into_iter().filter_map(|path| std::fs::read(path).ok()).collect()
    }

    /// Dovecot's log so far (master, login, auth and pop3 processes).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.directory.join("dovecot.log")).unwrap_or_default()
    }

    /// What the master wrote on stderr (start-up errors).
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.directory.join("stderr.txt")).unwrap_or_default()
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
        self.stop();
        // Login processes may hold the listening socket a moment longer than the master.
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.listening() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        self.run()
    }

    /// Stops it: SIGTERM to the master's PID (it ends its children), then SIGKILL if it has
    /// not exited within 5 s.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: signalling the process this harness started, by its PID.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for BackupMx {
    fn drop(&mut self) {
        self.stop();
        if self.own_base_dir {
            let _ = std::fs::remove_dir_all(&self.base_dir);
        }
    }
}
