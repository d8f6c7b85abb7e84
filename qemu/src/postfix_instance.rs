//! A private Postfix instance (Debian's `postfix`, 3.7): its directory, configuration, master
//! process and log, shared by the harness's Postfix roles (the provider's smarthost in
//! [`crate::postfix_smarthost`], the MX of the throughput comparison in [`crate::postfix_mx`],
//! the sending MTA of the inbound TLS test in [`crate::postfix_sender`]).
//! A role writes its own `main.cf` lines and listeners; this module owns the rest.
//!
//! Isolation: `config_directory`, `queue_directory` and `data_directory` (the common part of
//! the configuration is `qemu/peers/postfix/instance.cf.template`, the services
//! `master.cf.template`) live in a directory of its own under the system temp dir (the
//! `postfix` user must reach them; the checkout may sit below a mode-0700 home directory); its
//! log (`maillog_file`) and configuration are copied to the caller's record directory when it
//! stops. The system's Postfix (setup.sh installs it without a configuration) is never
//! touched. The master runs as root in the foreground (`master -d`) as the leader of its own
//! process group, inside the given network namespace if any, and is stopped by its PID (it
//! ends the rest of its group). It listens only where [`crate::provider::address_allowed`]
//! allows. Calls: [`crate::peer_directory`], [`crate::dovecot`]'s account helpers.

use std::net::SocketAddrV4;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::dovecot::{account, chown};
use crate::peer_directory::PeerDirectory;
use crate::provider::{address_allowed, READY_TIMEOUT};
use crate::Result;

const INSTANCE_TEMPLATE: &str = include_str!("../peers/postfix/instance.cf.template");
const MASTER_TEMPLATE: &str = include_str!("../peers/postfix/master.cf.template");
/// Debian's Postfix master daemon.
const MASTER: &str = "/usr/lib/postfix/sbin/master";

/// `program` on the host, or inside `namespace` through `ip netns exec` (which executes it in
/// place, so the child's PID is the program's).
pub(crate) fn command_in(namespace: Option<&str>, program: &str) -> Command {
    match namespace {
        Some(namespace) => {
            let mut command = Command::new("ip");
            command.args(["netns", "exec", namespace, program]);
            command
        }
        None => Command::new(program),
    }
}

/// A prepared or running private Postfix; stopped by PID and its directory removed on drop.
pub(crate) struct PostfixInstance {
    namespace: Option<String>,
    record: PathBuf,
    listeners: Vec<SocketAddrV4>,
    child: Option<Child>,
    directory: PeerDirectory,
}

impl PostfixInstance {
    /// Creates the instance's directory (`config`, `queue`, `data`) for listeners on
    /// `listeners` (all on one address), inside `namespace` or on the host's loopback;
    /// `record` (the caller's) receives copies of the log and configuration at stop.
    pub(crate) fn prepare(label: &str, namespace: Option<&str>, listeners: &[SocketAddrV4], record: &Path) -> Result<Self> {
        let address = *listeners.first().ok_or("a Postfix instance needs a listener")?.ip();
        for listener in listeners {
            if *listener.ip() != address || !address_allowed(namespace.is_some(), address) || address.is_unspecified() {
                return Err(format!("refusing {listener}: not an address a Postfix instance may listen on here").into());
            }
        }
        if !Path::new(MASTER).exists() {
            return Err(format!("{MASTER} is missing: install postfix (host-tools/setup.sh)").into());
        }
        let (postfix_uid, postfix_gid) = account("postfix").ok_or("no postfix user: install postfix (host-tools/setup.sh)")?;
        std::fs::create_dir_all(record)?;
        let directory = PeerDirectory::create(label)?;
        directory.subdirectory("config", 0o755)?;
        directory.subdirectory("queue", 0o755)?;
        let data_directory = directory.subdirectory("data", 0o700)?;
        chown(&data_directory, postfix_uid, postfix_gid)?;
        Ok(PostfixInstance { namespace: namespace.map(str::to_string), record: record.to_path_buf(), listeners: listeners.to_vec(), child: None, directory })
    }

    /// Its working directory under the system temp dir (removed on drop).
    pub(crate) fn directory(&self) -> &PeerDirectory {
        &self.directory
    }

    fn config_directory(&self) -> PathBuf {
        self.directory.join("config")
    }

    /// Writes `main.cf` (the common part with `hostname`, then the role's `role_settings`) and
    /// `master.cf` (the common services with the role's `listeners`, master.cf lines), and has
    /// `postfix check` create the queue's subdirectories with Postfix's owners and modes.
    pub(crate) fn configure(&self, hostname: &str, role_settings: &str, listeners: &str) -> Result<()> {
        let config_directory = self.config_directory();
        let common = INSTANCE_TEMPLATE
            .replace("@CONFIG_DIRECTORY@", &config_directory.display().to_string())
            .replace("@QUEUE_DIRECTORY@", &self.directory.join("queue").display().to_string())
            .replace("@DATA_DIRECTORY@", &self.directory.join("data").display().to_string())
            .replace("@LOG@", &self.directory.join("postfix.log").display().to_string())
            .replace("@DIRECTORY@", &self.directory.path().display().to_string())
            .replace("@HOSTNAME@", hostname)
            .replace("@ADDRESS@", &self.listeners[0].ip().to_string());
        std::fs::write(config_directory.join("main.cf"), format!("{common}\n{role_settings}"))?;
        std::fs::write(config_directory.join("master.cf"), MASTER_TEMPLATE.replace("@LISTENERS@", listeners))?;
        // Inside the namespace: the listen address must exist there.
        let check = command_in(self.namespace.as_deref(), "/usr/sbin/postfix").arg("-c").arg(&config_directory).arg("check").output()?;
        if !check.status.success() {
            self.directory.keep(&["postfix.log"], &self.record);
            return Err(format!(
                "postfix check failed: {}{}{}",
                String::from_utf8_lossy(&check.stdout).trim(),
                String::from_utf8_lossy(&check.stderr).trim(),
                self.log().trim()
            )
            .into());
        }
        Ok(())
    }

    /// Starts the master (in its own process group) and waits until every listener listens.
    pub(crate) fn run(&mut self) -> Result<()> {
        let mut command = command_in(self.namespace.as_deref(), MASTER);
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
            if self.all_listening() {
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

    fn all_listening(&self) -> bool {
        self.listeners.iter().all(|listener| self.listening(*listener))
    }

    /// Whether any listener still listens.
    pub(crate) fn any_listening(&self) -> bool {
        self.listeners.iter().any(|listener| self.listening(*listener))
    }

    /// Whether a TCP socket listens on `listener` (checked with `ss`, inside the namespace if
    /// any, so readiness costs no connection in Postfix's log).
    fn listening(&self, listener: SocketAddrV4) -> bool {
        let mut command = command_in(self.namespace.as_deref(), "ss");
        command.args(["-Hltn", &format!("sport = :{}", listener.port())]);
        let listen = listener.to_string();
        command.output().map(|output| String::from_utf8_lossy(&output.stdout).split_whitespace().any(|field| field == listen)).unwrap_or(false)
    }

    /// The master's process id while it runs.
    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Postfix's log so far (`maillog_file`).
    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.directory.join("postfix.log")).unwrap_or_default()
    }

    /// What the master wrote on stderr.
    pub(crate) fn stderr(&self) -> String {
        std::fs::read_to_string(self.directory.join("stderr.txt")).unwrap_or_default()
    }

    /// Stops the master: SIGTERM to its PID (it ends the rest of its process group), then
    /// SIGKILL to that group if it has not exited within 5 s. The log and configuration are
    /// copied to the record directory.
    pub(crate) fn stop(&mut self) {
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

impl Drop for PostfixInstance {
    fn drop(&mut self) {
        self.stop();
    }
}
