//! The device applies the configuration rules itself (`homemx_wire::validate`), whoever signed
//! the items: after the real CLI provisioned it, a client holding the admin key but skipping
//! the CLI's checks sends items that break a rule (refused at `ConfigPut`, the staging ends)
//! and whole configurations whose items are each fine but which together break one (refused
//! at `ConfigCommit`). The device answers `InvalidConfiguration` each time and keeps the
//! configuration it had, item for item. Mail users too: a password record of an unknown
//! algorithm or with an iteration count that would stall the device at every AUTH, a name
//! twice, a seventeenth user. Then the real `homemx user add` stores a user on the device,
//! which reads it back without salt and hash.

use std::path::Path;
use std::time::Duration;

use homemx_qemu::firmware::FirmwareBuild;
use homemx_qemu::flash_image;
use homemx_qemu::machine::{new_run_directory, Machine, MachineConfig};
use homemx_qemu::owner::{write_configuration, Owner, SignedConsole};
use homemx_wire::config::*;
use homemx_wire::message::{Command, ErrorCode, Response};

fn host(name: &str) -> HostName {
    HostName::try_from(name).unwrap()
}

fn domain() -> ConfigItem {
    ConfigItem::Domain(host("example.org"))
}

fn lan() -> ConfigItem {
    ConfigItem::LanPrefix(Ipv4Prefix { address: [192, 168, 77, 0], length: 24 })
}

fn mailbox() -> ConfigItem {
    ConfigItem::LanMailbox(LanMailbox { address: [192, 168, 77, 1], port: 24, protocol: DeliveryProtocol::Lmtp })
}

fn limits(max_message_bytes: u32) -> ConfigItem {
    ConfigItem::Limits(Limits { max_message_bytes, max_recipients: 50, messages_per_client_per_hour: 100, spool_reserve_bytes: 1 << 20 })
}

fn recipient(address: &str) -> ConfigItem {
    ConfigItem::Recipient(MailAddress::try_from(address).unwrap())
}

fn check_ip(name: &str, path: &str) -> ConfigItem {
    ConfigItem::CheckIpSource(CheckIpSource { host: host(name), path: path.try_into().unwrap() })
}

fn dyndns() -> ConfigItem {
    ConfigItem::DynDns(DynDns {
        server: host("dyndns.example.net"),
        host_name: host("home.example.net"),
        user_name: UserName::try_from("owner").unwrap(),
        check_interval_seconds: 600,
        min_tls: MinTls::Tls12,
    })
}

fn user(name: &str, algorithm: u8, iterations: u32) -> ConfigItem {
    ConfigItem::User(MailUser {
        name: MailAddress::try_from(name).unwrap(),
        password: PasswordRecord { algorithm, iterations, salt: [3; 16], hash: [4; 32] },
        messages_per_hour: None,
    })
}

/// `homemx --json config get`'s output.
fn configuration(owner: &Owner) -> String {
    let output = owner.homemx(&["--json", "config", "get"]);
    assert!(output.status.success(), "config get works");
    String::from_utf8(output.stdout).unwrap()
}

fn expect(console: &mut SignedConsole, command: &Command, answer: Response) {
    let got = console.command(command).expect("the device answers");
    assert_eq!(got, answer, "{}", command.name());
}

#[test]
fn a_signed_client_that_skips_the_cli_checks_is_refused_and_the_configuration_stays() {
    let elf = FirmwareBuild::QEMU.build().expect("firmware builds");
    let directory = new_run_directory("configuration-refusal").unwrap();
    write_configuration(&directory);
    let flash = directory.join("flash.img");
    flash_image::create(&flash).unwrap();
    let config = MachineConfig::offline(elf, flash, "52:54:00:6d:78:0c");
    let machine = Machine::start(&config, &directory).expect("QEMU starts");
    machine.log.wait_for(0, "storage: key store factory-fresh", Duration::from_secs(60)).expect("fresh key store");
    let owner = Owner::at(&directory);
    owner.provision();
    let before = configuration(&owner);
    assert!(before.contains("alice@example.org"), "{before}");
    let commits_before = machine.log.lines().iter().filter(|line| line.contains("configuration committed")).count();
    assert_eq!(commits_before, 1, "provisioning committed once");

    let key = homemx_cli::keyfile::load(&owner.key, None).expect("the admin key file");
    let mut console = SignedConsole::open(Path::new(&directory.join("serial.sock")), key).expect("console");
    let done = || Response::Done;
    let invalid = || Response::Error(ErrorCode::InvalidConfiguration);

    // One item that breaks a rule: refused at once, and the staging is over (a commit after
    // it is out of sequence, so a client that ignores the refusal commits nothing).
    let bad_items = [
        limits(0),
        recipient("bob%evil.example@example.org"),
        recipient("carol@elsewhere.example"),
        ConfigItem::LanPrefix(Ipv4Prefix { address: [0, 0, 0, 0], length: 0 }),
        ConfigItem::LanMailbox(LanMailbox { address: [192, 168, 77, 1], port: 0, protocol: DeliveryProtocol::Smtp }),
        check_ip("checkip.example.net", "/ip HTTP/1.1\r\nHost: evil.example"),
        ConfigItem::TimeServer(host("not a host")),
        // A hostile record: a billion iterations would stall every AUTH for an hour.
        user("alice@example.org", 1, 1_000_000_000),
        user("alice@example.org", 7, 10_000),
        user("Alice@example.org", 1, 10_000),
    ];
    for bad in bad_items {
        expect(&mut console, &Command::ConfigBegin, done());
        expect(&mut console, &Command::ConfigPut(domain()), done());
        expect(&mut console, &Command::ConfigPut(bad.clone()), invalid());
        expect(&mut console, &Command::ConfigCommit { item_count: 2 }, Response::Error(ErrorCode::ConfigurationSequence));
    }

    // Whole configurations whose every item is fine on its own.
    let seventeen_users: Vec<ConfigItem> =
        [domain(), lan(), mailbox()].into_iter().chain((0..17).map(|index| user(&format!("user{index}@example.org"), 1, 10_000))).collect();
    let bad_wholes: [Vec<ConfigItem>; 7] = [
        // No mailbox host: accepted mail would have nowhere to go.
        vec![domain(), lan(), limits(1 << 20)],
        // No domain.
        vec![lan(), mailbox()],
        // DynDNS with a single check-IP witness.
        vec![domain(), lan(), mailbox(), dyndns(), check_ip("checkip.example.net", "/ip")],
        // DynDNS with one witness listed twice.
        vec![domain(), lan(), mailbox(), dyndns(), check_ip("checkip.example.net", "/ip"), check_ip("CheckIP.example.net", "/")],
        // A user twice; a user of a domain not sent; more users than the device keeps.
        vec![domain(), lan(), mailbox(), user("bob@example.org", 1, 10_000), user("bob@example.org", 1, 20_000)],
        vec![domain(), lan(), mailbox(), user("bob@elsewhere.example", 1, 10_000)],
        seventeen_users,
    ];
    for whole in &bad_wholes {
        expect(&mut console, &Command::ConfigBegin, done());
        let mut refused_early = false;
        for item in whole {
            match console.command(&Command::ConfigPut(item.clone())).expect("the device answers") {
                Response::Done => {}
                answer => {
                    // The duplicate witness is refused as it arrives.
                    assert_eq!(answer, invalid(), "{item:?}");
                    refused_early = true;
                    break;
                }
            }
        }
        if !refused_early {
            expect(&mut console, &Command::ConfigCommit { item_count: whole.len() as u16 }, invalid());
        }
    }
    drop(console);

    assert_eq!(configuration(&owner), before, "the configuration in force is the one provisioned");
    let status = owner.status();
    assert_eq!(status["configured"], true, "{status}");
    let lines = machine.log.lines();
    assert_eq!(lines.iter().filter(|line| line.contains("configuration committed")).count(), commits_before, "nothing else was committed");
    for rule in [
        "limits.max_message_bytes: at least 1024",
        "lan_mailbox: the LAN mailbox host is needed",
        "dyndns.check_ip: at least 2",
        "users.password: password hash iterations must be 5000..=50000",
        "users.name: a user name listed twice",
        "users: at most 16 users",
    ] {
        assert!(lines.iter().any(|line| line.contains("configuration refused") && line.contains(rule)), "the log names {rule}");
    }
    // The owner's own CLI still replaces it.
    let again = owner.homemx(&["config", "set", "--config", "homemx.toml"]);
    assert!(again.status.success(), "config set works after the refusals");
    assert_eq!(configuration(&owner), before);

    // The real CLI adds a user (the longest local part) with a private password file; the
    // device stores the item and reads it back without salt and hash.
    let name = format!("{}@example.org", "u".repeat(64));
    let password_file = directory.join("user.password");
    std::fs::write(&password_file, "a mail password\n").unwrap();
    std::fs::set_permissions(&password_file, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let added = owner.homemx(&["user", "add", &name, "--password-file", "user.password", "--config", "homemx.toml"]);
    assert!(added.status.success(), "user add works");
    let after = configuration(&owner);
    let items: serde_json::Value = serde_json::from_str(&after).unwrap();
    let user = items["items"].as_array().unwrap().iter().find_map(|item| item.get("User")).expect("the user is on the device");
    assert_eq!(user["name"], name.as_str());
    assert_eq!(user["password"]["iterations"], homemx_credentials::DEFAULT_ITERATIONS);
    assert_eq!(user["password"]["hash"], serde_json::json!(vec![0; 32]), "read back without the hash");
    assert!(!after.contains("a mail password"));
}
