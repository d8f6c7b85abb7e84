//! A private Dovecot instance (Debian's `dovecot-core` + `dovecot-pop3d`) for the end-to-end
//! tests: the configuration is generated from `qemu/peers/dovecot/dovecot.conf.template` and
//! includes nothing from `/etc`; passwd-file, Maildir, base, state and log are in a
//! [`PeerDirectory`] under the system temp dir (the `dovecot` and mail users must reach them),
//! copied to the test's run directory when it stops. The master runs as root in the
//! foreground (`dovecot -F -c ...`), inside the test's network namespace when one is given;
//! mail processes run as `nobody`; it is stopped by its PID.
//!
//! Two uses: the backup MX POP3 server ([`crate::backup_mx`]) and the authentication service
//! behind the Postfix smarthost's SASL socket ([`crate::postfix_smarthost`]).

use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::peer_directory::PeerDirectory;
use crate::provider::READY_TIMEOUT;
use crate::Result;

/// The configuration template (placeholders `@NAME@`).
const TEMPLATE: &str = include_str!("../peers/dovecot/dovecot.conf.template");

/// Unix socket paths are limited to 108 bytes; Dovecot's longest below `base_dir` is about 30.
const MAX_BASE_DIR: usize = 70;

static INSTANCES: AtomicU32 = AtomicU32::new(0);

/// The Dovecot executable (Debian's; `dovecot` on PATH elsewhere).
fn dovecot() -> &'static str {
    if Path::new("/usr/sbin/dovecot").exists() {
        "/usr/sbin/dovecot"
    } else {
        "dovecot"
    }
}

/// The uid and gid of the system account `name`, if it exists.
pub(crate) fn account(name: &str) -> Option<(u32, u32)> {
    let name = std::ffi::CString::new(name).ok()?;
    // SAFETY: getpwnam with a NUL-terminated name; the result is read at once, single use.
    let entry = unsafe { libc::getpwnam(name.as_ptr()) };
    if entry.is_null() {
        None
    } else {
        // SAFETY: non-null entry returned by getpwnam just above.
        Some(unsafe { ((*entry).pw_uid, (*entry).pw_gid) })
    }
}

/// The unprivileged account the mail processes run as: `nobody` and its group.
fn mail_account() -> (u32, u32) {
    account("nobody").unwrap_or((65534, 65534))
}

pub(crate) fn chown(path: &Path, uid: u32, gid: u32) -> Result<()> {
    std::os::unix::fs::chown(path, Some(uid), Some(gid)).map_err(|error| format!("chown {}: {error}", path.display()).into())
}

/// Refuses user names and passwords that cannot go into a passwd-file line (`what` names the
/// value in the error; one ending in "user" is a user name, where whitespace is refused too).
pub(crate) fn check_passwd_text(what: &str, value: &str) -> Result<()> {
    let forbidden = |c: char| c == ':' || c.is_control() || (what.ends_with("user") && c.is_whitespace());
    if value.is_empty() || value.chars().any(forbidden) {
        return Err(format!("{what} {value:?} cannot go into a passwd-file").into());
    }
    Ok(())
}

/// What the instance serves.
pub(crate) enum Service {
    /// POP3 on `address`: plain POP3 on `pop3_port`, POP3S on `pop3s_port` (0: none); with a
    /// `certificate` (chain, key) TLS 1.3 only and no login before TLS, without one no TLS
    /// and plaintext login; ready when `address:port` listens.
    Pop3 { address: Ipv4Addr, pop3_port: u16, pop3s_port: u16, certificate: Option<(PathBuf, PathBuf)> },
    /// Only authentication, on the Unix socket `socket` owned by the system account `owner`
    /// and its group (mode 0600): what Postfix's `smtpd_sasl_type = dovecot` talks to; ready
    /// when it exists.
    Authentication { socket: PathBuf, owner: &'static str },
}

/// When the instance is ready.
enum Readiness {
    /// A TCP socket listens on this `ADDRESS:PORT`.
    Listening(String),
    /// This Unix socket exists.
    Socket(PathBuf),
}

/// A running private Dovecot.
pub(crate) struct Dovecot {
    namespace: Option<String>,
    /// Where its log and configuration are copied when it stops.
    record: PathBuf,
    maildir: PathBuf,
    uid: u32,
    gid: u32,
    ready: Readiness,
    child: Option<Child>,
    // Last: removed after the process has stopped.
    directory: PeerDirectory,
}

impl Dovecot {
    /// Writes the configuration, the passwd-file with `users` (user, password) and the
    /// Maildir into a fresh [`PeerDirectory`], starts Dovecot inside `namespace` (or on the
    /// host) and waits until it is ready. `record` (the test's directory) receives copies of
    /// the log and configuration.
    pub(crate) fn start(namespace: Option<&str>, service: Service, users: &[(&str, &str)], record: &Path) -> Result<Self> {
        for (user, password) in users {
            check_passwd_text("Dovecot user", user)?;
            check_passwd_text("Dovecot password", password)?;
        }
        std::fs::create_dir_all(record)?;
        let directory = PeerDirectory::create("dovecot")?;
        let (uid, gid) = mail_account();

        // Home and Maildir belong to the mail account; the rest stays root's.
        let home = directory.join("home");
        let maildir = home.join("Maildir");
        for path in [&home, &maildir, &maildir.join("new"), &maildir.join("cur"), &maildir.join("tmp")] {
            std::fs::create_dir_all(path)?;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))?;
            chown(path, uid, gid)?;
        }
        let state = directory.subdirectory("state", 0o755)?;
        let base_dir = directory.subdirectory("base", 0o755)?;
        if base_dir.as_os_str().len() > MAX_BASE_DIR {
            return Err(format!("{} is too long for Dovecot's Unix sockets: point TMPDIR at a shorter path", base_dir.display()).into());
        }
        let passwd = directory.join("passwd");
        let lines: String = users.iter().map(|(user, password)| format!("{user}:{{PLAIN}}{password}:{uid}:{gid}::{}::\n", home.display())).collect();
        std::fs::write(&passwd, lines)?;
        // The auth process runs as the `dovecot` user and reads it.
        std::fs::set_permissions(&passwd, std::fs::Permissions::from_mode(0o644))?;

        let (protocols, address, pop3_port, pop3s_port, tls, auth_listener, ready) = match service {
            Service::Pop3 { address, pop3_port, pop3s_port, certificate } => {
                let tls = match certificate {
                    None => "ssl = no\ndisable_plaintext_auth = no\n".to_string(),
                    Some((chain, key)) => {
                        let (chain, key) = directory.install_certificate("tls", &chain, &key)?;
                        format!(
                            "ssl = required\nssl_cert = <{}\nssl_key = <{}\nssl_min_protocol = TLSv1.3\ndisable_plaintext_auth = yes\n",
                            chain.display(),
                            key.display()
                        )
                    }
                };
                let port = if pop3s_port != 0 { pop3s_port } else { pop3_port };
                ("pop3", address, pop3_port, pop3s_port, tls, String::new(), Readiness::Listening(format!("{address}:{port}")))
            }
            Service::Authentication { socket, owner } => {
                let listener = format!("  unix_listener {} {{\n    mode = 0600\n    user = {owner}\n    group = {owner}\n  }}", socket.display());
                ("none", Ipv4Addr::LOCALHOST, 0, 0, "ssl = no\n".to_string(), listener, Readiness::Socket(socket))
            }
        };
        let instance = INSTANCES.fetch_add(1, Ordering::Relaxed);
        let text = TEMPLATE
            .replace("@PROTOCOLS@", protocols)
            .replace("@ADDRESS@", &address.to_string())
            .replace("@POP3_PORT@", &pop3_port.to_string())
            .replace("@POP3S_PORT@", &pop3s_port.to_string())
            .replace("@BASE_DIR@", &base_dir.display().to_string())
            .replace("@STATE_DIR@", &state.display().to_string())
            .replace("@INSTANCE@", &format!("homemx-dovecot-{}-{instance}", std::process::id()))
            .replace("@LOG@", &directory.join("dovecot.log").display().to_string())
            .replace("@PASSWD@", &passwd.display().to_string())
            .replace("@MAILDIR@", &maildir.display().to_string())
            .replace("@UID@", &uid.to_string())
            .replace("@GID@", &gid.to_string())
            .replace("@AUTH_LISTENER@", &auth_listener)
            .replace("@TLS@", &tls);
        std::fs::write(directory.join("dovecot.conf"), text)?;

        let mut server = Dovecot {
            namespace: namespace.map(str::to_string),
            record: record.to_path_buf(),
            maildir,
            uid,
            gid,
            ready,
            child: None,
            directory,
        };
        server.run()?;
        Ok(server)
    }

    /// Starts the master process and waits until it is ready.
    pub(crate) fn run(&mut self) -> Result<()> {
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
            if self.is_ready() {
                return Ok(());
            }
            let exited = match self.child.as_mut() {
                Some(child) => child.try_wait()?,
                None => None,
            };
            if let Some(status) = exited {
                self.child = None;
                return Err(format!("dovecot exited before it was ready ({status}): {}{}", self.stderr().trim(), self.log().trim()).into());
            }
            if Instant::now() > deadline {
                self.stop();
                return Err(format!("dovecot was not ready within {READY_TIMEOUT:?}: {}", self.log()).into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn is_ready(&self) -> bool {
        match &self.ready {
            Readiness::Listening(listen) => self.listening(listen),
            Readiness::Socket(socket) => socket.exists(),
        }
    }

    /// Whether a TCP socket listens on `listen` (checked with `ss`, inside the namespace if
    /// any, so readiness costs no connection in Dovecot's log).
    fn listening(&self, listen: &str) -> bool {
        let mut command = match &self.namespace {
            Some(namespace) => {
                let mut command = Command::new("ip");
                command.args(["netns", "exec", namespace, "ss"]);
                command
            }
            None => Command::new("ss"),
        };
        let port = listen.rsplit(':').next().unwrap_or_default();
        command.args(["-Hltn", &format!("sport = :{port}")]);
        command
            .output()
            .map(|output| String::from_utf8_lossy(&output.stdout).split_whitespace().any(|field| field == listen))
            .unwrap_or(false)
    }

    /// The master's process id.
    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Its working directory (under the system temp dir).
    pub(crate) fn directory(&self) -> &Path {
        self.directory.path()
    }

    /// The user's Maildir.
    pub(crate) fn maildir(&self) -> &Path {
        &self.maildir
    }

    /// The mail account (uid, gid) that owns the Maildir.
    pub(crate) fn mail_owner(&self) -> (u32, u32) {
        (self.uid, self.gid)
    }

    /// Dovecot's log so far (master, login, auth and pop3 processes).
    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.directory.join("dovecot.log")).unwrap_or_default()
    }

    /// What the master wrote on stderr (start-up errors).
    pub(crate) fn stderr(&self) -> String {
        std::fs::read_to_string(self.directory.join("stderr.txt")).unwrap_or_default()
    }

    /// Stops Dovecot and starts it again with the same configuration and Maildir.
    pub(crate) fn restart(&mut self) -> Result<()> {
        self.stop();
        // Login processes may hold the listening socket a moment longer than the master.
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.is_ready() && Instant::now() < deadline {
            if let Readiness::Socket(socket) = &self.ready {
                let _ = std::fs::remove_file(socket);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.run()
    }

    /// Stops it: SIGTERM to the master's PID (it ends its children), then SIGKILL if it has
    /// not exited within 5 s. Its log and configuration are copied to the record directory.
    pub(crate) fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: signalling the process this harness started, by its PID.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
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
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        self.directory.keep(&["dovecot.log", "dovecot.conf", "stderr.txt"], &self.record);
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        self.stop();
    }
}
