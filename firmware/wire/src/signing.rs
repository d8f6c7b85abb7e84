//! What is signed: the request header layout and the byte strings the admin key signs.
//!
//! ```text
//! request payload, unsigned:  [version][0x00][command ...]
//! request payload, signed:    [version][0x01][identity 16][challenge 32][signature 64][command ...]
//! signed message:             COMMAND_TAG | version | identity | challenge | command
//! ```

use crate::{Challenge, DeviceIdentity, CHALLENGE_LENGTH, DEVICE_IDENTITY_LENGTH};

/// Domain-separation tag in front of every signed command.
pub const COMMAND_TAG: &[u8] = b"homemx console command v1\0";
/// Domain-separation tag in front of the new key's proof in a key rotation.
pub const ROTATION_TAG: &[u8] = b"homemx console key rotation v1\0";

/// Authentication kind byte: the command is not signed (only `Hello`).
pub const UNSIGNED: u8 = 0;
/// Authentication kind byte: identity, challenge and signature follow.
pub const SIGNED: u8 = 1;

/// Bytes of the header of an unsigned request (version, kind).
pub const UNSIGNED_HEADER_LENGTH: usize = 2;
/// Bytes of an ed25519 signature.
pub const SIGNATURE_LENGTH: usize = 64;
/// Offset of the device identity in a signed request.
pub const IDENTITY_OFFSET: usize = 2;
/// Offset of the challenge in a signed request.
pub const CHALLENGE_OFFSET: usize = IDENTITY_OFFSET + DEVICE_IDENTITY_LENGTH;
/// Offset of the signature in a signed request.
pub const SIGNATURE_OFFSET: usize = CHALLENGE_OFFSET + CHALLENGE_LENGTH;
/// Bytes of the header of a signed request; the command follows.
pub const SIGNED_HEADER_LENGTH: usize = SIGNATURE_OFFSET + SIGNATURE_LENGTH;

/// Bytes of the signed message in front of the command (tag, version, identity, challenge).
pub const COMMAND_MESSAGE_PREFIX_LENGTH: usize = COMMAND_TAG.len() + 1 + DEVICE_IDENTITY_LENGTH + CHALLENGE_LENGTH;

/// The signed message's prefix fits in a signed request's header: the device builds the message
/// in place, over the header ([`command_message_in_place`]).
const _: () = assert!(COMMAND_MESSAGE_PREFIX_LENGTH <= SIGNED_HEADER_LENGTH);

fn command_message_prefix<'a>(version: &'a [u8; 1], identity: &'a DeviceIdentity, challenge: &'a Challenge) -> [&'a [u8]; 4] {
    [COMMAND_TAG, version, identity, challenge]
}

/// Writes the message a command signature covers into `output`; returns its length, or `None`
/// when `output` is too small.
pub fn write_command_message(
    output: &mut [u8],
    version: u8,
    identity: &DeviceIdentity,
    challenge: &Challenge,
    command: &[u8],
) -> Option<usize> {
    let prefix = write_parts(output, &command_message_prefix(&[version], identity, challenge))?;
    Some(prefix + write_parts(output.get_mut(prefix..)?, &[command])?)
}

/// Turns a signed request's payload into the message its signature covers, in place: the
/// message's prefix overwrites the end of the header (the signature: copy it out first) and
/// the command stays where it is. Returns the message, or `None` when `payload` is shorter than
/// a signed header.
pub fn command_message_in_place<'p>(
    payload: &'p mut [u8],
    version: u8,
    identity: &DeviceIdentity,
    challenge: &Challenge,
) -> Option<&'p [u8]> {
    let start = SIGNED_HEADER_LENGTH - COMMAND_MESSAGE_PREFIX_LENGTH;
    write_parts(payload.get_mut(start..SIGNED_HEADER_LENGTH)?, &command_message_prefix(&[version], identity, challenge))?;
    payload.get(start..)
}

/// Writes the message the new key signs in a key rotation; returns its length.
pub fn rotation_message(
    output: &mut [u8; 160],
    identity: &DeviceIdentity,
    challenge: &Challenge,
    old_key: &[u8; 32],
    new_key: &[u8; 32],
) -> usize {
    let parts: [&[u8]; 5] = [ROTATION_TAG, identity, challenge, old_key, new_key];
    // 31 + 16 + 32 + 32 + 32 = 143 bytes always fit.
    write_parts(output, &parts).unwrap_or(0)
}

fn write_parts(output: &mut [u8], parts: &[&[u8]]) -> Option<usize> {
    let mut position = 0;
    for part in parts {
        let end = position + part.len();
        output.get_mut(position..end)?.copy_from_slice(part);
        position = end;
    }
    Some(position)
}
