//! The provider's side of the internet for the end-to-end tests: a test CA and the peers the
//! appliance talks to on the WAN (smarthost, STARTTLS-stripping middlebox, authoritative DNS,
//! SNTP, dyndns2 and check-IP over HTTPS), and the attacker standing in for any of them (a
//! rogue TLS 1.3 server that sends no certificate). Each peer is a Python script in
//! `qemu/peers/`, started inside the test's network namespace (`ip netns exec NS python3
//! ...`) or, for the harness's own self-tests, on the host's loopback; each writes a JSONL
//! event log and a readiness file, and is stopped by its PID on drop.
//!
//! Network safety: a peer may listen (and the proxy forward) only on loopback, or inside a
//! namespace on the documentation ranges (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24) and
//! the test LAN 192.168.77.0/24; anything else is refused before a process starts.

use std::ffi::OsString;
use std::net::{Ipv4Addr, SocketAddr};
use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::Result;

/// How long a peer may take to bind its sockets.
pub const READY_TIMEOUT: Duration = Duration::from_secs(15);
/// The smarthost's name (its certificate's SAN).
pub const SMARTHOST_NAME: &str = "smarthost.example.net";
/// The POP3 server's name.
pub const POP_NAME: &str = "pop.example.net";
/// The dyndns2 service's name.
pub const DYNDNS_NAME: &str = "dyndns.example.net";
/// The check-IP service's name.
pub const CHECKIP_NAME: &str = "checkip.example.net";
/// The label of the self-signed (not CA-issued) smarthost certificate.
pub const SELF_SIGNED_SMARTHOST: &str = "selfsigned.smarthost.example.net";
/// The label (and name) of the CA-issued certificate for a name nobody asks for.
pub const WRONG_NAME: &str = "mail.other.example";

/// The Python interpreter the peers run on: the real executable behind `python3` (resolved
/// once, so a version manager's shim costs no start-up time and is not the PID we signal).
pub fn python() -> &'static Path {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| {
        Command::new("python3")
            .args(["-c", "import sys; print(sys.executable)"])
            .output()
            .ok()
            .filter(|output| output.status.success())
            .and_then(|output| String::from_utf8(output.stdout).ok())
            .map(|text| PathBuf::from(text.trim()))
            .filter(|path| path.is_absolute())
            .unwrap_or_else(|| PathBuf::from("python3"))
    })
}

fn peer_script(name: &str) -> PathBuf {
    crate::repository_root().join("qemu/peers").join(name)
}

/// Whether a peer may use `address`: loopback always; inside a namespace also the
/// documentation ranges, the test LAN and the unspecified address.
pub fn address_allowed(in_namespace: bool, address: Ipv4Addr) -> bool {
    let [a, b, c, _] = address.octets();
    if address.is_loopback() {
        return true;
    }
    in_namespace
        && (address.is_unspecified()
            || (a, b, c) == (192, 0, 2)
            || (a, b, c) == (198, 51, 100)
            || (a, b, c) == (203, 0, 113)
            || (a, b, c) == (192, 168, 77))
}

fn check_endpoint(namespace: Option<&str>, endpoint: &str) -> Result<()> {
    let address: std::net::SocketAddrV4 = endpoint.parse().map_err(|_| format!("{endpoint:?} is not IPv4-ADDRESS:PORT"))?;
    if !address_allowed(namespace.is_some(), *address.ip()) {
        let place = if namespace.is_some() { "inside the test namespace" } else { "on the host (loopback only)" };
        return Err(format!("refusing {endpoint}: not an address a test peer may use {place}").into());
    }
    Ok(())
}

/// Adds `address/32` to the loopback of `namespace` (a WAN address of the provider's side);
/// only documentation-range addresses are accepted. An address already there is fine.
pub fn add_wan_address(namespace: &str, address: Ipv4Addr) -> Result<()> {
    if address.is_loopback() || address.is_unspecified() || !address_allowed(true, address) || address.octets()[..3] == [192, 168, 77] {
        return Err(format!("{address} is not a documentation-range WAN address").into());
    }
    let output = Command::new("ip")
        .args(["-n", namespace, "addr", "add", &format!("{address}/32"), "dev", "lo"])
        .output()
        .map_err(|error| format!("cannot run ip: {error}"))?;
    let message = String::from_utf8_lossy(&output.stderr);
    if output.status.success() || message.contains("File exists") {
        Ok(())
    } else {
        Err(format!("ip -n {namespace} addr add {address}/32 dev lo: {}", message.trim()).into())
    }
}

/// Reads a JSONL file; lines that are not (yet complete) JSON are skipped.
pub fn read_jsonl(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path).unwrap_or_default().lines().filter_map(|line| serde_json::from_str(line).ok()).collect()
}

/// Writes `value` as JSON to `path` through a temporary file and a rename (a peer that reads
/// the file concurrently never sees half of it).
pub fn write_json_atomically(path: &Path, value: &Value) -> Result<()> {
    let temporary = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&temporary, serde_json::to_vec_pretty(value)?)?;
    std::fs::rename(&temporary, path)?;
    Ok(())
}

/// A running peer script: its directory (events.jsonl, ready.json, stderr.txt), the
/// addresses it bound, and its process, stopped by PID on drop.
pub struct PeerProcess {
    name: String,
    child: Option<Child>,
    directory: PathBuf,
    listening: Vec<SocketAddr>,
}

impl PeerProcess {
    /// Starts `qemu/peers/<script>` with `arguments` plus `--log` and `--ready-file` in
    /// `directory`, inside `namespace` (or on the host), and waits until it is ready.
    pub fn start(namespace: Option<&str>, script: &str, arguments: Vec<OsString>, directory: &Path) -> Result<Self> {
        std::fs::create_dir_all(directory)?;
        let ready = directory.join("ready.json");
        let _ = std::fs::remove_file(&ready);
        let mut command = match namespace {
            Some(namespace) => {
                let mut command = Command::new("ip");
                command.args(["netns", "exec", namespace]).arg(python());
                command
            }
            None => Command::new(python()),
        };
        command.arg(peer_script(script)).args(arguments);
        command.arg("--log").arg(directory.join("events.jsonl")).arg("--ready-file").arg(&ready);
        let child = command
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(directory.join("stdout.txt"))?)
            .stderr(std::fs::File::create(directory.join("stderr.txt"))?)
            .spawn()
            .map_err(|error| format!("cannot start {script}: {error}"))?;
        let mut peer = PeerProcess { name: script.to_string(), child: Some(child), directory: directory.to_path_buf(), listening: Vec::new() };
        peer.wait_ready(&ready, READY_TIMEOUT)?;
        Ok(peer)
    }

    fn wait_ready(&mut self, ready: &Path, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(value) = std::fs::read(ready).ok().and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok()) {
                self.listening = value["listening"]
                    .as_array()
                    .map(|all| all.iter().filter_map(|entry| entry.as_str()?.parse().ok()).collect())
                    .unwrap_or_default();
                return Ok(());
            }
            let exited = match self.child.as_mut() {
                Some(child) => child.try_wait()?,
                None => None,
            };
            if let Some(status) = exited {
                self.child = None;
                return Err(format!("{} exited before it was ready ({status}): {}", self.name, self.stderr().trim()).into());
            }
            if Instant::now() > deadline {
                self.stop();
                return Err(format!("{} was not ready within {timeout:?}: {}", self.name, self.stderr().trim()).into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The process id (of Python itself: `ip netns exec` execs it).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The addresses it bound (port 0 in a listen address becomes the real port here).
    pub fn listening(&self) -> &[SocketAddr] {
        &self.listening
    }

    /// The first address it bound.
    pub fn address(&self) -> SocketAddr {
        self.listening.first().copied().unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// Its directory (event log, readiness file, stderr and peer-specific files).
    pub fn directory(&self) -> &Path {
        &self.directory
    }

    /// What it wrote on stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.directory.join("stderr.txt")).unwrap_or_default()
    }

    /// Every event it logged so far, oldest first.
    pub fn events(&self) -> Vec<Value> {
        read_jsonl(&self.directory.join("events.jsonl"))
    }

    /// The events named `name`, oldest first.
    pub fn events_named(&self, name: &str) -> Vec<Value> {
        self.events().into_iter().filter(|event| event["event"] == name).collect()
    }

    /// Waits for the first event for which `matches` holds.
    pub fn wait_for_event(&self, timeout: Duration, matches: impl Fn(&Value) -> bool) -> Result<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(event) = self.events().into_iter().find(|event| matches(event)) {
                return Ok(event);
            }
            if Instant::now() > deadline {
                return Err(format!("{}: no matching event within {timeout:?}", self.name).into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops it: SIGTERM to its PID, then SIGKILL if it has not exited within 5 s.
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

impl Drop for PeerProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

macro_rules! peer_process_deref {
    ($peer:ty) => {
        impl Deref for $peer {
            type Target = PeerProcess;
            fn deref(&self) -> &PeerProcess {
                &self.process
            }
        }
        impl DerefMut for $peer {
            fn deref_mut(&mut self) -> &mut PeerProcess {
                &mut self.process
            }
        }
    };
}

fn text(path: &Path) -> OsString {
    path.as_os_str().to_os_string()
}

fn os(value: impl Into<String>) -> OsString {
    OsString::from(value.into())
}

// ---------------------------------------------------------------------------------------
// Test CA

/// One leaf certificate of the [`TestCa`].
#[derive(Clone, Debug)]
pub struct Leaf {
    /// Its label (file name stem): the name, or `selfsigned.<name>`.
    pub label: String,
    /// The DNS name in its SAN (and CN).
    pub name: String,
    /// Issued by the test CA (false: self-signed).
    pub ca_signed: bool,
    /// The certificate (PEM).
    pub certificate: PathBuf,
    /// Certificate followed by the CA's (PEM), what servers present.
    pub chain: PathBuf,
    /// The private key (PEM, of the CA's [`CertificateKind`]).
    pub key: PathBuf,
    /// The certificate (DER).
    pub der: PathBuf,
    /// SHA-256 of its SubjectPublicKeyInfo (for pinned-key mode).
    pub spki_sha256: [u8; 32],
}

/// The keys and signatures of a [`TestCa`] (the CA's key, every leaf's key, and the CA's
/// signature on them), the kinds a real provider's chain comes in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CertificateKind {
    /// ECDSA P-256 keys, ECDSA-SHA256 signatures (what [`TestCa::create`] makes).
    EcdsaP256,
    /// ECDSA P-384 keys, ECDSA-SHA384 signatures.
    EcdsaP384,
    /// RSA-2048 keys, sha256WithRSAEncryption (PKCS#1 v1.5) signatures.
    Rsa2048,
    /// RSA-2048 keys, RSASSA-PSS signatures (SHA-256, MGF1-SHA-256, 32-byte salt).
    Rsa2048PssSignatures,
    /// RSA-4096 keys, sha256WithRSAEncryption signatures.
    Rsa4096,
}

impl CertificateKind {
    /// Every kind.
    pub const ALL: [CertificateKind; 5] =
        [Self::EcdsaP256, Self::EcdsaP384, Self::Rsa2048, Self::Rsa2048PssSignatures, Self::Rsa4096];

    /// A short name for directories and messages.
    pub fn label(self) -> &'static str {
        match self {
            Self::EcdsaP256 => "ecdsa-p256",
            Self::EcdsaP384 => "ecdsa-p384",
            Self::Rsa2048 => "rsa-2048",
            Self::Rsa2048PssSignatures => "rsa-2048-pss-ca",
            Self::Rsa4096 => "rsa-4096",
        }
    }

    /// `test_ca.py`'s `--key-type` and `--ca-signature`.
    fn arguments(self) -> [&'static str; 4] {
        let (key_type, signature) = match self {
            Self::EcdsaP256 => ("p256", "default"),
            Self::EcdsaP384 => ("p384", "default"),
            Self::Rsa2048 => ("rsa2048", "default"),
            Self::Rsa2048PssSignatures => ("rsa2048", "pss"),
            Self::Rsa4096 => ("rsa4096", "default"),
        };
        ["--key-type", key_type, "--ca-signature", signature]
    }

    /// Whether the keys are RSA.
    pub fn is_rsa(self) -> bool {
        matches!(self, Self::Rsa2048 | Self::Rsa2048PssSignatures | Self::Rsa4096)
    }

    /// How OpenSSL names the server's handshake signature in a TLS 1.3 log line (Postfix's
    /// `server-signature ...`): RSA keys sign with RSA-PSS in TLS 1.3.
    pub fn openssl_server_signature(self) -> &'static str {
        match self {
            Self::EcdsaP256 => "ECDSA (prime256v1)",
            Self::EcdsaP384 => "ECDSA (secp384r1)",
            Self::Rsa2048 | Self::Rsa2048PssSignatures => "RSA-PSS (2048 bits)",
            Self::Rsa4096 => "RSA-PSS (4096 bits)",
        }
    }
}

/// A throw-away CA (`qemu/peers/test_ca.py`, openssl), valid now-1d..now+1y: P-256 and SHA-256
/// unless made with [`TestCa::create_of_kind`].
#[derive(Clone, Debug)]
pub struct TestCa {
    /// Where its files are.
    pub directory: PathBuf,
    /// The CA certificate (PEM).
    pub ca_certificate: PathBuf,
    /// The CA certificate (DER), what the appliance is given.
    pub ca_der: PathBuf,
    /// Every leaf: the four provider names, [`WRONG_NAME`] and [`SELF_SIGNED_SMARTHOST`].
    pub leaves: Vec<Leaf>,
}

fn hex32(text: &str) -> Option<[u8; 32]> {
    let bytes = text.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (index, pair) in bytes.chunks(2).enumerate() {
        let pair = std::str::from_utf8(pair).ok()?;
        out[index] = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(out)
}

impl TestCa {
    /// Creates the CA and leaves for the provider names in `directory`.
    pub fn create(directory: &Path) -> Result<Self> {
        Self::create_for(directory, &[SMARTHOST_NAME, POP_NAME, DYNDNS_NAME, CHECKIP_NAME])
    }

    /// Creates the CA with CA-signed leaves for `names` (plus the wrong-name and self-signed ones).
    pub fn create_for(directory: &Path, names: &[&str]) -> Result<Self> {
        Self::run_script(directory, names, &[])
    }

    /// Creates a CA of `kind` with CA-signed leaves of `kind` for `names` only (no wrong-name or
    /// self-signed leaf: RSA-4096 keys take seconds each).
    pub fn create_of_kind(directory: &Path, names: &[&str], kind: CertificateKind) -> Result<Self> {
        let mut arguments = vec!["--wrong-name", "", "--self-signed", ""];
        arguments.extend(kind.arguments());
        Self::run_script(directory, names, &arguments)
    }

    fn run_script(directory: &Path, names: &[&str], arguments: &[&str]) -> Result<Self> {
        let mut command = Command::new(python());
        command.arg(peer_script("test_ca.py")).arg(directory).args(arguments);
        for name in names {
            command.args(["--name", name]);
        }
        let output = command.output().map_err(|error| format!("cannot run test_ca.py: {error}"))?;
        if !output.status.success() {
            return Err(format!("test_ca.py failed: {}", String::from_utf8_lossy(&output.stderr)).into());
        }
        let manifest: Value = serde_json::from_slice(&std::fs::read(directory.join("manifest.json"))?)?;
        let path = |value: &Value| -> Result<PathBuf> { Ok(PathBuf::from(value.as_str().ok_or("manifest: missing path")?)) };
        let mut leaves = Vec::new();
        for (label, leaf) in manifest["leaves"].as_object().ok_or("manifest: no leaves")? {
            leaves.push(Leaf {
                label: label.clone(),
                name: leaf["name"].as_str().unwrap_or_default().to_string(),
                ca_signed: leaf["signer"] == "ca",
                certificate: path(&leaf["certificate"])?,
                chain: path(&leaf["chain"])?,
                key: path(&leaf["key"])?,
                der: path(&leaf["der"])?,
                spki_sha256: hex32(leaf["spki_sha256"].as_str().unwrap_or_default()).ok_or("manifest: bad SPKI pin")?,
            });
        }
        Ok(TestCa {
            directory: directory.to_path_buf(),
            ca_certificate: path(&manifest["ca"]["certificate"])?,
            ca_der: path(&manifest["ca"]["der"])?,
            leaves,
        })
    }

    /// The CA certificate's DER bytes.
    pub fn ca_der_bytes(&self) -> Result<Vec<u8>> {
        Ok(std::fs::read(&self.ca_der)?)
    }

    /// The leaf with this label (a name, [`WRONG_NAME`] or [`SELF_SIGNED_SMARTHOST`]).
    pub fn leaf(&self, label: &str) -> Result<&Leaf> {
        self.leaves.iter().find(|leaf| leaf.label == label).ok_or_else(|| format!("the test CA has no leaf {label:?}").into())
    }
}

// ---------------------------------------------------------------------------------------
// Smarthost

/// How the smarthost offers TLS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsMode {
    /// Plain SMTP with STARTTLS (submission, port 587).
    StartTls,
    /// TLS from the first byte (submissions, port 465).
    Implicit,
    /// No TLS at all.
    None,
}

/// How to run the [`Smarthost`].
#[derive(Clone, Debug)]
pub struct SmarthostConfig {
    /// `ADDRESS:PORT` to listen on.
    pub listen: String,
    /// STARTTLS, implicit TLS or none.
    pub tls_mode: TlsMode,
    /// Certificate (chain) and key, PEM.
    pub certificate: Option<(PathBuf, PathBuf)>,
    /// The one account: AUTH PLAIN/LOGIN inside TLS, required before MAIL.
    pub auth: Option<(String, String)>,
    /// Offer AUTH outside TLS too (to prove a client does not use it).
    pub allow_cleartext_auth: bool,
    /// Refuse everything but EHLO/STARTTLS/NOOP/QUIT before TLS.
    pub require_tls: bool,
    /// Answer the end of DATA with this code the first N times, storing nothing.
    pub fail_data: Option<(u16, u32)>,
    /// The name in the greeting and EHLO reply.
    pub hostname: String,
    /// Offer TLS 1.2 only (an older provider stack) instead of TLS 1.3 only.
    pub tls12_only: bool,
}

impl SmarthostConfig {
    /// A smarthost on `listen` with `tls_mode`, no certificate, no auth, no failures.
    pub fn new(listen: impl Into<String>, tls_mode: TlsMode) -> Self {
        SmarthostConfig {
            listen: listen.into(),
            tls_mode,
            certificate: None,
            auth: None,
            allow_cleartext_auth: false,
            require_tls: false,
            fail_data: None,
            hostname: SMARTHOST_NAME.to_string(),
            tls12_only: false,
        }
    }

    /// Presents `leaf` (its chain) as the server certificate.
    pub fn with_certificate(mut self, leaf: &Leaf) -> Self {
        self.certificate = Some((leaf.chain.clone(), leaf.key.clone()));
        self
    }

    /// Requires AUTH as `user`/`password`.
    pub fn with_auth(mut self, user: &str, password: &str) -> Self {
        self.auth = Some((user.to_string(), password.to_string()));
        self
    }

    /// Offers TLS 1.2 only.
    pub fn with_tls12_only(mut self) -> Self {
        self.tls12_only = true;
        self
    }

    /// Fails the end of DATA with `code` the first `count` times.
    pub fn with_fail_data(mut self, code: u16, count: u32) -> Self {
        self.fail_data = Some((code, count));
        self
    }
}

/// The provider's smarthost (`qemu/peers/smarthost.py`); spool in `<directory>/spool`.
pub struct Smarthost {
    process: PeerProcess,
    spool: PathBuf,
}

peer_process_deref!(Smarthost);

impl Smarthost {
    /// Starts it inside `namespace` (or on the host's loopback) with its files in `directory`.
    pub fn start(namespace: Option<&str>, config: &SmarthostConfig, directory: &Path) -> Result<Self> {
        check_endpoint(namespace, &config.listen)?;
        let spool = directory.join("spool");
        let mode = match config.tls_mode {
            TlsMode::StartTls => "starttls",
            TlsMode::Implicit => "implicit",
            TlsMode::None => "none",
        };
        let mut arguments = vec![os("--listen"), os(config.listen.clone()), os("--tls-mode"), os(mode), os("--spool"), text(&spool)];
        arguments.extend([os("--hostname"), os(config.hostname.clone())]);
        if let Some((certificate, key)) = &config.certificate {
            arguments.extend([os("--cert"), text(certificate), os("--key"), text(key)]);
        }
        if let Some((user, password)) = &config.auth {
            arguments.extend([os("--auth"), os(format!("{user}:{password}"))]);
        }
        if config.allow_cleartext_auth {
            arguments.push(os("--allow-cleartext-auth"));
        }
        if config.require_tls {
            arguments.push(os("--require-tls"));
        }
        if config.tls12_only {
            arguments.push(os("--tls12-only"));
        }
        if let Some((code, count)) = config.fail_data {
            arguments.extend([os("--fail-data"), os(code.to_string()), os("--fail-data-count"), os(count.to_string())]);
        }
        let process = PeerProcess::start(namespace, "smarthost.py", arguments, directory)?;
        Ok(Smarthost { process, spool })
    }

    /// The folder it stores each message in (`NNNN.eml` with a `NNNN.json` sidecar).
    pub fn spool(&self) -> &Path {
        &self.spool
    }

    /// Every stored message (bytes as received after dot-unstuffing) with its sidecar
    /// (envelope, auth_user, tls, tls_version, cipher), oldest first.
    pub fn messages(&self) -> Vec<(Vec<u8>, Value)> {
        crate::peers::stored_messages(&self.spool)
    }

    /// Waits until at least `count` messages are stored.
    pub fn wait_for_messages(&self, count: usize, timeout: Duration) -> Result<Vec<(Vec<u8>, Value)>> {
        crate::peers::wait_for_stored_messages(&self.spool, "the smarthost", count, timeout)
    }

    /// Every line it received outside TLS, in order.
    pub fn cleartext_lines(&self) -> Vec<String> {
        self.events_named("cleartext").iter().filter_map(|event| event["line"].as_str().map(str::to_string)).collect()
    }
}

// ---------------------------------------------------------------------------------------
// STARTTLS-stripping proxy

/// What the [`StripProxy`] does to STARTTLS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StripMode {
    /// Rewrites `STARTTLS` to `XXXXXXXA` in the server's replies (and the client's command).
    Strip,
    /// Answers the client's STARTTLS itself with `454 4.7.0 TLS not available`.
    Refuse,
    /// Forges a permanent refusal before TLS: answers the connection itself with a `554`
    /// greeting (then `221` to QUIT) and never connects upstream.
    RefuseGreeting,
    /// Forwards everything unchanged.
    Pass,
}

/// A STARTTLS-stripping middlebox (`qemu/peers/strip_proxy.py`) that records every byte the
/// client sent in `<directory>/client.bin` (and the server's in `server.bin`).
pub struct StripProxy {
    process: PeerProcess,
}

peer_process_deref!(StripProxy);

impl StripProxy {
    /// Starts it on `listen`, forwarding to `upstream` (both `ADDRESS:PORT`).
    pub fn start(namespace: Option<&str>, listen: &str, upstream: &str, mode: StripMode, directory: &Path) -> Result<Self> {
        check_endpoint(namespace, listen)?;
        check_endpoint(namespace, upstream)?;
        let mode = match mode {
            StripMode::Strip => "strip",
            StripMode::Refuse => "refuse",
            StripMode::RefuseGreeting => "refuse-greeting",
            StripMode::Pass => "pass",
        };
        let arguments = vec![
            os("--listen"),
            os(listen),
            os("--upstream"),
            os(upstream),
            os("--mode"),
            os(mode),
            os("--record"),
            text(&directory.join("client.bin")),
            os("--record-server"),
            text(&directory.join("server.bin")),
        ];
        Ok(StripProxy { process: PeerProcess::start(namespace, "strip_proxy.py", arguments, directory)? })
    }

    /// Every byte clients sent through it so far (all connections, in arrival order).
    pub fn client_bytes(&self) -> Vec<u8> {
        std::fs::read(self.directory().join("client.bin")).unwrap_or_default()
    }

    /// Every byte the server sent back so far.
    pub fn server_bytes(&self) -> Vec<u8> {
        std::fs::read(self.directory().join("server.bin")).unwrap_or_default()
    }
}

// ---------------------------------------------------------------------------------------
// DNS

/// The provider's authoritative DNS server (`qemu/peers/dns_server.py`), answering from a
/// zone file it reads again for every query (see the script for the zone's form).
pub struct DnsServer {
    process: PeerProcess,
    zone: PathBuf,
}

peer_process_deref!(DnsServer);

impl DnsServer {
    /// Starts it on every `listen` address (`ADDRESS:PORT`), answering from `zone`.
    pub fn start(namespace: Option<&str>, listen: &[&str], zone: &Path, directory: &Path) -> Result<Self> {
        let mut arguments = vec![os("--zone"), text(zone)];
        for address in listen {
            check_endpoint(namespace, address)?;
            arguments.extend([os("--listen"), os(*address)]);
        }
        Ok(DnsServer { process: PeerProcess::start(namespace, "dns_server.py", arguments, directory)?, zone: zone.to_path_buf() })
    }

    /// The zone file it serves.
    pub fn zone(&self) -> &Path {
        &self.zone
    }

    /// Every query it saw (events with source, name, type, rcode, answers).
    pub fn queries(&self) -> Vec<Value> {
        self.events_named("query")
    }

    /// Sets `name`'s A record in its zone, as a third party would.
    pub fn set_a_record(&self, name: &str, address: Ipv4Addr) -> Result<()> {
        set_a_record(&self.zone, name, address)
    }
}

/// Sets `name`'s A record in the zone file `zone` (atomically; creates name and file).
pub fn set_a_record(zone: &Path, name: &str, address: Ipv4Addr) -> Result<()> {
    let mut value: Value = match std::fs::read(zone) {
        Ok(bytes) => serde_json::from_slice(&bytes)?,
        Err(_) => serde_json::json!({"ttl": 60, "names": {}}),
    };
    if !value["names"].is_object() {
        value["names"] = serde_json::json!({});
    }
    value["names"][name]["A"] = serde_json::json!([address.to_string()]);
    write_json_atomically(zone, &value)
}

/// `name`'s first A record in the zone file `zone`, if any.
pub fn a_record(zone: &Path, name: &str) -> Option<Ipv4Addr> {
    let value: Value = serde_json::from_slice(&std::fs::read(zone).ok()?).ok()?;
    let record = &value["names"][name]["A"];
    let first = if record.is_array() { &record[0] } else { record };
    first.as_str()?.parse().ok()
}

// ---------------------------------------------------------------------------------------
// SNTP

/// How to run the [`SntpServer`].
#[derive(Clone, Debug)]
pub struct SntpConfig {
    /// `ADDRESS:PORT` to listen on.
    pub listen: String,
    /// Added to the host's time in every answer.
    pub offset_seconds: f64,
    /// The stratum it claims (0 sends a kiss-o'-death).
    pub stratum: u8,
    /// Stays silent to this many first requests.
    pub ignore_first: u32,
}

impl SntpConfig {
    /// An honest stratum-2 server on `listen`.
    pub fn new(listen: impl Into<String>) -> Self {
        SntpConfig { listen: listen.into(), offset_seconds: 0.0, stratum: 2, ignore_first: 0 }
    }
}

/// The provider's SNTP server (`qemu/peers/sntp_server.py`).
pub struct SntpServer {
    process: PeerProcess,
}

peer_process_deref!(SntpServer);

impl SntpServer {
    /// Starts it with `config`.
    pub fn start(namespace: Option<&str>, config: &SntpConfig, directory: &Path) -> Result<Self> {
        check_endpoint(namespace, &config.listen)?;
        let arguments = vec![
            os("--listen"),
            os(config.listen.clone()),
            os("--offset-seconds"),
            os(config.offset_seconds.to_string()),
            os("--stratum"),
            os(config.stratum.to_string()),
            os("--ignore-first"),
            os(config.ignore_first.to_string()),
        ];
        Ok(SntpServer { process: PeerProcess::start(namespace, "sntp_server.py", arguments, directory)? })
    }

    /// Every request it saw (source, version, mode, transmit, answered).
    pub fn requests(&self) -> Vec<Value> {
        self.events_named("request")
    }
}

// ---------------------------------------------------------------------------------------
// HTTPS endpoints

/// How to run the [`HttpsEndpoints`].
#[derive(Clone, Debug)]
pub struct HttpsConfig {
    /// `ADDRESS:PORT`s to listen on.
    pub listen: Vec<String>,
    /// The default certificate (chain) and key.
    pub certificate: (PathBuf, PathBuf),
    /// Other certificates by SNI name.
    pub certificates_by_name: Vec<(String, PathBuf, PathBuf)>,
    /// The dyndns2 account.
    pub dyndns_account: Option<(String, String)>,
    /// The hostnames the account may update (empty: any).
    pub dyndns_hostnames: Vec<String>,
    /// A DNS zone file a `good` update rewrites.
    pub zone: Option<PathBuf>,
    /// The check-IP paths (empty: `/ip`).
    pub ip_paths: Vec<String>,
}

impl HttpsConfig {
    /// Endpoints on `listen` presenting `leaf`.
    pub fn new(listen: &[&str], leaf: &Leaf) -> Self {
        HttpsConfig {
            listen: listen.iter().map(|address| address.to_string()).collect(),
            certificate: (leaf.chain.clone(), leaf.key.clone()),
            certificates_by_name: Vec::new(),
            dyndns_account: None,
            dyndns_hostnames: Vec::new(),
            zone: None,
            ip_paths: Vec::new(),
        }
    }

    /// Also presents `leaf` to clients asking for its name by SNI.
    pub fn with_certificate_for(mut self, leaf: &Leaf) -> Self {
        self.certificates_by_name.push((leaf.name.clone(), leaf.chain.clone(), leaf.key.clone()));
        self
    }

    /// Sets the dyndns2 account.
    pub fn with_dyndns_account(mut self, user: &str, password: &str) -> Self {
        self.dyndns_account = Some((user.to_string(), password.to_string()));
        self
    }

    /// Rewrites `zone`'s A records on `good` updates.
    pub fn with_zone(mut self, zone: &Path) -> Self {
        self.zone = Some(zone.to_path_buf());
        self
    }
}

/// The provider's dyndns2 and check-IP service over HTTPS (`qemu/peers/https_endpoints.py`),
/// steered by `<directory>/control.json`.
pub struct HttpsEndpoints {
    process: PeerProcess,
    control: PathBuf,
}

peer_process_deref!(HttpsEndpoints);

impl HttpsEndpoints {
    /// Starts it with `config`; the control file starts empty (default answers).
    pub fn start(namespace: Option<&str>, config: &HttpsConfig, directory: &Path) -> Result<Self> {
        std::fs::create_dir_all(directory)?;
        let control = directory.join("control.json");
        write_json_atomically(&control, &serde_json::json!({}))?;
        let mut arguments =
            vec![os("--cert"), text(&config.certificate.0), os("--key"), text(&config.certificate.1), os("--control"), text(&control)];
        for address in &config.listen {
            check_endpoint(namespace, address)?;
            arguments.extend([os("--listen"), os(address.clone())]);
        }
        for (name, certificate, key) in &config.certificates_by_name {
            arguments.extend([os("--cert-for"), os(name.clone()), text(certificate), text(key)]);
        }
        if let Some((user, password)) = &config.dyndns_account {
            arguments.extend([os("--dyndns-user"), os(user.clone()), os("--dyndns-password"), os(password.clone())]);
        }
        for hostname in &config.dyndns_hostnames {
            arguments.extend([os("--dyndns-hostname"), os(hostname.clone())]);
        }
        if let Some(zone) = &config.zone {
            arguments.extend([os("--zone"), text(zone)]);
        }
        for path in &config.ip_paths {
            arguments.extend([os("--ip-path"), os(path.clone())]);
        }
        Ok(HttpsEndpoints { process: PeerProcess::start(namespace, "https_endpoints.py", arguments, directory)?, control })
    }

    /// Replaces the control file: `{"dyndns_answers": [...], "ip_answers": [...],
    /// "ip_body": "...", "ip_status": 200, "ip_body_by_host": {"host": "..."}}` (lists are
    /// consumed one entry per request; a by-host body answers that check-IP host only).
    pub fn set_control(&self, control: &Value) -> Result<()> {
        write_json_atomically(&self.control, control)
    }

    /// The control file as it is now (consumed entries are gone).
    pub fn control(&self) -> Value {
        std::fs::read(&self.control).ok().and_then(|bytes| serde_json::from_slice(&bytes).ok()).unwrap_or(Value::Null)
    }

    /// Every request it answered (path, query, user_agent, auth_user, status, body, ...).
    pub fn requests(&self) -> Vec<Value> {
        self.events_named("request")
    }
}

// ---------------------------------------------------------------------------------------
// Rogue TLS server

/// What the [`RogueTlsServer`] pretends to be, after (or around) its certificate-less
/// TLS 1.3 handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RogueMode {
    /// An SMTP smarthost with STARTTLS (greeting and EHLO in clear).
    SmtpStartTls,
    /// An SMTP smarthost with implicit TLS (port 465 style).
    SmtpImplicit,
    /// A POP3 server with STLS.
    Pop3Stls,
    /// A POP3 server with implicit TLS (port 995 style).
    Pop3Implicit,
    /// An HTTPS server answering dyndns2 updates and check-IP requests.
    Https,
}

impl RogueMode {
    /// The script's `--mode` value.
    pub fn name(self) -> &'static str {
        match self {
            RogueMode::SmtpStartTls => "smtp-starttls",
            RogueMode::SmtpImplicit => "smtp-implicit",
            RogueMode::Pop3Stls => "pop3-stls",
            RogueMode::Pop3Implicit => "pop3-implicit",
            RogueMode::Https => "https",
        }
    }
}

/// A rogue TLS 1.3 server (`qemu/peers/rogue_tls_server.py`): ServerHello,
/// EncryptedExtensions and Finished with no Certificate and no CertificateVerify, then the
/// provider's protocol (SMTP, POP3 or HTTPS) accepting every credential. Its event log holds
/// every handshake step and every byte received after the TLS switch, decrypted.
pub struct RogueTlsServer {
    process: PeerProcess,
}

peer_process_deref!(RogueTlsServer);

impl RogueTlsServer {
    /// Starts it on every `listen` address (`ADDRESS:PORT`) in `mode`, greeting as `hostname`.
    pub fn start(namespace: Option<&str>, listen: &[&str], mode: RogueMode, hostname: &str, directory: &Path) -> Result<Self> {
        let mut arguments = vec![os("--mode"), os(mode.name()), os("--hostname"), os(hostname)];
        for address in listen {
            check_endpoint(namespace, address)?;
            arguments.extend([os("--listen"), os(*address)]);
        }
        Ok(RogueTlsServer { process: PeerProcess::start(namespace, "rogue_tls_server.py", arguments, directory)? })
    }

    /// Every byte it received after the TLS switch (all connections, decrypted, in order).
    pub fn tls_bytes(&self) -> String {
        self.events_named("tls_data").iter().filter_map(|event| event["data"].as_str()).collect()
    }

    /// The lines (or HTTP request lines) it received over TLS.
    pub fn tls_commands(&self) -> Vec<String> {
        self.events_named("command")
            .iter()
            .filter(|event| event["tls"] == true)
            .filter_map(|event| event["line"].as_str().map(str::to_string))
            .collect()
    }

    /// The credentials clients gave away (how, user, password: SASL and Basic decoded).
    pub fn credentials(&self) -> Vec<Value> {
        self.events_named("credential")
    }

    /// Handshakes a client completed (sent its Finished) without ever seeing a certificate.
    pub fn completed_handshakes(&self) -> usize {
        self.events_named("tls_established").len()
    }

    /// Handshakes it reached its Finished in (the client had the server's whole flight).
    pub fn server_finished_sent(&self) -> usize {
        self.events_named("server_finished").len()
    }

    /// Every alert a client sent it (level, description, name).
    pub fn client_alerts(&self) -> Vec<Value> {
        self.events_named("client_alert")
    }
}
