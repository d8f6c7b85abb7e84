//! The configuration rules: each accepts its boundary and refuses just past it.

use homemx_wire::config::*;
use homemx_wire::validate::*;

fn host(name: &str) -> HostName {
    HostName::try_from(name).unwrap()
}

fn domain(name: &str) -> ConfigItem {
    ConfigItem::Domain(host(name))
}

fn recipient_item(address: &str) -> ConfigItem {
    ConfigItem::Recipient(MailAddress::try_from(address).unwrap())
}

fn prefix(length: u8) -> ConfigItem {
    ConfigItem::LanPrefix(Ipv4Prefix { address: [10, 0, 0, 0], length })
}

fn mailbox(port: u16) -> ConfigItem {
    ConfigItem::LanMailbox(LanMailbox { address: [10, 0, 0, 2], port, protocol: DeliveryProtocol::Lmtp })
}

fn smarthost(host_name: &str, port: u16) -> ConfigItem {
    ConfigItem::Smarthost(Smarthost { host: host(host_name), port, tls: TlsMode::Implicit, user_name: UserName::try_from("alice").unwrap(), min_tls: MinTls::Tls12 })
}

fn backup_mx(poll_interval_seconds: u32) -> ConfigItem {
    ConfigItem::BackupMx(BackupMx {
        host: host("pop.provider.example"),
        port: 995,
        tls: TlsMode::Implicit,
        user_name: UserName::try_from("backup").unwrap(),
        poll_interval_seconds,
        min_tls: MinTls::Tls12,
    })
}

fn dyndns(check_interval_seconds: u32) -> ConfigItem {
    ConfigItem::DynDns(DynDns {
        server: host("dyndns.provider.example"),
        host_name: host("home.dyn.example"),
        user_name: UserName::try_from("alice").unwrap(),
        check_interval_seconds,
        min_tls: MinTls::Tls12,
    })
}

fn limits(max_message_bytes: u32, max_recipients: u16) -> ConfigItem {
    ConfigItem::Limits(Limits { max_message_bytes, max_recipients, messages_per_client_per_hour: 100, spool_reserve_bytes: 1 << 20 })
}

fn status_page(port: u16, host_name: &str) -> ConfigItem {
    ConfigItem::StatusPage(StatusPage { enabled: true, port, host_name: host(host_name) })
}

fn check_ip(host_name: &str, path: &str) -> ConfigItem {
    ConfigItem::CheckIpSource(CheckIpSource { host: host(host_name), path: heapless::String::try_from(path).unwrap() })
}

fn record(iterations: u32) -> PasswordRecord {
    PasswordRecord { algorithm: homemx_credentials::ALGORITHM_PBKDF2_HMAC_SHA256, iterations, salt: [1; 16], hash: [2; 32] }
}

fn user(name: &str) -> ConfigItem {
    ConfigItem::User(MailUser { name: MailAddress::try_from(name).unwrap(), password: record(homemx_credentials::DEFAULT_ITERATIONS), messages_per_hour: None })
}

/// The refused field of `item` on its own.
fn refused(item: &ConfigItem) -> &'static str {
    check_item(item).expect_err("refused").field
}

/// The smallest configuration the device takes.
fn minimal() -> Vec<ConfigItem> {
    vec![domain("example.org"), prefix(24), mailbox(24)]
}

fn whole(items: &[ConfigItem]) -> Result<(), Refusal> {
    check_configuration(items)
}

#[test]
fn host_names_follow_the_label_rules() {
    let label63 = "a".repeat(63);
    let longest = [label63.as_str(), label63.as_str(), label63.as_str(), &"b".repeat(61)].join(".");
    assert_eq!(longest.len(), 253);
    for good in ["example.org", "a", "Mail-1.Example.ORG", "x--y.example", &label63, &longest] {
        assert_eq!(host_name(good), Ok(()), "{good}");
    }
    let label64 = "a".repeat(64);
    let too_long = format!("{longest}c");
    for bad in ["", "exa_mple.org", "-a.example", "a-.example", "a..example", "example.org.", ".example", "a b", "ü.example", &label64, &too_long] {
        assert_eq!(host_name(bad), Err(HOST_NAME_RULE), "{bad}");
    }
}

#[test]
fn every_host_name_field_is_checked() {
    assert_eq!(check_item(&domain("example.org")), Ok(()));
    assert_eq!(refused(&domain("exa_mple.org")), "domains");
    assert_eq!(refused(&smarthost("smtp_provider", 465)), "smarthost.host");
    assert_eq!(refused(&ConfigItem::TimeServer(host("time server"))), "time_servers");
    assert_eq!(refused(&status_page(80, "homemx_lan")), "status_page.host_name");
    assert_eq!(refused(&check_ip("check ip", "/")), "dyndns.check_ip");
    let ConfigItem::BackupMx(mut backup) = backup_mx(300) else { unreachable!() };
    backup.host = host("pop.-bad");
    assert_eq!(refused(&ConfigItem::BackupMx(backup)), "backup_mx.host");
    let ConfigItem::DynDns(mut account) = dyndns(600) else { unreachable!() };
    account.server = host("");
    assert_eq!(refused(&ConfigItem::DynDns(account.clone())), "dyndns.server");
    account.server = host("dyndns.provider.example");
    account.host_name = host("home..dyn");
    assert_eq!(refused(&ConfigItem::DynDns(account)), "dyndns.host_name");
}

#[test]
fn ports_are_one_to_65535() {
    for item in [mailbox(1), mailbox(65535), smarthost("smtp.example", 1), status_page(1, "homemx.lan")] {
        assert_eq!(check_item(&item), Ok(()));
    }
    assert_eq!(check_item(&mailbox(0)), Err(Refusal { field: "lan_mailbox.port", rule: PORT_RULE }));
    assert_eq!(refused(&smarthost("smtp.example", 0)), "smarthost.port");
    assert_eq!(refused(&status_page(0, "homemx.lan")), "status_page.port");
    let ConfigItem::BackupMx(mut backup) = backup_mx(300) else { unreachable!() };
    backup.port = 0;
    assert_eq!(refused(&ConfigItem::BackupMx(backup)), "backup_mx.port");
}

#[test]
fn intervals_are_at_least_a_minute() {
    assert_eq!(check_item(&backup_mx(60)), Ok(()));
    assert_eq!(refused(&backup_mx(59)), "backup_mx.poll_interval_seconds");
    assert_eq!(check_item(&dyndns(60)), Ok(()));
    assert_eq!(refused(&dyndns(59)), "dyndns.check_interval_seconds");
}

#[test]
fn limits_keep_mail_possible() {
    assert_eq!(check_item(&limits(1024, 1)), Ok(()));
    assert_eq!(check_item(&limits(u32::MAX, u16::MAX)), Ok(()));
    assert_eq!(check_item(&limits(1023, 1)), Err(Refusal { field: "limits.max_message_bytes", rule: "at least 1024" }));
    assert_eq!(check_item(&limits(0, 50)).unwrap_err().field, "limits.max_message_bytes");
    assert_eq!(check_item(&limits(1024, 0)), Err(Refusal { field: "limits.max_recipients", rule: "at least 1" }));
}

#[test]
fn lan_prefixes_are_8_to_32_bits() {
    assert_eq!(check_item(&prefix(8)), Ok(()));
    assert_eq!(check_item(&prefix(32)), Ok(()));
    assert_eq!(check_item(&prefix(7)), Err(Refusal { field: "lan_prefixes", rule: LAN_PREFIX_SHORT_RULE }));
    assert_eq!(check_item(&prefix(0)).unwrap_err().rule, LAN_PREFIX_SHORT_RULE);
    assert_eq!(check_item(&prefix(33)), Err(Refusal { field: "lan_prefixes", rule: LAN_PREFIX_LONG_RULE }));
}

#[test]
fn recipients_have_a_plain_local_part_and_a_host_name() {
    assert_eq!(recipient("alice@example.org"), Ok(("alice", "example.org")));
    assert_eq!(recipient("a.b+c@example.org"), Ok(("a.b+c", "example.org")));
    assert_eq!(recipient("alice.example.org"), Err(AddressProblem::NotAnAddress));
    assert_eq!(recipient("@example.org"), Err(AddressProblem::LocalPart));
    // The relay tricks: `%`-hack, `!` path, source route, quoted `@`, and a space.
    for trick in ["bob%other.example@example.org", "other!bob@example.org", "a:b@c@example.org", "\"bob@x\"@example.org", "a b@example.org"] {
        assert_eq!(recipient(trick), Err(AddressProblem::LocalPart), "{trick}");
        assert_eq!(check_item(&recipient_item(trick)).unwrap_err().field, "recipients");
    }
    assert_eq!(recipient("bob@exa_mple.org"), Err(AddressProblem::Domain));
    assert_eq!(check_item(&recipient_item("alice@example.org")), Ok(()));
}

#[test]
fn check_ip_paths_are_request_targets() {
    let longest = format!("/{}", "p".repeat(MAX_URL_PATH - 1));
    for good in ["/", "/ip", "/?format=text", longest.as_str()] {
        assert_eq!(check_item(&check_ip("ip.example", good)), Ok(()), "{good}");
    }
    for bad in ["", "ip", "/a b", "/ip\r\nHost: evil.example", "/\u{7f}"] {
        assert_eq!(check_item(&check_ip("ip.example", bad)), Err(Refusal { field: "dyndns.check_ip", rule: CHECK_IP_PATH_RULE }), "{bad:?}");
    }
    assert_eq!(check_ip_path(&format!("{longest}p")), Err(CHECK_IP_PATH_RULE));
}

#[test]
fn the_minimal_configuration_passes_and_each_of_its_parts_is_needed() {
    assert_eq!(whole(&minimal()), Ok(()));
    assert_eq!(whole(&[prefix(24), mailbox(24)]).unwrap_err().field, "domains");
    assert_eq!(whole(&[domain("example.org"), mailbox(24)]).unwrap_err().field, "lan_prefixes");
    assert_eq!(whole(&[domain("example.org"), prefix(24)]).unwrap_err().field, "lan_mailbox");
}

#[test]
fn a_recipient_needs_its_domain_sent_before_it() {
    let mut items = minimal();
    items.push(recipient_item("alice@EXAMPLE.org"));
    assert_eq!(whole(&items), Ok(()));
    let mut foreign = minimal();
    foreign.push(recipient_item("alice@elsewhere.example"));
    assert_eq!(whole(&foreign).unwrap_err().field, "recipients");
    let mut early = vec![recipient_item("alice@example.org")];
    early.extend(minimal());
    assert_eq!(whole(&early).unwrap_err().field, "recipients");
}

#[test]
fn the_device_keeps_8_domains_64_recipients_8_lan_networks_2_time_servers() {
    let mut items = minimal();
    items.extend((1..8).map(|index| domain(&format!("d{index}.example"))));
    assert_eq!(whole(&items), Ok(()));
    items.push(domain("d8.example"));
    assert_eq!(whole(&items).unwrap_err().field, "domains");

    let mut items = minimal();
    items.extend((0..64).map(|index| recipient_item(&format!("r{index}@example.org"))));
    assert_eq!(whole(&items), Ok(()));
    items.push(recipient_item("r64@example.org"));
    assert_eq!(whole(&items).unwrap_err().field, "recipients");

    let mut items = minimal();
    items.extend((1..8).map(|_| prefix(16)));
    assert_eq!(whole(&items), Ok(()));
    items.push(prefix(16));
    assert_eq!(whole(&items).unwrap_err().field, "lan_prefixes");

    let mut items = minimal();
    items.extend([ConfigItem::TimeServer(host("a.ntp.example")), ConfigItem::TimeServer(host("b.ntp.example"))]);
    assert_eq!(whole(&items), Ok(()));
    items.push(ConfigItem::TimeServer(host("c.ntp.example")));
    assert_eq!(whole(&items).unwrap_err().field, "time_servers");
}

#[test]
fn each_section_comes_at_most_once() {
    let sections = [mailbox(25), smarthost("smtp.example", 465), backup_mx(300), dyndns(600), limits(1 << 20, 50), status_page(80, "homemx.lan")];
    let mut all = minimal();
    all.extend(sections[1..].iter().cloned());
    all.extend([check_ip("a.example", "/"), check_ip("b.example", "/ip")]);
    assert_eq!(whole(&all), Ok(()));
    let fields = ["lan_mailbox", "smarthost", "backup_mx", "dyndns", "limits", "status_page"];
    for (section, field) in sections.iter().zip(fields) {
        let mut twice = all.clone();
        twice.push(section.clone());
        assert_eq!(whole(&twice).unwrap_err(), Refusal { field, rule: "given twice: the section is sent at most once" });
    }
}

#[test]
fn dyndns_needs_two_to_four_distinct_check_ip_hosts() {
    let with = |sources: &[ConfigItem]| {
        let mut items = minimal();
        items.push(dyndns(600));
        items.extend(sources.iter().cloned());
        whole(&items)
    };
    assert_eq!(with(&[check_ip("a.example", "/"), check_ip("b.example", "/")]), Ok(()));
    assert_eq!(with(&[check_ip("a.example", "/")]).unwrap_err().field, "dyndns.check_ip");
    assert_eq!(with(&[]).unwrap_err().field, "dyndns.check_ip");
    // A host twice (in any case) is one witness.
    assert_eq!(with(&[check_ip("a.example", "/"), check_ip("A.Example", "/ip")]).unwrap_err().field, "dyndns.check_ip");
    let four: Vec<_> = ["a", "b", "c", "d"].iter().map(|name| check_ip(&format!("{name}.example"), "/")).collect();
    assert_eq!(with(&four), Ok(()));
    let mut five = four.clone();
    five.push(check_ip("e.example", "/"));
    assert_eq!(with(&five).unwrap_err().rule, "at most 4 check-IP services (the device keeps 4)");
    // Without DynDNS no check-IP service is needed.
    assert_eq!(whole(&minimal()), Ok(()));
}

#[test]
fn a_refused_item_leaves_the_check_as_it_was() {
    let mut check = ConfigurationCheck::new();
    for item in minimal() {
        check.add(&item).unwrap();
    }
    let before = check.clone();
    assert!(check.add(&recipient_item("alice@elsewhere.example")).is_err());
    assert!(check.add(&mailbox(25)).is_err());
    assert!(check.add(&mailbox(0)).is_err());
    assert_eq!(check, before);
    assert_eq!(check.finish(), Ok(()));
}

#[test]
fn the_check_is_small() {
    // The device keeps one while a configuration is staged.
    assert!(core::mem::size_of::<ConfigurationCheck>() <= 240, "{}", core::mem::size_of::<ConfigurationCheck>());
    println!("ConfigurationCheck: {} bytes", core::mem::size_of::<ConfigurationCheck>());
}

#[test]
fn user_names_are_lower_case_addresses_with_a_plain_local_part() {
    let local64 = "a".repeat(64);
    for good in ["alice@example.org", "a@b", "first.last@example.org", "bob+lists@mail.example.org", "x_y-z.9@example.org", &format!("{local64}@example.org")] {
        assert_eq!(user_name(good), Ok(()), "{good}");
        assert_eq!(check_item(&user(good)), Ok(()), "{good}");
    }
    let local65 = "a".repeat(65);
    let bad = [
        "alice",                      // not an address
        "@example.org",               // empty local part
        "Alice@example.org",          // upper case: names are compared in lower case
        "alice@Example.org",
        ".alice@example.org",         // dot-atom rules
        "alice.@example.org",
        "al..ice@example.org",
        "al ice@example.org",         // space
        "al\"ice@example.org",        // quote
        "al%ice@example.org",         // relay tricks
        "al!ice@example.org",
        "a:b@example.org",
        "a@b@example.org",
        "al\u{0}ice@example.org",     // NUL ends an AUTH PLAIN field
        "älice@example.org",          // non-ASCII
        "alice@exa_mple.org",         // not a host name
        "alice@",
        &format!("{local65}@example.org"),
    ];
    for name in bad {
        assert_eq!(user_name(name), Err(USER_NAME_RULE), "{name:?}");
        assert_eq!(refused(&user(name)), "users.name", "{name:?}");
    }
}

#[test]
fn a_user_record_needs_a_known_algorithm_and_a_bounded_iteration_count() {
    let with = |password: PasswordRecord| {
        check_item(&ConfigItem::User(MailUser { name: MailAddress::try_from("alice@example.org").unwrap(), password, messages_per_hour: None }))
    };
    for iterations in [homemx_credentials::MIN_ITERATIONS, homemx_credentials::DEFAULT_ITERATIONS, homemx_credentials::MAX_ITERATIONS] {
        assert_eq!(with(record(iterations)), Ok(()), "{iterations}");
    }
    for iterations in [0, 1, homemx_credentials::MIN_ITERATIONS - 1, homemx_credentials::MAX_ITERATIONS + 1, u32::MAX] {
        assert_eq!(with(record(iterations)).unwrap_err().field, "users.password", "{iterations}");
    }
    for algorithm in [0, 2, 255] {
        let refusal = with(PasswordRecord { algorithm, ..record(10_000) }).unwrap_err();
        assert_eq!((refusal.field, refusal.rule), ("users.password", homemx_credentials::RecordProblem::UnknownAlgorithm.rule()));
    }
}

#[test]
fn a_user_quota_is_absent_or_at_least_one() {
    let with = |messages_per_hour| {
        check_item(&ConfigItem::User(MailUser {
            name: MailAddress::try_from("alice@example.org").unwrap(),
            password: record(10_000),
            messages_per_hour,
        }))
    };
    assert_eq!(with(None), Ok(()));
    assert_eq!(with(Some(1)), Ok(()));
    assert_eq!(with(Some(u16::MAX)), Ok(()));
    assert_eq!(with(Some(0)), Err(Refusal { field: "users.messages_per_hour", rule: USER_QUOTA_RULE }));
}

#[test]
fn users_are_listed_once_in_a_known_domain_and_at_most_16() {
    let mut items = minimal();
    items.push(user("alice@example.org"));
    items.push(user("bob@example.org"));
    assert_eq!(whole(&items), Ok(()));
    let mut twice = items.clone();
    twice.push(user("alice@example.org"));
    assert_eq!(whole(&twice).unwrap_err().field, "users.name");
    assert!(whole(&twice).unwrap_err().rule.contains("twice"));
    // The domain must be one of the domains, sent before the user.
    let mut foreign = minimal();
    foreign.push(user("alice@elsewhere.example"));
    assert_eq!(whole(&foreign).unwrap_err().rule, "the user's domain is not one of the domains (sent before it)");
    let mut early = vec![user("alice@example.org")];
    early.extend(minimal());
    assert_eq!(whole(&early).unwrap_err().field, "users.name");
    // 16 users fit, the 17th does not.
    let mut many = minimal();
    many.extend((0..MAX_USERS).map(|index| user(&format!("user{index}@example.org"))));
    assert_eq!(whole(&many), Ok(()));
    many.push(user("one.more@example.org"));
    assert_eq!(whole(&many).unwrap_err(), Refusal { field: "users", rule: "at most 16 users (the device keeps 16)" });
    assert_eq!(MAX_USERS, 16);
}

#[test]
fn the_submission_switches_come_at_most_once_and_users_are_counted() {
    let mut items = minimal();
    items.push(ConfigItem::Submission(Submission::DEFAULT));
    assert_eq!(whole(&items), Ok(()));
    for switches in [(false, false), (false, true), (true, true)] {
        let mut other = minimal();
        other.push(ConfigItem::Submission(Submission { requires_auth: switches.0, lan_relay_without_auth: switches.1 }));
        assert_eq!(whole(&other), Ok(()), "{switches:?}");
    }
    items.push(ConfigItem::Submission(Submission { requires_auth: false, lan_relay_without_auth: true }));
    assert_eq!(whole(&items).unwrap_err(), Refusal { field: "submission_requires_auth", rule: "given twice: the section is sent at most once" });
    let mut check = ConfigurationCheck::new();
    for item in minimal().iter().chain([user("a@example.org"), user("b@example.org")].iter()) {
        check.add(item).unwrap();
    }
    assert_eq!(check.users(), 2);
    // A refused user leaves the check as it was.
    let before = check.clone();
    assert!(check.add(&user("a@example.org")).is_err());
    assert_eq!(check, before);
}

/// The defaults: AUTH required, no relaying by LAN address alone.
#[test]
fn submission_defaults_require_auth() {
    assert_eq!(Submission::default(), Submission { requires_auth: true, lan_relay_without_auth: false });
}

fn acme(directory: &str, name: &str) -> Acme {
    Acme {
        directory: heapless::String::try_from(directory).unwrap(),
        name: host(name),
        contact: Some(MailAddress::try_from("owner@example.org").unwrap()),
        agree_terms: true,
        eab_key_id: None,
        challenge: AcmeChallenge::Http01,
        reuse_key: true,
    }
}

#[test]
fn acme_directories_are_https_urls_with_a_host_name() {
    for good in ["https://acme.example/dir", "https://acme.example:14000/dir", "https://acme.example", "https://a.b.example/directory?x=1"] {
        assert_eq!(acme_directory(good), Ok(()), "{good}");
        assert_eq!(check_item(&ConfigItem::Acme(acme(good, "mx.example.org"))), Ok(()), "{good}");
    }
    let bad = [
        "http://acme.example/dir",
        "acme.example/dir",
        "https://",
        "https:///dir",
        "https://acme.example:0/dir",
        "https://acme.example:99999/dir",
        "https://acme.example:x/dir",
        "https://bad_host/dir",
        "https://user@acme.example/dir",
        "https://acme.example/a b",
        "https://acme.example/a\r\nHost: evil",
    ];
    for url in bad {
        assert_eq!(acme_directory(url), Err(ACME_DIRECTORY_RULE), "{url:?}");
        assert_eq!(refused(&ConfigItem::Acme(acme(url, "mx.example.org"))), "tls.acme.directory", "{url:?}");
    }
}

#[test]
fn acme_name_contact_and_key_id_are_checked() {
    assert_eq!(refused(&ConfigItem::Acme(acme("https://acme.example/dir", "-mx.example.org"))), "tls.acme.name");
    let mut item = acme("https://acme.example/dir", "mx.example.org");
    item.contact = Some(MailAddress::try_from("a%b@example.org").unwrap());
    assert_eq!(refused(&ConfigItem::Acme(item.clone())), "tls.acme.contact");
    item.contact = None;
    assert_eq!(check_item(&ConfigItem::Acme(item.clone())), Ok(()));
    item.eab_key_id = Some(heapless::String::try_from("").unwrap());
    assert_eq!(check_item(&ConfigItem::Acme(item.clone())).unwrap_err(), Refusal { field: "tls.acme.eab_key_id", rule: EAB_KEY_ID_RULE });
    item.eab_key_id = Some(heapless::String::try_from("kid 1").unwrap());
    assert_eq!(refused(&ConfigItem::Acme(item.clone())), "tls.acme.eab_key_id");
    item.eab_key_id = Some(heapless::String::try_from("kid-1").unwrap());
    assert_eq!(check_item(&ConfigItem::Acme(item)), Ok(()));
}

#[test]
fn an_acme_item_that_passes_fits_one_store_record_and_a_bigger_one_is_refused() {
    let label = "a".repeat(50);
    let long_name = format!("{label}.{label}.example");
    let mut item = acme(&format!("https://{label}.example/{}", "d".repeat(60)), &long_name);
    item.eab_key_id = Some(heapless::String::try_from("k".repeat(64).as_str()).unwrap());
    assert_eq!(check_item(&ConfigItem::Acme(item.clone())).unwrap_err(), Refusal { field: "tls.acme", rule: ACME_SIZE_RULE });
    // The largest that passes still fits the device's 256-byte record.
    item.eab_key_id = None;
    item.directory = heapless::String::try_from(format!("https://{label}.example/{}", "d".repeat(223 - 67 - long_name.len() - 17)).as_str()).unwrap();
    let size = item.directory.len() + item.name.len() + item.contact.as_ref().unwrap().len();
    assert_eq!(size, 223);
    assert_eq!(check_item(&ConfigItem::Acme(item.clone())), Ok(()));
    let mut record = [0u8; 256];
    assert!(postcard::to_slice(&ConfigItem::Acme(item), &mut record).is_ok());
}

#[test]
fn the_acme_section_comes_at_most_once() {
    let mut items = minimal();
    items.push(ConfigItem::Acme(acme("https://acme.example/dir", "mx.example.org")));
    assert_eq!(whole(&items), Ok(()));
    items.push(ConfigItem::Acme(acme("https://acme.example/dir", "mx.example.org")));
    assert_eq!(whole(&items).unwrap_err(), Refusal { field: "tls.acme", rule: "given twice: the section is sent at most once" });
}
