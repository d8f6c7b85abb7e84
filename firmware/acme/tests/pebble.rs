//! The ACME client against a real Pebble 2.4 (Let's Encrypt's test CA, Debian package
//! `pebble`), all on 127.0.0.1: Pebble's ACME endpoint over HTTPS with a certificate made
//! here by openssl, Pebble's DNS pointed at `pebble-challtestsrv` (which answers 127.0.0.1 for
//! every A query and nothing for AAAA), and Pebble's HTTP-01 port pointed at a responder this
//! test runs, which answers from the client's pending challenge. The client is driven over a
//! std TCP + rustls (ring) transport that trusts only the CA made here.
//!
//! Cases: a certificate for `mx.example.test` issued and checked (with one `badNonce` from
//! Pebble provoked on the way, which the client retries); the challenge answered with a
//! wrong key authorization, where the order fails and the client reports Pebble's problem;
//! and a Pebble that requires External Account Binding: refused without it (the client says
//! so from the directory), refused with a wrong MAC key (Pebble's problem), issued with the
//! right one; and TLS-ALPN-01 answered by homemx-tls's server presenting the validation
//! certificate the crate makes (no HTTP-01 responder at all).
//!
//! Pebble missing is a failure telling to run host-tools/setup.sh, never a skip.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use homemx_acme::client::{Action, Client, Config, Error, ExternalAccount, PendingChallenge, Request, Response, Step};
use homemx_acme::objects::ChallengeKind;
use homemx_acme::{ari, exchange};
use homemx_acme::url::{self, Url};
use homemx_tls::identity::{check_chain, DeviceKey, HostName, InstallError};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};

const HOST: &str = "mx.example.test";

/// The system allocator, counting this thread's live heap bytes and their high-water mark:
/// the client's heap figures (each test drives its client on its own thread).
struct Counting;

thread_local! {
    static LIVE: Cell<usize> = const { Cell::new(0) };
    static PEAK: Cell<usize> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let pointer = unsafe { System.alloc(layout) };
        if !pointer.is_null() {
            let _ = LIVE.try_with(|live| {
                live.set(live.get() + layout.size());
                let _ = PEAK.try_with(|peak| peak.set(peak.get().max(live.get())));
            });
        }
        pointer
    }

    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        unsafe { System.dealloc(pointer, layout) };
        let _ = LIVE.try_with(|live| live.set(live.get().saturating_sub(layout.size())));
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn live() -> usize {
    LIVE.with(Cell::get)
}

/// Starts a new high-water mark at the current live size; returns it.
fn reset_peak() -> usize {
    let now = live();
    PEAK.with(|peak| peak.set(now));
    now
}

fn peak() -> usize {
    PEAK.with(Cell::get)
}

/// What driving a client cost.
#[derive(Debug, Default)]
struct Figures {
    requests: usize,
    bad_nonces: usize,
    /// Most heap the client held or used at once (bytes), the caller's buffers excluded.
    heap_high_water: usize,
    /// Host time spent inside `poll` and `receive` (signing, parsing, the chain checks).
    client_time: Duration,
}

/// Kills and reaps the processes this test started (by their PID, through `Child`).
struct Children(Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Removes the temporary directory.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn require_tool(name: &str) -> PathBuf {
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .map(|directory| directory.join(name))
        .find(|candidate| candidate.is_file());
    found.unwrap_or_else(|| panic!("`{name}` is not installed: run host-tools/setup.sh (it installs the Debian package `pebble`)"))
}

fn openssl(directory: &Path, arguments: &[&str]) {
    let output = Command::new(require_tool("openssl")).args(arguments).current_dir(directory).output().unwrap();
    assert!(output.status.success(), "openssl {arguments:?}: {}", String::from_utf8_lossy(&output.stderr));
}

/// A CA and a certificate for 127.0.0.1 that Pebble serves its ACME API with.
fn make_https_certificate(directory: &Path) {
    openssl(
        directory,
        &[
            "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
            "-days", "2", "-subj", "/CN=homemx test Pebble HTTPS CA", "-addext", "basicConstraints=critical,CA:TRUE", "-addext",
            "keyUsage=critical,keyCertSign",
        ],
    );
    openssl(
        directory,
        &["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "key.pem", "-out", "cert.csr", "-subj", "/CN=127.0.0.1"],
    );
    std::fs::write(directory.join("ext.cnf"), "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n").unwrap();
    openssl(
        directory,
        &[
            "x509", "-req", "-in", "cert.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out", "cert.pem", "-days", "2",
            "-extfile", "ext.cnf",
        ],
    );
}

fn wait_for_port(port: u16, children: &mut Children) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        for child in &mut children.0 {
            if let Some(status) = child.try_wait().unwrap() {
                panic!("a Pebble process exited early: {status}");
            }
        }
        assert!(Instant::now() < deadline, "nothing listens on 127.0.0.1:{port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// What the HTTP-01 responder answers.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Answer {
    /// The client's key authorization.
    Right,
    /// The token with a thumbprint of another key.
    Wrong,
}

/// The port-80 stand-in: answers `GET /.well-known/acme-challenge/<token>` from the pending
/// challenge, 403 to anything else. Returns its port and the count of requests it served.
fn start_responder(pending: Arc<Mutex<Option<PendingChallenge>>>, answer: Answer, stop: Arc<AtomicBool>) -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let served = Arc::new(AtomicUsize::new(0));
    let counter = served.clone();
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            let Ok((mut stream, _)) = listener.accept() else {
                std::thread::sleep(Duration::from_millis(10));
                continue;
            };
            stream.set_nonblocking(false).unwrap();
            stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && head.len() < 8192 && stream.read(&mut byte).is_ok_and(|n| n == 1) {
                head.push(byte[0]);
            }
            let text = String::from_utf8_lossy(&head);
            let path = text.split(' ').nth(1).unwrap_or("").to_string();
            let pending = pending.lock().unwrap().clone();
            let body = pending.as_ref().and_then(|pending| {
                pending.http01_answer(&path).map(|right| match answer {
                    Answer::Right => right.to_string(),
                    Answer::Wrong => format!("{}.{}", pending.token, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
                })
            });
            counter.fetch_add(1, Ordering::Relaxed);
            let response = match body {
                Some(body) => format!("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()),
                None => "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_string(),
            };
            let _ = stream.write_all(response.as_bytes());
        }
    });
    (port, served)
}

struct Pebble {
    _children: Children,
    _directory: TempDir,
    directory_url: Url,
    tls: Arc<rustls::ClientConfig>,
}

/// Pebble's example EAB key `kid-1` (its packaged example configuration).
const EAB_KEY_ID: &str = "kid-1";
const EAB_MAC_KEY: &str = "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W";

/// The board's entropy source stand-in for homemx-tls's provider.
#[derive(Debug)]
struct OsRandom;

impl rustls::crypto::SecureRandom for OsRandom {
    fn fill(&self, destination: &mut [u8]) -> Result<(), rustls::crypto::GetRandomFailed> {
        use rand_core::RngCore as _;
        rand_core::OsRng.try_fill_bytes(destination).map_err(|_| rustls::crypto::GetRandomFailed)
    }
}

/// The host's clock for homemx-tls's server.
#[derive(Debug)]
struct SystemClock;

impl homemx_tls::WallClock for SystemClock {
    fn unix_seconds(&self) -> Option<u64> {
        Some(unix_now())
    }
}

/// The port-443 stand-in for TLS-ALPN-01: homemx-tls's TLS-ALPN-01 server configuration (its
/// RustCrypto provider) presenting the validation certificate the crate makes for the pending
/// challenge, only to `acme-tls/1` handshakes. Returns its port and the count of handshakes
/// completed.
fn start_tls_alpn_responder(pending: Arc<Mutex<Option<PendingChallenge>>>, stop: Arc<AtomicBool>) -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let served = Arc::new(AtomicUsize::new(0));
    let counter = served.clone();
    std::thread::spawn(move || {
        let provider = homemx_tls::crypto::provider(&OsRandom);
        let host = HostName::new(HOST).unwrap();
        while !stop.load(Ordering::Relaxed) {
            let Ok((stream, _)) = listener.accept() else {
                std::thread::sleep(Duration::from_millis(10));
                continue;
            };
            stream.set_nonblocking(false).unwrap();
            stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let Some(challenge) = pending.lock().unwrap().clone() else { continue };
            // RFC 8737 allows any key for the validation certificate: a fresh one each time.
            let key = DeviceKey::generate(&mut rand_core::OsRng);
            let certificate = challenge.tls_alpn_01_certificate(&key, &host, unix_now() - 60, &mut rand_core::OsRng).unwrap();
            let config =
                homemx_tls::tls_alpn_01_server_config(&provider, &SystemClock, CertificateDer::from(certificate), key.signing_key()).unwrap();
            let connection = rustls::ServerConnection::new(config).unwrap();
            let mut tls = rustls::StreamOwned::new(connection, stream);
            if tls.conn.complete_io(&mut tls.sock).is_ok() && tls.conn.alpn_protocol() == Some(homemx_tls::ACME_TLS_ALPN) {
                counter.fetch_add(1, Ordering::Relaxed);
            }
            tls.conn.send_close_notify();
            let _ = tls.conn.complete_io(&mut tls.sock);
        }
    });
    (port, served)
}

/// Starts challtestsrv and Pebble on free 127.0.0.1 ports, Pebble's HTTP-01 port being
/// `http_port` and its TLS-ALPN-01 port `tls_port`; with `eab`, Pebble requires External
/// Account Binding with [`EAB_KEY_ID`].
fn start_pebble(http_port: u16, tls_port: u16, eab: bool) -> Pebble {
    let pebble = require_tool("pebble");
    let challtestsrv = require_tool("pebble-challtestsrv");
    static COUNT: AtomicUsize = AtomicUsize::new(0);
    let directory =
        std::env::temp_dir().join(format!("homemx-acme-pebble-{}-{}", std::process::id(), COUNT.fetch_add(1, Ordering::Relaxed)));
    std::fs::create_dir_all(&directory).unwrap();
    let temp = TempDir(directory.clone());
    make_https_certificate(&directory);

    let (listen, management, dns, dns_management) = (free_port(), free_port(), free_port(), free_port());
    let config = format!(
        r#"{{"pebble": {{"listenAddress": "127.0.0.1:{listen}", "managementListenAddress": "127.0.0.1:{management}",
            "certificate": "cert.pem", "privateKey": "key.pem", "httpPort": {http_port}, "tlsPort": {tls_port},
            "ocspResponderURL": "", "externalAccountBindingRequired": {eab},
            "externalAccountMACKeys": {{"{EAB_KEY_ID}": "{EAB_MAC_KEY}"}}}}}}"#
    );
    std::fs::write(directory.join("pebble.json"), config).unwrap();

    let mut children = Children(Vec::new());
    let dns_address = format!("127.0.0.1:{dns}");
    let dns_management_address = format!("127.0.0.1:{dns_management}");
    children.0.push(
        Command::new(challtestsrv)
            .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", "", "-dns01", &dns_address, "-http01", "", "-https01", "", "-tlsalpn01", ""])
            .args(["-management", &dns_management_address])
            .current_dir(&directory)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for_port(dns_management, &mut children);
    let log = std::fs::File::create(directory.join("pebble.log")).unwrap();
    children.0.push(
        Command::new(pebble)
            .args(["-config", "pebble.json", "-dnsserver", &dns_address])
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .current_dir(&directory)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    wait_for_port(listen, &mut children);

    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_file(directory.join("ca.pem")).unwrap()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Pebble {
        _children: children,
        _directory: temp,
        directory_url: url::parse(&format!("https://127.0.0.1:{listen}/dir")).unwrap(),
        tls: Arc::new(tls),
    }
}

/// Sends `request` over HTTPS to 127.0.0.1 and returns every byte of the answer.
fn send(tls: &Arc<rustls::ClientConfig>, request: &Request) -> Vec<u8> {
    assert_eq!(request.url.host(), "127.0.0.1", "the test talks to 127.0.0.1 only");
    let stream = TcpStream::connect(("127.0.0.1", request.url.port())).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let connection = rustls::ClientConnection::new(tls.clone(), name).unwrap();
    let mut tls_stream = rustls::StreamOwned::new(connection, stream);
    tls_stream.write_all(&exchange::request_bytes(request).unwrap()).unwrap();
    tls_stream.flush().unwrap();
    let mut answer = Vec::new();
    match tls_stream.read_to_end(&mut answer) {
        Ok(_) => {}
        // A server that closes without close_notify: the HTTP framing says whether all came.
        Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => {}
        Err(error) => panic!("reading the answer: {error}"),
    }
    answer
}

/// The ARI identifier of the PEM certificate at `path` from openssl's output (the key
/// identifier and the serial as hex; the serial's DER contents get a 00 before a high bit).
fn openssl_ari_id(path: &Path) -> String {
    let output = Command::new(require_tool("openssl"))
        .args(["x509", "-noout", "-serial", "-ext", "authorityKeyIdentifier", "-in"])
        .arg(path)
        .output()
        .unwrap();
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).unwrap();
    let hex = |text: &str| -> Vec<u8> {
        let digits: String = text.chars().filter(char::is_ascii_hexdigit).collect();
        (0..digits.len()).step_by(2).map(|index| u8::from_str_radix(&digits[index..index + 2], 16).unwrap()).collect()
    };
    let serial_line = text.lines().find_map(|line| line.strip_prefix("serial=")).unwrap();
    let mut serial = hex(serial_line);
    if serial[0] & 0x80 != 0 {
        serial.insert(0, 0);
    }
    let key_line = text.lines().skip_while(|line| !line.contains("Authority Key Identifier")).nth(1).unwrap();
    let key_identifier = hex(key_line.trim().trim_start_matches("keyid:"));
    format!("{}.{}", homemx_acme::base64url::encode(&key_identifier), homemx_acme::base64url::encode(&serial))
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// Drives the client made by `make` until it is done or failed; `tamper_nonce_of` names a
/// request path whose answer's nonce is replaced by one Pebble never issued.
fn drive<'k>(
    make: impl FnOnce() -> Client<'k>,
    pebble: &Pebble,
    pending: &Arc<Mutex<Option<PendingChallenge>>>,
    mut tamper_nonce_of: Option<&str>,
) -> (Client<'k>, Figures) {
    let mut figures = Figures::default();
    let start = reset_peak();
    let mut client = make();
    loop {
        let retained = live().saturating_sub(start);
        reset_peak();
        let began = Instant::now();
        let action = client.poll();
        figures.client_time += began.elapsed();
        figures.heap_high_water = figures.heap_high_water.max(peak().saturating_sub(start));
        *pending.lock().unwrap() = client.pending_challenge().cloned();
        match action {
            Action::Send { request, delay_ms } => {
                figures.requests += 1;
                assert!(figures.requests < 60, "too many requests");
                std::thread::sleep(Duration::from_millis(u64::from(delay_ms)));
                let bytes = send(&pebble.tls, &request);
                let mut body = vec![0u8; exchange::MAX_BODY];
                let mut store = vec![0u8; exchange::HEADER_STORE];
                let mut parser = exchange::response_parser(&mut body, &mut store);
                parser.feed(&bytes).unwrap();
                parser.connection_closed().unwrap();
                let mut response: Response<'_> = exchange::response(&parser).unwrap();
                if response.status == 400 && String::from_utf8_lossy(response.body).contains("badNonce") {
                    figures.bad_nonces += 1;
                }
                // Provoke a real badNonce: hand the client a nonce Pebble never issued.
                if tamper_nonce_of.is_some_and(|path| request.url.path_and_query() == path) {
                    response.replay_nonce = Some("bm90LWEtcmVhbC1ub25jZQ");
                    tamper_nonce_of = None;
                }
                let now = unix_now();
                let before = reset_peak();
                let began = Instant::now();
                client.receive(&response, now);
                figures.client_time += began.elapsed();
                figures.heap_high_water = figures.heap_high_water.max(retained + peak().saturating_sub(before));
            }
            Action::Done | Action::Failed => return (client, figures),
        }
    }
}

fn config(pebble: &Pebble) -> Config {
    let mut config = Config::new(pebble.directory_url.clone(), HostName::new(HOST).unwrap(), true);
    config.contact = vec!["mailto:postmaster@example.test".to_string()];
    config.poll_interval_ms = 100;
    config.max_polls = 50;
    config
}

#[test]
fn pebble_issues_a_certificate_that_passes_the_checks() {
    let started = Instant::now();
    let pending = Arc::new(Mutex::new(None));
    let stop = Arc::new(AtomicBool::new(false));
    let (http_port, served) = start_responder(pending.clone(), Answer::Right, stop.clone());
    let pebble = start_pebble(http_port, free_port(), false);

    let account_key = DeviceKey::generate(&mut rand_core::OsRng);
    let device_key = DeviceKey::generate(&mut rand_core::OsRng);
    let (client, figures) = drive(|| Client::new(config(&pebble), &account_key, &device_key), &pebble, &pending, Some("/sign-me-up"));
    stop.store(true, Ordering::Relaxed);
    assert!(client.error().is_none(), "failed: {}", client.error().unwrap());
    let issued = client.issued().expect("a certificate");
    assert_eq!(figures.bad_nonces, 1, "Pebble refused the tampered nonce once and the retry passed");
    assert!(served.load(Ordering::Relaxed) >= 1, "Pebble fetched the HTTP-01 answer");
    assert!(client.account_url().unwrap().starts_with(pebble.directory_url.as_str().trim_end_matches("dir")));
    assert!(issued.chain.len() >= 2);
    assert!(issued.pem.starts_with("-----BEGIN CERTIFICATE-----"));
    assert_eq!(client.pending_challenge(), None, "nothing left to answer");

    // The checks the client ran are real: the same chain fails for another key or name.
    let host = HostName::new(HOST).unwrap();
    assert_eq!(check_chain(issued.pem.as_bytes(), &device_key, &host, unix_now()).unwrap(), issued.chain);
    let other_key = DeviceKey::generate(&mut rand_core::OsRng);
    assert_eq!(check_chain(issued.pem.as_bytes(), &other_key, &host, unix_now()).unwrap_err(), InstallError::WrongKey);
    let other_host = HostName::new("other.example.test").unwrap();
    assert_eq!(check_chain(issued.pem.as_bytes(), &device_key, &other_host, unix_now()).unwrap_err(), InstallError::WrongName);
    // The ARI identifier of the issued leaf agrees with openssl's reading of it.
    let leaf_path = pebble._directory.0.join("leaf.pem");
    let leaf_pem = issued.pem.split_inclusive("-----END CERTIFICATE-----\n").next().unwrap();
    std::fs::write(&leaf_path, leaf_pem).unwrap();
    assert_eq!(ari::certificate_id(&issued.chain[0]).unwrap(), openssl_ari_id(&leaf_path));
    eprintln!(
        "issued in {} requests, {:.2} s including Pebble's start; client: heap high-water {} B, {:.1} ms host time in poll/receive",
        figures.requests,
        started.elapsed().as_secs_f64(),
        figures.heap_high_water,
        figures.client_time.as_secs_f64() * 1000.0
    );
}

#[test]
fn a_wrong_key_authorization_fails_with_pebbles_problem() {
    let pending = Arc::new(Mutex::new(None));
    let stop = Arc::new(AtomicBool::new(false));
    let (http_port, served) = start_responder(pending.clone(), Answer::Wrong, stop.clone());
    let pebble = start_pebble(http_port, free_port(), false);

    let account_key = DeviceKey::generate(&mut rand_core::OsRng);
    let device_key = DeviceKey::generate(&mut rand_core::OsRng);
    let (client, _) = drive(|| Client::new(config(&pebble), &account_key, &device_key), &pebble, &pending, None);
    stop.store(true, Ordering::Relaxed);
    assert!(client.issued().is_none());
    assert!(served.load(Ordering::Relaxed) >= 1, "Pebble fetched the (wrong) HTTP-01 answer");
    let error = client.error().expect("an error");
    let Error::AuthorizationFailed(Some(problem)) = error else { panic!("not a failed authorization: {error:?}") };
    assert_eq!(problem.acme_error(), Some("unauthorized"), "{problem}");
    let detail = problem.detail.as_deref().unwrap_or("");
    assert!(detail.contains("key authorization"), "Pebble's detail: {detail}");
    eprintln!("reported: {error}");
}

#[test]
fn external_account_binding_with_pebble() {
    let pending = Arc::new(Mutex::new(None));
    let stop = Arc::new(AtomicBool::new(false));
    let (http_port, _) = start_responder(pending.clone(), Answer::Right, stop.clone());
    let pebble = start_pebble(http_port, free_port(), true);
    let account_key = DeviceKey::generate(&mut rand_core::OsRng);
    let device_key = DeviceKey::generate(&mut rand_core::OsRng);

    let (client, _) = drive(|| Client::new(config(&pebble), &account_key, &device_key), &pebble, &pending, None);
    assert_eq!(client.error(), Some(&Error::ExternalAccountRequired));

    let mut wrong = config(&pebble);
    wrong.external_account = Some(ExternalAccount { key_id: EAB_KEY_ID.to_string(), mac_key: vec![7u8; 48] });
    let (client, _) = drive(|| Client::new(wrong, &account_key, &device_key), &pebble, &pending, None);
    let Some(Error::Problem { step: Step::NewAccount, problem }) = client.error() else { panic!("{:?}", client.error()) };
    eprintln!("wrong MAC key: {problem}");
    assert_eq!(problem.acme_error(), Some("unauthorized"), "{problem}");
    assert!(client.account_url().is_none());

    let mut right = config(&pebble);
    let mac_key = homemx_acme::base64url::decode(EAB_MAC_KEY).unwrap();
    right.external_account = Some(ExternalAccount { key_id: EAB_KEY_ID.to_string(), mac_key });
    let (client, _) = drive(|| Client::new(right, &account_key, &device_key), &pebble, &pending, None);
    stop.store(true, Ordering::Relaxed);
    assert!(client.error().is_none(), "failed: {}", client.error().unwrap());
    assert!(client.issued().is_some());
}

#[test]
fn pebble_validates_tls_alpn_01() {
    let pending = Arc::new(Mutex::new(None));
    let stop = Arc::new(AtomicBool::new(false));
    let (tls_port, served) = start_tls_alpn_responder(pending.clone(), stop.clone());
    // Nothing answers HTTP-01: only the TLS-ALPN-01 answer can make the order valid.
    let pebble = start_pebble(free_port(), tls_port, false);
    let account_key = DeviceKey::generate(&mut rand_core::OsRng);
    let device_key = DeviceKey::generate(&mut rand_core::OsRng);
    let mut config = config(&pebble);
    config.challenges = vec![ChallengeKind::TlsAlpn01];
    let (client, _) = drive(|| Client::new(config, &account_key, &device_key), &pebble, &pending, None);
    stop.store(true, Ordering::Relaxed);
    assert!(client.error().is_none(), "failed: {}", client.error().unwrap());
    assert!(client.issued().is_some());
    assert!(served.load(Ordering::Relaxed) >= 1, "Pebble completed an acme-tls/1 handshake");
}
