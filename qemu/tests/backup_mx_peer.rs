//! Self-test of the provider's backup MX POP3 server (`homemx_qemu::backup_mx`, a private
//! Dovecot) without QEMU: it runs on 127.0.0.1 on a free high port in each TLS mode and is
//! exercised with Python's poplib and ssl. Needs root (Dovecot's master drops privileges to
//! the mail account); skipped with a note otherwise.

use std::net::{Ipv4Addr, TcpListener};
use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use homemx_qemu::backup_mx::{BackupMx, BackupMxConfig, BackupTls};
use homemx_qemu::machine::new_run_directory;
use homemx_qemu::network::{IsolatedNetwork, WAN_CLIENT};
use homemx_qemu::provider::{self, CertificateKind, TestCa, POP_NAME};
use serde_json::Value;

const USER: &str = "alice@example.net";
const PASSWORD: &str = "p0p-s3cret";

const FIRST: &[u8] = b"From: Alice <alice@example.org>\r\nTo: bob@example.net\r\nSubject: first\r\n\r\nHello\r\n.a line starting with a dot\r\n..two dots\r\n.\r\nend\r\n";
const SECOND: &[u8] = b"From: Carol <carol@example.org>\r\nTo: bob@example.net\r\nSubject: second\r\n\r\nStill here.\r\n";

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        eprintln!("note: skipping the backup MX self-test: Dovecot's master must run as root");
    }
    root
}

fn test_ca() -> &'static TestCa {
    static CA: OnceLock<TestCa> = OnceLock::new();
    CA.get_or_init(|| TestCa::create(&new_run_directory("backup-mx-ca").unwrap()).expect("test CA"))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn path(path: &Path) -> &str {
    path.to_str().expect("UTF-8 path")
}

/// A POP3 session with poplib; prints one JSON object. Arguments: action (full | uidl |
/// tls12), mode (implicit | starttls | notls), port, CA file, user, password. It connects
/// to $POP_HOST (127.0.0.1) from $POP_SOURCE (127.0.0.2: Dovecot treats a connection from
/// its own address as secured and would allow plaintext login).
const POP3_CLIENT: &str = r#"
import base64, json, os, poplib, socket, ssl, sys
HOST, SOURCE = os.environ.get("POP_HOST", "127.0.0.1"), os.environ.get("POP_SOURCE", "127.0.0.2")
action, mode, port, cafile, user, password = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6]
NAME = "pop.example.net"
def context(tls12=False):
    c = ssl.create_default_context(cafile=cafile)
    if tls12:
        c.maximum_version = ssl.TLSVersion.TLSv1_2
    return c
# _create_socket takes (timeout) before Python 3.12 and (host, port, timeout) since.
class Plain(poplib.POP3):
    def _create_socket(self, *arguments):
        return socket.create_connection((HOST, port), arguments[-1], source_address=(SOURCE, 0))
class Implicit(poplib.POP3_SSL):
    def _create_socket(self, *arguments):
        raw = socket.create_connection((HOST, port), arguments[-1], source_address=(SOURCE, 0))
        return self.context.wrap_socket(raw, server_hostname=NAME)
def error(e):
    return e.args[0].decode() if isinstance(e.args[0], bytes) else str(e.args[0])
def connect(result, tls12=False):
    if mode == "implicit":
        client = Implicit(NAME, port, timeout=10, context=context(tls12))
    else:
        client = Plain(NAME, port, timeout=10)
        result["capa_plain"] = sorted(client.capa())
        if mode == "starttls":
            try:
                client.user(user)
                client.pass_(password)
                result["pass_before_tls"] = "accepted"
            except poplib.error_proto as e:
                result["pass_before_tls"] = error(e)
            result["stls"] = client.stls(context(tls12)).decode()
        else:
            try:
                result["stls"] = client._shortcmd("STLS").decode()
            except poplib.error_proto as e:
                result["stls"] = error(e)
    if mode != "notls":
        result["version"] = client.sock.version()
        result["certificate"] = base64.b64encode(client.sock.getpeercert(True)).decode()
    return client
result = {}
if action == "tls12":
    try:
        connect(result, tls12=True)
        result["tls12"] = "accepted"
    except (ssl.SSLError, OSError, poplib.error_proto) as e:
        result["tls12"] = "refused"
    print(json.dumps(result))
    sys.exit(0)
client = connect(result)
result["capa"] = sorted(client.capa())
if action == "full":
    try:
        client.user(user)
        client.pass_("wrong-" + password)
        result["wrong"] = "accepted"
    except poplib.error_proto as e:
        result["wrong"] = error(e)
client.user(user)
result["login"] = client.pass_(password).decode()
result["list"] = [line.decode() for line in client.list()[1]]
result["uidl"] = [line.decode() for line in client.uidl()[1]]
if action == "full":
    lines = client.retr(1)[1]
    result["retr"] = base64.b64encode(b"".join(line + b"\r\n" for line in lines)).decode()
    result["dele"] = client.dele(1).decode()
result["quit"] = client.quit().decode()
print(json.dumps(result))
"#;

fn pop3(action: &str, mode: &str, port: u16, user: &str, password: &str) -> Value {
    pop3_trusting(&test_ca().ca_certificate, action, mode, port, user, password)
}

/// [`pop3`] verifying the server against the CA certificate `ca`.
fn pop3_trusting(ca: &Path, action: &str, mode: &str, port: u16, user: &str, password: &str) -> Value {
    let ca = path(ca).to_string();
    let output = Command::new(provider::python())
        .arg("-c")
        .arg(POP3_CLIENT)
        .args([action, mode, &port.to_string(), &ca, user, password])
        .output()
        .expect("python3 runs");
    assert!(output.status.success(), "python failed: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|error| panic!("python printed no JSON ({error}): {}", String::from_utf8_lossy(&output.stdout)))
}

fn decode_base64(text: &str) -> Vec<u8> {
    let output = Command::new(provider::python())
        .args(["-c", "import base64, sys; sys.stdout.buffer.write(base64.b64decode(sys.argv[1]))", text])
        .output()
        .expect("python3 runs");
    output.stdout
}

fn strings(value: &Value) -> Vec<String> {
    value.as_array().map(|all| all.iter().filter_map(|entry| entry.as_str().map(str::to_string)).collect()).unwrap_or_default()
}

/// The UIDL column of a UIDL listing.
fn uidls(value: &Value) -> Vec<String> {
    strings(value).iter().filter_map(|line| line.split_whitespace().nth(1).map(str::to_string)).collect()
}

fn start(label: &str, tls: BackupTls) -> BackupMx {
    let mut directory = new_run_directory(label).unwrap();
    if tls == BackupTls::NoTls {
        // Deep enough that Dovecot's sockets would pass 108 bytes there: its files are in the
        // system temp dir anyway.
        directory = directory.join("a-directory-name-long-enough-to-push-unix-socket-paths-past-their-limit");
    }
    let mut config = BackupMxConfig::new(format!("127.0.0.1:{}", free_port()), tls, USER, PASSWORD);
    if tls != BackupTls::NoTls {
        config = config.with_certificate(test_ca().leaf(POP_NAME).expect("pop leaf"));
    }
    BackupMx::start(None, &config, &directory).unwrap_or_else(|error| panic!("backup MX in {tls:?} mode: {error}"))
}

fn port(server: &BackupMx) -> u16 {
    server.config().listen.rsplit(':').next().unwrap().parse().unwrap()
}

/// Logs in, lists, retrieves and deletes the first of two messages; the second survives
/// (also a restart, with the same UIDL).
fn collect_one_of_two(label: &str, tls: BackupTls, mode: &str) {
    let mut server = start(label, tls);
    assert_eq!(server.logins(), 0);
    server.deliver(FIRST).unwrap();
    server.deliver(SECOND).unwrap();
    assert_eq!(server.remaining(), vec![FIRST.to_vec(), SECOND.to_vec()]);

    let result = pop3("full", mode, port(&server), USER, PASSWORD);
    eprintln!("{mode}: {result}");
    if mode == "starttls" {
        assert!(strings(&result["capa_plain"]).contains(&"STLS".to_string()), "{result}");
        assert!(!strings(&result["capa_plain"]).contains(&"USER".to_string()), "no USER before STLS: {result}");
        assert!(result["pass_before_tls"].as_str().unwrap().starts_with("-ERR"), "no plaintext login before STLS: {result}");
        assert_eq!(server.plaintext_refused(), 1, "{}", server.log());
        assert!(result["stls"].as_str().unwrap().starts_with("+OK"), "{result}");
    }
    if mode != "notls" {
        assert_eq!(result["version"], "TLSv1.3");
        assert!(!strings(&result["capa"]).contains(&"STLS".to_string()), "no STLS once in TLS: {result}");
    }
    assert!(result["wrong"].as_str().unwrap().starts_with("-ERR"), "a wrong password is refused: {result}");
    assert!(result["login"].as_str().unwrap().starts_with("+OK"), "{result}");
    assert_eq!(strings(&result["list"]).len(), 2, "{result}");
    let before = uidls(&result["uidl"]);
    assert_eq!(before.len(), 2, "{result}");
    assert_ne!(before[0], before[1]);
    assert_eq!(decode_base64(result["retr"].as_str().unwrap()), FIRST, "RETR is byte-exact");
    assert!(result["dele"].as_str().unwrap().starts_with("+OK"));
    assert!(result["quit"].as_str().unwrap().starts_with("+OK"));
    assert_eq!(server.remaining(), vec![SECOND.to_vec()]);
    assert_eq!(server.logins(), 1, "{}", server.log());
    assert_eq!(server.failed_logins(), 1, "{}", server.log());
    let plaintext = if mode == "starttls" { 1 } else { 0 };
    assert_eq!(server.login_attempts(), 2 + plaintext, "{}", server.log());

    if mode != "notls" {
        let refused = pop3("tls12", mode, port(&server), USER, PASSWORD);
        assert_eq!(refused["tls12"], "refused", "TLS 1.2 is refused: {refused}");
        assert_eq!(server.logins(), 1);
    }

    server.restart().unwrap();
    let again = pop3("uidl", mode, port(&server), USER, PASSWORD);
    assert_eq!(uidls(&again["uidl"]), vec![before[1].clone()], "UIDLs survive a restart: {again}");
    assert_eq!(server.remaining(), vec![SECOND.to_vec()], "no DELE, nothing removed");
    assert_eq!(server.logins(), 2, "{}", server.log());
    let pid = server.pid().unwrap();
    drop(server);
    // SAFETY: signal 0 only asks whether the PID still exists.
    assert_ne!(unsafe { libc::kill(pid as i32, 0) }, 0, "dovecot {pid} is gone after drop");
}

#[test]
fn starttls_mode_offers_stls_requires_tls13_and_serves_the_maildir() {
    if is_root() {
        collect_one_of_two("backup-mx-starttls", BackupTls::StartTls, "starttls");
    }
}

#[test]
fn implicit_mode_serves_pop3s_with_tls13_only() {
    if is_root() {
        collect_one_of_two("backup-mx-implicit", BackupTls::Implicit, "implicit");
    }
}

#[test]
fn plaintext_mode_offers_no_stls() {
    if is_root() {
        let server = start("backup-mx-notls", BackupTls::NoTls);
        server.deliver(SECOND).unwrap();
        let result = pop3("uidl", "notls", port(&server), USER, PASSWORD);
        assert!(!strings(&result["capa_plain"]).contains(&"STLS".to_string()), "{result}");
        assert!(result["stls"].as_str().unwrap().starts_with("-ERR"), "{result}");
        assert!(result["login"].as_str().unwrap().starts_with("+OK"), "{result}");
        assert_eq!(uidls(&result["uidl"]).len(), 1);
        assert_eq!(server.logins(), 1);
        let wrong = Command::new(provider::python())
            .arg("-c")
            .arg(POP3_CLIENT)
            .args(["uidl", "notls", &port(&server).to_string(), "/dev/null", USER, "wrong"])
            .output()
            .unwrap();
        assert!(!wrong.status.success() && String::from_utf8_lossy(&wrong.stderr).contains("-ERR"), "a wrong password is refused");
        server.wait_for_log("Password mismatch", Duration::from_secs(5)).unwrap();
        assert_eq!((server.logins(), server.failed_logins()), (1, 1), "{}", server.log());
        assert_eq!(server.remaining(), vec![SECOND.to_vec()]);
        let working = server.directory().to_path_buf();
        assert!(working.starts_with(std::fs::canonicalize(std::env::temp_dir()).unwrap()), "files in the temp dir: {}", working.display());
        assert!(working.join("passwd").is_file() && working.join("base").is_dir());
        drop(server);
        assert!(!working.exists(), "its directory is removed after drop");
    }
}

#[test]
fn serves_a_documentation_address_inside_a_test_namespace() {
    if !is_root() {
        return;
    }
    let directory = new_run_directory("backup-mx-namespace").unwrap();
    let network = IsolatedNetwork::create(&directory).expect("test namespace");
    let namespace = network.namespace();
    let address = Ipv4Addr::new(203, 0, 113, 110);
    provider::add_wan_address(namespace, address).unwrap();
    let config =
        BackupMxConfig::new(format!("{address}:995"), BackupTls::Implicit, USER, PASSWORD).with_certificate(test_ca().leaf(POP_NAME).unwrap());
    let server = BackupMx::start(Some(namespace), &config, &directory.join("backup-mx")).unwrap();
    server.deliver(SECOND).unwrap();
    let ca = path(&test_ca().ca_certificate).to_string();
    let output = Command::new("ip")
        .args(["netns", "exec", namespace])
        .arg(provider::python())
        .arg("-c")
        .arg(POP3_CLIENT)
        .args(["uidl", "implicit", "995", &ca, USER, PASSWORD])
        .env("POP_HOST", address.to_string())
        .env("POP_SOURCE", WAN_CLIENT.to_string())
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let result: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(result["version"], "TLSv1.3");
    assert_eq!(uidls(&result["uidl"]).len(), 1, "{result}");
    assert_eq!(server.logins(), 1, "{}", server.log());
    assert!(server.log().contains(&format!("rip={WAN_CLIENT}, lip={address}")), "{}", server.log());
}

#[test]
fn refuses_addresses_off_loopback_and_tls_without_certificate() {
    let directory = new_run_directory("backup-mx-refused").unwrap();
    for listen in ["0.0.0.0:11995", "203.0.113.5:995", "192.168.1.1:110", "localhost:110"] {
        let config = BackupMxConfig::new(listen, BackupTls::NoTls, USER, PASSWORD);
        assert!(BackupMx::start(None, &config, &directory).is_err(), "{listen} must be refused on the host");
    }
    let config = BackupMxConfig::new("127.0.0.1:11995", BackupTls::StartTls, USER, PASSWORD);
    assert!(BackupMx::start(None, &config, &directory).is_err(), "TLS without a certificate");
    let config = BackupMxConfig::new("127.0.0.1:11995", BackupTls::NoTls, "a:b", PASSWORD);
    assert!(BackupMx::start(None, &config, &directory).is_err(), "a user name with ':'");
}

/// The test chooses the certificate: every kind a provider's chain comes in (ECDSA P-256 and
/// P-384, RSA-2048 signed with PKCS#1 v1.5 or PSS, RSA-4096) is served over TLS 1.3 in both TLS
/// modes, verifies against its own CA, and is exactly the leaf the test issued.
#[test]
fn serves_every_certificate_kind_the_test_chooses() {
    if !is_root() {
        return;
    }
    let directory = new_run_directory("backup-mx-kinds").unwrap();
    for (index, kind) in CertificateKind::ALL.into_iter().enumerate() {
        let ca = TestCa::create_of_kind(&directory.join(kind.label()), &[POP_NAME], kind).expect("test CA");
        let leaf = ca.leaf(POP_NAME).unwrap();
        let (tls, mode) = if index % 2 == 0 { (BackupTls::Implicit, "implicit") } else { (BackupTls::StartTls, "starttls") };
        let config = BackupMxConfig::new(format!("127.0.0.1:{}", free_port()), tls, USER, PASSWORD).with_certificate(leaf);
        let server = BackupMx::start(None, &config, &directory.join(format!("dovecot-{}", kind.label()))).expect("Dovecot starts");
        server.deliver(SECOND).unwrap();
        let result = pop3_trusting(&ca.ca_certificate, "uidl", mode, port(&server), USER, PASSWORD);
        eprintln!("{}: {result}", kind.label());
        assert_eq!(result["version"], "TLSv1.3", "{}: {result}", kind.label());
        assert_eq!(decode_base64(result["certificate"].as_str().unwrap()), std::fs::read(&leaf.der).unwrap(), "{}: the chosen leaf", kind.label());
        assert_eq!(uidls(&result["uidl"]).len(), 1, "{}: {result}", kind.label());
        assert_eq!(server.logins(), 1, "{}", server.log());
    }
}
