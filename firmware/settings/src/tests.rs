//! One test per rule of application: each configuration goes through [`Details::apply`] and
//! [`Details::finish`] into a [`MailSettings`], as the firmware's `mail_settings::reload` does.

use core::str::FromStr;

use homemx_smtp::address::parse_forward_path;
use homemx_smtp::RecipientDecision;
use homemx_wire::config::{Acme, DeliveryProtocol, Ipv4Prefix, Limits, MinTls, TlsMode};

use super::*;

fn name(text: &str) -> HostName {
    HostName::try_from(text).unwrap()
}

fn domain(text: &str) -> ConfigItem {
    ConfigItem::Domain(name(text))
}

fn dyndns(host_name: &str) -> ConfigItem {
    ConfigItem::DynDns(DynDns {
        server: name("dyndns.example.net"),
        host_name: name(host_name),
        user_name: "owner".try_into().unwrap(),
        check_interval_seconds: 600,
        min_tls: MinTls::Tls12,
    })
}

fn smarthost() -> ConfigItem {
    let user_name = "owner".try_into().unwrap();
    ConfigItem::Smarthost(Smarthost { host: name("smtp.example.net"), port: 465, tls: TlsMode::Implicit, user_name, min_tls: MinTls::Tls12 })
}

fn limits(max_message_bytes: u32, max_recipients: u16, messages_per_client_per_hour: u16) -> ConfigItem {
    ConfigItem::Limits(Limits { max_message_bytes, max_recipients, messages_per_client_per_hour, spool_reserve_bytes: 64 * 1024 })
}

fn lan_prefix() -> ConfigItem {
    ConfigItem::LanPrefix(Ipv4Prefix { address: [192, 168, 1, 0], length: 24 })
}

/// The settings from `items`, each applied in order, and what `apply` answered for each.
fn settings_from(items: &[ConfigItem]) -> (Box<MailSettings>, Vec<bool>) {
    let mut settings = Box::new(MailSettings::EMPTY);
    let mut details = Details::new();
    let accepted = items.iter().map(|item| details.apply(&mut settings.relay, item)).collect();
    details.finish(&mut settings);
    (settings, accepted)
}

/// How the relay tables decide a LAN client's mail to a foreign domain.
fn lan_to_foreign_domain(settings: &MailSettings) -> RecipientDecision {
    let (path, _) = parse_forward_path(b"<friend@elsewhere.example>").unwrap();
    settings.relay.check_recipient(IpAddr::from_str("192.168.1.20").unwrap(), &path)
}

#[test]
fn defaults_without_limits_item() {
    let (settings, accepted) = settings_from(&[domain("example.org")]);
    assert_eq!(accepted, [true]);
    assert_eq!(settings.message_size, DEFAULT_MESSAGE_SIZE);
    assert_eq!(settings.spool_reserve_bytes, DEFAULT_SPOOL_RESERVE);
    assert_eq!(settings.max_recipients, homemx_spool::MAX_RECIPIENTS);
    assert_eq!(settings.messages_per_client_per_hour, DEFAULT_MESSAGES_PER_CLIENT_PER_HOUR);
}

#[test]
fn limits_within_range_are_taken() {
    let (settings, _) = settings_from(&[domain("example.org"), limits(1024 * 1024, 50, 20)]);
    assert_eq!(settings.message_size, 1024 * 1024);
    assert_eq!(settings.spool_reserve_bytes, 64 * 1024);
    assert_eq!(settings.max_recipients, 50);
    assert_eq!(settings.messages_per_client_per_hour, 20);
}

#[test]
fn limits_are_clamped_to_what_the_mx_can_do() {
    let (settings, _) = settings_from(&[limits(64 * 1024 * 1024, 1000, 0)]);
    assert_eq!(settings.message_size, DEFAULT_MESSAGE_SIZE, "message size above 4 MiB");
    assert_eq!(settings.max_recipients, homemx_spool::MAX_RECIPIENTS, "more recipients than the spool keeps");
    assert_eq!(settings.messages_per_client_per_hour, DEFAULT_MESSAGES_PER_CLIENT_PER_HOUR, "0 means the default");
    let (settings, _) = settings_from(&[limits(1000, 0, 1)]);
    assert_eq!(settings.max_recipients, 1, "at least one recipient");
    assert_eq!(settings.message_size, 1000);
}

#[test]
fn host_name_and_postmaster_domain_from_the_first_domain() {
    let (settings, accepted) = settings_from(&[domain("example.org"), domain("example.net")]);
    assert_eq!(accepted, [true, true]);
    assert_eq!(settings.host_name, "mx.example.org");
    assert_eq!(settings.postmaster_domain, "example.org");
    assert!(settings.relay.is_accepted_domain("example.org") && settings.relay.is_accepted_domain("example.net"));
}

#[test]
fn dyndns_host_name_replaces_the_domain_one_in_either_order() {
    for items in [[dyndns("home.dyn.example"), domain("example.org")], [domain("example.org"), dyndns("home.dyn.example")]] {
        let (settings, _) = settings_from(&items);
        assert_eq!(settings.host_name, "home.dyn.example");
        assert_eq!(settings.postmaster_domain, "example.org");
        assert!(settings.dyndns.is_some());
    }
}

#[test]
fn the_longest_domain_the_wire_allows_names_the_host_and_the_postmaster() {
    // 63 + 1 + 62 + 1 + 1 = 128 octets: a valid DNS name as long as the wire's limit.
    let long = format!("{}.{}.c", "a".repeat(63), "b".repeat(62));
    assert_eq!(long.len(), homemx_wire::config::MAX_HOST_NAME);
    let (settings, accepted) = settings_from(&[domain(&long)]);
    assert_eq!(accepted, [true]);
    assert_eq!(settings.host_name, format!("mx.{long}").as_str());
    assert_eq!(settings.postmaster_domain, long.as_str());
}

#[test]
fn host_name_defaults_when_nothing_names_one() {
    let (settings, _) = settings_from(&[lan_prefix()]);
    assert_eq!(settings.host_name, DEFAULT_HOST_NAME);
    assert!(settings.postmaster_domain.is_empty());
}

#[test]
fn lan_may_relay_only_with_a_smarthost() {
    let (inbound_only, _) = settings_from(&[domain("example.org"), lan_prefix()]);
    assert_eq!(lan_to_foreign_domain(&inbound_only), RecipientDecision::OutboundNotConfigured);
    assert!(inbound_only.smarthost.is_none());
    for items in [[domain("example.org"), lan_prefix(), smarthost(), opt_in()], [opt_in(), smarthost(), domain("example.org"), lan_prefix()]] {
        let (with_smarthost, _) = settings_from(&items);
        assert_eq!(lan_to_foreign_domain(&with_smarthost), RecipientDecision::Accept);
        assert!(with_smarthost.smarthost.is_some());
    }
}

fn opt_in() -> ConfigItem {
    ConfigItem::Submission(Submission { requires_auth: true, lan_relay_without_auth: true })
}

#[test]
fn a_lan_address_alone_relays_only_on_the_owners_opt_in() {
    // No Submission item: the defaults, AUTH required and no relaying by address.
    let (default, _) = settings_from(&[domain("example.org"), lan_prefix(), smarthost()]);
    assert_eq!(lan_to_foreign_domain(&default), RecipientDecision::AuthenticationRequired);
    assert!(default.submission_requires_auth);
    let (opted_in, _) = settings_from(&[domain("example.org"), lan_prefix(), smarthost(), opt_in()]);
    assert_eq!(lan_to_foreign_domain(&opted_in), RecipientDecision::Accept);
    let no_auth = ConfigItem::Submission(Submission { requires_auth: false, lan_relay_without_auth: false });
    let (without_auth, _) = settings_from(&[domain("example.org"), lan_prefix(), smarthost(), no_auth]);
    assert!(!without_auth.submission_requires_auth);
    assert_eq!(lan_to_foreign_domain(&without_auth), RecipientDecision::AuthenticationRequired, "still no relaying by address");
}

#[test]
fn time_servers_kept_up_to_capacity() {
    let servers = ["a.ntp.example", "b.ntp.example", "c.ntp.example"];
    let items: Vec<ConfigItem> = servers.map(|server| ConfigItem::TimeServer(name(server))).into();
    let (settings, accepted) = settings_from(&items);
    assert_eq!(MAX_TIME_SERVERS, 2);
    assert_eq!(settings.time_servers.as_slice(), [name("a.ntp.example"), name("b.ntp.example")]);
    // A third server is dropped silently (the wire's rules refuse such a configuration first).
    assert_eq!(accepted, [true, true, true]);
}

#[test]
fn check_ip_sources_kept_up_to_capacity() {
    let items: Vec<ConfigItem> = (0..MAX_CHECK_IP_SOURCES + 1)
        .map(|index| ConfigItem::CheckIpSource(CheckIpSource { host: name(&format!("ip{index}.example")), path: "/".try_into().unwrap() }))
        .collect();
    let (settings, accepted) = settings_from(&items);
    assert_eq!(settings.check_ip.len(), MAX_CHECK_IP_SOURCES);
    assert_eq!(settings.check_ip[0].host, "ip0.example");
    assert_eq!(accepted.iter().filter(|accepted| !**accepted).count(), 1, "the one beyond capacity is refused");
    assert!(!accepted[MAX_CHECK_IP_SOURCES]);
}

#[test]
fn relay_tables_refuse_what_they_cannot_hold() {
    let (settings, accepted) = settings_from(&[
        domain("example.org"),
        ConfigItem::Recipient("alice@example.org".try_into().unwrap()),
        ConfigItem::Recipient("bob@unknown.example".try_into().unwrap()),
        ConfigItem::LanPrefix(Ipv4Prefix { address: [10, 0, 0, 0], length: 33 }),
        lan_prefix(),
    ]);
    assert_eq!(accepted, [true, true, false, false, true]);
    assert!(settings.relay.is_lan_client(IpAddr::from_str("192.168.1.20").unwrap()));
    assert!(!settings.relay.is_lan_client(IpAddr::from_str("10.0.0.1").unwrap()));
    assert_eq!(settings_from(&[domain("example.org")]).0.relay.domains().count(), 1);
}

#[test]
fn mailbox_smarthost_and_backup_mx_are_kept() {
    let mailbox = LanMailbox { address: [192, 168, 1, 5], port: 24, protocol: DeliveryProtocol::Lmtp };
    let user_name = "owner".try_into().unwrap();
    let backup = BackupMx { host: name("pop.example.net"), port: 995, tls: TlsMode::Implicit, user_name, poll_interval_seconds: 300, min_tls: MinTls::Tls12 };
    let mut details = Details::new();
    let mut settings = Box::new(MailSettings::EMPTY);
    for item in [domain("example.org"), ConfigItem::LanMailbox(mailbox.clone()), ConfigItem::BackupMx(backup.clone()), smarthost()] {
        assert!(details.apply(&mut settings.relay, &item));
    }
    details.finish(&mut settings);
    assert_eq!(settings.mailbox, Some(mailbox));
    assert_eq!(settings.backup_mx, Some(backup));
    assert_eq!(settings.smarthost.as_ref().map(|smarthost| smarthost.port), Some(465));
}

#[test]
fn forget_empties_what_names_the_owner() {
    let (mut settings, _) = settings_from(&[domain("example.org"), lan_prefix(), smarthost(), dyndns("home.dyn.example")]);
    settings.forget();
    assert!(!settings.relay.is_accepted_domain("example.org"));
    assert!(!settings.relay.is_lan_client(IpAddr::from_str("192.168.1.20").unwrap()));
    assert!(settings.host_name.is_empty() && settings.postmaster_domain.is_empty());
    assert!(settings.smarthost.is_none() && settings.dyndns.is_none() && settings.mailbox.is_none());
}

fn acme(name_text: &str, challenge: AcmeChallenge) -> ConfigItem {
    ConfigItem::Acme(Acme {
        directory: heapless::String::try_from("https://acme.example/dir").unwrap(),
        name: name(name_text),
        contact: None,
        agree_terms: true,
        eab_key_id: None,
        challenge,
        reuse_key: true,
    })
}

#[test]
fn the_acme_account_is_kept_only_for_the_host_name() {
    let (settings, accepted) = settings_from(&[domain("example.org"), acme("mx.example.org", AcmeChallenge::Http01)]);
    assert!(accepted.iter().all(|accepted| *accepted));
    assert_eq!(settings.acme, Some(AcmeChallenge::Http01));
    // Before or after the DynDNS name that becomes the host name, compared without case.
    for items in [[acme("HOME.dyn.example", AcmeChallenge::TlsAlpn01), dyndns("home.dyn.example")], [dyndns("home.dyn.example"), acme("home.dyn.example", AcmeChallenge::TlsAlpn01)]] {
        let (settings, _) = settings_from(&[domain("example.org"), items[0].clone(), items[1].clone()]);
        assert_eq!(settings.acme, Some(AcmeChallenge::TlsAlpn01));
    }
    // For another name than the one the TLS identity is for: not run.
    let (settings, _) = settings_from(&[domain("example.org"), dyndns("home.dyn.example"), acme("mx.example.org", AcmeChallenge::Http01)]);
    assert_eq!(settings.acme, None);
    let (settings, _) = settings_from(&[domain("example.org")]);
    assert_eq!(settings.acme, None);
}

#[test]
fn forget_drops_the_acme_account() {
    let (mut settings, _) = settings_from(&[domain("example.org"), acme("mx.example.org", AcmeChallenge::Http01)]);
    settings.forget();
    assert_eq!(settings.acme, None);
}
