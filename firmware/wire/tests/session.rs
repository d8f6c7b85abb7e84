//! The device session's security behaviour: enrolment, signatures, replay, identity binding,
//! version mismatch, rotation and factory reset.

mod support;

use homemx_wire::client::{signed_frame_for, ClientSession};
use homemx_wire::frame::encode_frame;
use homemx_wire::message::{Command, DeviceState, ErrorCode, Response};
use homemx_wire::secret::Secret;
use homemx_wire::signing::{SIGNED, UNSIGNED};
use homemx_wire::MAX_ENCODED_FRAME;
use support::*;

fn error(response: Response) -> ErrorCode {
    match response {
        Response::Error(code) => code,
        other => panic!("expected an error, got {other:?}"),
    }
}

#[test]
fn hello_reports_a_factory_fresh_device_and_a_challenge() {
    let mut device = Device::fresh();
    let mut client = ClientSession::new(admin_key());
    let Response::DeviceInfo(info) = hello(&mut device, &mut client) else { panic!() };
    assert_eq!(info.state, DeviceState::FactoryFresh);
    assert_eq!(info.identity, IDENTITY);
    assert_eq!(info.protocol_version, homemx_wire::PROTOCOL_VERSION);
    assert_eq!(client.challenge(), Some(device.session.challenge()));
}

#[test]
fn enrolment_needs_proof_of_possession_and_happens_once() {
    let mut device = Device::fresh();
    let mut client = ClientSession::new(admin_key());
    hello(&mut device, &mut client);
    // Enrolling someone else's public key with our signature: refused.
    let foreign = Command::Enrol { admin_key: stranger_key().verifying_key().to_bytes() };
    assert_eq!(error(run(&mut device, &mut client, &foreign)), ErrorCode::BadSignature);
    assert_eq!(device.session.admin_key(), None);
    let own = Command::Enrol { admin_key: client.public_key() };
    assert_eq!(run(&mut device, &mut client, &own), Response::Done);
    assert_eq!(device.handler.admin_key, Some(client.public_key()));
    // A second enrolment, even by a key that proves possession: refused.
    let mut stranger = ClientSession::new(stranger_key());
    hello(&mut device, &mut stranger);
    let again = Command::Enrol { admin_key: stranger.public_key() };
    assert_eq!(error(run(&mut device, &mut stranger, &again)), ErrorCode::AlreadyEnrolled);
    assert_eq!(device.session.admin_key(), Some(&client.public_key()));
}

#[test]
fn commands_before_enrolment_are_refused() {
    let mut device = Device::fresh();
    let mut client = ClientSession::new(admin_key());
    hello(&mut device, &mut client);
    let before = device.snapshot();
    assert_eq!(error(run(&mut device, &mut client, &Command::Status)), ErrorCode::NotEnrolled);
    assert_eq!(device.snapshot(), before);
}

#[test]
fn unsigned_commands_other_than_hello_are_refused() {
    let (mut device, _client) = enrolled_unlocked();
    let before = device.snapshot();
    let mut payload = vec![homemx_wire::PROTOCOL_VERSION, UNSIGNED];
    let mut body = [0u8; 16];
    payload.extend_from_slice(postcard::to_slice(&Command::FactoryReset, &mut body).unwrap());
    let mut frame = [0; MAX_ENCODED_FRAME];
    let length = encode_frame(&payload, &mut frame).unwrap();
    let replies = device.feed(&frame[..length]);
    let mut client = ClientSession::new(admin_key());
    assert_eq!(error(accept(&mut client, &replies[0])), ErrorCode::SignatureRequired);
    assert_eq!(device.snapshot(), before);
}

#[test]
fn a_replayed_frame_is_refused_and_changes_nothing() {
    let (mut device, mut client) = enrolled_unlocked();
    let lock = signed(&client, &Command::Lock);
    let reply = device.feed(&lock);
    assert_eq!(accept(&mut client, &reply[0]), Response::Done);
    assert!(!device.handler.unlocked);
    // Unlock again, then replay the recorded lock frame.
    let unlock = Command::Unlock { passphrase: Secret::new(b"correct horse").unwrap() };
    assert_eq!(run(&mut device, &mut client, &unlock), Response::Done);
    let before = device.snapshot();
    let reply = device.feed(&lock);
    assert_eq!(error(accept(&mut client, &reply[0])), ErrorCode::StaleChallenge);
    assert!(device.handler.unlocked, "the replayed lock did nothing");
    assert_eq!(device.snapshot(), before);
}

#[test]
fn a_signed_frame_is_single_use_even_when_the_handler_refuses_it() {
    let (mut device, mut client) = enrolled_unlocked();
    let frame = signed(&client, &Command::ConfigCommit { item_count: 3 });
    let reply = device.feed(&frame);
    assert_eq!(error(accept(&mut client, &reply[0])), ErrorCode::ConfigurationSequence);
    let reply = device.feed(&frame);
    assert_eq!(error(accept(&mut client, &reply[0])), ErrorCode::StaleChallenge);
}

#[test]
fn a_wrong_key_is_refused_and_changes_nothing() {
    let (mut device, _client) = enrolled_unlocked();
    let mut stranger = ClientSession::new(stranger_key());
    hello(&mut device, &mut stranger);
    let before = device.snapshot();
    for command in [Command::Lock, Command::FactoryReset, Command::Status, Command::FetchNow] {
        assert_eq!(error(run(&mut device, &mut stranger, &command)), ErrorCode::BadSignature);
    }
    assert_eq!(device.snapshot(), before);
}

#[test]
fn a_frame_for_another_device_is_refused() {
    let (mut device, mut client) = enrolled_unlocked();
    let mut other = Device::with(OTHER_IDENTITY, device.handler.clone());
    let challenge = *other.session.challenge();
    // Signed for the other device over its own challenge: useless on ours.
    let mut frame = [0; MAX_ENCODED_FRAME];
    let length = signed_frame_for(&admin_key(), &OTHER_IDENTITY, &challenge, &Command::Lock, &mut frame).unwrap();
    let before = device.snapshot();
    let reply = device.feed(&frame[..length]);
    assert_eq!(error(accept(&mut client, &reply[0])), ErrorCode::WrongDevice);
    assert_eq!(device.snapshot(), before);
    // The same frame with our identity pasted in no longer verifies.
    let mut payload = frame[..length - 1].to_vec();
    let decoded = homemx_wire::frame::decode_frame(&mut payload).unwrap().to_vec();
    let mut forged = decoded.clone();
    forged[2..18].copy_from_slice(&IDENTITY);
    forged[18..50].copy_from_slice(device.session.challenge());
    assert_eq!(forged[1], SIGNED);
    let length = encode_frame(&forged, &mut frame).unwrap();
    let reply = device.feed(&frame[..length]);
    assert_eq!(error(accept(&mut client, &reply[0])), ErrorCode::BadSignature);
    assert_eq!(device.snapshot(), before);
    // And it works on the device it was made for.
    let reply = other.feed(&frame_for_other(&challenge));
    assert_eq!(accept(&mut client, &reply[0]), Response::Done);
}

fn frame_for_other(challenge: &[u8; 32]) -> Vec<u8> {
    let mut frame = [0; MAX_ENCODED_FRAME];
    let length = signed_frame_for(&admin_key(), &OTHER_IDENTITY, challenge, &Command::Lock, &mut frame).unwrap();
    frame[..length].to_vec()
}

#[test]
fn an_unknown_version_is_answered_clearly_and_changes_nothing() {
    let (mut device, client) = enrolled_unlocked();
    let frame = signed(&client, &Command::FactoryReset);
    let mut payload = frame[..frame.len() - 1].to_vec();
    let mut decoded = homemx_wire::frame::decode_frame(&mut payload).unwrap().to_vec();
    decoded[0] = homemx_wire::PROTOCOL_VERSION + 1;
    let mut rewritten = [0; MAX_ENCODED_FRAME];
    let length = encode_frame(&decoded, &mut rewritten).unwrap();
    let before = device.snapshot();
    let reply = device.feed(&rewritten[..length]);
    let mut reader = ClientSession::new(admin_key());
    assert_eq!(
        error(accept(&mut reader, &reply[0])),
        ErrorCode::UnsupportedVersion { device_version: homemx_wire::PROTOCOL_VERSION }
    );
    assert_eq!(device.snapshot(), before);
}

#[test]
fn a_client_reading_a_newer_device_reports_the_version() {
    let mut client = ClientSession::new(admin_key());
    let mut frame = [0; 64];
    let length = encode_frame(&[9, 1, 2, 3], &mut frame).unwrap();
    assert_eq!(
        client.accept_response(&mut frame[..length - 1]),
        Err(homemx_wire::client::ClientError::VersionMismatch { device_version: 9 })
    );
}

#[test]
fn key_rotation_needs_both_keys_and_retires_the_old_one() {
    let (mut device, mut client) = enrolled_unlocked();
    let new_key = stranger_key();
    // A proof by a third key is refused.
    let bogus = client.rotation_proof(&homemx_wire::client::AdminSigningKey::from_bytes(&[3; 32])).unwrap();
    let command = Command::RotateAdminKey { new_key: new_key.verifying_key().to_bytes(), proof: bogus };
    assert_eq!(error(run(&mut device, &mut client, &command)), ErrorCode::BadSignature);
    assert_eq!(device.session.admin_key(), Some(&client.public_key()));
    let proof = client.rotation_proof(&new_key).unwrap();
    let command = Command::RotateAdminKey { new_key: new_key.verifying_key().to_bytes(), proof };
    assert_eq!(run(&mut device, &mut client, &command), Response::Done);
    assert_eq!(device.handler.admin_key, Some(new_key.verifying_key().to_bytes()));
    assert_eq!(error(run(&mut device, &mut client, &Command::Status)), ErrorCode::BadSignature);
    let mut rotated = ClientSession::new(new_key);
    hello(&mut device, &mut rotated);
    assert!(matches!(run(&mut device, &mut rotated, &Command::Status), Response::Status(_)));
}

#[test]
fn factory_reset_returns_the_device_to_factory_fresh() {
    let (mut device, mut client) = enrolled_unlocked();
    assert_eq!(run(&mut device, &mut client, &Command::FactoryReset), Response::Done);
    assert_eq!(device.session.admin_key(), None);
    assert_eq!(device.handler.factory_resets, 1);
    let Response::DeviceInfo(info) = hello(&mut device, &mut client) else { panic!() };
    assert_eq!(info.state, DeviceState::FactoryFresh);
}

#[test]
fn locked_storage_refuses_configuration() {
    let (mut device, mut client) = enrolled_unlocked();
    assert_eq!(run(&mut device, &mut client, &Command::Lock), Response::Done);
    let Response::DeviceInfo(info) = hello(&mut device, &mut client) else { panic!() };
    assert_eq!(info.state, DeviceState::Locked);
    assert_eq!(error(run(&mut device, &mut client, &Command::ConfigBegin)), ErrorCode::Locked);
    let wrong = Command::Unlock { passphrase: Secret::new(b"wrong").unwrap() };
    assert_eq!(error(run(&mut device, &mut client, &wrong)), ErrorCode::WrongPassphrase);
}

/// A user's password record is read back without salt and hash; the rest of the item as sent.
#[test]
fn config_get_never_returns_a_password_hash() {
    use homemx_wire::config::{ConfigItem, MailUser, PasswordRecord};
    let (mut device, mut client) = enrolled_unlocked();
    let record = PasswordRecord { algorithm: 1, iterations: 10_000, salt: [0x5a; 16], hash: [0xa5; 32] };
    let user = MailUser { name: "alice@example.org".try_into().unwrap(), password: record.clone(), messages_per_hour: Some(7) };
    for command in [Command::ConfigBegin, Command::ConfigPut(ConfigItem::User(user.clone())), Command::ConfigCommit { item_count: 1 }] {
        assert_eq!(run(&mut device, &mut client, &command), Response::Done);
    }
    assert_eq!(device.handler.configuration[0], ConfigItem::User(user.clone()), "the device keeps the record");
    let frame = signed(&client, &Command::ConfigGet { index: 0 });
    let replies = device.feed(&frame);
    assert!(!replies[0].windows(8).any(|window| window == [0xa5; 8]), "no piece of the hash on the wire");
    let Response::ConfigItem { item: ConfigItem::User(shown), .. } = accept(&mut client, &replies[0]) else { panic!("a user item") };
    assert_eq!(shown, MailUser { password: PasswordRecord { salt: [0; 16], hash: [0; 32], ..record }, ..user });
}

fn alert(kind: &str, needs_acknowledgement: bool) -> homemx_wire::message::AlertReport {
    homemx_wire::message::AlertReport {
        kind: kind.try_into().unwrap(),
        count: 2,
        first_seen_age_seconds: 300,
        first_seen_unix: Some(1_780_000_000),
        last_seen_age_seconds: 10,
        needs_acknowledgement,
    }
}

fn acknowledge(kind: &str) -> Command {
    Command::AcknowledgeAlert { kind: kind.try_into().unwrap() }
}

#[test]
fn status_carries_the_alerts_and_the_deferred_count() {
    let (mut device, mut client) = enrolled_unlocked();
    device.handler.alerts.push(alert("stripping_suspected", false)).unwrap();
    device.handler.deferred = 2;
    let Response::Status(status) = run(&mut device, &mut client, &Command::Status) else { panic!() };
    assert_eq!(status.deferred, 2);
    assert_eq!(status.alerts.as_slice(), [alert("stripping_suspected", false)]);
}

#[test]
fn an_alert_is_acknowledged_only_by_the_admin_once_and_only_if_it_needs_a_human() {
    let (mut device, mut client) = enrolled_unlocked();
    device.handler.alerts.push(alert("stripping_suspected", false)).unwrap();
    device.handler.alerts.push(alert("ndn_generated", true)).unwrap();

    // A condition alert ends by itself: refused, nothing changes.
    let before = device.handler.alerts.clone();
    assert_eq!(error(run(&mut device, &mut client, &acknowledge("stripping_suspected"))), ErrorCode::NotAcknowledgeable);
    assert_eq!(error(run(&mut device, &mut client, &acknowledge("no_such_alert"))), ErrorCode::NotFound);
    assert_eq!(device.handler.alerts, before);

    // A stranger's signature, or an unsigned frame, acknowledges nothing.
    let mut stranger = ClientSession::new(stranger_key());
    hello(&mut device, &mut stranger);
    assert_eq!(error(run(&mut device, &mut stranger, &acknowledge("ndn_generated"))), ErrorCode::BadSignature);
    let mut payload = vec![homemx_wire::PROTOCOL_VERSION, UNSIGNED];
    let mut body = [0u8; 64];
    payload.extend_from_slice(postcard::to_slice(&acknowledge("ndn_generated"), &mut body).unwrap());
    let mut frame = [0; MAX_ENCODED_FRAME];
    let length = encode_frame(&payload, &mut frame).unwrap();
    let replies = device.feed(&frame[..length]);
    assert_eq!(error(accept(&mut client, &replies[0])), ErrorCode::SignatureRequired);
    assert_eq!(device.handler.alerts, before);

    // The admin's signed frame ends it; the same frame replayed after the alert is raised again
    // is refused and the new alert stays.
    let frame = signed(&client, &acknowledge("ndn_generated"));
    let reply = device.feed(&frame);
    assert_eq!(accept(&mut client, &reply[0]), Response::Done);
    assert_eq!(device.handler.alerts.as_slice(), [alert("stripping_suspected", false)]);
    device.handler.alerts.push(alert("ndn_generated", true)).unwrap();
    let reply = device.feed(&frame);
    assert_eq!(error(accept(&mut client, &reply[0])), ErrorCode::StaleChallenge);
    assert_eq!(device.handler.alerts.len(), 2, "the replayed acknowledgement did nothing");

    // Locked storage: the alert record cannot be persisted, so nothing is acknowledged.
    assert_eq!(run(&mut device, &mut client, &Command::Lock), Response::Done);
    assert_eq!(error(run(&mut device, &mut client, &acknowledge("ndn_generated"))), ErrorCode::Locked);
    assert_eq!(device.handler.alerts.len(), 2);
}

#[test]
fn logs_are_paged() {
    let (mut device, mut client) = enrolled_unlocked();
    let mut start = 0;
    let mut seen = Vec::new();
    loop {
        let Response::Logs(page) = run(&mut device, &mut client, &Command::Logs { start, max_entries: 200 }) else {
            panic!()
        };
        assert!(page.entries.len() <= homemx_wire::message::MAX_LOG_ENTRIES);
        seen.extend(page.entries.iter().map(|entry| entry.sequence));
        start = page.next;
        if !page.more {
            break;
        }
    }
    assert_eq!(seen, (0..15).collect::<Vec<_>>());
}

#[test]
fn secrets_are_redacted_in_debug() {
    let secret = Secret::new(b"hunter2-smarthost").unwrap();
    let command = Command::SetCredential {
        credential: homemx_wire::message::Credential::SmarthostPassword,
        secret: secret.clone(),
    };
    for text in [format!("{secret:?}"), format!("{command:?}"), format!("{command:#?}")] {
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("redacted"), "{text}");
    }
    let unlock = Command::Unlock { passphrase: Secret::new(b"correct horse").unwrap() };
    assert!(!format!("{unlock:?}").contains("horse"));
}

#[test]
fn the_session_fits_a_small_console_task() {
    let size = core::mem::size_of::<homemx_wire::device::ConsoleSession>();
    assert!(size <= MAX_ENCODED_FRAME + 128, "ConsoleSession is {size} bytes");
}

#[test]
fn report_session_size() {
    eprintln!("size_of::<ConsoleSession>() = {}", core::mem::size_of::<homemx_wire::device::ConsoleSession>());
    eprintln!("size_of::<Command>() = {}", core::mem::size_of::<Command>());
    eprintln!("size_of::<Response>() = {}", core::mem::size_of::<Response>());
    eprintln!("MAX_ENCODED_FRAME = {}", MAX_ENCODED_FRAME);
}

/// After an `unlock` and then shorter frames (`lock`, `status`), no piece of the passphrase
/// is left in the session's buffer.
#[test]
fn no_piece_of_the_passphrase_stays_in_the_session_buffers() {
    let passphrase = b"a long passphrase: correct horse battery staple, twice over";
    let (mut device, mut client) = enrolled_unlocked();
    assert_eq!(run(&mut device, &mut client, &Command::Lock), Response::Done);
    device.handler.passphrase = Secret::new(passphrase);
    let unlock = Command::Unlock { passphrase: Secret::new(passphrase).unwrap() };
    assert_eq!(run(&mut device, &mut client, &unlock), Response::Done);
    let pieces_left = |device: &mut Device| -> usize {
        device.session.buffers().iter().map(|buffer| buffer.windows(8).filter(|window| passphrase.windows(8).any(|piece| piece == *window)).count()).sum()
    };
    assert_eq!(pieces_left(&mut device), 0, "after unlock");
    assert_eq!(run(&mut device, &mut client, &Command::Lock), Response::Done);
    assert_eq!(pieces_left(&mut device), 0, "after the shorter lock frame");
}

/// `TlsRenew` (`homemx tls renew`) needs the admin's signature, unlocked storage and a
/// `[tls.acme]` item; it is refused otherwise and changes nothing.
#[test]
fn tls_renew_needs_an_acme_account() {
    use homemx_wire::config::{Acme, AcmeChallenge, ConfigItem};
    let (mut device, mut client) = enrolled_unlocked();
    assert_eq!(error(run(&mut device, &mut client, &Command::TlsRenew)), ErrorCode::NotFound);
    assert_eq!(device.handler.renewals, 0);
    let acme = Acme {
        directory: "https://acme.example/dir".try_into().unwrap(),
        name: "mx.example.org".try_into().unwrap(),
        contact: None,
        agree_terms: true,
        eab_key_id: None,
        challenge: AcmeChallenge::Http01,
        reuse_key: true,
    };
    for command in [Command::ConfigBegin, Command::ConfigPut(ConfigItem::Acme(acme)), Command::ConfigCommit { item_count: 1 }] {
        assert_eq!(run(&mut device, &mut client, &command), Response::Done);
    }
    assert_eq!(run(&mut device, &mut client, &Command::TlsRenew), Response::Done);
    assert_eq!(device.handler.renewals, 1);
    assert_eq!(run(&mut device, &mut client, &Command::Lock), Response::Done);
    assert_eq!(error(run(&mut device, &mut client, &Command::TlsRenew)), ErrorCode::Locked);
    assert_eq!(device.handler.renewals, 1);
}
