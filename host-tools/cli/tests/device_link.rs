//! The real `homemx` binary against the real `ConsoleSession`, over a real UNIX socket and a
//! real pseudo-terminal (what a USB CDC-ACM serial port looks like to the host).
//!
//! The device side here is `homemx_wire::testing::MemoryHandler`, an in-memory stand-in: the
//! device-side handler (key store, KDF, flash) is the firmware's job, and the QEMU end-to-end
//! test covers it with the same CLI binary.

use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::{Arc, Mutex};

use homemx_wire::device::ConsoleSession;
use homemx_wire::testing::{CountingEntropy, MemoryHandler};

/// The device: session, handler and entropy, shared by the connections it serves.
struct Device {
    session: ConsoleSession,
    handler: MemoryHandler,
    entropy: CountingEntropy,
}

type Shared = Arc<Mutex<Device>>;

fn device() -> Shared {
    let mut entropy = CountingEntropy::default();
    let session = ConsoleSession::new(*b"homemx-device-01", None, &mut entropy);
    Arc::new(Mutex::new(Device { session, handler: MemoryHandler::with_log(20), entropy }))
}

/// Serves one byte stream until it ends.
fn serve(device: &Shared, mut stream: impl Read + Write) {
    let mut buffer = [0u8; 512];
    loop {
        let count = match stream.read(&mut buffer) {
            Ok(0) | Err(_) => return,
            Ok(count) => count,
        };
        let mut input = &buffer[..count];
        let mut guard = device.lock().unwrap();
        let Device { session, handler, entropy } = &mut *guard;
        while !input.is_empty() {
            let reply = futures::executor::block_on(session.receive(input, handler, entropy));
            if let Some(frame) = reply.frame {
                if stream.write_all(frame).is_err() {
                    return;
                }
            }
            input = &input[reply.consumed..];
        }
    }
}

fn serve_unix_socket(device: Shared, path: &Path) {
    let listener = UnixListener::bind(path).unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            match stream {
                Ok(stream) => serve(&device, stream),
                Err(_) => return,
            }
        }
    });
}

/// Opens a pseudo-terminal in raw mode; serves its master side; returns the slave's path.
fn serve_pty(device: Shared) -> PathBuf {
    let mut master = -1;
    let mut slave = -1;
    let mut name = [0 as libc::c_char; 128];
    // SAFETY: openpty writes two fds and a NUL-terminated name into the buffers we pass.
    let result = unsafe { libc::openpty(&mut master, &mut slave, name.as_mut_ptr(), std::ptr::null(), std::ptr::null()) };
    assert_eq!(result, 0, "openpty");
    // SAFETY: both fds were just returned by openpty and are owned here.
    let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    // SAFETY: termios is plain data; tcgetattr fills it for a valid fd.
    unsafe {
        let mut termios: libc::termios = std::mem::zeroed();
        assert_eq!(libc::tcgetattr(std::os::fd::AsRawFd::as_raw_fd(&slave), &mut termios), 0);
        libc::cfmakeraw(&mut termios);
        assert_eq!(libc::tcsetattr(std::os::fd::AsRawFd::as_raw_fd(&slave), libc::TCSANOW, &termios), 0);
    }
    // SAFETY: ptsname's buffer is NUL-terminated.
    let path = unsafe { std::ffi::CStr::from_ptr(name.as_ptr()) }.to_str().unwrap().to_string();
    std::thread::spawn(move || {
        let _keep_slave_open = slave; // so the master never sees a hang-up between CLI runs
        serve(&device, std::fs::File::from(master));
    });
    PathBuf::from(path)
}

struct Rig {
    folder: tempfile::TempDir,
    device_argument: String,
}

impl Rig {
    fn path(&self, name: &str) -> PathBuf {
        self.folder.path().join(name)
    }

    fn homemx(&self, key: &str, arguments: &[&str]) -> Output {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_homemx"));
        command
            .arg("--device")
            .arg(&self.device_argument)
            .arg("--key")
            .arg(self.path(key))
            .arg("--timeout")
            .arg("10")
            .args(arguments)
            .stdin(std::process::Stdio::null())
            .env_remove("HOMEMX_DEVICE")
            .env_remove("HOMEMX_KEY");
        command.output().unwrap()
    }

    fn ok(&self, key: &str, arguments: &[&str]) -> String {
        let output = self.homemx(key, arguments);
        assert!(
            output.status.success(),
            "homemx {arguments:?}: {}\n{}",
            String::from_utf8_lossy(&output.stderr),
            String::from_utf8_lossy(&output.stdout)
        );
        String::from_utf8(output.stdout).unwrap()
    }

    fn fails(&self, key: &str, arguments: &[&str], code: i32) -> String {
        let output = self.homemx(key, arguments);
        assert_eq!(output.status.code(), Some(code), "homemx {arguments:?}: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stderr).unwrap()
    }

    fn setup(&self) {
        std::fs::write(self.path("storage.passphrase"), "correct horse battery staple\n").unwrap();
        std::fs::write(self.path("wrong.passphrase"), "incorrect horse\n").unwrap();
        std::fs::write(self.path("smarthost.password"), "smarthost-secret-value\n").unwrap();
        std::fs::copy(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/test-ca.pem"), self.path("ca.pem")).unwrap();
        std::fs::write(
            self.path("homemx.toml"),
            r#"
domains = ["example.org", "example.net"]
recipients = ["alice@example.org", "bob@example.net"]
lan_prefixes = ["192.168.1.0/24", "10.1.0.0/16"]
[lan_mailbox]
address = "192.168.1.10"
port = 24
protocol = "lmtp"
[smarthost]
host = "smtp.provider.example"
port = 465
tls = "implicit"
user_name = "alice"
password_file = "smarthost.password"
ca_certificate = "ca.pem"
"#,
        )
        .unwrap();
        for key in ["admin.key", "stranger.key", "next.key"] {
            self.ok(key, &["keygen", "--no-passphrase"]);
        }
    }
}

fn provision_and_use(rig: &Rig, device: &Shared) {
    rig.setup();
    let config = rig.path("homemx.toml");
    let passphrase = rig.path("storage.passphrase");
    let output = rig.ok(
        "admin.key",
        &["--json", "provision", "--config", config.to_str().unwrap(), "--passphrase-file", passphrase.to_str().unwrap()],
    );
    let summary: serde_json::Value = serde_json::from_str(&output).unwrap();
    assert_eq!(summary["enrolled"], true);
    assert_eq!(summary["configuration_items"], 11);
    {
        let device = device.lock().unwrap();
        assert!(device.handler.admin_key.is_some());
        assert_eq!(device.handler.configuration.len(), 11);
        assert_eq!(device.handler.credentials[0].as_ref().unwrap().expose(), b"smarthost-secret-value");
        assert!(device.handler.certificates[0].is_some(), "the CA went over in chunks");
    }

    // Status shows state, never a secret.
    let status = rig.ok("admin.key", &["--json", "status"]);
    assert!(!status.contains("smarthost-secret-value") && !status.contains("horse"), "{status}");
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["status"]["state"], "Unlocked");
    assert_eq!(status["status"]["credentials"]["smarthost_password"], true);
    let human = rig.ok("admin.key", &["status"]);
    assert!(human.contains("smarthost set"), "{human}");
    // The status page's verdict line comes first, as the device words it.
    assert!(human.starts_with("Mail flows — no alerts\ndevice "), "{human}");
    assert_eq!(status["status"]["verdict"], "ok");

    let config_get = rig.ok("admin.key", &["--json", "config", "get"]);
    let items: serde_json::Value = serde_json::from_str(&config_get).unwrap();
    assert_eq!(items["items"].as_array().unwrap().len(), 11);
    assert!(!config_get.contains("secret-value"));

    let logs: serde_json::Value = serde_json::from_str(&rig.ok("admin.key", &["--json", "logs", "--start", "3"])).unwrap();
    assert_eq!(logs["entries"].as_array().unwrap().len(), 17);
    rig.ok("admin.key", &["fetch-now"]);

    // Lock, refuse a wrong passphrase (exit 6), unlock.
    rig.ok("admin.key", &["lock"]);
    assert!(!device.lock().unwrap().handler.unlocked);
    let wrong = rig.path("wrong.passphrase");
    rig.fails("admin.key", &["unlock", "--passphrase-file", wrong.to_str().unwrap()], 6);
    rig.fails("admin.key", &["config", "get"], 6);
    rig.ok("admin.key", &["unlock", "--passphrase-file", passphrase.to_str().unwrap()]);
    assert!(device.lock().unwrap().handler.unlocked);

    // Another admin key is refused (exit 5) and changes nothing.
    let before = device.lock().unwrap().handler.clone();
    let message = rig.fails("stranger.key", &["lock"], 5);
    assert!(message.contains("BadSignature"), "{message}");
    rig.fails("stranger.key", &["factory-reset", "--yes"], 5);
    assert_eq!(device.lock().unwrap().handler, before);

    // Rotate to the next key: the old one stops working.
    let next = rig.path("next.key");
    rig.ok("admin.key", &["rotate-key", "--new-key", next.to_str().unwrap()]);
    rig.fails("admin.key", &["status"], 5);
    rig.ok("next.key", &["status"]);

    // Factory reset asks for confirmation; without a terminal and --yes it refuses (exit 10).
    rig.fails("next.key", &["factory-reset"], 10);
    assert_eq!(device.lock().unwrap().handler.factory_resets, 0);
    rig.ok("next.key", &["factory-reset", "--yes"]);
    assert_eq!(device.lock().unwrap().handler.factory_resets, 1);
    assert!(device.lock().unwrap().session.admin_key().is_none());
}

#[test]
fn the_cli_provisions_and_runs_a_device_over_a_unix_socket() {
    let folder = tempfile::tempdir().unwrap();
    let socket = folder.path().join("serial.sock");
    let device = device();
    serve_unix_socket(device.clone(), &socket);
    let rig = Rig { device_argument: format!("unix:{}", socket.display()), folder };
    provision_and_use(&rig, &device);
}

#[test]
fn the_cli_provisions_and_runs_a_device_over_a_pseudo_terminal() {
    let device = device();
    let path = serve_pty(device.clone());
    let rig = Rig { device_argument: path.display().to_string(), folder: tempfile::tempdir().unwrap() };
    provision_and_use(&rig, &device);
}

#[test]
fn an_absent_device_is_a_connection_error() {
    let folder = tempfile::tempdir().unwrap();
    let rig = Rig { device_argument: format!("unix:{}", folder.path().join("nothing.sock").display()), folder };
    rig.ok("admin.key", &["keygen", "--no-passphrase"]);
    let message = rig.fails("admin.key", &["status"], 4);
    assert!(message.contains("hint:"), "{message}");
    let rig = Rig { device_argument: "/dev/does-not-exist".into(), folder: rig.folder };
    rig.fails("admin.key", &["status"], 4);
}

#[test]
fn a_weak_new_passphrase_is_refused_unless_the_owner_insists() {
    let folder = tempfile::tempdir().unwrap();
    let socket = folder.path().join("serial.sock");
    let device = device();
    serve_unix_socket(device.clone(), &socket);
    let rig = Rig { device_argument: format!("unix:{}", socket.display()), folder };
    rig.setup();
    let config = rig.path("homemx.toml");
    let weak = rig.path("weak.passphrase");
    std::fs::write(&weak, "password123\n").unwrap();
    let provision = ["provision", "--config", config.to_str().unwrap(), "--passphrase-file", weak.to_str().unwrap()];

    // Refused with the estimate, the estimator's feedback and what to do; the device is untouched.
    let message = rig.fails("admin.key", &provision, 1);
    assert!(message.contains("too weak: about 9 bits estimated (zxcvbn), at least 60 needed"), "{message}");
    assert!(message.contains("This is a very common password"), "the estimator's feedback: {message}");
    assert!(message.contains("hint:") && message.contains("--weak-passphrase"), "{message}");
    assert!(device.lock().unwrap().session.admin_key().is_none(), "nothing was enrolled");
    assert!(device.lock().unwrap().handler.passphrase.is_none(), "no passphrase was set");

    // A guessable phrase built from the configuration's own words is weak too.
    let domain_words = rig.path("domain.passphrase");
    std::fs::write(&domain_words, "alice example org\n").unwrap();
    let message = rig.fails("admin.key", &["provision", "--config", config.to_str().unwrap(), "--passphrase-file", domain_words.to_str().unwrap()], 1);
    assert!(message.contains("too weak"), "{message}");

    // The owner may insist: accepted with a warning.
    let mut insisted = provision.to_vec();
    insisted.push("--weak-passphrase");
    let output = rig.homemx("admin.key", &insisted);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(String::from_utf8_lossy(&output.stderr).contains("accepted because of --weak-passphrase"));
    assert_eq!(device.lock().unwrap().handler.passphrase.as_ref().unwrap().expose(), b"password123");
}

fn alert(kind: &str, needs_acknowledgement: bool) -> homemx_wire::message::AlertReport {
    homemx_wire::message::AlertReport {
        kind: kind.try_into().unwrap(),
        count: 3,
        first_seen_age_seconds: 3720,
        first_seen_unix: Some(1_780_000_000),
        last_seen_age_seconds: 60,
        needs_acknowledgement,
    }
}

#[test]
fn status_shows_deferred_mail_and_alerts_and_event_alerts_are_acknowledged() {
    let folder = tempfile::tempdir().unwrap();
    let socket = folder.path().join("serial.sock");
    let device = device();
    serve_unix_socket(device.clone(), &socket);
    let rig = Rig { device_argument: format!("unix:{}", socket.display()), folder };
    rig.setup();
    let config = rig.path("homemx.toml");
    let passphrase = rig.path("storage.passphrase");
    rig.ok("admin.key", &["provision", "--config", config.to_str().unwrap(), "--passphrase-file", passphrase.to_str().unwrap()]);
    {
        let mut device = device.lock().unwrap();
        device.handler.deferred = 2;
        device.handler.alerts.push(alert("stripping_suspected", false)).unwrap();
        device.handler.alerts.push(alert("ndn_generated", true)).unwrap();
    }

    let human = rig.ok("admin.key", &["status"]);
    assert!(human.contains("2 messages, 2 deferred"), "{human}");
    assert!(human.contains("alerts       2 active"), "{human}");
    assert!(human.contains("stripping_suspected since Thu, 28 May 2026 20:26:40 +0000 (1 h 2 min ago), 3 times: STARTTLS stripping suspected"), "{human}");
    assert!(human.contains("ends by itself when the cause is gone"), "{human}");
    assert!(human.contains("ends when you acknowledge it: homemx alert ack ndn_generated"), "{human}");
    let json: serde_json::Value = serde_json::from_str(&rig.ok("admin.key", &["--json", "status"])).unwrap();
    assert_eq!(json["status"]["deferred"], 2);
    assert_eq!(json["status"]["alerts"][0]["kind"], "stripping_suspected");
    assert_eq!(json["status"]["alerts"][0]["first_seen_unix"], 1_780_000_000u64);

    // A condition alert cannot be acknowledged away (the CLI says so without asking the
    // device); an unknown kind gets the list of kinds.
    let message = rig.fails("admin.key", &["alert", "ack", "stripping_suspected"], 7);
    assert!(message.contains("ends by itself once its cause is gone"), "{message}");
    let message = rig.fails("admin.key", &["alert", "ack", "stripping"], 2);
    assert!(message.contains("hint:") && message.contains("ndn_generated"), "{message}");
    assert_eq!(device.lock().unwrap().handler.alerts.len(), 2);

    // An event alert is acknowledged; a second acknowledgement finds nothing.
    let done = rig.ok("admin.key", &["alert", "ack", "ndn_generated"]);
    assert!(done.contains("acknowledged"), "{done}");
    assert_eq!(device.lock().unwrap().handler.alerts.as_slice(), [alert("stripping_suspected", false)]);
    let message = rig.fails("admin.key", &["alert", "ack", "ndn_generated"], 7);
    assert!(message.contains("no ndn_generated alert is active"), "{message}");
    let human = rig.ok("admin.key", &["status"]);
    assert!(human.contains("alerts       1 active") && !human.contains("ndn_generated"), "{human}");
}

#[test]
fn the_binary_provisions_what_init_wrote_once_the_files_it_named_exist() {
    let folder = tempfile::tempdir().unwrap();
    let socket = folder.path().join("serial.sock");
    let device = device();
    serve_unix_socket(device.clone(), &socket);
    let rig = Rig { device_argument: format!("unix:{}", socket.display()), folder };
    let config = rig.path("homemx.toml");
    let init = [
        "--json", "init", "--domain", "example.org", "--recipient", "alice@example.org", "--lan-prefix", "192.168.1.0/24",
        "--mailbox-host", "192.168.1.10", "--smarthost", "smtp.provider.example:465", "--out", config.to_str().unwrap(),
    ];
    let report: serde_json::Value = serde_json::from_str(&rig.ok("admin.key", &init)).unwrap();
    assert_eq!(report["inbound_only"], false);
    let files = report["needed_files"].as_array().unwrap();
    let needed: Vec<PathBuf> = files.iter().map(|file| file["path"].as_str().unwrap().into()).collect();
    assert_eq!(needed.len(), 2, "a password file and a trust anchor: {report}");
    assert!(report["needed_files"][1]["how"].as_str().unwrap().contains("openssl s_client -connect smtp.provider.example:465"));
    let written = std::fs::read(&config).unwrap();
    // The owner writes the files init asked for, nothing else, and provisions the file as it is.
    for path in &needed {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    }
    std::fs::write(&needed[0], "smarthost-secret-value\n").unwrap();
    std::fs::copy(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/test-ca.pem"), &needed[1]).unwrap();
    std::fs::write(rig.path("storage.passphrase"), "correct horse battery staple\n").unwrap();
    rig.ok("admin.key", &["keygen", "--no-passphrase"]);
    let passphrase = rig.path("storage.passphrase");
    let provision = ["--json", "provision", "--config", config.to_str().unwrap(), "--passphrase-file", passphrase.to_str().unwrap()];
    let summary: serde_json::Value = serde_json::from_str(&rig.ok("admin.key", &provision)).unwrap();
    assert_eq!((summary["credentials"].as_u64(), summary["trust_anchors"].as_u64()), (Some(1), Some(1)), "{summary}");
    assert_eq!(std::fs::read(&config).unwrap(), written, "provisioned unchanged");
    let device = device.lock().unwrap();
    assert_eq!(device.handler.credentials[0].as_ref().unwrap().expose(), b"smarthost-secret-value");
    assert!(device.handler.certificates[0].is_some(), "the CA init asked for went over");
}

/// `homemx user add/passwd/remove` edit homemx.toml and push it whole: the device ends up with
/// the user's salted hash (which verifies the password), never the password, and `config get`
/// shows the user without salt and hash.
#[test]
fn user_commands_edit_the_file_and_push_only_the_hash() {
    use homemx_credentials::Verdict;
    use homemx_wire::config::ConfigItem;
    let folder = tempfile::tempdir().unwrap();
    let socket = folder.path().join("serial.sock");
    let device = device();
    serve_unix_socket(device.clone(), &socket);
    let rig = Rig { device_argument: format!("unix:{}", socket.display()), folder };
    rig.setup();
    let config = rig.path("homemx.toml");
    let config = config.to_str().unwrap();
    let passphrase = rig.path("storage.passphrase");
    rig.ok("admin.key", &["provision", "--config", config, "--passphrase-file", passphrase.to_str().unwrap()]);
    let users = |device: &Shared| -> Vec<homemx_wire::config::MailUser> {
        let device = device.lock().unwrap();
        device.handler.configuration.iter().filter_map(|item| if let ConfigItem::User(user) = item { Some(user.clone()) } else { None }).collect()
    };
    assert!(users(&device).is_empty());

    let password = rig.path("alice.pw");
    std::fs::write(&password, "alices-mail-password\n").unwrap();
    std::fs::set_permissions(&password, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let before = device.lock().unwrap().handler.clone();
    let message = rig.fails("admin.key", &["user", "add", "alice@example.org", "--config", config, "--password-file", password.to_str().unwrap()], 3);
    assert!(message.contains("readable or writable by others") && message.contains("chmod 600"), "{message}");
    assert_eq!(device.lock().unwrap().handler, before, "nothing sent");
    std::fs::set_permissions(&password, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();

    let output = rig.ok("admin.key", &["--json", "user", "add", "alice@example.org", "--config", config, "--password-file", password.to_str().unwrap(), "--messages-per-hour", "30"]);
    let summary: serde_json::Value = serde_json::from_str(&output).unwrap();
    assert_eq!((summary["pushed"].as_bool(), summary["users"].as_u64()), (Some(true), Some(1)));
    let stored = users(&device);
    assert_eq!(stored.len(), 1);
    assert_eq!((stored[0].name.as_str(), stored[0].messages_per_hour), ("alice@example.org", Some(30)));
    assert_eq!(stored[0].password.verify(b"alices-mail-password"), Ok(Verdict::Accepted));
    assert!(std::fs::read_to_string(rig.path("homemx.toml")).unwrap().contains("[[users]]\nname = \"alice@example.org\"\npassword_file = \"alice.pw\""));
    {
        let device = device.lock().unwrap();
        let every_item = format!("{:?}", device.handler.configuration);
        assert!(!every_item.contains("alices-mail-password"));
        assert!(device.handler.credentials.iter().flatten().all(|secret| secret.expose() != b"alices-mail-password"), "no credential either");
    }

    // Read back: the user without salt and hash.
    let config_get = rig.ok("admin.key", &["--json", "config", "get"]);
    let items: serde_json::Value = serde_json::from_str(&config_get).unwrap();
    let user = items["items"].as_array().unwrap().iter().find_map(|item| item.get("User")).expect("the user is listed");
    assert_eq!(user["password"]["salt"], serde_json::json!(vec![0; 16]));
    assert_eq!(user["password"]["hash"], serde_json::json!(vec![0; 32]));
    assert_eq!(user["password"]["iterations"], homemx_credentials::DEFAULT_ITERATIONS);

    // A new password from another file, then removal.
    let second = rig.path("alice-2.pw");
    std::fs::write(&second, "alices-second-password\n").unwrap();
    std::fs::set_permissions(&second, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    rig.ok("admin.key", &["user", "passwd", "alice@example.org", "--config", config, "--password-file", second.to_str().unwrap()]);
    let stored = users(&device);
    assert_eq!(stored[0].password.verify(b"alices-second-password"), Ok(Verdict::Accepted));
    assert_eq!(stored[0].password.verify(b"alices-mail-password"), Ok(Verdict::Refused));
    let output = rig.homemx("admin.key", &["user", "remove", "alice@example.org", "--config", config]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(String::from_utf8_lossy(&output.stderr).contains("alice-2.pw is no longer used"));
    assert!(users(&device).is_empty());
}
