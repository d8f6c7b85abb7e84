//! The MX's view of the configuration: accepted domains, known recipients, LAN prefixes, the
//! LAN mailbox host and the limits, built from the encrypted configuration at unlock (and
//! after every configuration commit), emptied at lock. One copy, built in place
//! ([`SettingsSlot`]); `None` from it means locked, unconfigured or being rebuilt: the MX then
//! answers 4xx so the provider's backup MX keeps the mail.
//!
//! Owns: the MX's settings slot (`MAIL_SETTINGS`). Calls: nothing.

use core::cell::RefCell;
use core::net::{IpAddr, Ipv4Addr};

use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
use embassy_sync::blocking_mutex::Mutex;
use homemx_smtp::relay::{IpPrefix, RelayConfig};
use homemx_wire::config::{BackupMx, CheckIpSource, ConfigItem, DynDns, HostName, LanMailbox, Smarthost};

use homemx_wire::message::ErrorCode;
use homemx_wire::validate::{MAX_CHECK_IP_SOURCES, MAX_TIME_SERVERS};

// The wire's rules (`homemx_wire::validate`), which the console applies to every configuration,
// refuse more domains, recipients and LAN networks than the relay tables keep.
const _: () = assert!(
    homemx_wire::validate::MAX_DOMAINS == homemx_smtp::relay::ACCEPTED_DOMAINS_MAX
        && homemx_wire::validate::MAX_KNOWN_RECIPIENTS == homemx_smtp::relay::KNOWN_RECIPIENTS_MAX
        && homemx_wire::validate::MAX_LAN_PREFIXES == homemx_smtp::relay::LAN_PREFIXES_MAX
);

/// Largest message the MX takes (also what a message without `SIZE=` reserves in the spool).
pub const DEFAULT_MESSAGE_SIZE: u64 = 4 * 1024 * 1024;
/// Free spool bytes kept back beyond a message's size (envelopes, headers, delete records).
pub const DEFAULT_SPOOL_RESERVE: u64 = 256 * 1024;

/// What the MX needs from the configuration.
pub struct MailSettings {
    /// Domains, recipients and LAN prefixes.
    pub relay: RelayConfig,
    /// Where accepted mail goes.
    pub mailbox: Option<LanMailbox>,
    /// The name in the greeting and the `Received:` header.
    pub host_name: heapless::String<64>,
    /// The domain whose postmaster `RCPT TO:<postmaster>` means (the first configured one).
    pub postmaster_domain: heapless::String<64>,
    /// Largest message accepted.
    pub message_size: u64,
    /// Free spool bytes kept back.
    pub spool_reserve_bytes: u64,
    /// The provider's smarthost; without one (an inbound-only MX), LAN clients may not send to
    /// other domains.
    pub smarthost: Option<Smarthost>,
    /// Most recipients per message.
    pub max_recipients: usize,
    /// Most messages one LAN client may submit per hour.
    pub messages_per_client_per_hour: u16,
    /// SNTP servers (empty: ask the default gateway).
    pub time_servers: heapless::Vec<HostName, MAX_TIME_SERVERS>,
    /// The provider's backup MX mailbox, fetched by POP3.
    pub backup_mx: Option<BackupMx>,
    /// The DynDNS account.
    pub dyndns: Option<DynDns>,
    /// The check-IP services.
    pub check_ip: heapless::Vec<CheckIpSource, MAX_CHECK_IP_SOURCES>,
}

/// Default for [`MailSettings::messages_per_client_per_hour`] when the owner sets none.
pub const DEFAULT_MESSAGES_PER_CLIENT_PER_HOUR: u16 = 100;

/// The settings in force; `None` while locked or unconfigured. Read through [`read`].
static MAIL_SETTINGS: Mutex<CriticalSectionRawMutex, RefCell<SettingsSlot>> = Mutex::new(RefCell::new(SettingsSlot::EMPTY));

/// Reads the settings in force (`None` while locked, unconfigured or being rebuilt). The
/// reader runs inside a critical section: copy out what is needed, never await.
pub fn read<R>(reader: impl FnOnce(Option<&MailSettings>) -> R) -> R {
    MAIL_SETTINGS.lock(|cell| reader(cell.borrow().as_ref()))
}

/// The one copy of the settings. [`reload`] builds the relay tables (7 KB) in place here, so
/// there is no second copy while it runs; readers see them only once they are complete.
struct SettingsSlot {
    settings: MailSettings,
    published: bool,
}

impl SettingsSlot {
    const EMPTY: SettingsSlot = SettingsSlot {
        settings: MailSettings {
            relay: RelayConfig::new(),
            mailbox: None,
            host_name: heapless::String::new(),
            postmaster_domain: heapless::String::new(),
            message_size: DEFAULT_MESSAGE_SIZE,
            spool_reserve_bytes: DEFAULT_SPOOL_RESERVE,
            smarthost: None,
            max_recipients: homemx_spool::MAX_RECIPIENTS,
            messages_per_client_per_hour: DEFAULT_MESSAGES_PER_CLIENT_PER_HOUR,
            time_servers: heapless::Vec::new(),
            backup_mx: None,
            dyndns: None,
            check_ip: heapless::Vec::new(),
        },
        published: false,
    };

    /// The settings in force; `None` while locked, unconfigured or being rebuilt.
    fn as_ref(&self) -> Option<&MailSettings> {
        self.published.then_some(&self.settings)
    }

    /// Withdraws the settings and empties them in place (they name the owner's domains,
    /// recipients and providers: not kept while locked).
    fn forget(&mut self) {
        self.published = false;
        let settings = &mut self.settings;
        settings.relay.clear();
        settings.mailbox = None;
        settings.host_name.clear();
        settings.postmaster_domain.clear();
        settings.smarthost = None;
        settings.time_servers.clear();
        settings.backup_mx = None;
        settings.dyndns = None;
        settings.check_ip.clear();
    }
}

/// Rebuilds the settings from the configuration (call after unlock and commit): `read_item(index)`
/// reads item `index` of the current configuration and the item count (the console passes the
/// store's). The relay tables are filled in place in [`MAIL_SETTINGS`] (they are 7 KB: no copy
/// on the stack); sessions see `None` until the whole configuration is in.
pub async fn reload(mut read_item: impl AsyncFnMut(u16) -> Result<(u16, ConfigItem), ErrorCode>) {
    clear();
    let total = match read_item(0).await {
        Ok((total, _)) => total,
        Err(_) => {
            defmt::warn!("mx: no configuration: mail is refused with 4xx until provisioned");
            return;
        }
    };
    let mut building = Details {
        mailbox: None,
        host_name: heapless::String::new(),
        postmaster_domain: heapless::String::new(),
        message_size: DEFAULT_MESSAGE_SIZE,
        spool_reserve_bytes: DEFAULT_SPOOL_RESERVE,
        smarthost: None,
        max_recipients: homemx_spool::MAX_RECIPIENTS,
        messages_per_client_per_hour: DEFAULT_MESSAGES_PER_CLIENT_PER_HOUR,
        time_servers: heapless::Vec::new(),
        backup_mx: None,
        dyndns: None,
        check_ip: heapless::Vec::new(),
    };
    // `clear()` above emptied the slot: the relay tables are built in place in it, unpublished
    // (no 7 KB copy lives in this future or in a second static).
    let mut domains = 0;
    for index in 0..total {
        let Ok((_, item)) = read_item(index).await else {
            continue;
        };
        let accepted = MAIL_SETTINGS.lock(|cell| {
            let mut slot = cell.borrow_mut();
            // A lock (or a second reload) meanwhile: `published` stays false either way.
            apply(&mut building, &mut slot.settings.relay, &item, &mut domains)
        });
        if !accepted {
            defmt::warn!("mx: configuration item {=u16} refused by the relay policy", index);
        }
    }
    if building.host_name.is_empty() {
        let _ = building.host_name.push_str("homemx");
    }
    defmt::info!("mx: configured for {=usize} domains; mailbox host {}", domains, building.mailbox.is_some());
    MAIL_SETTINGS.lock(|cell| {
        {
            let mut slot = cell.borrow_mut();
            let slot = &mut *slot;
            // LAN clients may send to other domains only through a smarthost; without one the
            // appliance is an inbound-only MX and they get `550 5.7.1 outbound mail is not configured`.
            slot.settings.relay.set_lan_may_relay(building.smarthost.is_some());
            // homemx-smtp now relays for LAN addresses without AUTH only on this explicit opt-in.
            // Until the listeners offer AUTH and the settings carry `lan_relay_without_auth`
            // (issue 15), keep today's behaviour: the LAN address alone (the weaker mode).
            slot.settings.relay.set_lan_relay_without_auth(true);
            let Details {
                mailbox,
                host_name,
                postmaster_domain,
                message_size,
                spool_reserve_bytes,
                smarthost,
                max_recipients,
                messages_per_client_per_hour,
                time_servers,
                backup_mx,
                dyndns,
                check_ip,
            } = building;
            let settings = &mut slot.settings;
            settings.mailbox = mailbox;
            settings.host_name = host_name;
            settings.postmaster_domain = postmaster_domain;
            settings.message_size = message_size;
            settings.spool_reserve_bytes = spool_reserve_bytes;
            settings.smarthost = smarthost;
            settings.max_recipients = max_recipients;
            settings.messages_per_client_per_hour = messages_per_client_per_hour;
            settings.time_servers = time_servers;
            settings.backup_mx = backup_mx;
            settings.dyndns = dyndns;
            settings.check_ip = check_ip;
            slot.published = true;
        }
    });
}


/// Everything of [`MailSettings`] but the relay tables, while [`reload`] collects it.
struct Details {
    mailbox: Option<LanMailbox>,
    host_name: heapless::String<64>,
    postmaster_domain: heapless::String<64>,
    message_size: u64,
    spool_reserve_bytes: u64,
    smarthost: Option<Smarthost>,
    max_recipients: usize,
    messages_per_client_per_hour: u16,
    time_servers: heapless::Vec<HostName, MAX_TIME_SERVERS>,
    backup_mx: Option<BackupMx>,
    dyndns: Option<DynDns>,
    check_ip: heapless::Vec<CheckIpSource, MAX_CHECK_IP_SOURCES>,
}

/// Applies one configuration item; false when the relay policy refuses it.
fn apply(settings: &mut Details, relay: &mut RelayConfig, item: &ConfigItem, domains: &mut usize) -> bool {
    match item {
        ConfigItem::Domain(domain) => {
            *domains += 1;
            if settings.postmaster_domain.is_empty() {
                let _ = settings.postmaster_domain.push_str(domain.as_str());
            }
            if settings.host_name.is_empty() {
                let _ = settings.host_name.push_str("mx.");
                let _ = settings.host_name.push_str(domain.as_str());
            }
            relay.add_domain(domain.as_str()).is_ok()
        }
        ConfigItem::Recipient(address) => relay.add_recipient(address.as_str()).is_ok(),
        ConfigItem::LanPrefix(prefix) => {
            let address = IpAddr::V4(Ipv4Addr::from(prefix.address));
            IpPrefix::new(address, prefix.length).and_then(|prefix| relay.add_lan_prefix(prefix)).is_ok()
        }
        ConfigItem::LanMailbox(host) => {
            settings.mailbox = Some(host.clone());
            true
        }
        ConfigItem::CheckIpSource(source) => settings.check_ip.push(source.clone()).is_ok(),
        ConfigItem::DynDns(dyndns) => {
            settings.dyndns = Some(dyndns.clone());
            settings.host_name.clear();
            let _ = settings.host_name.push_str(dyndns.host_name.as_str());
            true
        }
        ConfigItem::Limits(limits) => {
            settings.message_size = (limits.max_message_bytes as u64).min(DEFAULT_MESSAGE_SIZE);
            settings.spool_reserve_bytes = limits.spool_reserve_bytes as u64;
            settings.max_recipients = usize::from(limits.max_recipients).clamp(1, homemx_spool::MAX_RECIPIENTS);
            if limits.messages_per_client_per_hour > 0 {
                settings.messages_per_client_per_hour = limits.messages_per_client_per_hour;
            }
            true
        }
        ConfigItem::Smarthost(smarthost) => {
            settings.smarthost = Some(smarthost.clone());
            true
        }
        ConfigItem::BackupMx(backup) => {
            settings.backup_mx = Some(backup.clone());
            true
        }
        ConfigItem::TimeServer(server) => {
            let _ = settings.time_servers.push(server.clone());
            true
        }
        _ => true,
    }
}

/// Forgets the settings (lock, factory reset): the MX answers 4xx.
pub fn clear() {
    MAIL_SETTINGS.lock(|cell| cell.borrow_mut().forget());
}
