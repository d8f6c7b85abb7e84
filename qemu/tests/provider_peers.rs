//! Self-test of the provider-side peers (`homemx_qemu::provider`) without QEMU and without
//! root: every peer runs on 127.0.0.1 with a port the kernel picks, and is exercised with
//! Python's own clients (smtplib, ssl, http.client, dnslib) or plain std sockets.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use homemx_qemu::machine::new_run_directory;
use homemx_qemu::provider::{
    self, a_record, address_allowed, DnsServer, HttpsConfig, HttpsEndpoints, RogueMode, RogueTlsServer, Smarthost, SmarthostConfig, SntpConfig,
    SntpServer, StripMode, StripProxy, TestCa, TlsMode, CHECKIP_NAME, DYNDNS_NAME, SELF_SIGNED_SMARTHOST, SMARTHOST_NAME, WRONG_NAME,
};
use serde_json::{json, Value};

fn test_ca() -> &'static TestCa {
    static CA: OnceLock<TestCa> = OnceLock::new();
    CA.get_or_init(|| TestCa::create(&new_run_directory("peers-ca").unwrap()).expect("test CA"))
}

/// Runs a Python snippet with arguments; its stdout must be one JSON value.
fn python(script: &str, arguments: &[&str]) -> Value {
    let output = Command::new(provider::python()).arg("-c").arg(script).args(arguments).output().expect("python3 runs");
    assert!(output.status.success(), "python failed: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|error| panic!("python printed no JSON ({error}): {}", String::from_utf8_lossy(&output.stdout)))
}

fn openssl(arguments: &[&str]) -> (bool, String) {
    let output = Command::new("openssl").args(arguments).output().expect("openssl runs");
    (output.status.success(), format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr)))
}

fn path(path: &Path) -> &str {
    path.to_str().expect("UTF-8 path")
}

fn port(address: SocketAddr) -> String {
    address.port().to_string()
}

/// For each certificate given: [hex SHA-256 of its DER SubjectPublicKeyInfo, its text form].
const LEAF_DETAILS: &str = r#"
import hashlib, json, subprocess, sys
def run(arguments, data=None):
    return subprocess.run(arguments, input=data, capture_output=True, check=True).stdout
out = []
for pem in sys.argv[1:]:
    public = run(["openssl", "x509", "-in", pem, "-noout", "-pubkey"])
    spki = run(["openssl", "pkey", "-pubin", "-outform", "DER"], public)
    text = run(["openssl", "x509", "-in", pem, "-noout", "-text"]).decode()
    out.append([hashlib.sha256(spki).hexdigest(), text])
print(json.dumps(out))
"#;

#[test]
fn test_ca_issues_p256_sha256_certificates_and_spki_pins() {
    let ca = test_ca();
    let der = ca.ca_der_bytes().unwrap();
    assert_eq!(der.first(), Some(&0x30), "the CA's DER is an ASN.1 SEQUENCE");
    let (_, ca_text) = openssl(&["x509", "-in", path(&ca.ca_certificate), "-noout", "-text"]);
    assert!(ca_text.contains("CA:TRUE") && ca_text.contains("ecdsa-with-SHA256") && ca_text.contains("P-256"), "{ca_text}");

    let names = [SMARTHOST_NAME, "pop.example.net", DYNDNS_NAME, CHECKIP_NAME, WRONG_NAME];
    let mut verify = vec!["verify", "-CAfile", path(&ca.ca_certificate)];
    verify.extend(names.iter().map(|name| path(&ca.leaf(name).unwrap().certificate)));
    let (verified, output) = openssl(&verify);
    assert!(verified, "{output}");
    // Each leaf's text, and its pin computed independently: SHA-256 of the DER SubjectPublicKeyInfo.
    let certificates: Vec<&str> = names.iter().map(|name| path(&ca.leaf(name).unwrap().certificate)).collect();
    let details = python(LEAF_DETAILS, &certificates);
    for (index, name) in names.iter().enumerate() {
        let leaf = ca.leaf(name).unwrap();
        assert!(leaf.ca_signed);
        let text = details[index][1].as_str().unwrap();
        assert!(text.contains(&format!("DNS:{name}")) && text.contains("CA:FALSE") && text.contains("P-256"), "{text}");
        assert!(text.contains("ecdsa-with-SHA256") && text.contains("TLS Web Server Authentication"), "{text}");
        let hex: String = leaf.spki_sha256.iter().map(|byte| format!("{byte:02x}")).collect();
        assert_eq!(details[index][0], json!(hex), "{name}'s pin");
    }
    // Valid now and for about a year: still valid in 364 days, expired in 367.
    let smarthost = path(&ca.leaf(SMARTHOST_NAME).unwrap().certificate);
    assert!(openssl(&["x509", "-in", smarthost, "-noout", "-checkend", &(364 * 86400).to_string()]).0);
    assert!(!openssl(&["x509", "-in", smarthost, "-noout", "-checkend", &(367 * 86400).to_string()]).0);
    let self_signed = ca.leaf(SELF_SIGNED_SMARTHOST).unwrap();
    assert!(!self_signed.ca_signed);
    assert_eq!(self_signed.name, SMARTHOST_NAME);
    let (verified, _) = openssl(&["verify", "-CAfile", path(&ca.ca_certificate), path(&self_signed.certificate)]);
    assert!(!verified, "the self-signed smarthost certificate must not verify against the test CA");
    assert_ne!(self_signed.spki_sha256, ca.leaf(SMARTHOST_NAME).unwrap().spki_sha256);
}

const SMTP_STARTTLS_CLIENT: &str = r#"
import json, smtplib, ssl, sys
port, cafile = int(sys.argv[1]), sys.argv[2]
result = {}
context = ssl.create_default_context(cafile=cafile)
client = smtplib.SMTP("127.0.0.1", port, timeout=10)
client._host = "smarthost.example.net"  # the name STARTTLS verifies and sends by SNI
client.ehlo("client.test")
result["plain_features"] = sorted(client.esmtp_features)
result["mail_in_clear"] = client.docmd("MAIL", "FROM:<early@example.org>")[0]
result["starttls"] = client.starttls(context=context)[0]
result["version"] = client.sock.version()
client.ehlo("client.test")
result["tls_auth"] = client.esmtp_features.get("auth", "")
try:
    client.login("alice", "wrong")
except smtplib.SMTPAuthenticationError as error:
    result["bad_login"] = error.smtp_code
result["login"] = client.login("alice", "s3cret")[0]
message = sys.stdin.buffer.read()
codes = []
for attempt in range(2):
    client.mail("alice@example.org")
    client.rcpt("bob@remote.example")
    codes.append(client.data(message)[0])
result["data"] = codes
client.quit()
old = ssl.create_default_context(cafile=cafile)
old.maximum_version = ssl.TLSVersion.TLSv1_2
client = smtplib.SMTP("127.0.0.1", port, timeout=10)
client._host = "smarthost.example.net"
try:
    client.starttls(context=old)
    result["tls12"] = "accepted"
except (ssl.SSLError, smtplib.SMTPException, OSError) as error:
    result["tls12"] = "refused"
print(json.dumps(result))
"#;

const MESSAGE: &[u8] = b"From: Alice <alice@example.org>\r\nTo: bob@remote.example\r\nSubject: relay test\r\n\r\nHello\r\n.a line starting with a dot\r\n..two dots\r\n.\r\nend\r\n";

fn python_with_stdin(script: &str, arguments: &[&str], input: &[u8]) -> Value {
    use std::io::Write;
    let mut child = Command::new(provider::python())
        .arg("-c")
        .arg(script)
        .args(arguments)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs");
    child.stdin.take().unwrap().write_all(input).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "python failed: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("JSON")
}

#[test]
fn smarthost_starttls_is_tls13_only_requires_auth_and_stores_byte_exact() {
    let ca = test_ca();
    let directory = new_run_directory("peers-smarthost").unwrap();
    let config = SmarthostConfig::new("127.0.0.1:0", TlsMode::StartTls)
        .with_certificate(ca.leaf(SMARTHOST_NAME).unwrap())
        .with_auth("alice", "s3cret")
        .with_fail_data(451, 1);
    let smarthost = Smarthost::start(None, &config, &directory).expect("smarthost starts");
    let result = python_with_stdin(SMTP_STARTTLS_CLIENT, &[&port(smarthost.address()), path(&ca.ca_certificate)], MESSAGE);

    let plain: Vec<&str> = result["plain_features"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert!(plain.contains(&"starttls") && !plain.contains(&"auth"), "AUTH must not be offered before TLS: {plain:?}");
    assert_eq!(result["mail_in_clear"], 530, "MAIL before AUTH is refused");
    assert_eq!(result["starttls"], 220);
    assert_eq!(result["version"], "TLSv1.3");
    assert!(result["tls_auth"].as_str().unwrap().contains("PLAIN") && result["tls_auth"].as_str().unwrap().contains("LOGIN"));
    assert_eq!(result["bad_login"], 535);
    assert_eq!(result["login"], 235);
    assert_eq!(result["data"], json!([451, 250]), "the first DATA fails as configured, the second is stored");
    assert_eq!(result["tls12"], "refused");

    let messages = smarthost.wait_for_messages(1, Duration::from_secs(5)).unwrap();
    assert_eq!(messages.len(), 1, "the failed DATA stored nothing");
    let (body, sidecar) = &messages[0];
    assert_eq!(body.as_slice(), MESSAGE, "stored byte-exact after dot-unstuffing");
    assert_eq!(sidecar["mail_from"], "alice@example.org");
    assert_eq!(sidecar["rcpt_tos"], json!(["bob@remote.example"]));
    assert_eq!(sidecar["auth_user"], "alice");
    assert_eq!(sidecar["tls_version"], "TLSv1.3");

    let events = smarthost.events();
    let named = |name: &str| events.iter().filter(|event| event["event"] == name).cloned().collect::<Vec<_>>();
    assert!(named("tls").iter().any(|event| event["tls_version"] == "TLSv1.3"));
    let auth: Vec<bool> = named("auth").iter().map(|event| event["ok"].as_bool().unwrap()).collect();
    assert!(auth.len() >= 2 && auth.last() == Some(&true) && auth[..auth.len() - 1].iter().all(|ok| !ok), "{auth:?}");
    let mails = named("mail");
    assert_eq!(mails.len(), 3);
    assert_eq!(mails[0]["tls"], false, "the early MAIL was in clear");
    assert!(mails[1..].iter().all(|event| event["tls"] == true && event["auth_user"] == "alice"));
    assert_eq!(named("data_failed").len(), 1);
    assert_eq!(named("stored").len(), 1);
    smarthost
        .wait_for_event(Duration::from_secs(5), |event| {
            event["event"] == "tls_failed" && event["error"].as_str().unwrap_or_default().contains("UNSUPPORTED_PROTOCOL")
        })
        .expect("the TLS 1.2 handshake is logged as failed");
    let cleartext = smarthost.cleartext_lines().concat();
    assert!(cleartext.contains("MAIL FROM:<early@example.org>") && cleartext.contains("STARTTLS"));
    assert!(!cleartext.contains("AUTH") && !cleartext.contains("alice@example.org") && !cleartext.contains("relay test"));
}

#[test]
fn smarthost_implicit_tls_accepts_an_authenticated_client() {
    let ca = test_ca();
    let directory = new_run_directory("peers-smarthost-implicit").unwrap();
    let config =
        SmarthostConfig::new("127.0.0.1:0", TlsMode::Implicit).with_certificate(ca.leaf(SMARTHOST_NAME).unwrap()).with_auth("alice", "s3cret");
    let smarthost = Smarthost::start(None, &config, &directory).expect("smarthost starts");
    let result = python(
        r#"
import json, smtplib, ssl, sys
context = ssl.create_default_context(cafile=sys.argv[2])
class Client(smtplib.SMTP_SSL):
    def _get_socket(self, host, port, timeout):
        raw = smtplib.socket.create_connection((host, port), timeout)
        return self.context.wrap_socket(raw, server_hostname="smarthost.example.net")
client = Client("127.0.0.1", int(sys.argv[1]), context=context, timeout=10)
client.ehlo("client.test")
features = sorted(client.esmtp_features)
version = client.sock.version()
login = client.login("alice", "s3cret")[0]
refused = client.sendmail("alice@example.org", ["bob@remote.example"], b"Subject: implicit\r\n\r\nhi\r\n")
client.quit()
print(json.dumps({"features": features, "version": version, "login": login, "refused": refused}))
"#,
        &[&port(smarthost.address()), path(&ca.ca_certificate)],
    );
    assert_eq!(result["version"], "TLSv1.3");
    assert_eq!(result["login"], 235);
    assert_eq!(result["refused"], json!({}));
    assert!(!result["features"].as_array().unwrap().contains(&json!("starttls")));
    let messages = smarthost.wait_for_messages(1, Duration::from_secs(5)).unwrap();
    assert_eq!(messages[0].0, b"Subject: implicit\r\n\r\nhi\r\n");
    assert_eq!(messages[0].1["tls"], true);
    assert!(smarthost.cleartext_lines().is_empty(), "nothing arrives in clear with implicit TLS");
}

const NAIVE_CLIENT: &str = r#"
import json, smtplib, ssl, sys
port = int(sys.argv[1])
result = {}
client = smtplib.SMTP("127.0.0.1", port, timeout=10)
client.ehlo("naive.test")
result["features"] = sorted(client.esmtp_features)
result["starttls"] = client.docmd("STARTTLS")[0]
result["mail"] = client.docmd("MAIL", "FROM:<secret-sender@example.org>")[0]
client.quit()
print(json.dumps(result))
"#;

#[test]
fn strip_proxy_strips_or_refuses_starttls_and_records_what_the_client_sent() {
    let ca = test_ca();
    let directory = new_run_directory("peers-strip").unwrap();
    let config =
        SmarthostConfig::new("127.0.0.1:0", TlsMode::StartTls).with_certificate(ca.leaf(SMARTHOST_NAME).unwrap()).with_auth("alice", "s3cret");
    let smarthost = Smarthost::start(None, &config, &directory.join("smarthost")).expect("smarthost starts");
    let upstream = smarthost.address().to_string();

    let strip = StripProxy::start(None, "127.0.0.1:0", &upstream, StripMode::Strip, &directory.join("strip")).expect("proxy starts");
    let result = python(NAIVE_CLIENT, &[&port(strip.address())]);
    let features: Vec<&str> = result["features"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert!(!features.contains(&"starttls") && features.contains(&"xxxxxxxa"), "{features:?}");
    assert_eq!(result["starttls"], 500, "the rewritten STARTTLS command is unknown to the server");
    assert_eq!(result["mail"], 530, "the smarthost still wants AUTH");
    let recorded = String::from_utf8(strip.client_bytes()).unwrap();
    assert!(recorded.contains("STARTTLS\r\n") && recorded.contains("MAIL FROM:<secret-sender@example.org>"), "{recorded:?}");
    assert!(String::from_utf8_lossy(&strip.server_bytes()).contains("250-STARTTLS"), "the server did offer it");
    assert!(!strip.events_named("stripped").is_empty());

    let refuse = StripProxy::start(None, "127.0.0.1:0", &upstream, StripMode::Refuse, &directory.join("refuse")).expect("proxy starts");
    let result = python(NAIVE_CLIENT, &[&port(refuse.address())]);
    assert!(result["features"].as_array().unwrap().contains(&json!("starttls")));
    assert_eq!(result["starttls"], 454);
    assert_eq!(refuse.events_named("refused_starttls").len(), 1);

    // A forged 554 greeting: smtplib sees it at connect; nothing reaches the smarthost.
    let forged = StripProxy::start(None, "127.0.0.1:0", &upstream, StripMode::RefuseGreeting, &directory.join("forged")).expect("proxy starts");
    let result = python(
        r#"
import json, smtplib, sys
try:
    smtplib.SMTP("127.0.0.1", int(sys.argv[1]), timeout=10)
    print(json.dumps({"connect": 220}))
except smtplib.SMTPConnectError as error:
    print(json.dumps({"connect": error.smtp_code}))
"#,
        &[&port(forged.address())],
    );
    assert_eq!(result["connect"], 554, "{result}");
    assert_eq!(forged.events_named("refused_greeting").len(), 1);

    // Through a transparent proxy a proper client's TLS session leaves nothing readable.
    let pass = StripProxy::start(None, "127.0.0.1:0", &upstream, StripMode::Pass, &directory.join("pass")).expect("proxy starts");
    let _ = python_with_stdin(SMTP_STARTTLS_CLIENT, &[&port(pass.address()), path(&ca.ca_certificate)], MESSAGE);
    let recorded = pass.client_bytes();
    let recorded_text = String::from_utf8_lossy(&recorded);
    assert!(recorded_text.contains("STARTTLS"));
    assert!(!recorded_text.contains("alice@example.org") && !recorded_text.contains("relay test") && !recorded_text.contains("AUTH"));
    // The smarthost saw only the early MAIL of the naive clients in clear, never STARTTLS from the refuse proxy.
    let starttls_seen = smarthost.events_named("starttls").len();
    assert_eq!(starttls_seen, 2, "the pass-through client's two STARTTLS only (the stripped one was XXXXXXXA, the refused one never arrived)");
}

/// A DNS query for `name`/`qtype`, by hand.
fn dns_query(server: SocketAddr, id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut packet = Vec::new();
    packet.extend_from_slice(&id.to_be_bytes());
    packet.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.') {
        packet.push(label.len() as u8);
        packet.extend_from_slice(label.as_bytes());
    }
    packet.push(0);
    packet.extend_from_slice(&qtype.to_be_bytes());
    packet.extend_from_slice(&1u16.to_be_bytes());
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    socket.send_to(&packet, server).unwrap();
    let mut buffer = [0u8; 1500];
    let (length, _) = socket.recv_from(&mut buffer).expect("DNS answer");
    buffer[..length].to_vec()
}

fn skip_name(packet: &[u8], mut at: usize) -> Option<usize> {
    loop {
        let length = *packet.get(at)? as usize;
        if length & 0xC0 == 0xC0 {
            return Some(at + 2);
        }
        if length == 0 {
            return Some(at + 1);
        }
        at += 1 + length;
    }
}

/// (id, authoritative, rcode, A records) of an answer.
fn parse_a_answer(packet: &[u8]) -> Option<(u16, bool, u8, Vec<Ipv4Addr>)> {
    let id = u16::from_be_bytes([*packet.first()?, *packet.get(1)?]);
    let authoritative = packet.get(2)? & 0x04 != 0;
    let rcode = packet.get(3)? & 0x0F;
    let answers = u16::from_be_bytes([*packet.get(6)?, *packet.get(7)?]);
    let mut at = skip_name(packet, 12)? + 4;
    let mut addresses = Vec::new();
    for _ in 0..answers {
        at = skip_name(packet, at)?;
        let kind = u16::from_be_bytes([*packet.get(at)?, *packet.get(at + 1)?]);
        let length = u16::from_be_bytes([*packet.get(at + 8)?, *packet.get(at + 9)?]) as usize;
        let data = packet.get(at + 10..at + 10 + length)?;
        if kind == 1 && length == 4 {
            addresses.push(Ipv4Addr::new(data[0], data[1], data[2], data[3]));
        }
        at += 10 + length;
    }
    Some((id, authoritative, rcode, addresses))
}

#[test]
fn dns_server_answers_from_a_zone_it_rereads_for_every_query() {
    let directory = new_run_directory("peers-dns").unwrap();
    let zone = directory.join("zone.json");
    provider::write_json_atomically(
        &zone,
        &json!({"ttl": 30, "names": {
            "home.example.net": {"A": ["198.51.100.7"]},
            "example.org": {"MX": [{"preference": 10, "exchange": "home.example.net"}], "TXT": ["v=spf1 -all"]},
            "alias.example.net": {"CNAME": "home.example.net"}
        }}),
    )
    .unwrap();
    let dns = DnsServer::start(None, &["127.0.0.1:0"], &zone, &directory.join("dns")).expect("DNS server starts");
    let server = dns.address();

    let (id, authoritative, rcode, addresses) = parse_a_answer(&dns_query(server, 0x1234, "home.example.net", 1)).unwrap();
    assert_eq!((id, authoritative, rcode), (0x1234, true, 0));
    assert_eq!(addresses, vec![Ipv4Addr::new(198, 51, 100, 7)]);

    dns.set_a_record("home.example.net", Ipv4Addr::new(198, 51, 100, 99)).unwrap();
    let (_, _, _, addresses) = parse_a_answer(&dns_query(server, 2, "HOME.example.net", 1)).unwrap();
    assert_eq!(addresses, vec![Ipv4Addr::new(198, 51, 100, 99)], "the flipped record is served at once");
    assert_eq!(a_record(&zone, "home.example.net"), Some(Ipv4Addr::new(198, 51, 100, 99)));

    let (_, _, rcode, addresses) = parse_a_answer(&dns_query(server, 3, "unknown.example.net", 1)).unwrap();
    assert_eq!((rcode, addresses.len()), (3, 0), "NXDOMAIN");

    let result = python(
        r#"
import json, sys
from dnslib import DNSRecord
port = int(sys.argv[1])
out = {}
for name, kind in [("example.org", "MX"), ("example.org", "TXT"), ("alias.example.net", "A"), ("example.org", "A")]:
    reply = DNSRecord.parse(DNSRecord.question(name, kind).send("127.0.0.1", port, timeout=3))
    out[name + "/" + kind] = [reply.header.rcode, [str(record.rdata) for record in reply.rr]]
print(json.dumps(out))
"#,
        &[&port(server)],
    );
    assert_eq!(result["example.org/MX"], json!([0, ["10 home.example.net."]]));
    assert_eq!(result["example.org/TXT"], json!([0, ["\"v=spf1 -all\""]]));
    assert_eq!(result["alias.example.net/A"], json!([0, ["home.example.net.", "198.51.100.99"]]));
    assert_eq!(result["example.org/A"], json!([0, []]), "a known name without the type: empty NOERROR");

    let queries = dns.queries();
    assert_eq!(queries.len(), 7);
    assert_eq!(queries[0]["name"], "home.example.net");
    assert_eq!(queries[0]["type"], "A");
    assert!(queries[0]["source"].as_str().unwrap().starts_with("127.0.0.1:"));
}

#[test]
fn sntp_server_answers_with_the_hosts_time_plus_offset() {
    let directory = new_run_directory("peers-sntp").unwrap();
    let mut config = SntpConfig::new("127.0.0.1:0");
    config.offset_seconds = 3600.0;
    let sntp = SntpServer::start(None, &config, &directory).expect("SNTP server starts");
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut request = [0u8; 48];
    request[0] = (4 << 3) | 3;
    request[40..48].copy_from_slice(&[0xDE, 0xAD, 0xBE, 0xEF, 0x01, 0x02, 0x03, 0x04]);
    socket.send_to(&request, sntp.address()).unwrap();
    let mut reply = [0u8; 100];
    let (length, _) = socket.recv_from(&mut reply).expect("SNTP answer");
    assert_eq!(length, 48);
    assert_eq!(reply[0] >> 6, 0, "no leap warning");
    assert_eq!((reply[0] >> 3) & 7, 4, "version 4");
    assert_eq!(reply[0] & 7, 4, "server mode");
    assert_eq!(reply[1], 2, "stratum 2");
    assert_eq!(&reply[24..32], &request[40..48], "the originate timestamp echoes the request's transmit timestamp");
    let transmit = u32::from_be_bytes([reply[40], reply[41], reply[42], reply[43]]) as i64 - 2_208_988_800;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
    assert!((transmit - (now + 3600)).abs() <= 5, "served {transmit}, expected about {}", now + 3600);
    let receive = u32::from_be_bytes([reply[32], reply[33], reply[34], reply[35]]) as i64 - 2_208_988_800;
    assert!((receive - transmit).abs() <= 1);
    let requests = sntp.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0]["transmit"], "deadbeef01020304");
    assert_eq!(requests[0]["answered"], true);
}

const HTTPS_CLIENT: &str = r#"
import base64, http.client, json, socket, ssl, sys
port, cafile = int(sys.argv[1]), sys.argv[2]
context = ssl.create_default_context(cafile=cafile)
def get(name, path, credentials=None, tls12=False):
    ctx = context
    if tls12:
        ctx = ssl.create_default_context(cafile=cafile)
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    connection = http.client.HTTPConnection(name, port, timeout=10)
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    connection.sock = ctx.wrap_socket(raw, server_hostname=name)
    headers = {"User-Agent": "homemx-selftest/1.0"}
    if credentials:
        headers["Authorization"] = "Basic " + base64.b64encode(credentials.encode()).decode()
    connection.request("GET", path, headers=headers)
    response = connection.getresponse()
    return [response.status, response.read().decode(), connection.sock.version()]
steps = json.loads(sys.argv[3])
out = []
for step in steps:
    try:
        out.append(get(*step))
    except (ssl.SSLError, OSError) as error:
        out.append(["failed", type(error).__name__])
print(json.dumps(out))
"#;

#[test]
fn https_endpoints_serve_dyndns2_and_check_ip_and_move_the_dns_record() {
    let ca = test_ca();
    let directory = new_run_directory("peers-https").unwrap();
    let zone = directory.join("zone.json");
    provider::write_json_atomically(&zone, &json!({"ttl": 60, "names": {"home.example.net": {"A": ["198.51.100.7"]}}})).unwrap();
    let dns = DnsServer::start(None, &["127.0.0.1:0"], &zone, &directory.join("dns")).expect("DNS server starts");
    let config = HttpsConfig::new(&["127.0.0.1:0"], ca.leaf(DYNDNS_NAME).unwrap())
        .with_certificate_for(ca.leaf(CHECKIP_NAME).unwrap())
        .with_dyndns_account("owner", "dyn-pass")
        .with_zone(&zone);
    let https = HttpsEndpoints::start(None, &config, &directory.join("https")).expect("HTTPS endpoints start");
    let update = "/nic/update?hostname=home.example.net&myip=198.51.100.42";
    let steps = json!([
        [DYNDNS_NAME, update, "owner:dyn-pass"],
        [DYNDNS_NAME, update, "owner:dyn-pass"],
        [DYNDNS_NAME, update, "owner:wrong"],
        [CHECKIP_NAME, "/ip"],
        [CHECKIP_NAME, "/ip", null, true]
    ]);
    let result = python(HTTPS_CLIENT, &[&port(https.address()), path(&ca.ca_certificate), &steps.to_string()]);
    assert_eq!(result[0], json!([200, "good 198.51.100.42", "TLSv1.3"]));
    assert_eq!(result[1], json!([200, "nochg 198.51.100.42", "TLSv1.3"]));
    assert_eq!(result[2], json!([401, "badauth", "TLSv1.3"]));
    assert_eq!(
        result[3],
        json!([200, "127.0.0.1", "TLSv1.3"]),
        "check-IP answers with the client's address by default (and SNI picked its certificate)"
    );
    assert_eq!(result[4][0], "failed", "TLS 1.2 is refused");

    // DNS follows the update like a real provider's.
    let (_, _, _, addresses) = parse_a_answer(&dns_query(dns.address(), 9, "home.example.net", 1)).unwrap();
    assert_eq!(addresses, vec![Ipv4Addr::new(198, 51, 100, 42)]);

    https
        .set_control(
            &json!({"dyndns_answers": ["911", {"status": 503, "body": "maintenance"}], "ip_answers": ["garbage<>"], "ip_body": "198.51.100.200\n"}),
        )
        .unwrap();
    let steps = json!([
        [DYNDNS_NAME, update, "owner:dyn-pass"],
        [DYNDNS_NAME, update, "owner:dyn-pass"],
        [DYNDNS_NAME, update, "owner:dyn-pass"],
        [CHECKIP_NAME, "/ip"],
        [CHECKIP_NAME, "/ip"]
    ]);
    let result = python(HTTPS_CLIENT, &[&port(https.address()), path(&ca.ca_certificate), &steps.to_string()]);
    assert_eq!((&result[0][0], &result[0][1]), (&json!(200), &json!("911")));
    assert_eq!((&result[1][0], &result[1][1]), (&json!(503), &json!("maintenance")));
    assert_eq!((&result[2][0], &result[2][1]), (&json!(200), &json!("nochg 198.51.100.42")), "back to the default answers once the list is used up");
    assert_eq!((&result[3][0], &result[3][1]), (&json!(200), &json!("garbage<>")));
    assert_eq!((&result[4][0], &result[4][1]), (&json!(200), &json!("198.51.100.200\n")));
    assert_eq!(https.control()["dyndns_answers"], json!([]));

    let requests = https.requests();
    assert_eq!(requests.len(), 9);
    assert_eq!(requests[0]["user_agent"], "homemx-selftest/1.0");
    assert_eq!(requests[0]["auth_user"], "owner");
    assert_eq!(requests[0]["query"]["myip"], "198.51.100.42");
    assert_eq!(requests[3]["server_name"], CHECKIP_NAME);
    assert!(!https.events_named("tls_failed").is_empty());
}

#[test]
fn peers_refuse_addresses_outside_the_test_networks() {
    assert!(address_allowed(false, Ipv4Addr::LOCALHOST));
    assert!(!address_allowed(false, Ipv4Addr::new(203, 0, 113, 25)), "documentation addresses exist only inside a namespace");
    assert!(!address_allowed(false, Ipv4Addr::UNSPECIFIED));
    assert!(address_allowed(true, Ipv4Addr::new(203, 0, 113, 25)));
    assert!(address_allowed(true, Ipv4Addr::new(198, 51, 100, 1)));
    assert!(address_allowed(true, Ipv4Addr::new(192, 168, 77, 1)));
    assert!(!address_allowed(true, Ipv4Addr::new(8, 8, 8, 8)));
    assert!(!address_allowed(true, Ipv4Addr::new(192, 168, 1, 1)));

    let directory: PathBuf = new_run_directory("peers-refused").unwrap();
    let config = SmarthostConfig::new("10.0.0.1:2525", TlsMode::None);
    assert!(Smarthost::start(None, &config, &directory).is_err());
    assert!(StripProxy::start(None, "127.0.0.1:0", "192.0.2.1:25", StripMode::Pass, &directory).is_err(), "upstream on the host must be loopback");
    assert!(provider::add_wan_address("no-such-namespace", Ipv4Addr::new(8, 8, 8, 8)).is_err());
    assert!(provider::add_wan_address("no-such-namespace", Ipv4Addr::new(192, 168, 77, 5)).is_err());
    assert!(!directory.join("ready.json").exists(), "no peer was started");
}

/// Python's ssl client against the rogue server: the handshake's error, as text.
const SSL_CLIENT: &str = r#"
import json, socket, ssl, sys
context = ssl.create_default_context()
context.minimum_version = ssl.TLSVersion.TLSv1_3
try:
    context.wrap_socket(socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10), server_hostname="smarthost.example.net")
    print(json.dumps("connected"))
except ssl.SSLError as error:
    print(json.dumps(str(error)))
"#;

#[test]
fn rogue_tls_server_is_correct_tls13_up_to_the_missing_certificate() {
    // OpenSSL and Python decrypt the rogue's EncryptedExtensions and then refuse its Finished
    // where a Certificate belongs ("unexpected message"); a wrong key schedule would show as
    // "decryption failed or bad record mac" instead. Every suite, both groups and a
    // HelloRetryRequest (the client's first key share P-384, which the rogue does not do).
    let directory = new_run_directory("peers-rogue").unwrap();
    let rogue = RogueTlsServer::start(None, &["127.0.0.1:0"], RogueMode::Https, "rogue.example.net", &directory).expect("rogue starts");
    let target = format!("127.0.0.1:{}", port(rogue.address()));
    let cases: [(&str, &[&str]); 5] = [
        ("AES-128-GCM, X25519", &["-ciphersuites", "TLS_AES_128_GCM_SHA256", "-groups", "X25519"]),
        ("AES-256-GCM, P-256", &["-ciphersuites", "TLS_AES_256_GCM_SHA384", "-groups", "P-256"]),
        ("ChaCha20-Poly1305, X25519", &["-ciphersuites", "TLS_CHACHA20_POLY1305_SHA256", "-groups", "X25519"]),
        ("HelloRetryRequest to P-256", &["-ciphersuites", "TLS_AES_128_GCM_SHA256", "-groups", "P-384:P-256"]),
        ("HelloRetryRequest to X25519", &["-ciphersuites", "TLS_CHACHA20_POLY1305_SHA256", "-groups", "P-384:X25519"]),
    ];
    for (label, options) in cases {
        let mut arguments = vec!["s_client", "-tls1_3", "-connect", &target, "-servername", "smarthost.example.net"];
        arguments.extend_from_slice(options);
        let output = Command::new("openssl").args(&arguments).stdin(std::process::Stdio::null()).output().expect("openssl runs");
        let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        assert!(!output.status.success(), "{label}: s_client must not connect: {text}");
        assert!(text.contains("unexpected message"), "{label}: s_client saw Finished where Certificate belongs: {text}");
        assert!(!text.contains("bad record mac") && !text.contains("decrypt"), "{label}: the records decrypt: {text}");
    }
    let python_error = python(SSL_CLIENT, &[&port(rogue.address())]);
    assert!(python_error.as_str().unwrap_or("").contains("UNEXPECTED_MESSAGE"), "Python's ssl: {python_error}");

    let events = rogue.events();
    let suites: Vec<&str> = events.iter().filter(|event| event["event"] == "server_hello").filter_map(|event| event["suite"].as_str()).collect();
    for suite in ["TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"] {
        assert!(suites.contains(&suite), "{suite} was negotiated: {suites:?}");
    }
    let retries: Vec<&str> =
        events.iter().filter(|event| event["event"] == "hello_retry_request").filter_map(|event| event["group"].as_str()).collect();
    assert_eq!(retries, ["secp256r1", "x25519"], "one HelloRetryRequest per retry case");
    assert_eq!(rogue.server_finished_sent(), 6, "every client got the whole certificate-less flight");
    let alerts: Vec<String> = rogue.client_alerts().iter().filter_map(|alert| alert["name"].as_str().map(str::to_string)).collect();
    assert_eq!(alerts, ["unexpected_message"; 6], "each client answered the missing certificate with unexpected_message");
    assert_eq!(rogue.completed_handshakes(), 0);
    assert!(rogue.tls_bytes().is_empty(), "no application data from a client that refused");

    // The clear-text way into TLS works with OpenSSL's own STARTTLS (SMTP) and STLS (POP3),
    // and implicit TLS for SMTP and POP3 too: each ends at the missing certificate.
    for (rogue_mode, starttls) in [
        (RogueMode::SmtpStartTls, Some("smtp")),
        (RogueMode::Pop3Stls, Some("pop3")),
        (RogueMode::SmtpImplicit, None),
        (RogueMode::Pop3Implicit, None),
    ] {
        let server =
            RogueTlsServer::start(None, &["127.0.0.1:0"], rogue_mode, "rogue.example.net", &directory.join(rogue_mode.name())).expect("rogue starts");
        let target = format!("127.0.0.1:{}", port(server.address()));
        let mut arguments = vec!["s_client", "-tls1_3", "-connect", &target];
        if let Some(protocol) = starttls {
            arguments.extend(["-starttls", protocol]);
        }
        let output = Command::new("openssl").args(&arguments).stdin(std::process::Stdio::null()).output().expect("openssl runs");
        let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        assert!(text.contains("unexpected message"), "{}: {text}", rogue_mode.name());
        assert_eq!(server.server_finished_sent(), 1, "{}: {:?}", rogue_mode.name(), server.events());
        if starttls.is_some() {
            assert_eq!(server.events_named("starttls").len(), 1, "{}: the switch came from the clear-text command", rogue_mode.name());
        }
    }
}

/// A POP3 session against `pop3_server.py` over STLS: USER in clear, STLS, login, UIDL, the
/// raw RETR response, DELE, QUIT. Arguments: port, CA file, user, password. Prints JSON.
const POP3_STLS_CLIENT: &str = r#"
import json, socket, ssl, sys
port, cafile, user, password = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
plain = socket.create_connection(("127.0.0.1", port), timeout=10)
reader = plain.makefile("rb")
def command(sock, reader, line):
    sock.sendall(line + b"\r\n")
    return reader.readline().decode()
out = {"greeting": reader.readline().decode()}
out["user_in_clear"] = command(plain, reader, b"USER " + user.encode())
out["stls"] = command(plain, reader, b"STLS")
reader.close()
context = ssl.create_default_context(cafile=cafile)
secure = context.wrap_socket(plain, server_hostname="pop.example.net")
reader = secure.makefile("rb")
out["tls_version"] = secure.version()
command(secure, reader, b"USER " + user.encode())
out["pass"] = command(secure, reader, b"PASS " + password.encode())
command(secure, reader, b"UIDL")
uidls = []
while (line := reader.readline()) != b".\r\n":
    uidls.append(line.decode().strip())
out["uidls"] = uidls
secure.sendall(b"RETR 1\r\n")
raw = b""
while not raw.endswith(b"\r\n.\r\n"):
    raw += reader.read1(4096)
out["retr"] = raw.decode("latin-1")
out["dele"] = command(secure, reader, b"DELE 1")
out["quit"] = command(secure, reader, b"QUIT")
print(json.dumps(out))
"#;

#[test]
fn pop3_server_serves_bare_line_ends_byte_for_byte_inside_tls_only() {
    use homemx_qemu::pop3_server::{Pop3Server, Pop3Tls};
    let directory = new_run_directory("peer-pop3").unwrap();
    let ca = test_ca();
    let server = Pop3Server::start(None, "127.0.0.1:0", Pop3Tls::StartTls, ca.leaf("pop.example.net").unwrap(), "user", "secret", &directory)
        .expect("POP3 server starts");
    let served: &[u8] = b"Subject: x\r\n\r\na\n.\nb\r\n.dot\r\nmac\rline";
    server.deliver("message-1", served).unwrap();
    let out = python(POP3_STLS_CLIENT, &[&port(server.address()), path(&ca.ca_certificate), "user", "secret"]);
    assert!(out["greeting"].as_str().unwrap().starts_with("+OK"), "{out}");
    assert!(out["user_in_clear"].as_str().unwrap().starts_with("-ERR"), "no login before TLS: {out}");
    assert_eq!(out["tls_version"], "TLSv1.3", "{out}");
    assert!(out["pass"].as_str().unwrap().starts_with("+OK"), "{out}");
    assert_eq!(out["uidls"], json!(["1 message-1"]));
    let retr = out["retr"].as_str().unwrap().as_bytes();
    // Bare LF and CR as they lie in the maildrop; only the CRLF line with a leading dot is stuffed.
    let expected = [format!("+OK {} octets\r\n", served.len()).as_bytes(), b"Subject: x\r\n\r\na\n.\nb\r\n..dot\r\nmac\rline\r\n.\r\n"].concat();
    assert_eq!(retr, expected);
    assert!(out["dele"].as_str().unwrap().starts_with("+OK") && out["quit"].as_str().unwrap().starts_with("+OK"), "{out}");
    assert!(server.remaining().is_empty(), "deleted at QUIT");
    let cleartext: Vec<Value> = server.events_named("cleartext");
    assert!(cleartext.iter().all(|event| !event["line"].as_str().unwrap_or("").starts_with("PASS")), "{cleartext:?}");
}
