//! Real TLS 1.3 handshakes against `openssl s_server` on 127.0.0.1 with certificates made by
//! the openssl CLI for each run: the CA anchor with host name and validity dates, and the
//! pinned key, each accepted when right and refused when wrong.

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use embedded_tls::blocking::TlsConnection;
use embedded_tls::{Aes128GcmSha256, TlsClock, TlsConfig, TlsContext, TlsError};
use homemx_tls::{spki_sha256, Provider, Trust};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

struct Stream(TcpStream);

impl embedded_io::ErrorType for Stream {
    type Error = std::io::Error;
}
impl embedded_io::Read for Stream {
    fn read(&mut self, buffer: &mut [u8]) -> Result<usize, Self::Error> {
        self.0.read(buffer)
    }
}
impl embedded_io::Write for Stream {
    fn write(&mut self, buffer: &[u8]) -> Result<usize, Self::Error> {
        self.0.write(buffer)
    }
    fn flush(&mut self) -> Result<(), Self::Error> {
        self.0.flush()
    }
}

struct SystemClock;
impl TlsClock for SystemClock {
    fn now() -> Option<u64> {
        Some(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs())
    }
}
struct UnknownTime;
impl TlsClock for UnknownTime {
    fn now() -> Option<u64> {
        None
    }
}
struct TwoYearsAhead;
impl TlsClock for TwoYearsAhead {
    fn now() -> Option<u64> {
        SystemClock::now().map(|now| now + 2 * 365 * 86_400)
    }
}

fn openssl(directory: &Path, arguments: &[&str]) {
    let output = Command::new("openssl").current_dir(directory).args(arguments).output().expect("openssl runs");
    assert!(output.status.success(), "openssl {arguments:?}: {}", String::from_utf8_lossy(&output.stderr));
}

/// CA, a leaf for smarthost.example.net signed by it, and a self-signed leaf with that name.
fn make_certificates() -> PathBuf {
    static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let run = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let directory = std::env::temp_dir().join(format!("homemx-tls-test-{}-{run}", std::process::id()));
    std::fs::create_dir_all(&directory).unwrap();
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
    let mut ca = vec!["req", "-x509", "-days", "30", "-subj", "/CN=homemx test CA", "-keyout", "ca.key", "-out", "ca.pem"];
    ca.extend(ec);
    ca.extend(["-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign"]);
    openssl(&directory, &ca);
    openssl(&directory, &["x509", "-in", "ca.pem", "-outform", "der", "-out", "ca.der"]);
    let mut request = vec!["req", "-new", "-subj", "/CN=smarthost.example.net", "-keyout", "leaf.key", "-out", "leaf.csr"];
    request.extend(ec);
    openssl(&directory, &request);
    std::fs::write(directory.join("leaf.ext"), "subjectAltName=DNS:smarthost.example.net\n").unwrap();
    openssl(&directory, &[
        "x509", "-req", "-in", "leaf.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-days", "30",
        "-extfile", "leaf.ext", "-out", "leaf.pem",
    ]);
    openssl(&directory, &["x509", "-in", "leaf.pem", "-outform", "der", "-out", "leaf.der"]);
    let mut own = vec!["req", "-x509", "-days", "30", "-subj", "/CN=smarthost.example.net", "-keyout", "self.key", "-out", "self.pem"];
    own.extend(ec);
    own.extend(["-addext", "subjectAltName=DNS:smarthost.example.net"]);
    openssl(&directory, &own);
    openssl(&directory, &["x509", "-in", "self.pem", "-outform", "der", "-out", "self.der"]);
    directory
}

struct Server {
    child: Child,
    port: u16,
}

impl Server {
    fn start(directory: &Path, certificate: &str, key: &str) -> Server {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new("openssl")
            .current_dir(directory)
            .args(["s_server", "-quiet", "-tls1_3", "-www", "-accept"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["-cert", certificate, "-key", key])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("openssl s_server starts");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "s_server did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        Server { child, port }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One handshake and, if it succeeds, one request/answer over TLS.
fn handshake<Clock: TlsClock>(port: u16, server_name: &str, trust: Trust<'_>) -> Result<String, TlsError> {
    let socket = TcpStream::connect(("127.0.0.1", port)).unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut read_buffer = vec![0u8; 16_640];
    let mut write_buffer = vec![0u8; 4096];
    let mut connection: TlsConnection<'_, Stream, Aes128GcmSha256> =
        TlsConnection::new(Stream(socket), &mut read_buffer, &mut write_buffer);
    let config = TlsConfig::new().with_server_name(server_name);
    let provider: Provider<'_, _, Clock> = Provider::new(ChaCha20Rng::seed_from_u64(7), trust);
    connection.open(TlsContext::new(&config, provider))?;
    connection.write(b"GET / HTTP/1.0\r\n\r\n")?;
    connection.flush()?;
    let mut answer = [0u8; 64];
    let length = connection.read(&mut answer)?;
    Ok(String::from_utf8_lossy(&answer[..length]).into_owned())
}

#[test]
fn ca_anchor_and_pinned_key_accept_the_right_server_and_refuse_every_wrong_one() {
    let directory = make_certificates();
    let ca = std::fs::read(directory.join("ca.der")).unwrap();
    let leaf = std::fs::read(directory.join("leaf.der")).unwrap();
    let own = std::fs::read(directory.join("self.der")).unwrap();
    let pin = spki_sha256(&leaf).unwrap();
    assert_ne!(pin, spki_sha256(&own).unwrap());

    let good = Server::start(&directory, "leaf.pem", "leaf.key");
    let answer = handshake::<SystemClock>(good.port, "smarthost.example.net", Trust::CaAnchor(&ca)).expect("CA-verified handshake");
    assert!(answer.starts_with("HTTP/1.0 200"), "{answer}");
    let answer = handshake::<UnknownTime>(good.port, "smarthost.example.net", Trust::PinnedKey(pin)).expect("pinned handshake");
    assert!(answer.starts_with("HTTP/1.0 200"), "{answer}");

    assert!(handshake::<SystemClock>(good.port, "mail.other.example", Trust::CaAnchor(&ca)).is_err(), "wrong host name");
    assert!(handshake::<UnknownTime>(good.port, "smarthost.example.net", Trust::CaAnchor(&ca)).is_err(), "no time");
    assert!(handshake::<TwoYearsAhead>(good.port, "smarthost.example.net", Trust::CaAnchor(&ca)).is_err(), "expired");
    let mut wrong_pin = pin;
    wrong_pin[0] ^= 1;
    assert!(handshake::<SystemClock>(good.port, "smarthost.example.net", Trust::PinnedKey(wrong_pin)).is_err(), "wrong pin");
    drop(good);

    let impostor = Server::start(&directory, "self.pem", "self.key");
    assert!(handshake::<SystemClock>(impostor.port, "smarthost.example.net", Trust::CaAnchor(&ca)).is_err(), "self-signed");
    assert!(handshake::<SystemClock>(impostor.port, "smarthost.example.net", Trust::PinnedKey(pin)).is_err(), "other key");
    drop(impostor);
    let _ = std::fs::remove_dir_all(&directory);
}

#[test]
fn spki_hash_matches_openssl() {
    let directory = make_certificates();
    let leaf = std::fs::read(directory.join("leaf.der")).unwrap();
    openssl(&directory, &["x509", "-in", "leaf.pem", "-pubkey", "-noout", "-out", "leaf.pub"]);
    openssl(&directory, &["pkey", "-pubin", "-in", "leaf.pub", "-outform", "der", "-out", "leaf.spki"]);
    let spki = std::fs::read(directory.join("leaf.spki")).unwrap();
    use sha2::Digest;
    let expected: [u8; 32] = sha2::Sha256::digest(&spki).into();
    assert_eq!(spki_sha256(&leaf), Some(expected));
    let _ = std::fs::remove_dir_all(&directory);
}
