//! The homemx end-to-end harness: builds the firmware image, boots it in QEMU on an isolated
//! network, captures its defmt log, talks to it over the network, the serial console and
//! QEMU's monitor, and always tears everything down by PID.
//!
//! Network safety: every machine runs either on QEMU user networking with `restrict=on`
//! (`cargo xtask run --bare`, [`machine::NetworkMode::UserRestricted`]) or on a TAP device
//! inside a network namespace this harness creates and deletes ([`network::IsolatedNetwork`]);
//! peers live in that namespace. Nothing is sent to any other address. On the host, only
//! 127.0.0.1 listens (the demo's status-page forward, [`demo`]).

pub mod backup_mx;
pub mod budgets;
pub mod chain_power_cut;
pub mod demo;
pub mod dyndns_rig;
mod dovecot;
pub mod firmware;
pub mod flash_image;
pub mod gdb;
pub mod instructions;
pub mod log;
pub mod machine;
pub mod network;
pub mod operation_workload;
pub mod owner;
pub mod pebble;
pub mod peer_directory;
pub mod peers;
mod postfix_instance;
pub mod postfix_mx;
pub mod postfix_sender;
pub mod postfix_smarthost;
pub mod pop3_server;
pub mod process_memory;
pub mod provider;
pub mod qmp;
pub mod ram;
pub mod request_signer;
pub mod smtp_load;
pub mod status_page;
pub mod tls_listeners;

/// The error type of the harness: a message that says what went wrong.
pub type Error = Box<dyn std::error::Error + Send + Sync>;
/// The harness's result type.
pub type Result<T> = std::result::Result<T, Error>;

/// The repository's root directory (the harness lives in `qemu/`).
pub fn repository_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("qemu/ has a parent").to_path_buf()
}
