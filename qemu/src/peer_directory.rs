//! The working directory of a peer from Debian (Dovecot, Postfix) whose processes drop root
//! and run as a system user (`dovecot`, `postfix`, `nobody`): a fresh directory per peer under
//! the system temp dir, mode 0755, removed on drop. Those users cannot enter the checkout when
//! it sits below a mode-0700 directory (a home directory), so nothing they open may live there;
//! the test's run directory only receives copies of the peer's logs for the record.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use crate::Result;

static DIRECTORIES: AtomicU32 = AtomicU32::new(0);

/// A peer's private directory under the system temp dir; removed on drop.
pub struct PeerDirectory {
    path: PathBuf,
}

/// Whether every directory from `/` down to `path` lets others search it (`o+x`).
fn searchable_by_everyone(path: &Path) -> Result<()> {
    for ancestor in path.ancestors() {
        let mode = std::fs::metadata(ancestor).map_err(|error| format!("{}: {error}", ancestor.display()))?.permissions().mode();
        if mode & 0o001 == 0 {
            return Err(format!(
                "{} (mode {:o}) keeps the peers' system users out of {}: point TMPDIR at a directory everyone may enter",
                ancestor.display(),
                mode & 0o7777,
                path.display()
            )
            .into());
        }
    }
    Ok(())
}

impl PeerDirectory {
    /// Creates `<temp dir>/homemx-<label>-<pid>-<n>` (mode 0755), checking that the peers'
    /// system users can reach it.
    pub fn create(label: &str) -> Result<Self> {
        let number = DIRECTORIES.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("homemx-{label}-{}-{number}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path)?;
        let directory = PeerDirectory { path: std::fs::canonicalize(&path)? };
        std::fs::set_permissions(&directory.path, std::fs::Permissions::from_mode(0o755))?;
        searchable_by_everyone(&directory.path)?;
        Ok(directory)
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `name` inside it.
    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// A subdirectory `name` with `mode` (created if missing).
    pub fn subdirectory(&self, name: &str, mode: u32) -> Result<PathBuf> {
        let path = self.path.join(name);
        std::fs::create_dir_all(&path)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))?;
        Ok(path)
    }

    /// Copies a certificate chain (mode 0644) and its private key (mode 0600, root's) into
    /// `<name>/chain.pem` and `<name>/key.pem`; returns their paths.
    pub fn install_certificate(&self, name: &str, chain: &Path, key: &Path) -> Result<(PathBuf, PathBuf)> {
        let directory = self.subdirectory(name, 0o755)?;
        let (chain_copy, key_copy) = (directory.join("chain.pem"), directory.join("key.pem"));
        std::fs::copy(chain, &chain_copy).map_err(|error| format!("copy {}: {error}", chain.display()))?;
        std::fs::set_permissions(&chain_copy, std::fs::Permissions::from_mode(0o644))?;
        std::fs::copy(key, &key_copy).map_err(|error| format!("copy {}: {error}", key.display()))?;
        std::fs::set_permissions(&key_copy, std::fs::Permissions::from_mode(0o600))?;
        Ok((chain_copy, key_copy))
    }

    /// Copies the files `names` (those that exist) into `record` (the test's run directory).
    pub fn keep(&self, names: &[&str], record: &Path) {
        if std::fs::create_dir_all(record).is_ok() {
            for name in names {
                let _ = std::fs::copy(self.path.join(name), record.join(name));
            }
        }
    }
}

impl Drop for PeerDirectory {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}
