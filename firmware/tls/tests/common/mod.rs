//! Test PKI made with the openssl CLI for each run, `openssl s_server` peers on 127.0.0.1,
//! and a blocking driver for [`homemx_tls::TlsClient`] over a `TcpStream`.
#![allow(dead_code)]

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use homemx_tls::{client_config, TlsClient, TlsError, Trust, WallClock, RECORD_BUFFER};
use rustls::crypto::{CryptoProvider, GetRandomFailed, SecureRandom};

#[derive(Debug)]
struct OsRandom;

impl SecureRandom for OsRandom {
    fn fill(&self, destination: &mut [u8]) -> Result<(), GetRandomFailed> {
        use rand_core::RngCore as _;
        rand_core::OsRng.try_fill_bytes(destination).map_err(|_| GetRandomFailed)
    }
}

/// The provider every test uses.
pub fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: std::sync::OnceLock<Arc<CryptoProvider>> = std::sync::OnceLock::new();
    PROVIDER.get_or_init(|| homemx_tls::crypto::provider(&OsRandom)).clone()
}

/// A wall clock fixed at construction.
#[derive(Debug)]
pub struct Clock(pub Option<u64>);

impl WallClock for Clock {
    fn unix_seconds(&self) -> Option<u64> {
        self.0
    }
}

/// The real time, shifted by `offset_seconds`.
pub fn clock_at(offset_seconds: i64) -> &'static Clock {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
    Box::leak(Box::new(Clock(Some((now + offset_seconds) as u64))))
}

/// A clock that does not know the time.
pub fn unknown_time() -> &'static Clock {
    Box::leak(Box::new(Clock(None)))
}

/// A directory of certificates made by openssl.
pub struct Pki {
    pub directory: PathBuf,
}

impl Pki {
    pub fn new(label: &str) -> Pki {
        static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let run = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let directory = std::env::temp_dir().join(format!("homemx-tls-{label}-{}-{run}", std::process::id()));
        let _ = std::fs::remove_dir_all(&directory);
        std::fs::create_dir_all(&directory).unwrap();
        Pki { directory }
    }

    pub fn openssl(&self, arguments: &[&str]) {
        let output = Command::new("openssl").current_dir(&self.directory).args(arguments).output().expect("openssl runs");
        assert!(output.status.success(), "openssl {arguments:?}: {}", String::from_utf8_lossy(&output.stderr));
    }

    /// A private key: `ec:P-256`, `ec:P-384`, `rsa:2048`, `rsa:4096`, `ed25519`.
    pub fn key(&self, name: &str, kind: &str) {
        let file = format!("{name}.key");
        match kind.split_once(':') {
            Some(("ec", curve)) => self.openssl(&["genpkey", "-algorithm", "EC", "-pkeyopt", &format!("ec_paramgen_curve:{curve}"), "-out", &file]),
            Some(("rsa", bits)) => self.openssl(&["genpkey", "-algorithm", "RSA", "-pkeyopt", &format!("rsa_keygen_bits:{bits}"), "-out", &file]),
            _ if kind == "ed25519" => self.openssl(&["genpkey", "-algorithm", "ED25519", "-out", &file]),
            _ => panic!("unknown key kind {kind}"),
        }
    }

    /// A self-signed CA certificate `name.pem`/`name.der` with a new key of `kind`.
    pub fn root(&self, name: &str, kind: &str, days: &str, extensions: &str) {
        self.key(name, kind);
        std::fs::write(self.directory.join(format!("{name}.cnf")), format!("[req]\ndistinguished_name=dn\n[dn]\n{extensions}")).unwrap();
        self.openssl(&[
            "req", "-x509", "-new", "-key", &format!("{name}.key"), "-subj", &format!("/CN={name}"), "-days", days,
            "-config", &format!("{name}.cnf"), "-extensions", "v3", "-out", &format!("{name}.pem"),
        ]);
        self.der(name);
    }

    /// A certificate `name` for `subject` with a new key of `kind`, signed by `issuer`, with
    /// the given extension lines, valid from now for `days`. `signing_options` e.g.
    /// `-sigopt rsa_padding_mode:pss`.
    #[allow(clippy::too_many_arguments)]
    pub fn issue(&self, name: &str, kind: &str, subject: &str, issuer: &str, extensions: &str, days: &str, signing_options: &[&str]) {
        self.key(name, kind);
        std::fs::write(self.directory.join(format!("{name}.ext")), format!("[v3]\n{extensions}\n")).unwrap();
        self.openssl(&["req", "-new", "-key", &format!("{name}.key"), "-subj", &format!("/CN={subject}"), "-out", &format!("{name}.csr")]);
        let mut arguments: Vec<String> = vec![
            "x509".into(), "-req".into(), "-in".into(), format!("{name}.csr"), "-CA".into(), format!("{issuer}.pem"),
            "-CAkey".into(), format!("{issuer}.key"), "-set_serial".into(), format!("{}", 1000 + name.len() * 7 + subject.len()),
            "-extfile".into(), format!("{name}.ext"), "-extensions".into(), "v3".into(), "-out".into(), format!("{name}.pem"),
        ];
        arguments.extend(["-days".into(), days.into()]);
        arguments.extend(signing_options.iter().map(|option| option.to_string()));
        let arguments: Vec<&str> = arguments.iter().map(String::as_str).collect();
        self.openssl(&arguments);
        self.der(name);
    }

    fn der(&self, name: &str) {
        self.openssl(&["x509", "-in", &format!("{name}.pem"), "-outform", "der", "-out", &format!("{name}.der")]);
    }

    pub fn read_der(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.directory.join(format!("{name}.der"))).unwrap()
    }

    /// The private key `name.key` as PKCS#8 DER.
    pub fn key_der(&self, name: &str) -> Vec<u8> {
        self.openssl(&["pkcs8", "-topk8", "-nocrypt", "-in", &format!("{name}.key"), "-outform", "der", "-out", &format!("{name}.key.der")]);
        std::fs::read(self.directory.join(format!("{name}.key.der"))).unwrap()
    }

    /// Concatenates PEM files into `name.pem` (a chain file for s_server).
    pub fn chain(&self, name: &str, parts: &[&str]) {
        let mut chain = String::new();
        for part in parts {
            chain.push_str(&std::fs::read_to_string(self.directory.join(format!("{part}.pem"))).unwrap());
        }
        std::fs::write(self.directory.join(format!("{name}.pem")), chain).unwrap();
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.directory);
    }
}

/// The extensions of a CA that may sign certificates.
pub const CA_EXTENSIONS: &str = "[v3]\nbasicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\n";
/// A server certificate for smarthost.example.net.
pub const SERVER_EXTENSIONS: &str = "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:smarthost.example.net";

/// An `openssl s_server` answering HTTP (`-www`), its output in `log`: TLS 1.3 only unless
/// started with other protocol options.
pub struct Server {
    child: Child,
    pub port: u16,
    pub log: PathBuf,
}

impl Server {
    /// `certificate` and `key` name files in `pki`; `chain` an optional PEM of intermediates.
    pub fn start(pki: &Pki, certificate: &str, key: &str, chain: Option<&str>) -> Server {
        Server::start_with(pki, certificate, key, chain, &["-tls1_3"])
    }

    /// The same with `protocol_options` (e.g. `-tls1_2`, `-cipher ...`) instead of `-tls1_3`.
    pub fn start_with(pki: &Pki, certificate: &str, key: &str, chain: Option<&str>, protocol_options: &[&str]) -> Server {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let log = pki.directory.join(format!("s_server-{port}.log"));
        let output = std::fs::File::create(&log).unwrap();
        let mut command = Command::new("openssl");
        command
            .current_dir(&pki.directory)
            .arg("s_server")
            .args(protocol_options)
            .args(["-www", "-accept"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["-cert", &format!("{certificate}.pem"), "-key", &format!("{key}.key")]);
        if let Some(chain) = chain {
            command.args(["-cert_chain", &format!("{chain}.pem")]);
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(output.try_clone().unwrap())
            .stderr(output)
            .spawn()
            .expect("openssl s_server starts");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "s_server did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        Server { child, port, log }
    }

    /// What s_server printed so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the client state machine over `socket` until `done` says so or an error.
pub fn pump(client: &mut TlsClient<'_>, socket: &mut TcpStream, mut done: impl FnMut(&TlsClient<'_>) -> bool) -> Result<(), TlsError> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        // Until empty: sending lets the client encode the records that did not fit.
        while !client.output().is_empty() {
            socket.write_all(client.output()).expect("send");
            let count = client.output().len();
            client.output_sent(count);
        }
        if done(client) {
            return Ok(());
        }
        assert!(Instant::now() < deadline, "no progress");
        let count = socket.read(client.receive_buffer()).unwrap_or(0);
        if count == 0 {
            return Err(TlsError::NotOpen);
        }
        let result = client.received(count);
        if result.is_err() {
            // Send the alert rustls chose before giving up.
            let _ = socket.write_all(client.output());
            return result;
        }
    }
}

/// One handshake and, if it succeeds, one HTTP request and the first line of its answer.
pub fn fetch(port: u16, server_name: &str, trust: Trust<'_>, clock: &'static Clock) -> Result<String, TlsError> {
    let config = client_config(&provider(), clock, trust).map_err(|_| TlsError::NotOpen)?;
    fetch_with(port, server_name, config).map(|(answer, _, _)| answer)
}

/// [`fetch`] with a given configuration; also returns the negotiated version and suite.
pub fn fetch_with(port: u16, server_name: &str, config: Arc<rustls::ClientConfig>) -> Result<(String, &'static str, &'static str), TlsError> {
    let mut socket = TcpStream::connect(("127.0.0.1", port)).unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut incoming = vec![0u8; RECORD_BUFFER];
    let mut outgoing = vec![0u8; 4096];
    let mut client = TlsClient::new(config, server_name, &mut incoming, &mut outgoing)?;
    pump(&mut client, &mut socket, |client| client.is_open())?;
    let request = b"GET / HTTP/1.0\r\n\r\n";
    let written = client.write(request)?;
    assert_eq!(written, request.len());
    pump(&mut client, &mut socket, |client| client.plaintext().contains(&b'\n'))?;
    let answer = String::from_utf8_lossy(client.plaintext()).lines().next().unwrap_or_default().to_string();
    let (version, suite) = (client.version_name(), client.suite_name());
    client.close()?;
    let _ = socket.write_all(client.output());
    Ok((answer, version, suite))
}

/// Waits until s_server has logged `text` (it logs a refused handshake after the client left).
pub fn wait_for_log(server: &Server, text: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if server.log().contains(text) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

pub fn path(directory: &Path, name: &str) -> PathBuf {
    directory.join(name)
}
