//! The owner's console protocol: postcard messages in COBS frames, signed with the admin key.
//!
//! Shared by the firmware (the device side, [`device::ConsoleSession`]) and the host CLI (the
//! `client` feature, [`client::ClientSession`]). No allocator, no I/O: both sides are fed bytes
//! and hand back bytes. The README is the specification of the format.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod config;
pub mod device;
pub mod frame;
pub mod log_text;
pub mod message;
pub mod secret;
pub mod signing;
pub mod validate;

#[cfg(feature = "client")]
pub mod client;
#[cfg(feature = "testing")]
pub mod testing;

/// The protocol version in the first byte of every frame payload. A device answers a request
/// of any other version with [`message::ErrorCode::UnsupportedVersion`] and does nothing else.
pub const PROTOCOL_VERSION: u8 = 3;

/// Largest decoded frame payload in bytes (version byte through CRC), requests and responses.
pub const MAX_PAYLOAD: usize = 1024;

/// Largest frame on the wire in bytes: COBS-encoded payload plus the `0x00` delimiter.
pub const MAX_ENCODED_FRAME: usize = cobs::max_encoding_length(MAX_PAYLOAD) + 1;

/// Bytes in the device identity, an opaque value unique per device, fixed at manufacture.
pub const DEVICE_IDENTITY_LENGTH: usize = 16;

/// Bytes in a challenge nonce.
pub const CHALLENGE_LENGTH: usize = 32;

/// The identity of one device; signed into every command so a frame for one device is useless
/// on another.
pub type DeviceIdentity = [u8; DEVICE_IDENTITY_LENGTH];

/// A single-use challenge nonce from the device's entropy source.
pub type Challenge = [u8; CHALLENGE_LENGTH];
