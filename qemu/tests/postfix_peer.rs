//! Self-test of the provider's smarthost as a real Postfix (`homemx_qemu::postfix_smarthost`)
//! without QEMU: it runs on 127.0.0.1 on free high ports and is exercised with Python's smtplib
//! and ssl, for every certificate kind the test CA issues (ECDSA P-256 and P-384, RSA-2048
//! signed with PKCS#1 v1.5 or PSS, RSA-4096), switched by restarting Postfix with another
//! certificate. Each time: TLS 1.3 with exactly the chosen leaf, no AUTH before STARTTLS, a
//! wrong password refused, no relaying without AUTH, and a message sent with STARTTLS and one
//! with implicit TLS arrive byte-exact at the capture peer. Needs root and Postfix; skipped
//! with a note otherwise.

use std::net::{Ipv4Addr, TcpListener};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use homemx_qemu::machine::new_run_directory;
use homemx_qemu::postfix_smarthost::{PostfixConfig, PostfixSmarthost};
use homemx_qemu::provider::{self, CertificateKind, TestCa, SMARTHOST_NAME};
use serde_json::Value;

const USER: &str = "homemx@example.org";
const PASSWORD: &str = "smarthost-s3cret";
const MESSAGE: &[u8] = b"From: Alice <alice@example.org>\r\nTo: Carol <carol@remote.example>\r\nSubject: through Postfix\r\nMessage-ID: <postfix-peer@example.org>\r\n\r\nHello Carol,\r\n.a line with a leading dot\r\n\r\nAlice\r\n";

fn usable() -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("note: skipping the Postfix self-test: Postfix's master must run as root");
        return false;
    }
    if !Path::new("/usr/lib/postfix/sbin/master").exists() {
        eprintln!("note: skipping the Postfix self-test: postfix is not installed (host-tools/setup.sh)");
        return false;
    }
    true
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// One SMTP session with smtplib; prints one JSON object. Arguments: mode (starttls |
/// implicit | norelay), port, CA file, user, password, message file.
const SMTP_CLIENT: &str = r#"
import base64, json, smtplib, socket, ssl, sys
mode, port, cafile, user, password, message = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5], open(sys.argv[6], "rb").read()
NAME = "smarthost.example.net"
context = ssl.create_default_context(cafile=cafile)
result = {}
# Connect to 127.0.0.1 but verify the certificate for NAME.
class Plain(smtplib.SMTP):
    def _get_socket(self, host, port, timeout):
        return socket.create_connection(("127.0.0.1", port), timeout)
class Implicit(smtplib.SMTP_SSL):
    def _get_socket(self, host, port, timeout):
        return self.context.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout), server_hostname=NAME)
def record_tls(client):
    result["version"] = client.sock.version()
    result["certificate"] = base64.b64encode(client.sock.getpeercert(True)).decode()
if mode == "implicit":
    client = Implicit(NAME, port, timeout=20, context=context)
    record_tls(client)
    client.ehlo("client.example")
else:
    client = Plain(NAME, port, timeout=20)
    client.ehlo("client.example")
    result["auth_before_tls"] = client.has_extn("auth")
    if mode == "norelay":
        try:
            client.sendmail("alice@example.org", ["carol@remote.example"], message)
            result["relay"] = "accepted"
        except smtplib.SMTPRecipientsRefused as e:
            result["relay_refused"] = list(e.recipients.values())[0][0]
    client.starttls(context=context)
    record_tls(client)
    client.ehlo("client.example")
try:
    client.login(user, "wrong-" + password)
    result["wrong"] = "accepted"
except smtplib.SMTPAuthenticationError as e:
    result["wrong"] = e.smtp_code
client.login(user, password)
result["refused"] = client.sendmail("alice@example.org", ["carol@remote.example"], message)
client.quit()
print(json.dumps(result))
"#;

fn smtp(mode: &str, port: u16, ca: &Path, message: &Path) -> Value {
    let output = Command::new(provider::python())
        .arg("-c")
        .arg(SMTP_CLIENT)
        .args([mode, &port.to_string()])
        .arg(ca)
        .args([USER, PASSWORD])
        .arg(message)
        .output()
        .expect("python3 runs");
    assert!(output.status.success(), "smtplib {mode}: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap_or_else(|error| panic!("no JSON ({error}): {}", String::from_utf8_lossy(&output.stdout)))
}

/// The message without its first `Received:` header (with continuation lines): Postfix's.
fn without_first_received(body: &[u8]) -> (&[u8], String) {
    assert!(body.starts_with(b"Received: "), "Postfix's Received: header first: {}", String::from_utf8_lossy(body));
    let mut end = 0;
    loop {
        let line_end = body[end..].windows(2).position(|pair| pair == b"\r\n").expect("a header line end") + end + 2;
        end = line_end;
        if !matches!(body.get(end), Some(b' ') | Some(b'\t')) {
            break;
        }
    }
    (&body[end..], String::from_utf8_lossy(&body[..end]).to_string())
}

#[test]
fn relays_authenticated_mail_over_tls13_with_every_certificate_kind() {
    if !usable() {
        return;
    }
    let directory = new_run_directory("postfix-peer").unwrap();
    let message = directory.join("message.eml");
    std::fs::write(&message, MESSAGE).unwrap();
    let (starttls_port, implicit_port) = (free_port(), free_port());
    let mut postfix: Option<PostfixSmarthost> = None;
    let mut delivered = 0;
    for kind in CertificateKind::ALL {
        let ca = TestCa::create_of_kind(&directory.join(kind.label()), &[SMARTHOST_NAME], kind).expect("test CA");
        let leaf = ca.leaf(SMARTHOST_NAME).unwrap();
        match postfix.as_mut() {
            None => {
                let mut config = PostfixConfig::new(Ipv4Addr::LOCALHOST, starttls_port, implicit_port, leaf, USER, PASSWORD);
                config.capture_port = free_port();
                postfix = Some(PostfixSmarthost::start(None, &config, &directory.join("postfix")).expect("Postfix starts"));
            }
            Some(running) => running.restart_with_certificate(leaf).expect("Postfix restarts with another certificate"),
        }
        let postfix = postfix.as_ref().unwrap();
        let sessions_before = postfix.tls_sessions().len();
        for (mode, port) in [("norelay", starttls_port), ("implicit", implicit_port)] {
            let result = smtp(mode, port, &ca.ca_certificate, &message);
            eprintln!("{} {mode}: {}", kind.label(), serde_json::json!({"version": result["version"], "wrong": result["wrong"], "relay_refused": result["relay_refused"], "auth_before_tls": result["auth_before_tls"]}));
            assert_eq!(result["version"], "TLSv1.3", "{}: {result}", kind.label());
            assert_eq!(
                provider_bytes(result["certificate"].as_str().unwrap()),
                std::fs::read(&leaf.der).unwrap(),
                "{}: Postfix presents the chosen leaf",
                kind.label()
            );
            assert_eq!(result["wrong"], 535, "{}: a wrong password is refused: {result}", kind.label());
            assert_eq!(result["refused"], serde_json::json!({}), "{}: {result}", kind.label());
            if mode == "norelay" {
                assert_eq!(result["auth_before_tls"], false, "{}: no AUTH before STARTTLS: {result}", kind.label());
                assert_eq!(result["relay_refused"], 554, "{}: no relaying without AUTH: {result}", kind.label());
            }
            delivered += 1;
        }
        let messages = postfix.wait_for_messages(delivered, Duration::from_secs(30)).expect("relayed to the capture peer");
        for (body, envelope) in &messages[delivered - 2..] {
            let (rest, received) = without_first_received(body);
            assert_eq!(rest, MESSAGE, "{}: byte-exact after Postfix's Received: header", kind.label());
            assert!(received.contains("(using TLSv1.3 with cipher") && received.contains(&format!("(Authenticated sender: {USER})")), "{received}");
            assert_eq!(envelope["mail_from"], "alice@example.org");
            assert_eq!(envelope["rcpt_tos"], serde_json::json!(["carol@remote.example"]));
        }
        let sessions = postfix.tls_sessions();
        assert_eq!(sessions.len() - sessions_before, 2, "{}: {sessions:?}", kind.label());
        for session in &sessions[sessions_before..] {
            assert!(
                session.contains("TLSv1.3 with cipher") && session.contains(&format!("server-signature {}", kind.openssl_server_signature())),
                "{}: {session}",
                kind.label()
            );
        }
        eprintln!("{}: {}", kind.label(), sessions.last().unwrap());
    }
    let postfix = postfix.unwrap();
    assert_eq!(postfix.authenticated_submissions().len(), delivered, "{}", postfix.log());
    assert_eq!(postfix.failed_authentications().len(), delivered, "one wrong password per session: {}", postfix.log());
    assert!(postfix.log().contains("Relay access denied"), "{}", postfix.log());
    let working = postfix.directory().to_path_buf();
    let pid = postfix.pid().unwrap();
    drop(postfix);
    // SAFETY: signal 0 only asks whether the PID still exists.
    assert_ne!(unsafe { libc::kill(pid as i32, 0) }, 0, "postfix {pid} is gone after drop");
    assert!(!working.exists(), "its directory is removed after drop");
    assert!(directory.join("postfix/postfix.log").is_file(), "its log is kept in the run directory");
}

fn provider_bytes(base64: &str) -> Vec<u8> {
    let output = Command::new(provider::python())
        .args(["-c", "import base64, sys; sys.stdout.buffer.write(base64.b64decode(sys.argv[1]))", base64])
        .output()
        .expect("python3 runs");
    output.stdout
}

#[test]
fn refuses_addresses_off_loopback() {
    let directory = new_run_directory("postfix-refused").unwrap();
    let ca = TestCa::create_for(&directory.join("ca"), &[SMARTHOST_NAME]).unwrap();
    let leaf = ca.leaf(SMARTHOST_NAME).unwrap();
    for address in [Ipv4Addr::UNSPECIFIED, Ipv4Addr::new(203, 0, 113, 25), Ipv4Addr::new(192, 168, 1, 1)] {
        let config = PostfixConfig::new(address, 11587, 11465, leaf, USER, PASSWORD);
        assert!(PostfixSmarthost::start(None, &config, &directory.join("postfix")).is_err(), "{address} must be refused on the host");
    }
    let config = PostfixConfig::new(Ipv4Addr::LOCALHOST, 11587, 11465, leaf, "a:b", PASSWORD);
    assert!(PostfixSmarthost::start(None, &config, &directory.join("postfix")).is_err(), "a user name with ':'");
}
