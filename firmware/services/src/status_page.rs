//! The status page's facts: a [`StatusSnapshot`] assembled from the vault, the spool, the mail
//! counters, the settings, the alert board and the tamper loop, for `/` and `/status.json`
//! (rendered by homemx-status); the persisted alert record and tamper event; and the alert mailer, which sends the alerts to postmaster@ our domain,
//! rate-limited by homemx-status's `AlertMailer`.
//!
//! Owns: the alert mailer's state (its job runs in the courier, `delivery`). Calls: `acme`, `alerts`, `backup_mx`, `channels`,
//! `dyndns`, `event_log`, `local_mail`, `mail_settings`, `mail_status`, `random`, `stack`, `storage`, `store`,
//! `tamper`, `wall_clock`.

use core::cell::RefCell;

use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
use embassy_sync::blocking_mutex::Mutex;
use embassy_time::Instant;
use crate::channels::DeviceState;
use homemx_spool::Envelope;
use core::net::{IpAddr, Ipv4Addr};

use homemx_status::{
    compose, host_name, AcmeRenewal, version, AlertMailer, DynDns, DynDnsAnswer, LockState, MailFlow, MailboxReach, MxRecord, Pop3Fetch,
    SmarthostTls, SpoolSpace, StatusSnapshot, System, TlsVersion, Verification, MAIL_BUFFER_SIZE,
};


/// Collects what the page shows into `snapshot` (all of it replaced). Filled in place, not
/// returned: a returned snapshot (1.5 KB) would exist twice in the caller's future, once being
/// built in this one and once as the caller's destination.
pub async fn snapshot(snapshot: &mut StatusSnapshot) {
    *snapshot = StatusSnapshot { now_unix: crate::wall_clock::unix_seconds(), ..StatusSnapshot::default() };
    let status = crate::mail_status::snapshot();
    let now_unix = snapshot.now_unix;
    let mut flow = MailFlow {
        received: status.received + status.submitted,
        delivered: status.delivered_local + status.relayed,
        bounced: status.bounced,
        ..MailFlow::default()
    };
    {
        snapshot.lock = match crate::channels::DEVICE_STATE.try_get() {
            None | Some(DeviceState::Unprovisioned) => LockState::Unprovisioned,
            Some(DeviceState::Locked) => LockState::Locked,
            Some(DeviceState::Unlocked) => LockState::Unlocked,
        };
        if let Some(stores) = crate::store::open().await {
            let mut oldest: Option<u64> = None;
            for message in stores.spool.messages() {
                flow.queued += 1;
                if message.delivery.attempts > 0 {
                    flow.deferred += 1;
                }
                if message.queued_at != 0 {
                    oldest = Some(oldest.map_or(message.queued_at, |oldest: u64| oldest.min(message.queued_at)));
                }
            }
            flow.oldest_queued_age_seconds = match (oldest, now_unix) {
                (Some(oldest), Some(now)) => Some(now.saturating_sub(oldest)),
                _ => None,
            };
            let total = crate::storage::SPOOL_SECTORS as u64 * crate::storage::SECTOR_SIZE as u64;
            snapshot.spool = Some(SpoolSpace { free_bytes: stores.spool.free_bytes(), total_bytes: total });
        }
    }
    snapshot.mail = flow;
    snapshot.certificate = crate::store::tls_certificate();
    if crate::mail_settings::read(|current| current.is_some_and(|settings| settings.acme.is_some())) {
        let acme = crate::acme::status();
        snapshot.acme = Some(AcmeRenewal {
            last_attempt_unix: acme.last.map(|(at, _)| at),
            last_succeeded: acme.last.map(|(_, succeeded)| succeeded),
            last_error: (!acme.last_error.is_empty()).then_some(acme.last_error),
            next_attempt_unix: acme.next_attempt,
            certificate_expiry_unix: acme.expiry,
            failures: acme.failures,
        });
    }
    let smarthost = crate::mail_settings::read(|current| current.and_then(|settings| settings.smarthost.as_ref().map(|smarthost| host_name(smarthost.host.as_str()))));
    snapshot.smarthost = SmarthostTls {
        host: smarthost,
        last_success_unix: status.smarthost_success.map(|(unix, _)| unix).filter(|unix| *unix != 0),
        last_failure_unix: status.smarthost_failure_unix,
        tls_version: status.smarthost_success.map(|_| TlsVersion::Tls13),
        verified_by: status.smarthost_success.map(|_| if status.smarthost_pinned { Verification::PinnedKey } else { Verification::CaAnchor }),
    };
    snapshot.mailbox = MailboxReach {
        configured: crate::mail_settings::read(|current| current.is_some_and(|settings| settings.mailbox.is_some())),
        ..status.mailbox
    };
    snapshot.alerts = crate::alerts::read(|board| board.clone());
    let (backup_host, dyndns_host) = crate::mail_settings::read(|settings| {
        (
            settings.and_then(|settings| settings.backup_mx.as_ref().map(|backup| host_name(backup.host.as_str()))),
            settings.and_then(|settings| settings.dyndns.as_ref().map(|dyndns| host_name(dyndns.host_name.as_str()))),
        )
    });
    let fetch = crate::backup_mx::fetch_status();
    snapshot.pop3 = Pop3Fetch {
        host: backup_host,
        last_attempt_unix: fetch.last_attempt.map(|(unix, _)| unix).filter(|unix| *unix != 0),
        last_result: fetch.last_attempt.map(|(_, result)| result),
        messages_fetched: fetch.last_attempt.map(|_| fetch.fetched),
        last_success_unix: fetch.last_success_unix,
    };
    let dyndns = crate::dyndns::status();
    snapshot.dyndns = DynDns {
        host: dyndns_host,
        public_ip: dyndns.public_ip.map(|ip| IpAddr::V4(Ipv4Addr::from(ip))),
        a_record: dyndns.a_record.map(|ip| IpAddr::V4(Ipv4Addr::from(ip))),
        mx: dyndns.mx.iter().map(|(preference, host)| MxRecord { preference: *preference, host: host_name(host.as_str()) }).collect(),
        last_update_unix: dyndns.last_update.map(|(unix, _)| unix).filter(|unix| *unix != 0),
        last_answer: dyndns.last_update.map(|(_, answer)| dyndns_answer(answer)),
    };
    let ram = crate::stack::ram_use().await;
    snapshot.system = System {
        uptime_ms: Instant::now().as_millis(),
        firmware_version: version(crate::FIRMWARE_VERSION),
        ram_high_water_bytes: ram.map(|(used, _)| used as u32),
        ram_size_bytes: ram.map(|(_, size)| size as u32),
        tamper_loop: match crate::tamper::state() {
            homemx_board::TamperState::Closed => homemx_status::TamperLoop::Closed,
            homemx_board::TamperState::Open => homemx_status::TamperLoop::Open,
            homemx_board::TamperState::NotFitted => homemx_status::TamperLoop::NotFitted,
        },
    };
}

fn dyndns_answer(answer: homemx_dyndns::dyndns2::UpdateAnswer) -> DynDnsAnswer {
    use homemx_dyndns::dyndns2::UpdateAnswer as Answer;
    match answer {
        Answer::Good(_) => DynDnsAnswer::Good,
        Answer::NoChange(_) => DynDnsAnswer::NoChange,
        Answer::BadAuth => DynDnsAnswer::BadAuth,
        Answer::NotFqdn => DynDnsAnswer::NotFqdn,
        Answer::NoHost => DynDnsAnswer::NoHost,
        Answer::NumHost => DynDnsAnswer::NumHost,
        Answer::Abuse => DynDnsAnswer::Abuse,
        Answer::BadAgent => DynDnsAnswer::BadAgent,
        Answer::ServerError => DynDnsAnswer::ServerError,
        Answer::DnsError => DynDnsAnswer::DnsError,
        Answer::TransportError => DynDnsAnswer::NoAnswer,
        Answer::NotDonator | Answer::HttpStatus(_) | Answer::Unknown => DynDnsAnswer::Unrecognized,
    }
}

/// The alert mailer's memory of what it sent.
static MAILER: Mutex<CriticalSectionRawMutex, RefCell<AlertMailer>> = Mutex::new(RefCell::new(AlertMailer::new()));

fn alerts_key() -> u64 {
    crate::store::Settings::key_for("alerts", b"in-force")
}

/// Writes the alert kinds in force (and their peers) to the encrypted store if they changed,
/// so they survive a restart.
pub async fn persist_alerts() {
    if crate::alerts::changed_record().is_none() {
        return;
    }
    if let Some(mut stores) = crate::store::open().await {
        write_alerts(&mut stores).await;
    }
}

/// Writes the alert board to `stores` if it changed since it was last written.
async fn write_alerts(stores: &mut crate::store::OpenStores) {
    if let Some(record) = crate::alerts::changed_record() {
        if stores.settings.store(alerts_key(), &record).await.is_ok() {
            crate::alerts::record_persisted();
        }
    }
}

/// Raises the alerts that were in force before the restart (at unlock, the store held).
pub async fn restore_alerts(stores: &mut crate::store::OpenStores) {
    let mut record = [0u8; crate::alerts::RECORD_CAPACITY];
    if let Ok(Some(length)) = stores.settings.fetch(alerts_key(), &mut record).await {
        crate::alerts::restore(&record[..length.min(record.len())]);
    }
}

fn tamper_event_key() -> u64 {
    crate::store::Settings::key_for("tamper", b"last-event")
}

/// Writes the tamper event (its time) and the alert board at once, so both survive a restart
/// (while unlocked; the console calls it before it locks).
pub async fn persist_tamper_event(event: &crate::tamper::TamperEvent) {
    if let Some(mut stores) = crate::store::open().await {
        write_tamper_event(&mut stores, event).await;
        write_alerts(&mut stores).await;
    }
}

/// Writes `event` to `stores`, replacing the one before.
async fn write_tamper_event(stores: &mut crate::store::OpenStores, event: &crate::tamper::TamperEvent) {
    if stores.settings.store(tamper_event_key(), &event.encode()).await.is_err() {
        crate::event_warning!("tamper: the event could not be written to flash");
    }
}

/// At unlock (the store held, after [`restore_alerts`]): writes the tamper event held since
/// the device was locked and the alert board with it, then logs the stored event again while its
/// alert is in force.
pub async fn restore_tamper_event(stores: &mut crate::store::OpenStores) {
    if let Some(event) = crate::tamper::take_held() {
        write_tamper_event(stores, &event).await;
        // Its alert at once too (`persist_alerts` would wait for the store this unlock holds).
        write_alerts(stores).await;
    }
    if crate::alerts::read(|board| board.get(homemx_status::AlertKind::Tamper).is_none()) {
        return;
    }
    let mut record = [0u8; crate::tamper::EVENT_RECORD_LENGTH];
    if let Ok(Some(length)) = stores.settings.fetch(tamper_event_key(), &mut record).await {
        if let Some(event) = crate::tamper::TamperEvent::decode(&record[..length.min(record.len())]) {
            crate::event_warning!("tamper: the loop was opened at {}; not acknowledged yet", event);
        }
    }
}

/// The alert mailer's job, one pass (the courier runs it on each of its rounds, so its state
/// shares the courier's task future instead of holding a task of its own): persists the alert
/// board when it changed, then queues a mail of the new alerts to postmaster@ our domain
/// (through the spool and the LAN mailbox host), at most one mail per alert kind per 6 hours
/// and six a day.
///
/// `text` is the courier's scratch: held in this future, the mail's text (4 KB) made it one of
/// the courier's largest jobs.
pub async fn alert_mail_job(random: &mut crate::random::DerivedRandom, text: &mut [u8; MAIL_BUFFER_SIZE]) {
    persist_alerts().await;
    let now = Instant::now().as_millis();
    let Some(domain) = crate::mail_settings::read(|current| current.map(|settings| settings.postmaster_domain.clone())) else {
        return;
    };
    let Some(mail) = crate::alerts::read(|board| MAILER.lock(|mailer| mailer.borrow().due(board, now))) else {
        return;
    };
    let Ok(length) = compose(domain.as_str(), &mail, crate::wall_clock::unix_seconds(), random.next_u64(), text) else {
        return;
    };
    let mut postmaster: heapless::String<80> = heapless::String::new();
    let _ = postmaster.push_str("postmaster@");
    let _ = postmaster.push_str(domain.as_str());
    let recipients: [&[u8]; 1] = [postmaster.as_bytes()];
    let Some(envelope) = Envelope::new(b"", &recipients) else {
        return;
    };
    let envelope = envelope.with_queued_at(crate::wall_clock::unix_seconds().unwrap_or(0));
    let queued = crate::local_mail::queue(&envelope, &text[..length]).await;
    if queued {
        MAILER.lock(|mailer| mailer.borrow_mut().sent(&mail, now));
        crate::event_info!("alert mail with {} alerts queued for {}", mail.alerts.len(), postmaster.as_str());
        crate::channels::DELIVERY_DUE.signal(());
    }
}
