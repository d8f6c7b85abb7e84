//! Command-line parsing, device addresses, and validation of `homemx.toml` (errors name the
//! field).

use std::path::Path;

use clap::Parser;
use homemx_cli::config_file::{self, AnchorValue};
use homemx_cli::error::ExitCode;
use homemx_cli::link::DeviceAddress;
use homemx_cli::{Cli, Command, ConfigAction};

#[test]
fn device_addresses_parse() {
    assert_eq!(DeviceAddress::parse("/dev/ttyACM0"), Ok(DeviceAddress::Serial("/dev/ttyACM0".into())));
    assert_eq!(DeviceAddress::parse("unix:/tmp/s.sock"), Ok(DeviceAddress::Unix("/tmp/s.sock".into())));
    assert_eq!(DeviceAddress::parse("tcp:127.0.0.1:4321"), Ok(DeviceAddress::Tcp("127.0.0.1:4321".into())));
    for bad in ["", "unix:", "tcp:127.0.0.1", "tcp::80", "tcp:host:notaport"] {
        assert!(DeviceAddress::parse(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn subcommands_parse() {
    let cli = Cli::try_parse_from(["homemx", "--device", "unix:/x", "--json", "status"]).unwrap();
    assert!(cli.json);
    assert!(matches!(cli.command, Command::Status));
    let cli = Cli::try_parse_from(["homemx", "config", "set", "--config", "a.toml", "-d", "tcp:127.0.0.1:1"]).unwrap();
    assert!(matches!(cli.command, Command::Config { action: ConfigAction::Set { .. } }));
    let cli = Cli::try_parse_from(["homemx", "factory-reset", "--yes"]).unwrap();
    assert!(matches!(cli.command, Command::FactoryReset { yes: true }));
    let cli = Cli::try_parse_from(["homemx", "unlock", "--passphrase-file", "p"]).unwrap();
    assert!(matches!(cli.command, Command::Unlock { passphrase_file: Some(_) }));
}

#[test]
fn the_passphrase_is_never_an_argument() {
    assert!(Cli::try_parse_from(["homemx", "unlock", "--passphrase", "hunter2"]).is_err());
    assert!(Cli::try_parse_from(["homemx", "unlock", "hunter2"]).is_err());
}

#[test]
fn every_subcommand_has_help() {
    for subcommand in [
        "init", "keygen", "provision", "unlock", "lock", "status", "config", "logs", "rotate-key", "factory-reset", "fetch-now", "alert",
    ] {
        let error = Cli::try_parse_from(["homemx", subcommand, "--help"]).unwrap_err();
        assert_eq!(error.kind(), clap::error::ErrorKind::DisplayHelp, "{subcommand}");
    }
    assert_eq!(homemx_cli::run(["homemx", "no-such-command"]), ExitCode::Usage as i32);
}

fn data() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data"))
}

fn error_of(text: &str) -> String {
    let file = match config_file::parse(text) {
        Ok(file) => file,
        Err(error) => {
            assert_eq!(error.kind, ExitCode::Configuration);
            return error.message;
        }
    };
    let error = config_file::plan(&file, data()).expect_err("invalid");
    assert_eq!(error.kind, ExitCode::Configuration);
    error.message
}

const VALID: &str = r#"
domains = ["example.org"]
recipients = ["alice@example.org"]
lan_prefixes = ["192.168.1.0/24"]
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
pin_certificate = "test-ca.pem"
[backup_mx]
host = "pop.provider.example"
port = 995
tls = "implicit"
user_name = "backup"
poll_interval_seconds = 300
ca_certificate = "test-ca.pem"
"#;

#[test]
fn a_valid_file_makes_a_plan_with_derived_pin_and_certificate() {
    let plan = config_file::plan(&config_file::parse(VALID).unwrap(), data()).unwrap();
    assert_eq!(plan.items.len(), 9, "the seven sections, the Submission policy");
    assert_eq!(plan.credentials.len(), 1);
    assert_eq!(plan.credentials[0].1.expose(), b"smarthost-secret");
    // The pin is SHA-256 of the certificate's SPKI, as `openssl pkey -pubin -outform DER | sha256sum` says.
    let AnchorValue::Pin(pin) = &plan.anchors[0].1 else { panic!() };
    assert_eq!(hex::encode(pin), "08f1e8e1c34f8147f32229e5bbc45792e19060c87d81fdb1fc1518fb4cdf7f2e");
    let AnchorValue::Certificate(der) = &plan.anchors[1].1 else { panic!() };
    assert_eq!(der[0], 0x30);
}

#[test]
fn the_example_file_parses() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/homemx.example.toml")).unwrap();
    config_file::parse(&text).unwrap();
}

const DYNDNS: &str = r#"
[dyndns]
server = "dyndns.provider.example"
host_name = "home.dyn.example"
user_name = "alice"
check_interval_seconds = 600
ca_certificate = "test-ca.pem"
check_ip = ["https://checkip.provider.example/", "https://ip.other.example/ip"]
"#;

/// The planning error of `VALID` + a `[dyndns]` section whose `check_ip` line is `check_ip`.
fn dyndns_error(check_ip: &str) -> homemx_cli::error::CliError {
    let text = format!("{VALID}{}", DYNDNS.replace("check_ip = [\"https://checkip.provider.example/\", \"https://ip.other.example/ip\"]", check_ip));
    let error = config_file::plan(&config_file::parse(&text).unwrap(), data()).expect_err("refused");
    assert_eq!(error.kind, ExitCode::Configuration);
    error
}

#[test]
fn dyndns_with_two_distinct_check_ip_hosts_is_planned() {
    let plan = config_file::plan(&config_file::parse(&format!("{VALID}{DYNDNS}")).unwrap(), data()).unwrap();
    let sources: Vec<_> = plan
        .items
        .iter()
        .filter_map(|item| match item {
            homemx_wire::config::ConfigItem::CheckIpSource(source) => Some((source.host.as_str(), source.path.as_str())),
            _ => None,
        })
        .collect();
    assert_eq!(sources, [("checkip.provider.example", "/"), ("ip.other.example", "/ip")]);
}

#[test]
fn check_ip_listed_twice_is_refused_with_a_hint() {
    // The review's fake quorum: the same service twice "agreed" with itself.
    for (check_ip, field) in [
        (r#"check_ip = ["https://checkip.provider.example/", "https://checkip.provider.example/"]"#, "dyndns.check_ip[1]"),
        (r#"check_ip = ["https://checkip.provider.example/", "https://CheckIP.Provider.Example./other"]"#, "dyndns.check_ip[1]"),
        (r#"check_ip = ["https://a.example/", "https://b.example/", "https://a.example/ip"]"#, "dyndns.check_ip[2]"),
    ] {
        let error = dyndns_error(check_ip);
        assert!(error.message.starts_with(field), "{check_ip}: {}", error.message);
        assert!(error.message.contains("already dyndns.check_ip["), "{}", error.message);
        let hint = error.hint.expect("a hint says what to do");
        assert!(hint.contains("at least two check-IP services run by different hosts"), "{hint}");
    }
}

#[test]
fn dyndns_without_two_check_ip_sources_is_refused() {
    for (check_ip, count) in [("", "0 check-IP services"), (r#"check_ip = []"#, "0 check-IP services"), (r#"check_ip = ["https://checkip.provider.example/"]"#, "1 check-IP service given")] {
        let error = dyndns_error(check_ip);
        assert!(error.message.starts_with("dyndns.check_ip: "), "{}", error.message);
        assert!(error.message.contains(count), "{}", error.message);
        assert!(error.message.contains("never updated"), "{}", error.message);
        assert!(error.hint.expect("hint").contains("at least two"));
    }
    let five = r#"check_ip = ["https://a.example/", "https://b.example/", "https://c.example/", "https://d.example/", "https://e.example/"]"#;
    assert!(dyndns_error(five).message.contains("at most 4"));
    let clear_text = r#"check_ip = ["https://a.example/", "http://b.example/"]"#;
    assert!(dyndns_error(clear_text).message.starts_with("dyndns.check_ip[1]: must be an https:// URL"));
}

#[test]
fn the_example_file_documents_check_ip() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/homemx.example.toml")).unwrap();
    let file = config_file::parse(&text).unwrap();
    let dyndns = file.dyndns.expect("the example has a [dyndns] section");
    assert!(dyndns.check_ip.len() >= config_file::MIN_CHECK_IP_SOURCES, "{:?}", dyndns.check_ip);
    // Validated as provisioning would (the anchor files of the example do not exist here).
    let text = format!("{VALID}{}", DYNDNS.replace(
        "check_ip = [\"https://checkip.provider.example/\", \"https://ip.other.example/ip\"]",
        &format!("check_ip = {:?}", dyndns.check_ip),
    ));
    config_file::plan(&config_file::parse(&text).unwrap(), data()).expect("the example's check_ip is valid");
}

#[test]
fn errors_name_the_field() {
    let cases: [(&str, &str, &str); 9] = [
        ("port = 465", "port = 0", "smarthost.port"),
        ("tls = \"implicit\"\nuser_name = \"alice\"", "tls = \"none\"\nuser_name = \"alice\"", "smarthost.tls"),
        ("\"192.168.1.0/24\"", "\"192.168.1.0/33\"", "lan_prefixes[0]"),
        ("\"192.168.1.0/24\"", "\"0.0.0.0/0\"", "lan_prefixes[0]"),
        ("alice@example.org", "alice@elsewhere.example", "recipients[0]"),
        ("address = \"192.168.1.10\"", "address = \"192.168.1\"", "lan_mailbox.address"),
        ("protocol = \"lmtp\"", "protocol = \"pop\"", "lan_mailbox.protocol"),
        ("poll_interval_seconds = 300", "poll_interval_seconds = 5", "backup_mx.poll_interval_seconds"),
        ("pin_certificate = \"test-ca.pem\"", "", "smarthost"),
    ];
    for (from, to, field) in cases {
        let text = VALID.replacen(from, to, 1);
        assert_ne!(text, VALID, "{from}");
        let message = error_of(&text);
        assert!(message.starts_with(field), "{field}: {message}");
    }
}

#[test]
fn toml_errors_name_the_field_and_line() {
    let message = error_of(&VALID.replacen("port = 465", "port = \"465\"", 1));
    assert!(message.contains("port"), "{message}");
    assert!(message.contains("line"), "{message}");
    let message = error_of(&VALID.replacen("[smarthost]", "[smarthost]\npasword_file = \"x\"", 1));
    assert!(message.contains("pasword_file"), "{message}");
    let message = error_of(&VALID.replacen("domains = [\"example.org\"]\n", "", 1));
    assert!(message.contains("domains"), "{message}");
}

#[test]
fn without_a_smarthost_the_plan_is_an_inbound_only_mx() {
    let start = VALID.find("[smarthost]").unwrap();
    let end = VALID.find("[backup_mx]").unwrap();
    let text = format!("{}{}", &VALID[..start], &VALID[end..]);
    let plan = config_file::plan(&config_file::parse(&text).unwrap(), data()).expect("[smarthost] is optional");
    assert!(!plan.items.iter().any(|item| matches!(item, homemx_wire::config::ConfigItem::Smarthost(_))));
    assert!(plan.credentials.is_empty());
    assert_eq!(plan.anchors.len(), 1, "only the backup MX's anchor");
    assert_eq!(plan.anchors[0].0, homemx_wire::message::TlsService::BackupMx);
}

#[test]
fn check_fields_validates_without_reading_the_named_files() {
    let text = VALID.replace("smarthost.password", "missing.password").replace("test-ca.pem", "missing.pem");
    let file = config_file::parse(&text).unwrap();
    config_file::check_fields(&file).expect("files are not read");
    assert!(config_file::plan(&file, data()).is_err(), "provisioning reads them");
    let error = config_file::check_fields(&config_file::parse(&VALID.replacen("port = 465", "port = 0", 1)).unwrap()).unwrap_err();
    assert!(error.message.starts_with("smarthost.port"), "{}", error.message);
    let two_anchors = VALID.replacen("pin_certificate = \"test-ca.pem\"", "pin_certificate = \"a.pem\"\nca_certificate = \"b.pem\"", 1);
    let error = config_file::check_fields(&config_file::parse(&two_anchors).unwrap()).unwrap_err();
    assert!(error.message.contains("exactly one trust anchor"), "{}", error.message);
}

#[test]
fn the_wire_rules_refuse_what_the_device_would() {
    // Rules the device applies (homemx_wire::validate) surface here with the field named.
    let nine_networks: Vec<String> = (0..9).map(|index| format!("\"10.{index}.0.0/16\"")).collect();
    let cases = [
        (VALID.replacen("\"192.168.1.0/24\"", &nine_networks.join(", "), 1), "lan_prefixes: at most 8"),
        (VALID.replacen("domains = [\"example.org\"]", "domains = [\"example.org\"]\ntime_servers = [\"a.example\", \"b.example\", \"c.example\"]", 1), "time_servers: at most 2"),
        (format!("{VALID}{}", DYNDNS.replace("https://ip.other.example/ip", "https://ip.other.example/ip address")), "dyndns.check_ip[1]: the path must start with `/`"),
        (VALID.replacen("domains = [\"example.org\"]", "domains = []", 1).replacen("[\"alice@example.org\"]", "[]", 1), "domains: at least one domain is needed"),
        (VALID.replacen("\"192.168.1.0/24\"", "", 1), "lan_prefixes: at least one LAN network is needed"),
    ];
    for (text, expected) in cases {
        let message = error_of(&text);
        assert!(message.starts_with(expected), "{expected}: {message}");
    }
    let nine_domains: Vec<String> = (0..9).map(|index| format!("\"d{index}.example\"")).collect();
    let text = VALID.replacen("domains = [\"example.org\"]", &format!("domains = [\"example.org\", {}]", nine_domains[..7].join(", ")), 1);
    config_file::plan(&config_file::parse(&text).unwrap(), data()).expect("eight domains are kept");
    let text = VALID.replacen("domains = [\"example.org\"]", &format!("domains = [\"example.org\", {}]", nine_domains[..8].join(", ")), 1);
    assert!(error_of(&text).starts_with("domains: at most 8"));
}

const ACME: &str = r#"
[tls.acme]
directory = "https://acme.example:14000/dir"
name = "mx.example.org"
ca_certificate = "test-ca.pem"
contact = "mailto:owner@example.org"
agree_terms = true
"#;

fn acme_plan(section: &str) -> homemx_cli::error::Result<config_file::Plan> {
    config_file::plan(&config_file::parse(&format!("{VALID}{section}")).unwrap(), data())
}

#[test]
fn tls_acme_becomes_an_item_and_the_acme_servers_anchor() {
    use homemx_wire::config::{AcmeChallenge, ConfigItem};
    use homemx_wire::message::TlsService;
    let plan = acme_plan(ACME).unwrap();
    let acme = plan.items.iter().find_map(|item| if let ConfigItem::Acme(acme) = item { Some(acme.clone()) } else { None }).expect("the item");
    assert_eq!(acme.directory.as_str(), "https://acme.example:14000/dir");
    assert_eq!(acme.name.as_str(), "mx.example.org");
    assert_eq!(acme.contact.as_deref(), Some("owner@example.org"));
    assert!(acme.agree_terms && acme.reuse_key && acme.eab_key_id.is_none());
    assert_eq!(acme.challenge, AcmeChallenge::Http01);
    assert!(matches!(plan.anchors.last(), Some((TlsService::Acme, AnchorValue::Certificate(_)))));
    let plan = acme_plan(&ACME.replace("agree_terms = true", "agree_terms = true\nchallenge = \"tls-alpn-01\"")).unwrap();
    assert!(plan.items.iter().any(|item| matches!(item, ConfigItem::Acme(acme) if acme.challenge == AcmeChallenge::TlsAlpn01)));
    // Without agreeing to the terms: sent, with a warning.
    let plan = acme_plan(&ACME.replace("agree_terms = true", "")).unwrap();
    assert!(plan.warnings.iter().any(|warning| warning.contains("agree_terms")), "{:?}", plan.warnings);
}

#[test]
fn tls_acme_errors_name_the_field() {
    let cases = [
        ("https://acme.example:14000/dir", "http://acme.example/dir", "tls.acme.directory"),
        ("https://acme.example:14000/dir", "https://acme.example:0/dir", "tls.acme.directory"),
        ("name = \"mx.example.org\"", "name = \"other.example.org\"", "tls.acme.name: other.example.org is not the MX host name mx.example.org"),
        ("name = \"mx.example.org\"", "name = \"mx_.example.org\"", "tls.acme.name"),
        ("mailto:owner@example.org", "owner%x@example.org", "tls.acme.contact"),
        ("agree_terms = true", "agree_terms = true\nchallenge = \"dns-01\"", "tls.acme.challenge"),
        ("agree_terms = true", "agree_terms = true\neab_key_id = \"kid\"", "tls.acme: External Account Binding needs both"),
        ("ca_certificate = \"test-ca.pem\"", "ca_certificate = \"missing.pem\"", "tls.acme.ca_certificate"),
        ("agree_terms = true", "agree_terms = true\nunknown = 1", "unknown field"),
    ];
    for (from, to, expected) in cases {
        let text = format!("{VALID}{}", ACME.replace(from, to));
        let message = error_of(&text);
        assert!(message.contains(expected), "{to}: {message}");
    }
}

#[test]
fn tls_acme_eab_mac_key_is_a_private_credential() {
    use homemx_wire::message::Credential;
    use std::os::unix::fs::PermissionsExt;
    let folder = tempfile::tempdir().unwrap();
    let folder = folder.path();
    for name in ["test-ca.pem", "smarthost.password"] {
        std::fs::copy(data().join(name), folder.join(name)).unwrap();
    }
    let key = folder.join("eab.key");
    std::fs::write(&key, "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W\n").unwrap();
    let section = ACME.replace("agree_terms = true", "agree_terms = true\neab_key_id = \"kid-1\"\neab_hmac_key_file = \"eab.key\"");
    let file = config_file::parse(&format!("{VALID}{section}")).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let error = config_file::plan(&file, folder).expect_err("readable by others");
    assert!(error.message.starts_with("tls.acme.eab_hmac_key_file:") && error.message.contains("mode 0644"), "{}", error.message);
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let plan = config_file::plan(&file, folder).unwrap();
    let (_, secret) = plan.credentials.iter().find(|(credential, _)| *credential == Credential::AcmeEabKey).expect("the MAC key");
    assert_eq!(secret.expose(), b"zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W");
    std::fs::write(&key, "not base64url!\n").unwrap();
    let error = config_file::plan(&file, folder).expect_err("not base64url");
    assert!(error.message.starts_with("tls.acme.eab_hmac_key_file: the MAC key must be"), "{}", error.message);
}

#[test]
fn tls_renew_parses() {
    use homemx_cli::TlsAction;
    let cli = Cli::try_parse_from(["homemx", "tls", "renew"]).unwrap();
    assert!(matches!(cli.command, Command::Tls { action: TlsAction::Renew }));
    assert!(Cli::try_parse_from(["homemx", "tls", "renew", "--force-now"]).is_err());
}
