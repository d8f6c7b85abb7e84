//! Postfix as the MX of one domain, for the throughput comparison with the appliance: a
//! private instance of Debian's Postfix ([`crate::postfix_instance`]: own directory, master
//! stopped by its PID) listening on port 25 of one address, accepting mail for one recipient
//! from anyone and delivering it with virtual(8) into a Maildir. Its settings are
//! `qemu/peers/postfix/mx.cf.template`: Debian's defaults but for what keeps the instance to
//! itself (no local delivery, no aliases, no client host name lookup). As with any Postfix,
//! smtpd answers `250` after cleanup has written and fsync'd the queue file.
//!
//! Gives the delivered count (files in the Maildir) and the memory of the master and all its
//! children ([`crate::process_memory`]).

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::dovecot::{account, chown};
use crate::postfix_instance::PostfixInstance;
use crate::process_memory::{tree_memory, TreeMemory};
use crate::Result;

const ROLE_TEMPLATE: &str = include_str!("../peers/postfix/mx.cf.template");
/// The system user the Maildir belongs to (virtual(8) delivers as it).
const MAILDIR_OWNER: &str = "nobody";

/// How to run the [`PostfixMx`].
#[derive(Clone, Debug)]
pub struct PostfixMxConfig {
    /// Where it listens (loopback on the host, a documentation address inside a namespace).
    pub listen: SocketAddrV4,
    /// The domain it is the MX of.
    pub domain: String,
    /// The one recipient (`local@domain`) it accepts mail for.
    pub recipient: String,
    /// `myhostname`.
    pub hostname: String,
}

impl PostfixMxConfig {
    /// The MX of `example.org` for `alice@example.org` on port 25 of `address`.
    pub fn new(address: Ipv4Addr) -> Self {
        PostfixMxConfig {
            listen: SocketAddrV4::new(address, 25),
            domain: "example.org".to_string(),
            recipient: "alice@example.org".to_string(),
            hostname: "mx.example.org".to_string(),
        }
    }
}

/// A running Postfix MX; stopped by PID and its directory removed on drop.
pub struct PostfixMx {
    config: PostfixMxConfig,
    maildir: PathBuf,
    instance: PostfixInstance,
}

impl PostfixMx {
    /// Writes its configuration, starts it inside `namespace` (or on the host's loopback) and
    /// waits until it listens; `record` (the caller's directory) receives copies of its log and
    /// configuration when it stops.
    pub fn start(namespace: Option<&str>, config: &PostfixMxConfig, record: &Path) -> Result<Self> {
        let (local_part, domain) = config.recipient.split_once('@').ok_or("the recipient needs a domain")?;
        let plain = |text: &str| !text.is_empty() && text.chars().all(|character| character.is_ascii_alphanumeric() || ".-_".contains(character));
        if domain != config.domain || !plain(local_part) || !plain(domain) || !plain(&config.hostname) {
            return Err(format!("{:?} is not a plain recipient of {:?}", config.recipient, config.domain).into());
        }
        let instance = PostfixInstance::prepare("postfix-mx", namespace, &[config.listen], record)?;
        let (uid, gid) = account(MAILDIR_OWNER).ok_or("no user nobody")?;
        let mail_directory = instance.directory().subdirectory("mail", 0o700)?;
        chown(&mail_directory, uid, gid)?;
        // virtual(8) creates the mailbox below the base; a trailing slash makes it a Maildir.
        let mailbox = format!("{domain}/{local_part}/Maildir/");
        let role_settings = ROLE_TEMPLATE
            .replace("@DOMAIN@", &config.domain)
            .replace("@RECIPIENT@", &config.recipient)
            .replace("@MAIL_DIRECTORY@", &mail_directory.display().to_string())
            .replace("@MAILBOX@", &mailbox)
            .replace("@UID@", &uid.to_string())
            .replace("@GID@", &gid.to_string());
        let listener = format!("{} inet n - n - - smtpd", config.listen);
        instance.configure(&config.hostname, &role_settings, &listener)?;
        let mut mx = PostfixMx { config: config.clone(), maildir: mail_directory.join(mailbox), instance };
        mx.instance.run()?;
        Ok(mx)
    }

    /// Its configuration.
    pub fn config(&self) -> &PostfixMxConfig {
        &self.config
    }

    /// The recipient's Maildir (created by the first delivery).
    pub fn maildir(&self) -> &Path {
        &self.maildir
    }

    /// Messages delivered to the Maildir so far (`new/` and `cur/`).
    pub fn delivered(&self) -> usize {
        ["new", "cur"].iter().map(|folder| std::fs::read_dir(self.maildir.join(folder)).map_or(0, |entries| entries.count())).sum()
    }

    /// Waits until at least `count` messages are in the Maildir; returns how many are.
    pub fn wait_for_delivered(&self, count: usize, timeout: Duration) -> Result<usize> {
        let deadline = Instant::now() + timeout;
        loop {
            let delivered = self.delivered();
            if delivered >= count {
                return Ok(delivered);
            }
            if Instant::now() > deadline {
                return Err(format!("Postfix delivered {delivered} of {count} messages within {timeout:?}").into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The master's process id.
    pub fn pid(&self) -> Option<u32> {
        self.instance.pid()
    }

    /// The memory of the master and every process below it now.
    pub fn memory(&self) -> Result<TreeMemory> {
        tree_memory(self.pid().ok_or("Postfix is not running")?)
    }

    /// Postfix's log so far.
    pub fn log(&self) -> String {
        self.instance.log()
    }

    /// Stops the master by its PID (see [`crate::postfix_instance`]).
    pub fn stop(&mut self) {
        self.instance.stop();
    }
}
