//! The MX's view of the configuration: accepted domains, known recipients, LAN prefixes, the
//! LAN mailbox host and the limits, built from the encrypted configuration at unlock (and
//! after every configuration commit), emptied at lock. One copy, built in place
//! ([`SettingsSlot`]); `None` from it means locked, unconfigured or being rebuilt: the MX then
//! answers 4xx so the provider's backup MX keeps the mail. How each configuration item becomes
//! a setting (defaults, clamps, host name, relay tables) is `homemx_settings`'s, tested on the host.
//!
//! Owns: the MX's settings slot (`MAIL_SETTINGS`). Calls: nothing.

use core::cell::RefCell;

use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
use embassy_sync::blocking_mutex::Mutex;
use homemx_settings::Details;
use homemx_wire::config::ConfigItem;
use homemx_wire::message::ErrorCode;

pub use homemx_settings::{MailSettings, DEFAULT_MESSAGES_PER_CLIENT_PER_HOUR, DEFAULT_MESSAGE_SIZE};

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
    const EMPTY: SettingsSlot = SettingsSlot { settings: MailSettings::EMPTY, published: false };

    /// The settings in force; `None` while locked, unconfigured or being rebuilt.
    fn as_ref(&self) -> Option<&MailSettings> {
        self.published.then_some(&self.settings)
    }

    /// Withdraws the settings and empties them in place (they name the owner's domains,
    /// recipients and providers: not kept while locked).
    fn forget(&mut self) {
        self.published = false;
        self.settings.forget();
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
    let mut building = Details::new();
    // `clear()` above emptied the slot: the relay tables are built in place in it, unpublished
    // (no 7 KB copy lives in this future or in a second static).
    for index in 0..total {
        let Ok((_, item)) = read_item(index).await else {
            continue;
        };
        let accepted = MAIL_SETTINGS.lock(|cell| {
            let mut slot = cell.borrow_mut();
            // A lock (or a second reload) meanwhile: `published` stays false either way.
            building.apply(&mut slot.settings.relay, &item)
        });
        if !accepted {
            defmt::warn!("mx: configuration item {=u16} refused by the relay policy", index);
        }
    }
    let (domains, mailbox) = MAIL_SETTINGS.lock(|cell| {
        let mut slot = cell.borrow_mut();
        let slot = &mut *slot;
        building.finish(&mut slot.settings);
        slot.published = true;
        (slot.settings.relay.domains().count(), slot.settings.mailbox.is_some())
    });
    defmt::info!("mx: configured for {=usize} domains; mailbox host {}", domains, mailbox);
}

/// Forgets the settings (lock, factory reset): the MX answers 4xx.
pub fn clear() {
    MAIL_SETTINGS.lock(|cell| cell.borrow_mut().forget());
}
