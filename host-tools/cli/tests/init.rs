//! `homemx init`: the file it writes is one `homemx provision` accepts (with the secret files
//! it names), it never overwrites without `--force`, bad flags give an error that names the
//! flag and write nothing, and the terminal questions take defaults and ask again, with the
//! reason, after an answer the file's rules refuse (also the real binary on a pseudo-terminal).

use std::io::{Cursor, Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use homemx_cli::config_file;
use homemx_cli::error::ExitCode;
use homemx_cli::init::{self, InitFlags, SMARTHOST_CA_FILE, SMARTHOST_PASSWORD_FILE};
use homemx_wire::config::{ConfigItem, DeliveryProtocol, TlsMode};

fn flags(smarthost: Option<&str>) -> InitFlags {
    InitFlags {
        domain: Some("example.org".into()),
        recipients: vec!["alice@example.org".into(), "bob@example.org".into()],
        lan_prefix: Some("192.168.1.0/24".into()),
        mailbox_host: Some("192.168.1.10".into()),
        smarthost: smarthost.map(str::to_string),
        no_smarthost: smarthost.is_none(),
        ..InitFlags::default()
    }
}

/// `homemx init` through the CLI's entry point, as the binary runs it; its exit code.
fn run_init(out: &Path, extra: &[&str]) -> i32 {
    let mut arguments = vec!["homemx", "init", "--out", out.to_str().unwrap()];
    arguments.extend_from_slice(extra);
    homemx_cli::run(arguments)
}

const FLAGS: [&str; 8] =
    ["--domain", "example.org", "--recipient", "alice@example.org", "--lan-prefix", "192.168.1.0/24", "--mailbox-host", "192.168.1.10"];

#[test]
fn init_with_a_smarthost_writes_what_provisioning_accepts_once_the_named_files_exist() {
    let directory = tempfile::tempdir().unwrap();
    let out = directory.path().join("homemx.toml");
    let mut arguments = FLAGS.to_vec();
    arguments.extend(["--recipient", "bob@example.org", "--smarthost", "smtp.provider.example:587", "--mailbox-protocol", "smtp"]);
    assert_eq!(run_init(&out, &arguments), 0);
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(text.contains("# Exactly one trust anchor"), "the file is commented:\n{text}");
    // Before the password and CA files exist, provisioning refuses it and says which file.
    let error = config_file::load(&out).expect_err("the named files are missing");
    assert!(error.message.starts_with("smarthost.password_file: cannot read"), "{}", error.message);
    // The files it asked for, then `provision`'s own loader accepts the file unchanged.
    let (_, needed) = init::init(&flags(Some("smtp.provider.example:587")), &directory.path().join("again.toml"), false).unwrap();
    let needed: Vec<_> = needed.iter().map(|file| file.path.clone()).collect();
    assert_eq!(needed, [directory.path().join(SMARTHOST_PASSWORD_FILE), directory.path().join(SMARTHOST_CA_FILE)]);
    std::fs::create_dir_all(directory.path().join("secrets")).unwrap();
    std::fs::create_dir_all(directory.path().join("certs")).unwrap();
    std::fs::write(&needed[0], "the-password\n").unwrap();
    std::fs::copy(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/test-ca.pem"), &needed[1]).unwrap();
    let plan = config_file::load(&out).expect("provision accepts what init wrote");
    let smarthost = plan.items.iter().find_map(|item| match item {
        ConfigItem::Smarthost(smarthost) => Some(smarthost.clone()),
        _ => None,
    });
    let smarthost = smarthost.expect("a smarthost item");
    assert_eq!((smarthost.host.as_str(), smarthost.port, smarthost.tls), ("smtp.provider.example", 587, TlsMode::StartTls));
    assert_eq!(smarthost.user_name.as_str(), "alice@example.org", "the first recipient by default");
    assert_eq!(plan.credentials.len(), 1);
    assert_eq!(plan.credentials[0].1.expose(), b"the-password");
    assert_eq!(plan.anchors.len(), 1);
    let mailbox = plan.items.iter().find_map(|item| match item {
        ConfigItem::LanMailbox(mailbox) => Some(mailbox.clone()),
        _ => None,
    });
    let mailbox = mailbox.expect("a mailbox item");
    assert_eq!((mailbox.address, mailbox.port, mailbox.protocol), ([192, 168, 1, 10], 25, DeliveryProtocol::Smtp));
    let recipients = plan.items.iter().filter(|item| matches!(item, ConfigItem::Recipient(_))).count();
    assert_eq!(recipients, 2);
}

#[test]
fn init_without_a_smarthost_is_an_inbound_only_mx_that_needs_no_file() {
    let directory = tempfile::tempdir().unwrap();
    let out = directory.path().join("sub/homemx.toml");
    let (answers, needed) = init::init(&flags(None), &out, false).unwrap();
    assert!(answers.smarthost.is_none());
    assert!(needed.is_empty(), "{needed:?}");
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(!text.lines().any(|line| line.trim_start().starts_with("[smarthost]")), "no [smarthost] section:\n{text}");
    assert!(text.contains("outbound mail is not configured"), "the file says what no smarthost means:\n{text}");
    let plan = config_file::load(&out).expect("provision accepts it");
    assert!(!plan.items.iter().any(|item| matches!(item, ConfigItem::Smarthost(_))));
    assert!(plan.credentials.is_empty() && plan.anchors.is_empty());
    let mailbox = plan.items.iter().find_map(|item| match item {
        ConfigItem::LanMailbox(mailbox) => Some(mailbox.port),
        _ => None,
    });
    assert_eq!(mailbox, Some(24), "LMTP on 24 by default");
}

#[test]
fn init_refuses_to_overwrite_without_force() {
    let directory = tempfile::tempdir().unwrap();
    let out = directory.path().join("homemx.toml");
    std::fs::write(&out, "# the owner's own file\n").unwrap();
    let mut arguments = FLAGS.to_vec();
    arguments.push("--no-smarthost");
    assert_eq!(run_init(&out, &arguments), ExitCode::Refused as i32);
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "# the owner's own file\n", "untouched");
    let error = init::init(&flags(None), &out, false).unwrap_err();
    assert!(error.message.contains("exists; nothing was written"), "{}", error.message);
    assert!(error.hint.unwrap().contains("--force"));
    arguments.push("--force");
    assert_eq!(run_init(&out, &arguments), 0);
    config_file::load(&out).expect("overwritten with a valid file");
}

#[test]
fn bad_answers_name_the_flag_say_what_to_do_and_write_nothing() {
    let directory = tempfile::tempdir().unwrap();
    let out = directory.path().join("homemx.toml");
    let mut cases: Vec<(InitFlags, &str, &str)> = Vec::new();
    let mut bad = flags(None);
    bad.domain = Some("exa_mple.org".into());
    cases.push((bad, "--domain: ", "a domain name"));
    let mut bad = flags(None);
    bad.recipients = vec!["alice@elsewhere.example".into()];
    cases.push((bad, "--recipient: ", "--recipient alice@example.org"));
    let mut bad = flags(None);
    bad.recipients = vec!["alice".into()];
    cases.push((bad, "--recipient: ", "--recipient alice@example.org"));
    let mut bad = flags(None);
    bad.lan_prefix = Some("0.0.0.0/0".into());
    cases.push((bad, "--lan-prefix: ", "at least /8"));
    let mut bad = flags(None);
    bad.lan_prefix = Some("192.168.1.0".into());
    cases.push((bad, "--lan-prefix: ", "a.b.c.d/len"));
    let mut bad = flags(None);
    bad.mailbox_host = Some("mail.lan".into());
    cases.push((bad, "--mailbox-host: ", "IPv4 address"));
    let mut bad = flags(Some("smtp_provider:465"));
    bad.no_smarthost = false;
    cases.push((bad, "--smarthost: ", "HOST:PORT"));
    for (flags, start, advice) in cases {
        let error = init::init(&flags, &out, false).unwrap_err();
        assert_eq!(error.kind, ExitCode::Configuration, "{}", error.message);
        assert!(error.message.starts_with(start), "{start}: {}", error.message);
        let hint = error.hint.expect("a hint says what to do");
        assert!(hint.contains(advice) && hint.contains("nothing was written"), "{hint}");
        assert!(!out.exists(), "nothing written for {start}");
    }
    // A smarthost that is not HOST:PORT is a usage error, also before anything is written.
    let error = init::init(&flags(Some("smtp.provider.example")), &out, false).unwrap_err();
    assert_eq!(error.kind, ExitCode::Usage);
    assert!(error.message.starts_with("--smarthost: "), "{}", error.message);
    assert!(!out.exists());
    // Through the binary's entry point: the configuration exit code.
    let arguments = ["--domain", "example.org", "--recipient", "x@other.example", "--lan-prefix", "10.0.0.0/8"];
    let arguments = [&arguments[..], &["--mailbox-host", "10.0.0.2", "--no-smarthost"]].concat();
    assert_eq!(run_init(&out, &arguments), ExitCode::Configuration as i32);
    assert!(!out.exists());
}

#[test]
fn without_a_terminal_every_missing_flag_is_named() {
    let flags = InitFlags { domain: Some("example.org".into()), ..InitFlags::default() };
    assert!(!init::flags_complete(&flags));
    let error = init::answers_from_flags(&flags).unwrap_err();
    assert_eq!(error.kind, ExitCode::Usage);
    for flag in ["--recipient", "--lan-prefix", "--mailbox-host", "--smarthost HOST:PORT or --no-smarthost"] {
        assert!(error.message.contains(flag), "{flag}: {}", error.message);
    }
    assert!(!error.message.contains("--domain"));
}

#[test]
fn the_terminal_questions_take_answers_and_defaults() {
    // Domain, recipients, LAN prefix (default), mailbox host, protocol (default), port
    // (default), smarthost, its user (default) and TLS (default).
    let input = "example.org\nalice@example.org, bob@example.org\n\n192.168.1.10\n\n\nsmtp.provider.example:465\n\n\n";
    let mut output = Vec::new();
    let answers = init::ask(&InitFlags::default(), &mut Cursor::new(input), &mut output).unwrap();
    assert_eq!(answers.recipients, ["alice@example.org", "bob@example.org"]);
    assert_eq!(answers.lan_prefix, "192.168.1.0/24");
    assert_eq!((answers.mailbox_protocol.as_str(), answers.mailbox_port), ("lmtp", 24));
    let smarthost = answers.smarthost.clone().expect("a smarthost");
    assert_eq!((smarthost.port, smarthost.tls.as_str(), smarthost.user_name.as_str()), (465, "implicit", "alice@example.org"));
    init::checked_text(&answers).expect("valid");
    let questions = String::from_utf8(output).unwrap();
    assert!(questions.contains("inbound-only"), "{questions}");
    // `none` for the smarthost; flags given are not asked again; end of input aborts.
    let given = InitFlags { domain: Some("example.org".into()), mailbox_host: Some("10.1.2.3".into()), ..InitFlags::default() };
    let answers = init::ask(&given, &mut Cursor::new("bob@example.org\n10.0.0.0/8\nsmtp\n\nnone\n"), &mut Vec::new()).unwrap();
    assert_eq!((answers.mailbox_protocol.as_str(), answers.mailbox_port, answers.smarthost), ("smtp", 25, None));
    let error = init::ask(&InitFlags::default(), &mut Cursor::new("example.org\n"), &mut Vec::new()).unwrap_err();
    assert_eq!(error.kind, ExitCode::Aborted);
}

/// Each question first gets an answer its field's rule refuses, then a good one (or the default).
const ANSWERS_WITH_MISTAKES: [&str; 19] = [
    "exa_mple.org",
    "example.org",
    "alice@elsewhere.example",
    "alice@example.org, bob@example.org",
    "0.0.0.0/0",
    "",
    "mail.lan",
    "192.168.1.10",
    "imap",
    "smtp",
    "99999",
    "",
    "smtp.provider.example",
    "smtp_provider:465",
    "smtp.provider.example:465",
    "a-user-name-longer-than-the-sixty-four-bytes-the-device-keeps-for-it",
    "",
    "tls",
    "",
];

/// The reason printed under each refused answer of [`ANSWERS_WITH_MISTAKES`], in order.
const REASONS: [&str; 10] = [
    "not taken: domain: \"exa_mple.org\" is not a host name; please answer again",
    "not taken: recipient: domain elsewhere.example is not in `domains`; please answer again",
    "not taken: LAN network: a LAN prefix shorter than /8 would make the world a LAN client; please answer again",
    "not taken: mailbox host: \"mail.lan\" is not an IPv4 address; please answer again",
    "not taken: protocol: \"imap\" is not `smtp` or `lmtp`; please answer again",
    "not taken: port: \"99999\" is not a port (1-65535); please answer again",
    "not taken: smarthost: \"smtp.provider.example\" is not HOST:PORT; please answer again",
    "not taken: smarthost: \"smtp_provider\" is not a host name; please answer again",
    "not taken: user name: longer than 64 bytes; please answer again",
    "not taken: TLS: \"tls\" is not `implicit` or `starttls` (TLS is always required); please answer again",
];

fn script(answers: &[&str]) -> String {
    answers.iter().map(|answer| format!("{answer}\n")).collect()
}

#[test]
fn a_refused_answer_at_the_terminal_is_asked_again_with_the_reason() {
    let mut output = Vec::new();
    let answers = init::ask(&InitFlags::default(), &mut Cursor::new(script(&ANSWERS_WITH_MISTAKES)), &mut output).unwrap();
    assert_eq!(answers.domain, "example.org");
    assert_eq!(answers.recipients, ["alice@example.org", "bob@example.org"]);
    assert_eq!(answers.lan_prefix, "192.168.1.0/24", "the default after the refused /0");
    assert_eq!(answers.mailbox_host, "192.168.1.10");
    assert_eq!((answers.mailbox_protocol.as_str(), answers.mailbox_port), ("smtp", 25), "SMTP's default port after the refused one");
    let smarthost = answers.smarthost.clone().expect("a smarthost");
    assert_eq!((smarthost.host.as_str(), smarthost.port), ("smtp.provider.example", 465));
    assert_eq!((smarthost.user_name.as_str(), smarthost.tls.as_str()), ("alice@example.org", "implicit"), "the defaults");
    init::checked_text(&answers).expect("what was taken passes provisioning's rules");
    let dialogue = String::from_utf8(output).unwrap();
    let mut rest = dialogue.as_str();
    for reason in REASONS {
        let at = rest.find(reason).unwrap_or_else(|| panic!("{reason:?} (in order) in:\n{dialogue}"));
        rest = &rest[at + reason.len()..];
    }
    for (question, times) in [("Domain the appliance", 2), ("Recipients, separated", 2), ("Its port", 2), ("Provider's smarthost", 3)] {
        assert_eq!(dialogue.matches(question).count(), times, "{question:?} asked {times} times:\n{dialogue}");
    }
}

#[test]
fn the_terminal_gives_up_after_the_last_try_and_writes_nothing() {
    let refused = vec!["exa_mple.org"; init::MAX_TRIES];
    let mut output = Vec::new();
    let error = init::ask(&InitFlags::default(), &mut Cursor::new(script(&refused)), &mut output).unwrap_err();
    assert_eq!(error.kind, ExitCode::Aborted);
    assert!(error.message.contains(&format!("in {} tries; nothing was written", init::MAX_TRIES)), "{}", error.message);
    let dialogue = String::from_utf8(output).unwrap();
    assert_eq!(dialogue.matches("is not a host name; please answer again").count(), init::MAX_TRIES, "{dialogue}");
}

/// A pseudo-terminal: (the side the test writes answers to, the side the program reads as stdin).
fn pseudo_terminal() -> (std::fs::File, OwnedFd) {
    let (mut controller, mut terminal) = (-1, -1);
    // SAFETY: openpty writes two new file descriptors; the name, settings and size are optional.
    let result = unsafe { libc::openpty(&mut controller, &mut terminal, std::ptr::null_mut(), std::ptr::null(), std::ptr::null()) };
    assert_eq!(result, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors are fresh and owned only here.
    unsafe { (std::fs::File::from_raw_fd(controller), OwnedFd::from_raw_fd(terminal)) }
}

#[test]
fn the_binary_on_a_terminal_asks_again_after_a_refused_answer_and_writes_the_file() {
    let directory = tempfile::tempdir().unwrap();
    let out = directory.path().join("homemx.toml");
    let (mut controller, terminal) = pseudo_terminal();
    let mut child = Command::new(env!("CARGO_BIN_EXE_homemx"))
        .args(["init", "--out"])
        .arg(&out)
        .stdin(Stdio::from(terminal))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("homemx runs");
    controller.write_all(script(&ANSWERS_WITH_MISTAKES).as_bytes()).unwrap();
    // The terminal echoes what was typed: read it so it never fills up (it ends when the
    // program, the last holder of the terminal side, has ended).
    let echo = std::thread::spawn(move || {
        let mut typed = Vec::new();
        let _ = controller.read_to_end(&mut typed);
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("homemx init did not end within 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let (mut stdout, mut stderr) = (String::new(), String::new());
    child.stdout.take().unwrap().read_to_string(&mut stdout).unwrap();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    assert!(status.success(), "{status}: {stdout}{stderr}");
    let mut rest = stderr.as_str();
    for reason in REASONS {
        let at = rest.find(reason).unwrap_or_else(|| panic!("{reason:?} (in order) on the terminal:\n{stderr}"));
        rest = &rest[at + reason.len()..];
    }
    assert!(stdout.starts_with(&format!("wrote {}", out.display())), "{stdout}");
    assert!(
        stdout.contains("secrets/smarthost.password") && stdout.contains("openssl s_client -connect smtp.provider.example:465"),
        "{stdout}"
    );
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(text.contains("domains = [\"example.org\"]") && text.contains("host = \"smtp.provider.example\""), "{text}");
    let file = config_file::parse(&text).unwrap();
    config_file::check_fields(&file).expect("provisioning's rules accept what was written");
    echo.join().expect("the echo reader ends with the terminal");
}
