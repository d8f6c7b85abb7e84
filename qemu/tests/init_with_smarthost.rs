//! A new owner's path with the provider's smarthost: the real `homemx init` with flags writes
//! `homemx.toml` and names the two files still needed (the smarthost's password file and its CA
//! certificate); the test makes them as its `how` says, by running the commands it printed: the
//! password through the printed shell line (mode 0600), the CA as the last certificate of the
//! chain that the printed `openssl s_client … -showcerts` shows from the smarthost (inside the
//! isolated network, the host name's address given to `-connect`, since the host's resolver does
//! not know the test zone). `homemx provision` then accepts the file unchanged on a factory-fresh
//! device, a LAN submission for a remote address is refused until the owner adds a user with `homemx user
//! add`; submitted as that user (STARTTLS, AUTH), it reaches the smarthost over TLS 1.3 after AUTH,
//! byte-exact after the appliance's `Received:` header, and a WAN message reaches the LAN mailbox
//! host. (Without `[smarthost]`, the `inbound_only` test takes the same path.)

use std::io::Write;
use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use homemx_qemu::firmware::FirmwareBuild;
use homemx_qemu::flash_image;
use homemx_qemu::machine::{new_run_directory, Machine, MachineConfig};
use homemx_qemu::network::{IsolatedNetwork, APPLIANCE, LAN_CLIENT, ROUTER, WAN_CLIENT};
use homemx_qemu::owner::{Owner, PASSPHRASE, SMARTHOST_PASSWORD};
use homemx_qemu::peers::{expect_250, send_mail, split_received, submit_authenticated, MailboxHost};
use homemx_qemu::provider::{
    add_wan_address, write_json_atomically, DnsServer, Smarthost, SmarthostConfig, SntpConfig, SntpServer, TestCa, TlsMode, SMARTHOST_NAME,
};
use serde_json::{json, Value};

/// The smarthost's public address (what the test zone says for [`SMARTHOST_NAME`]).
const SMARTHOST_ADDRESS: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 25);
/// The provider's account for the appliance (not the first recipient: `--smarthost-user`).
const SMARTHOST_USER: &str = "homemx@example.org";
/// How long a step may take (clock, each message's arrival, a command).
const STEP_TIMEOUT: Duration = Duration::from_secs(120);

const OUTBOUND: &[u8] = b"From: Alice <alice@example.org>\r\n\
To: Carol <carol@remote.example>\r\n\
Subject: out through the smarthost init configured\r\n\
Message-ID: <init-with-smarthost-out@example.org>\r\n\
\r\n\
Sent with the configuration `homemx init` wrote.\r\n";

const INBOUND: &[u8] = b"From: Carol <carol@remote.example>\r\n\
To: Alice <alice@example.org>\r\n\
Subject: in, with the configuration init wrote\r\n\
Message-ID: <init-with-smarthost-in@remote.example>\r\n\
\r\n\
Hello Alice.\r\n";

/// Runs `command` with `stdin` as its input; its output once it ended, killed by PID after
/// [`STEP_TIMEOUT`].
fn run_bounded(command: &mut Command, stdin: &[u8]) -> Output {
    let mut child = command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("the command starts");
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let deadline = Instant::now() + STEP_TIMEOUT;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("{command:?} did not end within {STEP_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

/// The line of a needed file's `how` that starts with `start`, trimmed.
fn printed_command<'a>(how: &'a str, start: &str) -> &'a str {
    how.lines().map(str::trim).find(|line| line.starts_with(start)).unwrap_or_else(|| panic!("no {start:?} line in {how}"))
}

/// The PEM blocks of certificates in `text`, in order.
fn certificate_blocks(text: &str) -> Vec<String> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let mut blocks = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(BEGIN) {
        let Some(length) = rest[start..].find(END) else { break };
        blocks.push(format!("{}\n", &rest[start..start + length + END.len()]));
        rest = &rest[start + length + END.len()..];
    }
    blocks
}

#[test]
fn init_with_a_smarthost_provisions_a_fresh_device_unchanged_and_mail_goes_out_and_in() {
    let elf = FirmwareBuild::QEMU.build().expect("firmware builds");
    let directory = new_run_directory("init_with_smarthost").unwrap();
    let ca = TestCa::create_for(&directory.join("ca"), &[SMARTHOST_NAME]).expect("the provider's test CA");
    std::fs::write(directory.join("outbound.eml"), OUTBOUND).unwrap();
    std::fs::write(directory.join("inbound.eml"), INBOUND).unwrap();

    let network = IsolatedNetwork::create(&directory).expect("isolated network");
    let namespace = network.namespace().to_string();
    let ns = Some(namespace.as_str());
    add_wan_address(&namespace, SMARTHOST_ADDRESS).unwrap();
    let zone = directory.join("zone.json");
    write_json_atomically(&zone, &json!({"ttl": 60, "names": {SMARTHOST_NAME: {"A": [SMARTHOST_ADDRESS.to_string()]}}})).unwrap();
    let _dns = DnsServer::start(ns, &[&format!("{ROUTER}:53")], &zone, &directory.join("dns")).expect("DNS server");
    let _sntp = SntpServer::start(ns, &SntpConfig::new(format!("{ROUTER}:123")), &directory.join("sntp")).expect("SNTP server");
    let mailbox = MailboxHost::start(&namespace, &format!("{ROUTER}:24"), "lmtp", &directory.join("mailbox")).expect("mailbox host");
    let smarthost_config = SmarthostConfig::new(format!("{SMARTHOST_ADDRESS}:587"), TlsMode::StartTls)
        .with_certificate(ca.leaf(SMARTHOST_NAME).unwrap())
        .with_auth(SMARTHOST_USER, SMARTHOST_PASSWORD);
    let smarthost = Smarthost::start(ns, &smarthost_config, &directory.join("smarthost")).expect("smarthost");
    let flash = directory.join("flash.img");
    flash_image::create(&flash).unwrap();
    let machine = Machine::start(&MachineConfig::on_network(elf, flash, &network), &directory).expect("QEMU starts");
    machine.wait_ready(0, Duration::from_secs(60)).expect("network up");
    let owner = Owner::at(&directory);

    // `homemx init` with flags, as the README shows them, for this LAN and the provider.
    let smarthost_flag = format!("{SMARTHOST_NAME}:587");
    let init = owner.homemx(&[
        "--json",
        "init",
        "--domain",
        "example.org",
        "--recipient",
        "alice@example.org",
        "--recipient",
        "bob@example.org",
        "--lan-prefix",
        "192.168.77.0/24",
        "--mailbox-host",
        &ROUTER.to_string(),
        "--mailbox-protocol",
        "lmtp",
        "--mailbox-port",
        "24",
        "--smarthost",
        &smarthost_flag,
        "--smarthost-user",
        SMARTHOST_USER,
        "--out",
        "homemx.toml",
    ]);
    assert!(init.status.success(), "init works");
    let report: Value = serde_json::from_slice(&init.stdout).expect("init --json is JSON");
    assert_eq!(report["inbound_only"], false, "{report}");
    let needed = report["needed_files"].as_array().expect("the files still needed");
    let paths: Vec<&str> = needed.iter().map(|file| file["path"].as_str().unwrap()).collect();
    assert_eq!(paths, ["./secrets/smarthost.password", "./certs/smarthost-ca.pem"], "{report}");
    let written = std::fs::read(directory.join("homemx.toml")).unwrap();

    // The password file, with the shell line init printed (the password on its stdin).
    let line = printed_command(needed[0]["how"].as_str().unwrap(), "mkdir -p -m 700 ");
    let output = run_bounded(Command::new("bash").args(["-c", line]).current_dir(&directory), format!("{SMARTHOST_PASSWORD}\n").as_bytes());
    assert!(output.status.success(), "{line}: {}", String::from_utf8_lossy(&output.stderr));
    let password_file = directory.join(paths[0]);
    assert_eq!(std::fs::read_to_string(&password_file).unwrap(), format!("{SMARTHOST_PASSWORD}\n"));
    assert_eq!(std::fs::metadata(&password_file).unwrap().permissions().mode() & 0o777, 0o600, "readable only by the owner");

    // The CA: the chain the smarthost sends, with the openssl command init printed, run from the
    // WAN side of the isolated network; its last certificate is the issuing CA.
    let how = needed[1]["how"].as_str().unwrap();
    let openssl = printed_command(how, "openssl s_client ");
    assert_eq!(
        openssl,
        format!("openssl s_client -connect {SMARTHOST_NAME}:587 -servername {SMARTHOST_NAME} -starttls smtp -showcerts </dev/null")
    );
    let openssl = openssl.replace(&format!("-connect {SMARTHOST_NAME}:"), &format!("-connect {SMARTHOST_ADDRESS}:"));
    let output = run_bounded(Command::new("ip").args(["netns", "exec", &namespace, "sh", "-c", &openssl]).current_dir(&directory), b"");
    let shown = String::from_utf8_lossy(&output.stdout);
    let chain = certificate_blocks(&shown);
    assert_eq!(chain.len(), 2, "the smarthost sends its certificate and the CA's: {shown}{}", String::from_utf8_lossy(&output.stderr));
    let issuing_ca = chain.last().unwrap();
    assert_eq!(
        certificate_blocks(&std::fs::read_to_string(&ca.ca_certificate).unwrap()),
        std::slice::from_ref(issuing_ca),
        "the last one is the CA"
    );
    std::fs::create_dir_all(directory.join("certs")).unwrap();
    std::fs::write(directory.join(paths[1]), issuing_ca).unwrap();

    // The storage passphrase is provision's, not init's: the one other file the owner writes.
    std::fs::write(directory.join("passphrase"), format!("{PASSPHRASE}\n")).unwrap();
    owner.provision();
    assert_eq!(std::fs::read(directory.join("homemx.toml")).unwrap(), written, "provisioned from init's file unchanged");
    let status = owner.status();
    assert_eq!(status["configured"], true, "{status}");
    assert_eq!(status["credentials"]["smarthost_password"], true, "{status}");

    // Outbound waits for the clock (certificate validity), then goes through the smarthost.
    machine.log.wait_for(0, "time: clock set", STEP_TIMEOUT).expect("the clock is set by SNTP");
    let send = |source, port: u16, sender: &str, recipient: &str, message: &Path| {
        send_mail(&namespace, source, format!("{APPLIANCE}:{port}"), sender, &[recipient], message, false).expect("smtp client runs")
    };
    // Without a user, the LAN's mail for other domains is refused (AUTH is required by
    // default); the owner adds one with the CLI and submits as it, over STARTTLS.
    let refused = send(LAN_CLIENT, 587, "alice@example.org", "carol@remote.example", &directory.join("outbound.eml"));
    assert_eq!(refused["mail"][0], 530, "no relaying by LAN address by default: {refused}");
    let user_password = directory.join("secrets/alice.password");
    std::fs::write(&user_password, "alice-submits-Wz8\n").unwrap();
    std::fs::set_permissions(&user_password, std::fs::Permissions::from_mode(0o600)).unwrap();
    let added = owner.homemx(&["user", "add", "alice@example.org", "--password-file", "secrets/alice.password"]);
    assert!(added.status.success(), "user add: {}", String::from_utf8_lossy(&added.stderr));
    machine.log.wait_for(0, "tls: self-signed certificate for", STEP_TIMEOUT).expect("the device's certificate for STARTTLS");
    let submitted = submit_authenticated(
        &namespace,
        LAN_CLIENT,
        format!("{APPLIANCE}:587"),
        ("alice@example.org", "alice-submits-Wz8"),
        &["carol@remote.example"],
        &directory.join("outbound.eml"),
    )
    .expect("smtp client runs");
    assert_eq!(submitted["auth"][0], 235, "{submitted}");
    expect_250(&submitted).unwrap();
    let (body, sidecar) = smarthost.wait_for_messages(1, STEP_TIMEOUT).expect("relayed to the smarthost").remove(0);
    assert_eq!(sidecar["mail_from"], "alice@example.org", "{sidecar}");
    assert_eq!(sidecar["rcpt_tos"], json!(["carol@remote.example"]), "{sidecar}");
    assert_eq!(sidecar["tls_version"], "TLSv1.3", "{sidecar}");
    assert_eq!(sidecar["auth_user"], SMARTHOST_USER, "{sidecar}");
    let (_, rest) = split_received(&body).expect("the appliance's Received: header first");
    assert_eq!(rest, OUTBOUND, "byte-exact after the Received: header");

    // Inbound: a WAN message to a recipient init named reaches the LAN mailbox host.
    expect_250(&send(WAN_CLIENT, 25, "carol@remote.example", "alice@example.org", &directory.join("inbound.eml"))).unwrap();
    let (body, envelope) = mailbox.wait_for_messages(1, STEP_TIMEOUT).expect("delivered to the mailbox host").remove(0);
    assert_eq!(envelope["rcpt_tos"], json!(["alice@example.org"]), "{envelope}");
    assert_eq!(split_received(&body).expect("a Received: header first").1, INBOUND);
    assert_eq!(smarthost.messages().len(), 1, "one copy out");
    homemx_qemu::peers::assert_short_polls(&network);
}
