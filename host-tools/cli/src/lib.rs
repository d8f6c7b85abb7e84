//! `homemx`, the owner's CLI: arguments, dispatch and exit codes. Each subcommand lives in
//! [`commands`]; the protocol is `homemx-wire`'s.

pub mod anchor;
pub mod commands;
pub mod config_file;
pub mod console;
pub mod error;
pub mod init;
pub mod keyfile;
pub mod link;
pub mod passphrase;
pub mod progress;
pub mod tls;
pub mod users;

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::error::ExitCode;
use crate::link::DeviceAddress;

/// Provision, unlock and watch a homemx appliance over its serial console.
#[derive(Debug, Parser)]
#[command(name = "homemx", version, about, long_about = None)]
pub struct Cli {
    /// The device: a serial port path (/dev/ttyACM0), unix:PATH (QEMU's UART socket) or
    /// tcp:HOST:PORT.
    #[arg(long, short, global = true, env = "HOMEMX_DEVICE", value_parser = DeviceAddress::parse)]
    pub device: Option<DeviceAddress>,
    /// The admin key file.
    #[arg(long, short, global = true, env = "HOMEMX_KEY", default_value_os_t = default_key_path())]
    pub key: PathBuf,
    /// File whose first line is the admin key file's passphrase (default: prompt when needed).
    #[arg(long, global = true, env = "HOMEMX_KEY_PASSPHRASE_FILE")]
    pub key_passphrase_file: Option<PathBuf>,
    /// Seconds to wait for each answer from the device.
    #[arg(long, global = true, default_value_t = 30)]
    pub timeout: u64,
    /// Print machine-readable JSON on stdout.
    #[arg(long, global = true)]
    pub json: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write a first, commented homemx.toml from a few answers (asked on a terminal, or given
    /// as flags) and say which password files and trust anchors are still needed.
    Init {
        /// The domain the appliance receives mail for (e.g. example.org).
        #[arg(long)]
        domain: Option<String>,
        /// A recipient in that domain (repeat for more).
        #[arg(long = "recipient")]
        recipients: Vec<String>,
        /// The LAN network, a.b.c.d/len (e.g. 192.168.1.0/24).
        #[arg(long)]
        lan_prefix: Option<String>,
        /// The LAN mailbox host's IPv4 address.
        #[arg(long)]
        mailbox_host: Option<String>,
        /// How mail is handed to it: lmtp or smtp [default: lmtp].
        #[arg(long, value_parser = ["lmtp", "smtp"])]
        mailbox_protocol: Option<String>,
        /// Its port [default: 24 for lmtp, 25 for smtp].
        #[arg(long)]
        mailbox_port: Option<u16>,
        /// The provider's smarthost for outbound mail, HOST:PORT.
        #[arg(long, value_name = "HOST:PORT", conflicts_with = "no_smarthost")]
        smarthost: Option<String>,
        /// No smarthost: an inbound-only MX (LAN mail to other domains is refused).
        #[arg(long)]
        no_smarthost: bool,
        /// The smarthost's AUTH user name [default: the first recipient].
        #[arg(long, requires = "smarthost")]
        smarthost_user: Option<String>,
        /// The smarthost's TLS: implicit or starttls [default: implicit on port 465, else starttls].
        #[arg(long, requires = "smarthost", value_parser = ["implicit", "starttls"])]
        smarthost_tls: Option<String>,
        /// Where to write the file.
        #[arg(long, default_value = "homemx.toml")]
        out: PathBuf,
        /// Overwrite an existing file.
        #[arg(long)]
        force: bool,
    },
    /// Generate the admin ed25519 key (file mode 0600, optionally passphrase-protected).
    Keygen {
        /// Where to write it (default: --key).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Do not protect the key with a passphrase (for test rigs only).
        #[arg(long)]
        no_passphrase: bool,
        /// Overwrite an existing file.
        #[arg(long)]
        force: bool,
    },
    /// First contact: enrol the admin key, set the storage passphrase, write configuration,
    /// credentials and trust anchors from a TOML file.
    Provision {
        /// The configuration file (see homemx.example.toml).
        #[arg(long, short)]
        config: PathBuf,
        /// File whose first line is the storage passphrase (default: prompt).
        #[arg(long)]
        passphrase_file: Option<PathBuf>,
        /// Accept a new storage passphrase weaker than about 60 bits (zxcvbn's estimate).
        #[arg(long)]
        weak_passphrase: bool,
    },
    /// Unlock storage (the passphrase is prompted for, or read from --passphrase-file).
    Unlock {
        /// File whose first line is the storage passphrase.
        #[arg(long)]
        passphrase_file: Option<PathBuf>,
    },
    /// Lock storage: keys are wiped from the device's RAM; mail waits at the backup MX.
    Lock,
    /// Show the device's state (never any secret).
    Status,
    /// Read or replace the configuration.
    Config {
        /// get or set.
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Show the device's log.
    Logs {
        /// First sequence number to show.
        #[arg(long, default_value_t = 0)]
        start: u32,
        /// Show at most this many entries.
        #[arg(long, default_value_t = 200)]
        limit: u32,
    },
    /// Replace the admin key with a new one (made with `homemx keygen --out NEW`).
    RotateKey {
        /// The new key file.
        #[arg(long)]
        new_key: PathBuf,
        /// File with the new key file's passphrase (default: prompt when needed).
        #[arg(long)]
        new_key_passphrase_file: Option<PathBuf>,
    },
    /// Destroy the device's data key, configuration, credentials and admin key.
    FactoryReset {
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
    /// Fetch mail from the backup MX now.
    FetchNow,
    /// Try every queued message now instead of at its retry time (like `postqueue -f`).
    Flush,
    /// Resume DynDNS updates stopped by a fatal answer (fix the account first).
    DyndnsResume,
    /// Mail users who submit with SMTP AUTH: edits the [[users]] of homemx.toml (and the user's
    /// password file), then replaces the device's configuration from it as `config set` does.
    /// The password is typed twice without echo, or read from --password-file (one line; the
    /// file must be private: mode 0600). The device receives only a salted PBKDF2 hash.
    User {
        /// add, remove or passwd.
        #[command(subcommand)]
        action: UserAction,
    },
    /// The device's alerts (`homemx status` lists the active ones).
    Alert {
        /// What to do.
        #[command(subcommand)]
        action: AlertAction,
    },
    /// The device's TLS certificate: its request for a CA, installing the CA's chain, and the
    /// DANE TLSA record to publish for it.
    Tls {
        /// What to do.
        #[command(subcommand)]
        action: TlsAction,
    },
}

/// `tls` actions.
#[derive(Debug, Subcommand)]
pub enum TlsAction {
    /// Print the certificate request (PEM) the device signed with its own key for its host
    /// name; give it to a CA. The key never leaves the device.
    Csr {
        /// Write the request to this file instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Install the CA-issued chain (PEM: the certificate first, then its intermediates). The
    /// device checks that it is for its key and host name and valid now; otherwise it keeps
    /// its current certificate.
    Install {
        /// The chain file.
        chain: PathBuf,
    },
    /// Print the DANE TLSA record for the key the device uses now, to publish in DNS:
    /// `_25._tcp.<host>. IN TLSA 3 1 1 <SHA-256 of the key>` (DANE-EE, RFC 7672), where <host>
    /// is the device's host name (the DynDNS name, or mx.<first domain>: the name the MX
    /// record gives). The device's DNS check alerts (tlsa_mismatch) when the published record
    /// no longer names the key. With a CA-issued chain that keeps its key across renewals,
    /// `--issuer` prints `2 1 1 <SHA-256 of the issuing CA's key>` (DANE-TA) instead.
    Tlsa {
        /// Name the issuing CA's key (usage 2) instead of the device's own (usage 3); needs an
        /// installed CA-issued chain.
        #[arg(long)]
        issuer: bool,
    },
    /// Obtain a certificate from the `[tls.acme]` CA now instead of at the renewal time; the
    /// progress and the result are in `homemx logs`, the certificate in `homemx tls status`.
    Renew,
}

/// `alert` actions.
#[derive(Debug, Subcommand)]
pub enum AlertAction {
    /// End an alert about an event (ndn_generated, unlock_failed) once you have looked into it;
    /// alerts about conditions end by themselves when the cause is gone.
    Ack {
        /// The alert's kind, as `homemx status` shows it (e.g. ndn_generated).
        kind: String,
    },
}

/// Where `user` edits and whether it pushes.
#[derive(Debug, clap::Args)]
pub struct UserTarget {
    /// The configuration file the user is kept in (relative password files are taken from its folder).
    #[arg(long, short, default_value = "homemx.toml")]
    pub config: PathBuf,
    /// Only edit the files; send them later with `homemx config set --config FILE`.
    #[arg(long)]
    pub no_push: bool,
}

/// `user` actions.
#[derive(Debug, Subcommand)]
pub enum UserAction {
    /// Add a user: a [[users]] entry and a password file (secrets/users/NAME.password, mode
    /// 0600, beside the configuration, unless --password-file names yours), then push.
    Add {
        /// The login name: the user's mail address in one of `domains` (e.g. alice@example.org).
        name: String,
        /// Use this file's first line as the password, where it is (mode 0600; default: prompt).
        #[arg(long)]
        password_file: Option<PathBuf>,
        /// Most messages the user may submit per hour (default: [limits]'s per-client figure).
        #[arg(long)]
        messages_per_hour: Option<u16>,
        /// The configuration file and whether to push.
        #[command(flatten)]
        target: UserTarget,
    },
    /// Remove a user from the configuration, then push (its password file is left in place, named).
    Remove {
        /// The user's login name.
        name: String,
        /// The configuration file and whether to push.
        #[command(flatten)]
        target: UserTarget,
    },
    /// Set a user's new password (typed: written over its password file; or --password-file:
    /// the configuration names that file instead), then push.
    Passwd {
        /// The user's login name.
        name: String,
        /// Use this file's first line as the new password (mode 0600; default: prompt).
        #[arg(long)]
        password_file: Option<PathBuf>,
        /// The configuration file and whether to push.
        #[command(flatten)]
        target: UserTarget,
    },
}

/// `config` actions.
#[derive(Debug, Subcommand)]
pub enum ConfigAction {
    /// Print the device's configuration.
    Get,
    /// Replace the configuration (and credentials, trust anchors) from a TOML file.
    Set {
        /// The configuration file.
        #[arg(long, short)]
        config: PathBuf,
    },
}

fn default_key_path() -> PathBuf {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".config")))
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("homemx").join("admin.key")
}

/// Runs the CLI with `arguments` (program name first); returns the process exit code.
pub fn run<I, T>(arguments: I) -> i32
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match Cli::try_parse_from(arguments) {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            return if error.use_stderr() { ExitCode::Usage as i32 } else { 0 };
        }
    };
    match commands::execute(&cli) {
        Ok(()) => 0,
        Err(error) => {
            if cli.json {
                let value = serde_json::json!({
                    "error": error.message,
                    "hint": error.hint,
                    "exit_code": error.kind as i32,
                });
                println!("{value}");
            }
            eprintln!("{error}");
            error.kind as i32
        }
    }
}
