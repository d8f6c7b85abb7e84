//! Frames cut or corrupted at every byte: no panic, a clear error, and nothing changes.

mod support;

use homemx_wire::client::ClientSession;
use homemx_wire::message::{Command, ErrorCode, Response};
use homemx_wire::secret::Secret;
use homemx_wire::MAX_ENCODED_FRAME;
use support::*;

fn representative_frames(client: &ClientSession) -> Vec<Vec<u8>> {
    vec![
        signed(client, &Command::Lock),
        signed(client, &Command::FactoryReset),
        signed(client, &Command::Unlock { passphrase: Secret::new(b"correct horse").unwrap() }),
    ]
}

fn error_of(frame: &[u8]) -> ErrorCode {
    let mut reader = ClientSession::new(admin_key());
    match accept(&mut reader, frame) {
        Response::Error(code) => code,
        other => panic!("expected an error, got {other:?}"),
    }
}

#[test]
fn every_single_byte_corruption_is_refused_without_change() {
    let (mut device, client) = enrolled_unlocked();
    for frame in representative_frames(&client) {
        let body = &frame[..frame.len() - 1];
        for position in 0..body.len() {
            for flip in [0x01u8, 0x80, 0xff] {
                let mut damaged = body.to_vec();
                damaged[position] ^= flip;
                if damaged[position] == 0 {
                    continue; // a delimiter: that is a cut, tested below
                }
                damaged.push(0);
                let before = device.snapshot();
                let replies = device.feed(&damaged);
                assert_eq!(replies.len(), 1, "byte {position}");
                let code = error_of(&replies[0]);
                assert!(
                    matches!(code, ErrorCode::BadChecksum | ErrorCode::MalformedFrame | ErrorCode::FrameTooLong),
                    "byte {position} ^ {flip:#x}: {code:?}"
                );
                assert_eq!(device.snapshot(), before, "byte {position}");
            }
        }
    }
}

#[test]
fn every_cut_is_refused_without_change_and_the_link_recovers() {
    let (mut device, mut client) = enrolled_unlocked();
    for frame in representative_frames(&client) {
        for cut in 0..frame.len() - 1 {
            let before = device.snapshot();
            // A frame cut short and closed by a delimiter (the host gave up, or noise).
            let mut truncated = frame[..cut].to_vec();
            truncated.push(0);
            let replies = device.feed(&truncated);
            if cut == 0 {
                assert!(replies.is_empty(), "an empty frame is ignored");
            } else {
                assert_eq!(replies.len(), 1, "cut at {cut}");
                let code = error_of(&replies[0]);
                assert!(matches!(code, ErrorCode::BadChecksum | ErrorCode::MalformedFrame), "cut at {cut}: {code:?}");
            }
            assert_eq!(device.snapshot(), before, "cut at {cut}");
        }
    }
    // A cut without a delimiter swallows the start of the next frame: that one fails, the one
    // after it works.
    let lock = signed(&client, &Command::Status);
    let replies = device.feed(&lock[..10]);
    assert!(replies.is_empty());
    let replies = device.feed(&lock);
    assert_eq!(replies.len(), 1);
    assert!(matches!(error_of(&replies[0]), ErrorCode::BadChecksum | ErrorCode::MalformedFrame));
    let replies = device.feed(&lock);
    assert!(matches!(accept(&mut client, &replies[0]), Response::Status(_)));
}

#[test]
fn byte_by_byte_delivery_is_the_same_as_one_piece() {
    let (mut device, mut client) = enrolled_unlocked();
    let frame = signed(&client, &Command::Status);
    let mut replies = Vec::new();
    for byte in &frame {
        replies.extend(device.feed(std::slice::from_ref(byte)));
    }
    assert_eq!(replies.len(), 1);
    assert!(matches!(accept(&mut client, &replies[0]), Response::Status(_)));
}

#[test]
fn an_overlong_frame_is_dropped_with_a_clear_error() {
    let (mut device, _client) = enrolled_unlocked();
    let before = device.snapshot();
    let mut noise = vec![0x55u8; MAX_ENCODED_FRAME * 3];
    noise.push(0);
    let replies = device.feed(&noise);
    assert_eq!(replies.len(), 1);
    assert_eq!(error_of(&replies[0]), ErrorCode::FrameTooLong);
    assert_eq!(device.snapshot(), before);
}

#[test]
fn garbage_that_passes_the_checksum_is_refused_without_change() {
    let (mut device, _client) = enrolled_unlocked();
    let before = device.snapshot();
    let mut seed = 0x1234_5678u32;
    for length in 1..300usize {
        let mut payload = vec![homemx_wire::PROTOCOL_VERSION];
        for _ in 0..length {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            payload.push((seed >> 24) as u8);
        }
        let mut frame = [0; MAX_ENCODED_FRAME];
        let frame_length = homemx_wire::frame::encode_frame(&payload, &mut frame).unwrap();
        let replies = device.feed(&frame[..frame_length]);
        assert_eq!(replies.len(), 1);
        let code = error_of(&replies[0]);
        assert!(
            matches!(
                code,
                ErrorCode::MalformedHeader
                    | ErrorCode::UndecodableCommand
                    | ErrorCode::SignatureRequired
                    | ErrorCode::WrongDevice
            ),
            "length {length}: {code:?}"
        );
    }
    assert_eq!(device.snapshot(), before);
}
