//! The owner's side in end-to-end tests: the real `homemx` CLI binary, a test configuration
//! with its secret files, and helpers that check no secret ever comes back.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::repository_root;

/// The storage passphrase the tests provision.
pub const PASSPHRASE: &str = "correct horse battery staple 42";
/// The smarthost password the tests provision.
pub const SMARTHOST_PASSWORD: &str = "smarthost-secret-Zq7";
/// The POP3 password the tests provision.
pub const POP3_PASSWORD: &str = "pop3-secret-Xw9";
/// The DynDNS password the tests provision.
pub const DYNDNS_PASSWORD: &str = "dyndns-secret-Kp4";

/// The CLI binary, built once per test process.
pub fn cli_binary() -> PathBuf {
    static BINARY: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BINARY
        .get_or_init(|| {
            let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
                .current_dir(repository_root())
                .args(["build", "--quiet", "-p", "homemx-cli"])
                .status()
                .expect("cargo runs");
            assert!(status.success(), "the CLI builds");
            // Tests run from <target>/debug/deps/…, the xtask from <target>/debug; the CLI
            // lands in <target>/debug.
            let executable = std::env::current_exe().unwrap();
            let mut directory = executable.parent().unwrap();
            if directory.ends_with("deps") {
                directory = directory.parent().unwrap();
            }
            directory.join("homemx")
        })
        .clone()
}

/// The owner at the console: CLI, key file, working directory.
pub struct Owner {
    /// Where the CLI runs (configuration and secret files are relative to it).
    pub directory: PathBuf,
    /// The `--device` argument.
    pub device: String,
    /// The admin key file.
    pub key: PathBuf,
}

impl Owner {
    /// Runs the CLI with another key file.
    pub fn run(&self, key: &Path, arguments: &[&str]) -> Output {
        let output = Command::new(cli_binary())
            .arg("--device")
            .arg(&self.device)
            .arg("--key")
            .arg(key)
            .arg("--timeout")
            .arg("60")
            .args(arguments)
            .current_dir(&self.directory)
            .output()
            .expect("the CLI runs");
        eprintln!(
            "homemx {}: {}\n{}{}",
            arguments.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }

    /// Runs the CLI with the owner's key.
    pub fn homemx(&self, arguments: &[&str]) -> Output {
        self.run(&self.key, arguments)
    }

    /// The whole lines of `homemx --json logs` that start with `start`, oldest first, each
    /// joined from the entries it was split into (continuations start with `… `).
    pub fn logged_lines(&self, start: &str) -> Vec<String> {
        let output = self.homemx(&["--json", "logs"]);
        let Ok(logs) = serde_json::from_slice::<serde_json::Value>(&output.stdout) else {
            return Vec::new();
        };
        let texts: Vec<&str> = logs["entries"].as_array().into_iter().flatten().filter_map(|entry| entry["text"].as_str()).collect();
        let mut lines = Vec::new();
        for (first, text) in texts.iter().enumerate().filter(|(_, text)| text.starts_with(start)) {
            let mut line = text.to_string();
            for text in &texts[first + 1..] {
                let Some(rest) = text.strip_prefix("\u{2026} ") else { break };
                line.push(' ');
                line.push_str(rest);
            }
            lines.push(line);
        }
        lines
    }

    /// `status --json`, checked to hold no secret; the `status` object.
    pub fn status(&self) -> serde_json::Value {
        let output = self.homemx(&["--json", "status"]);
        assert!(output.status.success(), "status works");
        let text = String::from_utf8(output.stdout).unwrap();
        for secret in [PASSPHRASE, SMARTHOST_PASSWORD, POP3_PASSWORD] {
            assert!(!text.contains(secret), "status must never show a secret");
        }
        let document: serde_json::Value = serde_json::from_str(&text).expect("status --json is JSON");
        document["status"].clone()
    }
}

/// Writes `homemx.toml` (domain example.org, recipients alice@ and bob@, the test LAN, the
/// LAN mailbox host at 192.168.77.1:24 over LMTP), password files, passphrase files and a
/// test CA for the trust anchors.
pub fn write_configuration(directory: &Path) {
    std::fs::create_dir_all(directory.join("secrets")).unwrap();
    std::fs::write(directory.join("secrets/smarthost.password"), format!("{SMARTHOST_PASSWORD}\n")).unwrap();
    std::fs::write(directory.join("secrets/pop3.password"), format!("{POP3_PASSWORD}\n")).unwrap();
    std::fs::write(directory.join("passphrase"), format!("{PASSPHRASE}\n")).unwrap();
    std::fs::write(directory.join("wrong-passphrase"), "not the passphrase\n").unwrap();
    let status = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2"])
        .args(["-subj", "/CN=homemx test provider CA", "-keyout", "ca.key", "-out", "ca.pem"])
        .current_dir(directory)
        .output()
        .expect("openssl runs");
    assert!(status.status.success(), "test CA created");
    std::fs::write(
        directory.join("homemx.toml"),
        r#"
domains = ["example.org"]
recipients = ["alice@example.org", "bob@example.org"]
lan_prefixes = ["192.168.77.0/24"]
lan_relay_without_auth = true

[lan_mailbox]
address = "192.168.77.1"
port = 24
protocol = "lmtp"

[smarthost]
host = "smtp.provider.test"
port = 465
tls = "implicit"
user_name = "alice@example.org"
password_file = "secrets/smarthost.password"
ca_certificate = "ca.pem"

[backup_mx]
host = "pop.provider.test"
port = 995
tls = "implicit"
user_name = "backup-mx@example.org"
poll_interval_seconds = 300
password_file = "secrets/pop3.password"
spki_sha256 = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0"
"#,
    )
    .unwrap();
}


/// The secrets files the provider configurations below name: the smarthost, POP3 and DynDNS
/// passwords and the passphrase.
pub fn write_secrets(directory: &Path) {
    std::fs::create_dir_all(directory.join("secrets")).unwrap();
    std::fs::write(directory.join("secrets/smarthost.password"), format!("{SMARTHOST_PASSWORD}\n")).unwrap();
    std::fs::write(directory.join("secrets/pop3.password"), format!("{POP3_PASSWORD}\n")).unwrap();
    std::fs::write(directory.join("secrets/dyndns.password"), format!("{DYNDNS_PASSWORD}\n")).unwrap();
    std::fs::write(directory.join("passphrase"), format!("{PASSPHRASE}\n")).unwrap();
}

/// The head of a `homemx.toml` for the tests with provider peers: example.org with `recipients`,
/// the test LAN, the LMTP mailbox host on the router, and the smarthost
/// `smarthost.example.net:587` with STARTTLS, verified by `ca_certificate`. Tests append their
/// own sections (`[limits]`, `[backup_mx]`, `[dyndns]`, …) and top-level keys go in `extra`.
/// LAN clients relay by their address alone (`lan_relay_without_auth = true`, as the tests of
/// outbound mail need) unless `extra` sets `lan_relay_without_auth` itself.
pub fn provider_configuration(ca_certificate: &Path, recipients: &[&str], extra: &str) -> String {
    let recipients: Vec<String> = recipients.iter().map(|recipient| format!("\"{recipient}\"")).collect();
    let opt_in = if extra.contains("lan_relay_without_auth") { "" } else { "lan_relay_without_auth = true" };
    format!(
        r#"domains = ["example.org"]
recipients = [{}]
lan_prefixes = ["192.168.77.0/24"]
{opt_in}
{extra}
[lan_mailbox]
address = "192.168.77.1"
port = 24
protocol = "lmtp"

[smarthost]
host = "smarthost.example.net"
port = 587
tls = "starttls"
user_name = "homemx@example.org"
password_file = "secrets/smarthost.password"
ca_certificate = "{}"
"#,
        recipients.join(", "),
        ca_certificate.display()
    )
}

/// The test DynDNS provider's address in the namespace (`provider::DYNDNS_NAME`).
pub const DYNDNS_SERVER: std::net::Ipv4Addr = std::net::Ipv4Addr::new(203, 0, 113, 60);
/// The test check-IP service's address (`provider::CHECKIP_NAME`).
pub const CHECKIP_SERVER: std::net::Ipv4Addr = std::net::Ipv4Addr::new(203, 0, 113, 61);
/// The host name the tests register with DynDNS (the device's host name then).
pub const DYNDNS_HOST: &str = "home.example.net";
/// The tests' DynDNS account (its password is [`DYNDNS_PASSWORD`]).
pub const DYNDNS_USER: &str = "homemx-owner";

/// The `[dyndns]` section for the test provider and check-IP services, trusted through
/// `ca_certificate`, checking every `check_interval_seconds`.
pub fn dyndns_section(ca_certificate: &Path, check_interval_seconds: u32) -> String {
    use crate::provider::{CHECKIP_NAME, DYNDNS_NAME};
    format!(
        "\n[dyndns]\nserver = \"{DYNDNS_NAME}\"\nhost_name = \"{DYNDNS_HOST}\"\nuser_name = \"{DYNDNS_USER}\"\n\
         check_interval_seconds = {check_interval_seconds}\npassword_file = \"secrets/dyndns.password\"\nca_certificate = \"{}\"\n\
         check_ip = [\"https://{CHECKIP_NAME}/ip\", \"https://{DYNDNS_NAME}/ip\"]\n",
        ca_certificate.display()
    )
}

/// Boots `elf` on `network` with a fresh flash image in `directory`, waits until its network is
/// up, and provisions it as the owner there (its `homemx.toml` and secrets, see
/// [`write_secrets`]): the start most end-to-end tests share.
pub fn boot_provisioned(elf: PathBuf, network: &crate::network::IsolatedNetwork, directory: &Path) -> (crate::machine::Machine, Owner) {
    boot_provisioned_with(elf, network, directory, |_| {})
}

/// [`boot_provisioned`] with the machine's configuration changed by `adjust` first (e.g.
/// `operation_counts`).
pub fn boot_provisioned_with(
    elf: PathBuf,
    network: &crate::network::IsolatedNetwork,
    directory: &Path,
    adjust: impl FnOnce(&mut crate::machine::MachineConfig),
) -> (crate::machine::Machine, Owner) {
    let flash = directory.join("flash.img");
    crate::flash_image::create(&flash).expect("flash image");
    let mut config = crate::machine::MachineConfig::on_network(elf, flash, network);
    adjust(&mut config);
    let machine = crate::machine::Machine::start(&config, directory).expect("QEMU starts");
    machine.wait_ready(0, std::time::Duration::from_secs(60)).expect("network up");
    let owner = Owner::at(directory);
    owner.provision();
    (machine, owner)
}

impl Owner {
    /// The owner of the machine running in `directory` (its console socket there, the admin key
    /// `admin.key`).
    pub fn at(directory: &Path) -> Owner {
        Owner {
            directory: directory.to_path_buf(),
            device: format!("unix:{}", directory.join("serial.sock").display()),
            key: directory.join("admin.key"),
        }
    }

    /// Makes the admin key and provisions the device from `homemx.toml` with `passphrase`.
    pub fn provision(&self) {
        self.try_provision().unwrap_or_else(|error| panic!("{error}"));
    }

    /// [`Owner::provision`] that returns what failed instead of panicking (for `cargo xtask run`).
    pub fn try_provision(&self) -> crate::Result<()> {
        if !self.homemx(&["keygen", "--no-passphrase", "--out", "admin.key"]).status.success() {
            return Err("keygen failed".into());
        }
        let provision = self.homemx(&["provision", "--config", "homemx.toml", "--passphrase-file", "passphrase"]);
        if !provision.status.success() {
            return Err(format!("provision: {}", String::from_utf8_lossy(&provision.stderr)).into());
        }
        Ok(())
    }
}

/// Sends raw bytes to the device's console socket and decodes its first answer frame (for
/// tests that speak the protocol themselves: replays, hello).
pub fn console_exchange(device: &Path, request: &[u8]) -> crate::Result<homemx_wire::message::Response> {
    use std::io::Write;
    let mut stream = std::os::unix::net::UnixStream::connect(device)?;
    stream.set_read_timeout(Some(std::time::Duration::from_secs(30)))?;
    stream.write_all(request)?;
    // Decoding needs no key; any key will do.
    let mut client = homemx_wire::client::ClientSession::new(ed25519_dalek::SigningKey::from_bytes(&[7; 32]));
    read_response(&mut stream, &mut client)
}

/// Reads one answer frame (up to its `0x00` delimiter) from `stream` and decodes it with
/// `client` (which keeps the device's next challenge).
fn read_response(stream: &mut std::os::unix::net::UnixStream, client: &mut homemx_wire::client::ClientSession) -> crate::Result<homemx_wire::message::Response> {
    use std::io::Read;
    let mut frame = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        stream.read_exact(&mut byte)?;
        if byte[0] == 0 {
            break;
        }
        frame.push(byte[0]);
    }
    client.accept_response(&mut frame).map_err(|error| format!("undecodable answer: {}", error.describe()).into())
}

/// A console session of the test's own over the device's socket that signs whatever command
/// it is given with the admin key: a client that skips the CLI's checks. Only one client at a
/// time: drop it before the CLI runs again.
pub struct SignedConsole {
    stream: std::os::unix::net::UnixStream,
    client: homemx_wire::client::ClientSession,
}

impl SignedConsole {
    /// Connects to the console socket `device` and says hello, to sign with `key`.
    pub fn open(device: &Path, key: homemx_wire::client::AdminSigningKey) -> crate::Result<SignedConsole> {
        use std::io::Write;
        let stream = std::os::unix::net::UnixStream::connect(device)?;
        stream.set_read_timeout(Some(std::time::Duration::from_secs(60)))?;
        let mut console = SignedConsole { stream, client: homemx_wire::client::ClientSession::new(key) };
        // A leading delimiter ends whatever partial frame the device holds.
        let mut frame = [0u8; homemx_wire::MAX_ENCODED_FRAME + 1];
        let length = homemx_wire::client::ClientSession::hello_frame(&mut frame[1..]).map_err(|error| error.describe())?;
        console.stream.write_all(&frame[..length + 1])?;
        match read_response(&mut console.stream, &mut console.client)? {
            homemx_wire::message::Response::DeviceInfo(_) => Ok(console),
            other => Err(format!("hello answered {other:?}").into()),
        }
    }

    /// Sends `command` signed over the current challenge and returns the answer.
    pub fn command(&mut self, command: &homemx_wire::message::Command) -> crate::Result<homemx_wire::message::Response> {
        use std::io::Write;
        let mut frame = [0u8; homemx_wire::MAX_ENCODED_FRAME];
        let length = self.client.signed_frame(command, &mut frame).map_err(|error| error.describe())?;
        self.stream.write_all(&frame[..length])?;
        read_response(&mut self.stream, &mut self.client)
    }
}
