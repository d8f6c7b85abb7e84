//! Every message round-trips through postcard, and fixed encodings (golden bytes) pin the format.

mod support;

use heapless::{String, Vec};
use homemx_wire::client::{signed_frame_for, ClientSession};
use homemx_wire::config::*;
use homemx_wire::frame::encode_frame;
use homemx_wire::message::*;
use homemx_wire::secret::Secret;
use homemx_wire::MAX_ENCODED_FRAME;
use support::*;

fn text<const N: usize>(value: &str) -> String<N> {
    String::try_from(value).unwrap()
}

fn every_config_item() -> std::vec::Vec<ConfigItem> {
    vec![
        ConfigItem::Domain(text("example.org")),
        ConfigItem::Recipient(text("alice@example.org")),
        ConfigItem::LanPrefix(Ipv4Prefix { address: [192, 168, 1, 0], length: 24 }),
        ConfigItem::LanMailbox(LanMailbox { address: [192, 168, 1, 10], port: 24, protocol: DeliveryProtocol::Lmtp }),
        ConfigItem::Smarthost(Smarthost {
            host: text("smtp.provider.example"),
            port: 465,
            tls: TlsMode::Implicit,
            user_name: text("alice"),
            min_tls: MinTls::Tls13,
        }),
        ConfigItem::BackupMx(BackupMx {
            host: text("pop.provider.example"),
            port: 995,
            tls: TlsMode::Implicit,
            user_name: text("backup"),
            poll_interval_seconds: 300,
            min_tls: MinTls::Tls12,
        }),
        ConfigItem::DynDns(DynDns {
            server: text("dyn.provider.example"),
            host_name: text("home.dyn.example"),
            user_name: text("alice"),
            check_interval_seconds: 600,
            min_tls: MinTls::Tls12,
        }),
        ConfigItem::Limits(Limits {
            max_message_bytes: 25 << 20,
            max_recipients: 50,
            messages_per_client_per_hour: 100,
            spool_reserve_bytes: 1 << 20,
        }),
        ConfigItem::StatusPage(StatusPage { enabled: true, port: 80, host_name: text("homemx.lan") }),
        // The longest user item: a 128-byte name, a record at the most iterations, a quota.
        ConfigItem::User(MailUser {
            name: text(&format!("{}@{}.example", "u".repeat(64), "d".repeat(55))),
            password: PasswordRecord { algorithm: 1, iterations: homemx_credentials::MAX_ITERATIONS, salt: [0xff; 16], hash: [0xfe; 32] },
            messages_per_hour: Some(u16::MAX),
        }),
        ConfigItem::Submission(Submission { requires_auth: true, lan_relay_without_auth: true }),
    ]
}

fn every_command() -> std::vec::Vec<Command> {
    let mut commands = vec![
        Command::Hello,
        Command::Enrol { admin_key: [1; 32] },
        Command::Status,
        Command::Unlock { passphrase: Secret::new(b"correct horse").unwrap() },
        Command::Lock,
        Command::ConfigBegin,
        Command::ConfigCommit { item_count: 9 },
        Command::ConfigGet { index: 3 },
        Command::SetCredential { credential: Credential::DynDnsPassword, secret: Secret::new(b"s3cret").unwrap() },
        Command::SetTrustAnchor(TrustAnchorUpdate {
            service: TlsService::Smarthost,
            anchor: TrustAnchor::SpkiSha256([0xab; 32]),
        }),
        Command::SetTrustAnchor(TrustAnchorUpdate {
            service: TlsService::BackupMx,
            anchor: TrustAnchor::CertificateChunk {
                total_length: 1400,
                offset: 512,
                bytes: Vec::from_slice(&[0x30; MAX_CERTIFICATE_CHUNK]).unwrap(),
            },
        }),
        Command::Logs { start: 100, max_entries: 6 },
        Command::RotateAdminKey { new_key: [2; 32], proof: SignatureBytes { r: [3; 32], s: [4; 32] } },
        Command::FactoryReset,
        Command::FetchNow,
        Command::FlushQueue,
        Command::DynDnsResume,
        Command::AcknowledgeAlert { kind: text(&"k".repeat(MAX_ALERT_NAME)) },
        Command::TlsCertificateRequest,
        Command::TlsInstall(ChainChunk {
            total_length: MAX_CHAIN_PEM as u16,
            offset: (MAX_CHAIN_PEM - MAX_CHAIN_CHUNK) as u16,
            bytes: Vec::from_slice(&[b'A'; MAX_CHAIN_CHUNK]).unwrap(),
        }),
        Command::TlsStatus,
    ];
    commands.extend(every_config_item().into_iter().map(Command::ConfigPut));
    commands
}

fn every_response() -> std::vec::Vec<Response> {
    let mut responses = vec![
        Response::DeviceInfo(DeviceInfo {
            protocol_version: homemx_wire::PROTOCOL_VERSION,
            identity: IDENTITY,
            firmware_version: text("0.1.0"),
            board: text("mps2-an386"),
            state: DeviceState::Locked,
        }),
        Response::Done,
        Response::Status(Status {
            verdict: text("mailbox_unreachable"),
            headline: text("Mailbox host unreachable since 14:02 UTC"),
            state: DeviceState::Unlocked,
            uptime_seconds: 3600,
            failed_unlocks: 2,
            unlock_retry_after_seconds: 8,
            configured: true,
            credentials: CredentialsPresent { smarthost_password: true, backup_mx_password: false, dyndns_password: true },
            public_address: Some([203, 0, 113, 7]),
            dyndns_host_name: Some(text("home.dyn.example")),
            spool_messages: 3,
            spool_free_bytes: 7 << 20,
            spool_total_bytes: 8 << 20,
            deferred: 1,
            oldest_queued_age_seconds: Some(600),
            received: 12,
            delivered: 9,
            bounced: 1,
            alerts: Vec::from_slice(&[AlertReport {
                kind: text("stripping_suspected"),
                count: 3,
                first_seen_age_seconds: 900,
                first_seen_unix: Some(1_780_000_000),
                last_seen_age_seconds: 60,
                needs_acknowledgement: false,
            }])
            .unwrap(),
            alerts_dropped: 0,
        }),
        // The largest status: the longest host name and a full board of the longest names.
        Response::Status(Status {
            verdict: text(&"v".repeat(MAX_VERDICT_NAME)),
            headline: text(&"·".repeat(MAX_HEADLINE / 2)),
            state: DeviceState::Unlocked,
            uptime_seconds: u32::MAX,
            failed_unlocks: u16::MAX,
            unlock_retry_after_seconds: u32::MAX,
            configured: true,
            credentials: CredentialsPresent { smarthost_password: true, backup_mx_password: true, dyndns_password: true },
            public_address: Some([203, 0, 113, 7]),
            dyndns_host_name: Some(text(&"h".repeat(HostName::new().capacity()))),
            spool_messages: u32::MAX,
            spool_free_bytes: u32::MAX,
            spool_total_bytes: u32::MAX,
            deferred: u32::MAX,
            oldest_queued_age_seconds: Some(u32::MAX),
            received: u32::MAX,
            delivered: u32::MAX,
            bounced: u32::MAX,
            alerts: (0..MAX_ALERTS)
                .map(|_| AlertReport {
                    kind: text(&"k".repeat(MAX_ALERT_NAME)),
                    count: u32::MAX,
                    first_seen_age_seconds: u32::MAX,
                    first_seen_unix: Some(u64::MAX),
                    last_seen_age_seconds: u32::MAX,
                    needs_acknowledgement: true,
                })
                .collect(),
            alerts_dropped: u32::MAX,
        }),
        Response::Logs(LogPage {
            entries: (0..MAX_LOG_ENTRIES as u32)
                .map(|sequence| LogEntry {
                    sequence,
                    uptime_seconds: 7,
                    level: LogLevel::Alarm,
                    text: text(&"x".repeat(MAX_LOG_TEXT)),
                })
                .collect(),
            next: 6,
            more: true,
        }),
        Response::Certificate(Some(CertificateReport {
            subject: Some(text(&"s".repeat(MAX_CERTIFICATE_NAME))),
            issuer: Some(text(&"i".repeat(MAX_CERTIFICATE_NAME))),
            self_signed: true,
            not_after_unix: u64::MAX,
            days_until_expiry: Some(i32::MIN),
            host_name: text(&"h".repeat(homemx_wire::validate::MAX_HOST_NAME_LENGTH)),
            key_sha256: [0xFF; 32],
            issuer_key_sha256: Some([0xFF; 32]),
        })),
        Response::Certificate(None),
        Response::CertificateRequest(Vec::from_slice(&[0xa5; MAX_CERTIFICATE_REQUEST]).unwrap()),
        Response::Error(ErrorCode::CertificateRefused(CertificateRefusal::Expired { index: 255, not_after: u64::MAX })),
        Response::Error(ErrorCode::TimeUnknown),
        Response::Error(ErrorCode::RateLimited { retry_after_seconds: 30 }),
        Response::Error(ErrorCode::UnsupportedVersion { device_version: 1 }),
    ];
    for (index, item) in every_config_item().into_iter().enumerate() {
        responses.push(Response::ConfigItem { index: index as u16, total: 9, item });
    }
    responses
}

#[test]
fn every_command_round_trips_and_fits_a_signed_frame() {
    let key = admin_key();
    for command in every_command() {
        let mut body = [0u8; 1024];
        let encoded = postcard::to_slice(&command, &mut body).unwrap();
        let decoded: Command = postcard::from_bytes(encoded).unwrap();
        assert_eq!(decoded, command);
        let mut frame = [0; MAX_ENCODED_FRAME];
        signed_frame_for(&key, &IDENTITY, &[5; 32], &command, &mut frame)
            .unwrap_or_else(|error| panic!("{} does not fit a frame: {error:?}", command.name()));
    }
}

#[test]
fn every_response_round_trips_through_a_frame() {
    for body in every_response() {
        let envelope = ResponseEnvelope { challenge: [6; 32], body: body.clone() };
        let mut payload = [0u8; 1024];
        payload[0] = homemx_wire::PROTOCOL_VERSION;
        let length = postcard::to_slice(&envelope, &mut payload[1..1020]).unwrap().len() + 1;
        let mut frame = [0; MAX_ENCODED_FRAME];
        let frame_length = encode_frame(&payload[..length], &mut frame).unwrap();
        let mut client = ClientSession::new(admin_key());
        assert_eq!(accept(&mut client, &frame[..frame_length]), body);
        assert_eq!(client.challenge(), Some(&[6; 32]));
    }
}

/// Hex of a byte string, for golden comparisons.
fn hex(bytes: &[u8]) -> std::string::String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[test]
fn golden_hello_frame() {
    let mut frame = [0; 32];
    let length = ClientSession::hello_frame(&mut frame).unwrap();
    assert_eq!(hex(&frame[..length]), GOLDEN_HELLO);
}

#[test]
fn golden_command_bodies() {
    let user = MailUser {
        name: text("a@b.c"),
        password: PasswordRecord { algorithm: 1, iterations: 10_000, salt: [0x11; 16], hash: [0x22; 32] },
        messages_per_hour: None,
    };
    let cases: [(Command, &str); 12] = [
        (Command::Status, "02"),
        (Command::Unlock { passphrase: Secret::new(b"pw").unwrap() }, "03027077"),
        (Command::ConfigPut(ConfigItem::LanPrefix(Ipv4Prefix { address: [192, 168, 1, 0], length: 24 })), "0602c0a8010018"),
        (Command::ConfigCommit { item_count: 300 }, "07ac02"),
        (Command::Logs { start: 1, max_entries: 6 }, "0b0106"),
        (Command::FetchNow, "0e"),
        (Command::AcknowledgeAlert { kind: text("ndn_generated") }, "110d6e646e5f67656e657261746564"),
        // ConfigPut, User (11), name, algorithm 1, 10,000 as a varint, salt, hash, no quota.
        (
            Command::ConfigPut(ConfigItem::User(user)),
            "060b056140622e6301904e11111111111111111111111111111111222222222222222222222222222222222222222222222222222222222222222200",
        ),
        (Command::ConfigPut(ConfigItem::Submission(Submission::DEFAULT)), "060c0100"),
        // The TLS identity's commands come after every older one: the older encodings stay.
        (Command::TlsCertificateRequest, "12"),
        (Command::TlsInstall(ChainChunk { total_length: 3, offset: 0, bytes: Vec::from_slice(b"PEM").unwrap() }), "1303000350454d"),
        (Command::TlsStatus, "14"),
    ];
    for (command, expected) in cases {
        let mut body = [0u8; 128];
        assert_eq!(hex(postcard::to_slice(&command, &mut body).unwrap()), expected, "{}", command.name());
    }
}

#[test]
fn golden_signed_lock_frame() {
    let mut frame = [0; MAX_ENCODED_FRAME];
    let length = signed_frame_for(&admin_key(), &IDENTITY, &[0x11; 32], &Command::Lock, &mut frame).unwrap();
    assert_eq!(hex(&frame[..length]), GOLDEN_SIGNED_LOCK);
}

#[test]
fn golden_response_frame() {
    let envelope = ResponseEnvelope { challenge: [0x22; 32], body: Response::Error(ErrorCode::StaleChallenge) };
    let mut payload = [0u8; 64];
    payload[0] = homemx_wire::PROTOCOL_VERSION;
    let length = postcard::to_slice(&envelope, &mut payload[1..]).unwrap().len() + 1;
    let mut frame = [0; 80];
    let frame_length = encode_frame(&payload[..length], &mut frame).unwrap();
    assert_eq!(hex(&frame[..frame_length]), GOLDEN_STALE_CHALLENGE);
}

/// COBS of version 3 (the current one), unsigned, `Hello` (0), CRC-32.
const GOLDEN_HELLO: &str = "020301054b6707fd00";
/// Version 1, signed, identity "homemx-device-01", challenge 0x11 x 32, the ed25519 signature
/// by key [7; 32] (deterministic), `Lock` (4), CRC-32, COBS-encoded, delimiter.
const GOLDEN_SIGNED_LOCK: &str = "780301686f6d656d782d6465766963652d3031111111111111111111111111111111111111111111111111111111111111111120e1c5af491199a56ef8b4b690e0489be4f25a7c604805f0e1494e9ae9d01a49d4430c97e852e5b9eba11f99c3286584ac50afbaa1c61dc8e10e8e56f5c8610104ad1301fc00";
/// Version 1, challenge 0x22 x 32, `Error` (5) `StaleChallenge` (10), CRC-32.
const GOLDEN_STALE_CHALLENGE: &str = "28032222222222222222222222222222222222222222222222222222222222222222050af32ec6fb00";
