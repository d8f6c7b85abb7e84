//! Alerts: [`AlertKind`] (with its stable machine name, short title and advice), the
//! [`Peer`]s that can be unreachable, and [`AlertBoard`], the bounded record of the alerts that
//! are active now with when they were first and last seen and how often.
//!
//! Times here are the caller's monotonic milliseconds (since boot): alerts can be raised before
//! the wall clock is known, and a clock step must not confuse the rate limits.

/// Most alerts the board holds at once.
pub const MAX_ALERTS: usize = 8;

/// A peer the appliance talks to and can fail to reach.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Peer {
    /// The outgoing smarthost.
    Smarthost,
    /// The backup MX fetched over POP3.
    BackupMx,
    /// The LAN mailbox host that receives delivered mail.
    MailboxHost,
    /// The DynDNS provider.
    DynDns,
    /// The DNS resolver.
    Dns,
    /// The SNTP time server.
    Time,
}

impl Peer {
    /// Every peer, in a fixed order.
    pub const ALL: [Peer; 6] = [
        Peer::Smarthost,
        Peer::BackupMx,
        Peer::MailboxHost,
        Peer::DynDns,
        Peer::Dns,
        Peer::Time,
    ];

    /// Stable machine name (snake_case).
    pub const fn name(self) -> &'static str {
        match self {
            Peer::Smarthost => "smarthost",
            Peer::BackupMx => "backup_mx",
            Peer::MailboxHost => "mailbox_host",
            Peer::DynDns => "dyndns",
            Peer::Dns => "dns",
            Peer::Time => "time",
        }
    }

    /// This peer's bit in a [`PeerSet`] (its position in [`Peer::ALL`]).
    pub const fn bit(self) -> PeerSet {
        1 << match self {
            Peer::Smarthost => 0,
            Peer::BackupMx => 1,
            Peer::MailboxHost => 2,
            Peer::DynDns => 3,
            Peer::Dns => 4,
            Peer::Time => 5,
        }
    }
}

/// A set of [`Peer`]s, one bit each ([`Peer::bit`]).
pub type PeerSet = u8;

/// What went wrong. Each kind is at most once on the board.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AlertKind {
    /// A server that offered STARTTLS before did not offer it (a downgrade on the path?).
    StrippingSuspected,
    /// A peer's TLS certificate or key did not verify.
    CertificateRejected,
    /// The DNS A record is not the public address the appliance sees.
    PublicAddressMismatch,
    /// The domain's MX records do not point to the appliance.
    MxMismatch,
    /// Undeliverable mail was bounced with a non-delivery notice.
    NdnGenerated,
    /// An unlock attempt failed.
    UnlockFailed,
    /// The spool flash is nearly full.
    FlashNearlyFull,
    /// A peer has been unreachable for a long time.
    PeerUnreachable(Peer),
    /// DynDNS updates stopped (the provider refused further updates).
    DynDnsStopped,
    /// The spool's flash was rolled back (old sectors written back, or its persisted counter
    /// mark is older than the spool): tampering.
    SpoolRolledBack,
    /// The check-IP services have not agreed on the public address for several checks.
    CheckIpUnreliable,
    /// The DynDNS update server keeps answering with server-side failures (`911`, `dnserr`, 5xx).
    DynDnsServerFailing,
    /// The appliance's own TLS certificate expires within 21 days (or has expired); one ACME
    /// renews, within 14 days or a quarter of its lifetime.
    CertificateExpiring,
    /// Many failed SMTP AUTH attempts (one address, or all together): password guessing.
    AuthenticationFailures,
    /// The chip could erase its RAM at every reset (option bytes) but is not set to, so the
    /// device refuses to unlock.
    RamWipeNotSet,
    /// The tamper loop (door contact, motion detector) was opened: the device locked itself.
    Tamper,
    /// DNS publishes a TLSA record for `_25._tcp.<mx-host>` and none of the `3 1 1` / `2 1 1`
    /// records names the key in use or its issuer: DANE senders would refuse to deliver.
    TlsaMismatch,
}

/// Number of distinct alert kinds.
pub const ALERT_KIND_COUNT: usize = 22;

impl AlertKind {
    /// Every kind, in the order of [`AlertKind::index`].
    pub const ALL: [AlertKind; ALERT_KIND_COUNT] = [
        AlertKind::StrippingSuspected,
        AlertKind::CertificateRejected,
        AlertKind::PublicAddressMismatch,
        AlertKind::MxMismatch,
        AlertKind::NdnGenerated,
        AlertKind::UnlockFailed,
        AlertKind::FlashNearlyFull,
        AlertKind::PeerUnreachable(Peer::Smarthost),
        AlertKind::PeerUnreachable(Peer::BackupMx),
        AlertKind::PeerUnreachable(Peer::MailboxHost),
        AlertKind::PeerUnreachable(Peer::DynDns),
        AlertKind::PeerUnreachable(Peer::Dns),
        AlertKind::PeerUnreachable(Peer::Time),
        AlertKind::DynDnsStopped,
        AlertKind::SpoolRolledBack,
        AlertKind::CheckIpUnreliable,
        AlertKind::DynDnsServerFailing,
        AlertKind::CertificateExpiring,
        AlertKind::AuthenticationFailures,
        AlertKind::RamWipeNotSet,
        AlertKind::Tamper,
        AlertKind::TlsaMismatch,
    ];

    /// Position in [`AlertKind::ALL`] (for per-kind tables).
    pub const fn index(self) -> usize {
        match self {
            AlertKind::StrippingSuspected => 0,
            AlertKind::CertificateRejected => 1,
            AlertKind::PublicAddressMismatch => 2,
            AlertKind::MxMismatch => 3,
            AlertKind::NdnGenerated => 4,
            AlertKind::UnlockFailed => 5,
            AlertKind::FlashNearlyFull => 6,
            AlertKind::PeerUnreachable(Peer::Smarthost) => 7,
            AlertKind::PeerUnreachable(Peer::BackupMx) => 8,
            AlertKind::PeerUnreachable(Peer::MailboxHost) => 9,
            AlertKind::PeerUnreachable(Peer::DynDns) => 10,
            AlertKind::PeerUnreachable(Peer::Dns) => 11,
            AlertKind::PeerUnreachable(Peer::Time) => 12,
            AlertKind::DynDnsStopped => 13,
            AlertKind::SpoolRolledBack => 14,
            AlertKind::CheckIpUnreliable => 15,
            AlertKind::DynDnsServerFailing => 16,
            AlertKind::CertificateExpiring => 17,
            AlertKind::AuthenticationFailures => 18,
            AlertKind::RamWipeNotSet => 19,
            AlertKind::Tamper => 20,
            AlertKind::TlsaMismatch => 21,
        }
    }

    /// Stable machine name (snake_case), as in `/status.json`; never changes once released.
    pub const fn name(self) -> &'static str {
        match self {
            AlertKind::StrippingSuspected => "stripping_suspected",
            AlertKind::CertificateRejected => "certificate_rejected",
            AlertKind::PublicAddressMismatch => "public_address_mismatch",
            AlertKind::MxMismatch => "mx_mismatch",
            AlertKind::NdnGenerated => "ndn_generated",
            AlertKind::UnlockFailed => "unlock_failed",
            AlertKind::FlashNearlyFull => "flash_nearly_full",
            AlertKind::PeerUnreachable(Peer::Smarthost) => "peer_unreachable_smarthost",
            AlertKind::PeerUnreachable(Peer::BackupMx) => "peer_unreachable_backup_mx",
            AlertKind::PeerUnreachable(Peer::MailboxHost) => "peer_unreachable_mailbox_host",
            AlertKind::PeerUnreachable(Peer::DynDns) => "peer_unreachable_dyndns",
            AlertKind::PeerUnreachable(Peer::Dns) => "peer_unreachable_dns",
            AlertKind::PeerUnreachable(Peer::Time) => "peer_unreachable_time",
            AlertKind::DynDnsStopped => "dyndns_stopped",
            AlertKind::SpoolRolledBack => "spool_rolled_back",
            AlertKind::CheckIpUnreliable => "check_ip_unreliable",
            AlertKind::DynDnsServerFailing => "dyndns_server_failing",
            AlertKind::CertificateExpiring => "certificate_expiring",
            AlertKind::AuthenticationFailures => "authentication_failures",
            AlertKind::RamWipeNotSet => "ram_wipe_not_set",
            AlertKind::Tamper => "tamper",
            AlertKind::TlsaMismatch => "tlsa_mismatch",
        }
    }

    /// The kind with this stable machine name ([`AlertKind::name`]).
    pub fn from_name(name: &str) -> Option<AlertKind> {
        AlertKind::ALL.iter().copied().find(|kind| kind.name() == name)
    }

    /// True for alerts about something that happened (an event), which no later success
    /// disproves: only the owner ends them (`homemx alert ack KIND`). Every other kind is a
    /// condition that ends when its cause is gone.
    pub const fn needs_acknowledgement(self) -> bool {
        matches!(self, AlertKind::NdnGenerated | AlertKind::UnlockFailed | AlertKind::AuthenticationFailures | AlertKind::Tamper)
    }

    /// Short human title (ASCII, fits a mail subject).
    pub const fn title(self) -> &'static str {
        match self {
            AlertKind::StrippingSuspected => "STARTTLS stripping suspected",
            AlertKind::CertificateRejected => "TLS certificate rejected",
            AlertKind::PublicAddressMismatch => "A record does not match the public IP",
            AlertKind::MxMismatch => "MX does not point here",
            AlertKind::NdnGenerated => "Mail bounced (NDN sent)",
            AlertKind::UnlockFailed => "Unlock failed",
            AlertKind::FlashNearlyFull => "Flash nearly full",
            AlertKind::PeerUnreachable(Peer::Smarthost) => "Smarthost unreachable",
            AlertKind::PeerUnreachable(Peer::BackupMx) => "Backup MX unreachable",
            AlertKind::PeerUnreachable(Peer::MailboxHost) => "Mailbox host unreachable",
            AlertKind::PeerUnreachable(Peer::DynDns) => "DynDNS provider unreachable",
            AlertKind::PeerUnreachable(Peer::Dns) => "DNS resolver unreachable",
            AlertKind::PeerUnreachable(Peer::Time) => "Time server unreachable",
            AlertKind::DynDnsStopped => "DynDNS updates stopped",
            AlertKind::SpoolRolledBack => "Spool flash rolled back",
            AlertKind::CheckIpUnreliable => "Check-IP sources unreliable",
            AlertKind::DynDnsServerFailing => "DynDNS update server failing",
            AlertKind::CertificateExpiring => "Own TLS certificate expires soon",
            AlertKind::AuthenticationFailures => "Repeated failed logins (SMTP AUTH)",
            AlertKind::RamWipeNotSet => "RAM not erased at reset",
            AlertKind::Tamper => "Tamper loop opened (device locked)",
            AlertKind::TlsaMismatch => "TLSA record mismatch",
        }
    }

    /// One sentence for the owner: what it means and what to do (ASCII).
    pub const fn advice(self) -> &'static str {
        match self {
            AlertKind::StrippingSuspected => {
                "A server that offered STARTTLS before did not offer it; someone on the path may be downgrading the connection. Mail to it waits rather than going out in clear."
            }
            AlertKind::CertificateRejected => {
                "A peer's certificate or pinned key did not verify, so no mail or password was sent to it. Check the peer's certificate and the configured anchor or pin."
            }
            AlertKind::PublicAddressMismatch => {
                "The domain's A record is not the address the internet sees; incoming mail may go elsewhere. Check the DynDNS settings."
            }
            AlertKind::MxMismatch => {
                "The domain's MX records do not name this appliance; senders deliver elsewhere. Check the DNS zone."
            }
            AlertKind::NdnGenerated => {
                "Mail that could not be delivered was returned to its sender. The log says which delivery failed."
            }
            AlertKind::UnlockFailed => {
                "Someone tried to unlock the appliance with a wrong passphrase. If that was not you, check who is on the LAN."
            }
            AlertKind::FlashNearlyFull => {
                "The spool is nearly full; new mail will be refused for now (senders retry). Check that delivery works."
            }
            AlertKind::PeerUnreachable(Peer::Smarthost) => {
                "Outgoing mail waits in the queue until the smarthost answers again. Check the internet link and the smarthost settings."
            }
            AlertKind::PeerUnreachable(Peer::BackupMx) => {
                "Mail held by the backup MX is not fetched. Check the POP3 settings and the provider."
            }
            AlertKind::PeerUnreachable(Peer::MailboxHost) => {
                "Received mail waits in the spool until the LAN mailbox host answers again. Check that it is running."
            }
            AlertKind::PeerUnreachable(Peer::DynDns) => {
                "The public address cannot be published; if it changes, incoming mail goes astray. Check the link and the provider."
            }
            AlertKind::PeerUnreachable(Peer::Dns) => {
                "Names cannot be looked up, so mail cannot go out. Check the DNS resolver setting and the link."
            }
            AlertKind::PeerUnreachable(Peer::Time) => {
                "The clock cannot be set or checked; certificates cannot be verified without it. Check the SNTP server setting."
            }
            AlertKind::DynDnsStopped => {
                "The DynDNS provider refused further updates (bad login, abuse block or unknown host); the appliance stopped asking. Fix the settings to resume."
            }
            AlertKind::SpoolRolledBack => {
                "Old spool data was written back to flash (tampering), so unlock is refused. Check the device, then reset it."
            }
            AlertKind::CheckIpUnreliable => {
                "The check-IP services gave no agreeing address for a while (one is down or lying); the address is not updated."
            }
            AlertKind::DynDnsServerFailing => {
                "The DynDNS server keeps failing (911, dnserr, 5xx); the address may be out of date. It retries by itself."
            }
            AlertKind::CertificateExpiring => {
                "Certificate ends soon. ACME: see its card, homemx tls renew. Else: homemx tls csr, tls install."
            }
            AlertKind::AuthenticationFailures => {
                "Wrong passwords keep coming on the submission ports; answers slow down and the address is blocked. The log names it."
            }
            AlertKind::RamWipeNotSet => {
                "The chip is not set to erase its RAM at reset, so unlock is refused. Run cargo xtask provision-board, then reset."
            }
            AlertKind::Tamper => {
                "The case or door was opened; the keys were wiped and mail waits. Check the device, close the loop, unlock, then ack it."
            }
            AlertKind::TlsaMismatch => {
                "The TLSA (DANE) record in DNS does not name the key in use: DANE senders refuse. Publish homemx tls tlsa."
            }
        }
    }
}

/// One active alert.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Alert {
    /// What it is.
    pub kind: AlertKind,
    /// Monotonic milliseconds when it was first raised (since it was last cleared).
    pub first_seen_ms: u64,
    /// Monotonic milliseconds when it was last raised.
    pub last_seen_ms: u64,
    /// How often it was raised (saturating).
    pub count: u32,
    /// The peers whose trouble raised it; empty when it is not tied to a peer (or the peer is
    /// unknown, as for an alert restored from an older record).
    pub peers: PeerSet,
}

/// What [`AlertBoard::raise`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Raised {
    /// The kind was not active; it is now.
    New,
    /// The kind was active; its count and last-seen time went up.
    Again,
    /// The board was full: the alert seen longest ago was dropped to make room.
    Replaced(AlertKind),
}

/// The active alerts, at most [`MAX_ALERTS`], in the order they were first raised.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AlertBoard {
    alerts: heapless::Vec<Alert, MAX_ALERTS>,
    dropped: u32,
}

impl AlertBoard {
    /// An empty board.
    pub const fn new() -> AlertBoard {
        AlertBoard {
            alerts: heapless::Vec::new(),
            dropped: 0,
        }
    }

    /// Records that `kind` happened at `now_ms` (monotonic milliseconds).
    ///
    /// When the board is full, the alert whose last sighting is oldest makes room (a stale
    /// alert says least about now) and [`AlertBoard::dropped`] goes up.
    pub fn raise(&mut self, kind: AlertKind, now_ms: u64) -> Raised {
        self.raise_from(kind, 0, now_ms)
    }

    /// Records that `kind` happened at `now_ms` because of the peers in `peers` (see
    /// [`AlertBoard::clear_for`]). A peer added to an active alert counts as [`Raised::New`]
    /// (the set to persist changed).
    pub fn raise_from(&mut self, kind: AlertKind, peers: PeerSet, now_ms: u64) -> Raised {
        if let Some(alert) = self.alerts.iter_mut().find(|alert| alert.kind == kind) {
            alert.last_seen_ms = alert.last_seen_ms.max(now_ms);
            alert.count = alert.count.saturating_add(1);
            if alert.peers | peers != alert.peers {
                alert.peers |= peers;
                return Raised::New;
            }
            return Raised::Again;
        }
        let fresh = Alert {
            kind,
            first_seen_ms: now_ms,
            last_seen_ms: now_ms,
            count: 1,
            peers,
        };
        if self.alerts.push(fresh).is_ok() {
            return Raised::New;
        }
        let stalest = self
            .alerts
            .iter()
            .enumerate()
            .min_by_key(|(_, alert)| alert.last_seen_ms)
            .map(|(index, _)| index)
            .unwrap_or(0);
        let replaced = self.alerts.remove(stalest);
        let _ = self.alerts.push(fresh);
        self.dropped = self.dropped.saturating_add(1);
        Raised::Replaced(replaced.kind)
    }

    /// Clears `kind` (the condition ended); returns whether it was active.
    pub fn clear(&mut self, kind: AlertKind) -> bool {
        match self.alerts.iter().position(|alert| alert.kind == kind) {
            Some(index) => {
                self.alerts.remove(index);
                true
            }
            None => false,
        }
    }

    /// A verified success with `peer` disproves its part of `kind`: `peer` leaves the alert's
    /// peers, and the alert ends when no peer is left. An alert with no peer recorded (unknown
    /// cause) ends at any such success. Returns whether the board changed.
    pub fn clear_for(&mut self, kind: AlertKind, peer: Peer) -> bool {
        let Some(index) = self.alerts.iter().position(|alert| alert.kind == kind) else {
            return false;
        };
        let alert = &mut self.alerts[index];
        if alert.peers != 0 && alert.peers & peer.bit() == 0 {
            return false;
        }
        alert.peers &= !peer.bit();
        if alert.peers == 0 {
            self.alerts.remove(index);
        }
        true
    }

    /// The active alerts, oldest first raise first.
    pub fn alerts(&self) -> &[Alert] {
        &self.alerts
    }

    /// The active alert of `kind`, if any.
    pub fn get(&self, kind: AlertKind) -> Option<&Alert> {
        self.alerts.iter().find(|alert| alert.kind == kind)
    }

    /// Number of active alerts.
    pub fn len(&self) -> usize {
        self.alerts.len()
    }

    /// Whether no alert is active.
    pub fn is_empty(&self) -> bool {
        self.alerts.is_empty()
    }

    /// How many alerts were dropped because the board was full (since boot, saturating).
    pub fn dropped(&self) -> u32 {
        self.dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn kinds_are_indexed_named_and_described_consistently() {
        for (position, kind) in AlertKind::ALL.iter().enumerate() {
            assert_eq!(kind.index(), position);
            let name = kind.name();
            assert!(
                !name.is_empty() && name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{name}"
            );
            assert!(kind.title().is_ascii() && kind.title().len() <= 60);
            assert!(kind.advice().is_ascii() && kind.advice().len() <= 200);
        }
        let mut names: std::vec::Vec<_> = AlertKind::ALL.iter().map(|kind| kind.name()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), ALERT_KIND_COUNT);
        for peer in Peer::ALL {
            assert!(AlertKind::PeerUnreachable(peer)
                .name()
                .ends_with(peer.name()));
        }
    }

    #[test]
    fn raise_counts_and_clear_removes() {
        let mut board = AlertBoard::new();
        assert_eq!(board.raise(AlertKind::UnlockFailed, 1_000), Raised::New);
        assert_eq!(board.raise(AlertKind::UnlockFailed, 5_000), Raised::Again);
        let alert = *board.get(AlertKind::UnlockFailed).unwrap();
        assert_eq!(
            (alert.first_seen_ms, alert.last_seen_ms, alert.count),
            (1_000, 5_000, 2)
        );
        assert!(board.clear(AlertKind::UnlockFailed));
        assert!(!board.clear(AlertKind::UnlockFailed));
        assert!(board.is_empty());
        assert_eq!(board.raise(AlertKind::UnlockFailed, 9_000), Raised::New);
        assert_eq!(
            board.get(AlertKind::UnlockFailed).unwrap().first_seen_ms,
            9_000
        );
    }

    #[test]
    fn a_full_board_drops_the_stalest() {
        let mut board = AlertBoard::new();
        for (step, kind) in AlertKind::ALL.iter().take(MAX_ALERTS).enumerate() {
            board.raise(*kind, step as u64 * 10);
        }
        board.raise(AlertKind::ALL[0], 1_000); // refreshed: no longer the stalest
        assert_eq!(
            board.raise(AlertKind::DynDnsStopped, 2_000),
            Raised::Replaced(AlertKind::ALL[1])
        );
        assert_eq!(board.len(), MAX_ALERTS);
        assert_eq!(board.dropped(), 1);
        assert!(board.get(AlertKind::ALL[1]).is_none());
        assert!(board.get(AlertKind::DynDnsStopped).is_some());
    }

    #[test]
    fn a_success_clears_only_that_peers_part() {
        let mut board = AlertBoard::new();
        board.raise_from(AlertKind::StrippingSuspected, Peer::Smarthost.bit(), 1_000);
        assert_eq!(
            board.raise_from(AlertKind::StrippingSuspected, Peer::BackupMx.bit(), 2_000),
            Raised::New,
            "a new peer changes what is persisted"
        );
        assert_eq!(
            board.raise_from(AlertKind::StrippingSuspected, Peer::BackupMx.bit(), 3_000),
            Raised::Again
        );
        assert!(!board.clear_for(AlertKind::StrippingSuspected, Peer::DynDns), "not its peer");
        assert!(board.clear_for(AlertKind::StrippingSuspected, Peer::Smarthost));
        let alert = board.get(AlertKind::StrippingSuspected).expect("the backup MX still strips");
        assert_eq!((alert.peers, alert.first_seen_ms, alert.count), (Peer::BackupMx.bit(), 1_000, 3));
        assert!(board.clear_for(AlertKind::StrippingSuspected, Peer::BackupMx));
        assert!(board.is_empty());
        // An alert whose peer is unknown (restored from an older record) ends at any success.
        board.raise(AlertKind::CertificateRejected, 4_000);
        assert!(board.clear_for(AlertKind::CertificateRejected, Peer::DynDns));
        assert!(board.is_empty());
        assert!(!board.clear_for(AlertKind::CertificateRejected, Peer::DynDns));
    }

    #[test]
    fn only_event_alerts_need_acknowledgement_and_names_round_trip() {
        for kind in AlertKind::ALL {
            assert_eq!(AlertKind::from_name(kind.name()), Some(kind));
        }
        assert_eq!(AlertKind::from_name("no_such_alert"), None);
        let acknowledged: std::vec::Vec<_> =
            AlertKind::ALL.iter().filter(|kind| kind.needs_acknowledgement()).collect();
        assert_eq!(acknowledged, [&AlertKind::NdnGenerated, &AlertKind::UnlockFailed, &AlertKind::AuthenticationFailures, &AlertKind::Tamper]);
    }

    fn kind() -> impl Strategy<Value = AlertKind> {
        (0..ALERT_KIND_COUNT).prop_map(|index| AlertKind::ALL[index])
    }

    proptest! {
        #[test]
        fn board_stays_bounded_and_unique(operations in proptest::collection::vec((any::<bool>(), kind(), 0u64..1_000_000), 0..200)) {
            let mut board = AlertBoard::new();
            for (raise, kind, now) in operations {
                if raise {
                    board.raise(kind, now);
                    prop_assert!(board.get(kind).is_some());
                } else {
                    board.clear(kind);
                    prop_assert!(board.get(kind).is_none());
                }
                prop_assert!(board.len() <= MAX_ALERTS);
                for (index, alert) in board.alerts().iter().enumerate() {
                    prop_assert!(alert.count >= 1);
                    prop_assert!(alert.first_seen_ms <= alert.last_seen_ms);
                    prop_assert!(board.alerts()[index + 1..].iter().all(|other| other.kind != alert.kind));
                }
            }
        }
    }
}
