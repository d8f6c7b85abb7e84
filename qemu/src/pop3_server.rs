//! A POP3 server that serves its maildrop byte for byte (`qemu/peers/pop3_server.py`): the
//! backup MX for tests that need mail Dovecot would rewrite (bare LF or bare CR line ends).
//! STLS or implicit TLS 1.3 with a test-CA leaf; USER/PASS only inside TLS; messages are the
//! files `<directory>/maildrop/*.eml`, their UIDL the file stem; a `+OK` to QUIT moves the
//! deleted ones to `maildrop/deleted/`. Runs inside the test's namespace (or on loopback), on
//! an address [`crate::provider::address_allowed`] allows, and is stopped by PID on drop.

use std::ffi::OsString;
use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};

use crate::provider::{address_allowed, Leaf, PeerProcess};
use crate::Result;

/// How the [`Pop3Server`] offers TLS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pop3Tls {
    /// Plain POP3 upgraded with STLS.
    StartTls,
    /// TLS from the first byte.
    Implicit,
}

/// The byte-for-byte POP3 server.
pub struct Pop3Server {
    process: PeerProcess,
    maildrop: PathBuf,
}

impl Deref for Pop3Server {
    type Target = PeerProcess;
    fn deref(&self) -> &PeerProcess {
        &self.process
    }
}

impl DerefMut for Pop3Server {
    fn deref_mut(&mut self) -> &mut PeerProcess {
        &mut self.process
    }
}

impl Pop3Server {
    /// Starts it on `listen` (`ADDRESS:PORT`) with the one mailbox `user`/`password`,
    /// presenting `leaf`, its files in `directory`.
    pub fn start(namespace: Option<&str>, listen: &str, tls: Pop3Tls, leaf: &Leaf, user: &str, password: &str, directory: &Path) -> Result<Self> {
        let address: std::net::SocketAddrV4 = listen.parse().map_err(|_| format!("{listen:?} is not IPv4-ADDRESS:PORT"))?;
        if !address_allowed(namespace.is_some(), *address.ip()) {
            return Err(format!("refusing {listen}: not an address a test peer may use here").into());
        }
        let maildrop = directory.join("maildrop");
        std::fs::create_dir_all(&maildrop)?;
        let mode = match tls {
            Pop3Tls::StartTls => "starttls",
            Pop3Tls::Implicit => "implicit",
        };
        let arguments: Vec<OsString> = vec![
            "--listen".into(),
            listen.into(),
            "--maildrop".into(),
            maildrop.clone().into(),
            "--user".into(),
            user.into(),
            "--password".into(),
            password.into(),
            "--cert".into(),
            leaf.chain.clone().into(),
            "--key".into(),
            leaf.key.clone().into(),
            "--tls-mode".into(),
            mode.into(),
        ];
        let process = PeerProcess::start(namespace, "pop3_server.py", arguments, directory)?;
        Ok(Pop3Server { process, maildrop })
    }

    /// Puts `message` into the maildrop as `<uidl>.eml`, exactly these bytes.
    pub fn deliver(&self, uidl: &str, message: &[u8]) -> Result<()> {
        let temporary = self.maildrop.join(format!("{uidl}.tmp"));
        std::fs::write(&temporary, message)?;
        std::fs::rename(&temporary, self.maildrop.join(format!("{uidl}.eml")))?;
        Ok(())
    }

    /// The UIDLs still in the maildrop (not deleted by a QUIT), in name order.
    pub fn remaining(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.maildrop)
            .into_iter()
            .flatten()
            .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
            .filter_map(|name| name.strip_suffix(".eml").map(str::to_string))
            .collect();
        names.sort();
        names
    }
}
