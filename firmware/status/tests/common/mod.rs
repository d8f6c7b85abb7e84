//! Snapshots shared by the tests and the sample example: empty, locked, busy, every alert
//! kind, hostile names, and the largest possible.
#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use homemx_status::snapshot::MAX_HOST_NAME_LENGTH;
use homemx_status::{
    acme_error, host_name, version, AcmeRenewal, AlertBoard, DeviceCertificate, AlertKind, DynDns, DynDnsAnswer, FetchResult, LockState,
    MailFlow, MailboxFailure, MailboxReach, MxRecord, Pop3Fetch, SmarthostTls, SpoolSpace,
    StatusSnapshot, System, TlsVersion, Verification, MAX_ALERTS,
};

/// 2026-05-14 09:41:20 UTC.
pub const NOW: u64 = 1_778_751_680;
const MINUTE: u64 = 60;
const HOUR: u64 = 3600;
const DAY: u64 = 86_400;

/// Just booted, locked, nothing known.
pub fn locked() -> StatusSnapshot {
    StatusSnapshot {
        lock: LockState::Locked,
        system: System {
            uptime_ms: 42_000,
            firmware_version: version("0.1.0"),
            ..System::default()
        },
        ..StatusSnapshot::default()
    }
}

/// Nothing at all (all defaults, unprovisioned).
pub fn empty() -> StatusSnapshot {
    StatusSnapshot {
        lock: LockState::Unprovisioned,
        ..StatusSnapshot::default()
    }
}

/// A day in the life: every card filled, no alerts.
pub fn quiet() -> StatusSnapshot {
    let uptime_ms = (3 * DAY + 4 * HOUR + 12 * MINUTE) * 1000;
    let mut mx = heapless::Vec::new();
    let _ = mx.push(MxRecord {
        preference: 10,
        host: host_name("mx.familie-beispiel.de"),
    });
    let _ = mx.push(MxRecord {
        preference: 20,
        host: host_name("backup-mx.mailbox.example"),
    });
    StatusSnapshot {
        now_unix: Some(NOW),
        lock: LockState::Unlocked,
        mail: MailFlow {
            received: 1284,
            delivered: 1279,
            queued: 5,
            deferred: 2,
            bounced: 1,
            oldest_queued_age_seconds: Some(2 * HOUR + 14 * MINUTE),
        },
        smarthost: SmarthostTls {
            host: Some(host_name("smtp.mailbox.example")),
            last_success_unix: Some(NOW - 4 * MINUTE),
            last_failure_unix: Some(NOW - 2 * DAY - 3 * HOUR),
            tls_version: Some(TlsVersion::Tls13),
            verified_by: Some(Verification::PinnedKey),
        },
        pop3: Pop3Fetch {
            host: Some(host_name("pop.backup-mx.example")),
            last_attempt_unix: Some(NOW - 3 * MINUTE),
            last_result: Some(FetchResult::Ok),
            messages_fetched: Some(2),
            last_success_unix: Some(NOW - 3 * MINUTE),
        },
        dyndns: DynDns {
            host: Some(host_name("mx.familie-beispiel.de")),
            public_ip: Some(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 47))),
            a_record: Some(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 47))),
            mx,
            last_update_unix: Some(NOW - 6 * HOUR - 20 * MINUTE),
            last_answer: Some(DynDnsAnswer::NoChange),
        },
        spool: Some(SpoolSpace {
            free_bytes: 1_536 * 1024,
            total_bytes: 2 * 1024 * 1024,
        }),
        mailbox: MailboxReach {
            configured: true,
            last_success_ms: Some(uptime_ms - 40_000),
            failing_since_ms: None,
            failure: None,
        },
        alerts: AlertBoard::new(),
        system: System {
            uptime_ms,
            firmware_version: version("0.1.0"),
            ram_high_water_bytes: Some(141 * 1024 + 59 * 1024),
            ram_size_bytes: Some(256 * 1024),
            tamper_loop: homemx_status::TamperLoop::Closed,
        },
        certificate: Some(DeviceCertificate {
            subject: Some(host_name("mx.familie-beispiel.de")),
            issuer: Some(host_name("R11")),
            self_signed: false,
            not_after_unix: NOW + 61 * DAY,
        }),
        acme: Some(AcmeRenewal {
            last_attempt_unix: Some(NOW - 29 * DAY),
            last_succeeded: Some(true),
            last_error: None,
            next_attempt_unix: Some(NOW + 27 * DAY + 5 * HOUR),
            certificate_expiry_unix: Some(NOW + 61 * DAY),
            failures: 0,
        }),
    }
}

/// [`quiet`] with the last two ACME renewals failed: the CA could not reach port 80.
pub fn acme_failing() -> StatusSnapshot {
    let mut snapshot = quiet();
    snapshot.acme = Some(AcmeRenewal {
        last_attempt_unix: Some(NOW - 7 * MINUTE),
        last_succeeded: Some(false),
        last_error: Some(acme_error(
            "the challenge failed: urn:ietf:params:acme:error:connection: Connection refused <port 80>",
        )),
        next_attempt_unix: Some(NOW + 13 * MINUTE),
        certificate_expiry_unix: Some(NOW + 12 * DAY),
        failures: 2,
    });
    snapshot
}

/// The sample: [`quiet`] with three alerts, one of them repeated.
pub fn busy() -> StatusSnapshot {
    let mut snapshot = quiet();
    let now_ms = snapshot.system.uptime_ms;
    let board = &mut snapshot.alerts;
    board.raise(AlertKind::UnlockFailed, now_ms - (2 * DAY) * 1000);
    board.raise(AlertKind::UnlockFailed, now_ms - (2 * DAY - 10) * 1000);
    board.raise(AlertKind::UnlockFailed, now_ms - (5 * HOUR) * 1000);
    board.raise(
        AlertKind::StrippingSuspected,
        now_ms - (3 * HOUR + 20 * MINUTE) * 1000,
    );
    board.raise(AlertKind::StrippingSuspected, now_ms - (18 * MINUTE) * 1000);
    board.raise(AlertKind::NdnGenerated, now_ms - (41 * MINUTE) * 1000);
    snapshot.dyndns.a_record = Some(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7)));
    snapshot.dyndns.last_answer = Some(DynDnsAnswer::Good);
    snapshot
}

/// Every kind raised once (the board keeps the last [`MAX_ALERTS`]).
pub fn every_alert() -> StatusSnapshot {
    let mut snapshot = busy();
    snapshot.alerts = AlertBoard::new();
    for (step, kind) in AlertKind::ALL.iter().enumerate() {
        snapshot.alerts.raise(*kind, step as u64 * 1000);
    }
    snapshot.system.uptime_ms = 100_000;
    snapshot
}

/// Boards holding each set of kinds in `kinds` (raised in order at 1 s steps).
pub fn board_of(kinds: &[AlertKind]) -> AlertBoard {
    let mut board = AlertBoard::new();
    for (step, kind) in kinds.iter().enumerate() {
        board.raise(*kind, step as u64 * 1000);
    }
    board
}

/// Host names chosen to break out of HTML and JSON.
pub fn hostile() -> StatusSnapshot {
    let mut snapshot = busy();
    snapshot.smarthost.host = Some(host_name("<script>alert(1)</script>"));
    snapshot.pop3.host = Some(host_name("\"><img src=x onerror=alert(1)>"));
    snapshot.dyndns.host = Some(host_name("a&b'c\"d<e>\\f\u{0}\n\u{2028}"));
    snapshot.dyndns.mx.clear();
    let _ = snapshot.dyndns.mx.push(MxRecord {
        preference: 0,
        host: host_name("</dd></dl><style>*{}</style>"),
    });
    snapshot.system.firmware_version = version("1.0\"</title><script>");
    snapshot.acme = acme_failing().acme;
    if let Some(acme) = &mut snapshot.acme {
        acme.last_error = Some(acme_error("urn:ietf:params:acme:error:malformed: </dd><script>alert(1)</script>\"\\\u{0}"));
    }
    snapshot
}

/// Every field at its widest: numbers at their maximum, every string at its length limit made
/// of `fill` (choose the character that escapes longest), four MX records, eight alerts with
/// repeat counts, IPv6 addresses.
pub fn largest(fill: char, kinds: &[AlertKind]) -> StatusSnapshot {
    let name = || {
        let mut text = String::new();
        while text.len() + fill.len_utf8() <= MAX_HOST_NAME_LENGTH {
            text.push(fill);
        }
        host_name(&text)
    };
    let wide = IpAddr::V6(Ipv6Addr::new(
        0xffff, 0xfffe, 0xfffd, 0xfffc, 0xfffb, 0xfffa, 0xfff9, 0xfff8,
    ));
    let mut mx = heapless::Vec::new();
    for _ in 0..4 {
        let _ = mx.push(MxRecord {
            preference: u16::MAX,
            host: name(),
        });
    }
    // One extra kind raised first is evicted by the eighth: the "dropped" note shows too.
    // (Counts are at most 257 here; a count of u32::MAX adds 7 bytes per alert, which the
    // size tests leave room for.)
    let mut board = AlertBoard::new();
    if let Some(extra) = AlertKind::ALL.iter().find(|kind| !kinds.contains(kind)) {
        board.raise(*extra, 0);
    }
    for kind in kinds.iter().take(MAX_ALERTS) {
        board.raise(*kind, 1);
        board.raise(*kind, 2);
    }
    for _ in 0..u8::MAX {
        board.raise(kinds[0], 2);
    }
    let mut version_text = String::new();
    while version_text.len() + fill.len_utf8() <= homemx_status::snapshot::MAX_VERSION_LENGTH {
        version_text.push(fill);
    }
    StatusSnapshot {
        now_unix: Some(u64::MAX),
        lock: LockState::Locked,
        mail: MailFlow {
            received: u32::MAX,
            delivered: u32::MAX,
            queued: u32::MAX,
            deferred: u32::MAX,
            bounced: u32::MAX,
            oldest_queued_age_seconds: Some(u64::MAX),
        },
        smarthost: SmarthostTls {
            host: Some(name()),
            last_success_unix: Some(u64::MAX - 1),
            last_failure_unix: Some(u64::MAX - 1),
            tls_version: Some(TlsVersion::Tls12),
            verified_by: Some(Verification::PinnedKey),
        },
        pop3: Pop3Fetch {
            host: Some(name()),
            last_attempt_unix: Some(u64::MAX - 1),
            last_result: Some(FetchResult::ConnectFailed),
            messages_fetched: Some(u32::MAX),
            last_success_unix: Some(u64::MAX - 1),
        },
        dyndns: DynDns {
            host: Some(name()),
            public_ip: Some(wide),
            a_record: Some(IpAddr::V6(Ipv6Addr::new(
                0xfff7, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff,
            ))),
            mx,
            last_update_unix: Some(u64::MAX - 1),
            last_answer: Some(DynDnsAnswer::Unrecognized),
        },
        spool: Some(SpoolSpace {
            free_bytes: u64::MAX - 1,
            total_bytes: u64::MAX,
        }),
        mailbox: MailboxReach {
            configured: true,
            last_success_ms: Some(u64::MAX - 1),
            failing_since_ms: Some(u64::MAX - 1),
            failure: Some(MailboxFailure::Refusing),
        },
        alerts: board,
        system: System {
            uptime_ms: u64::MAX,
            firmware_version: version(&version_text),
            ram_high_water_bytes: Some(u32::MAX),
            ram_size_bytes: Some(u32::MAX),
            tamper_loop: homemx_status::TamperLoop::NotFitted,
        },
        certificate: Some(DeviceCertificate { subject: Some(name()), issuer: Some(name()), self_signed: false, not_after_unix: u64::MAX }),
        acme: Some(AcmeRenewal {
            last_attempt_unix: Some(u64::MAX - 1),
            last_succeeded: Some(false),
            last_error: Some(acme_error(&String::from(fill).repeat(homemx_status::snapshot::MAX_ACME_ERROR_LENGTH))),
            next_attempt_unix: Some(u64::MAX - 1),
            certificate_expiry_unix: Some(u64::MAX - 1),
            failures: u32::MAX,
        }),
    }
}

/// Every combination of `k` kinds out of all of them, in order.
pub fn combinations(k: usize) -> Vec<Vec<AlertKind>> {
    fn extend(start: usize, k: usize, current: &mut Vec<AlertKind>, out: &mut Vec<Vec<AlertKind>>) {
        if current.len() == k {
            out.push(current.clone());
            return;
        }
        for index in start..AlertKind::ALL.len() {
            current.push(AlertKind::ALL[index]);
            extend(index + 1, k, current, out);
            current.pop();
        }
    }
    let mut out = Vec::new();
    extend(0, k, &mut Vec::new(), &mut out);
    out
}
