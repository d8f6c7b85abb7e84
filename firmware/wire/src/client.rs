//! The host side (feature `client`): builds signed request frames and reads response frames.
//!
//! [`ClientSession`] remembers the device identity and the challenge from the last response,
//! so each command is signed over the device's current single-use challenge. Still no I/O and
//! no allocator: the caller moves the bytes.

use ed25519_dalek::{Signer, SigningKey};

use crate::frame::{decode_frame, encode_frame, FrameError, CHECKSUM_LENGTH};
use crate::message::{Command, PublicKey, Response, ResponseEnvelope, SignatureBytes};
use crate::signing::{self, SIGNED, SIGNED_HEADER_LENGTH, UNSIGNED};
use crate::{Challenge, DeviceIdentity, MAX_PAYLOAD, PROTOCOL_VERSION};

pub use ed25519_dalek::SigningKey as AdminSigningKey;

/// Why a request could not be built or a response not read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientError {
    /// The response frame was damaged.
    Frame(FrameError),
    /// The device speaks another protocol version.
    VersionMismatch {
        /// The device's version.
        device_version: u8,
    },
    /// The response could not be decoded.
    UndecodableResponse,
    /// No `Hello` answered yet: the device identity and challenge are unknown.
    NoChallenge,
    /// The command does not fit one frame.
    CommandTooLarge,
}

impl ClientError {
    /// A sentence for people.
    pub fn describe(&self) -> &'static str {
        match self {
            ClientError::Frame(error) => error.describe(),
            ClientError::VersionMismatch { .. } => {
                "the device speaks another protocol version: use a CLI that matches its firmware"
            }
            ClientError::UndecodableResponse => "the device's response could not be decoded",
            ClientError::NoChallenge => "no challenge from the device yet (send Hello first)",
            ClientError::CommandTooLarge => "the command does not fit one frame",
        }
    }
}

/// The host end of a console session with one device.
pub struct ClientSession {
    signing_key: SigningKey,
    identity: Option<DeviceIdentity>,
    challenge: Option<Challenge>,
}

impl ClientSession {
    /// A session that signs with `signing_key`.
    pub fn new(signing_key: SigningKey) -> Self {
        Self { signing_key, identity: None, challenge: None }
    }

    /// The public half of the signing key.
    pub fn public_key(&self) -> PublicKey {
        self.signing_key.verifying_key().to_bytes()
    }

    /// The device identity learnt from `Hello`, if any.
    pub fn identity(&self) -> Option<&DeviceIdentity> {
        self.identity.as_ref()
    }

    /// The current challenge learnt from the last response, if any.
    pub fn challenge(&self) -> Option<&Challenge> {
        self.challenge.as_ref()
    }

    /// Sets the identity and challenge directly (tests; resuming a known device).
    pub fn set_device(&mut self, identity: DeviceIdentity, challenge: Challenge) {
        self.identity = Some(identity);
        self.challenge = Some(challenge);
    }

    /// Writes an unsigned `Hello` frame into `output`; returns its length.
    pub fn hello_frame(output: &mut [u8]) -> Result<usize, ClientError> {
        let mut payload = [0u8; 8];
        payload[0] = PROTOCOL_VERSION;
        payload[1] = UNSIGNED;
        let length = postcard::to_slice(&Command::Hello, &mut payload[2..])
            .map_err(|_| ClientError::CommandTooLarge)?
            .len();
        encode_frame(&payload[..2 + length], output).map_err(ClientError::Frame)
    }

    /// Writes `command` as a frame signed over the current challenge into `output`.
    pub fn signed_frame(&self, command: &Command, output: &mut [u8]) -> Result<usize, ClientError> {
        let identity = self.identity.ok_or(ClientError::NoChallenge)?;
        let challenge = self.challenge.ok_or(ClientError::NoChallenge)?;
        signed_frame_for(&self.signing_key, &identity, &challenge, command, output)
    }

    /// The proof for `RotateAdminKey`: `new_key` signs the rotation message over the current
    /// challenge, the device identity, this session's key and the new key.
    pub fn rotation_proof(&self, new_key: &SigningKey) -> Result<SignatureBytes, ClientError> {
        let identity = self.identity.ok_or(ClientError::NoChallenge)?;
        let challenge = self.challenge.ok_or(ClientError::NoChallenge)?;
        let mut message = [0; 160];
        let length = signing::rotation_message(
            &mut message,
            &identity,
            &challenge,
            &self.public_key(),
            &new_key.verifying_key().to_bytes(),
        );
        Ok(SignatureBytes::from_bytes(&new_key.sign(&message[..length]).to_bytes()))
    }

    /// Reads one response frame (the bytes before the delimiter, decoded in place), keeps the
    /// new challenge (and the identity from `DeviceInfo`) and returns the body.
    pub fn accept_response(&mut self, encoded: &mut [u8]) -> Result<Response, ClientError> {
        let payload = decode_frame(encoded).map_err(ClientError::Frame)?;
        if payload[0] != PROTOCOL_VERSION {
            return Err(ClientError::VersionMismatch { device_version: payload[0] });
        }
        let envelope = match postcard::take_from_bytes::<ResponseEnvelope>(&payload[1..]) {
            Ok((envelope, [])) => envelope,
            _ => return Err(ClientError::UndecodableResponse),
        };
        self.challenge = Some(envelope.challenge);
        if let Response::DeviceInfo(info) = &envelope.body {
            self.identity = Some(info.identity);
        }
        Ok(envelope.body)
    }
}

/// Writes `command` signed by `key` for device `identity` over `challenge` into `output`.
pub fn signed_frame_for(
    key: &SigningKey,
    identity: &DeviceIdentity,
    challenge: &Challenge,
    command: &Command,
    output: &mut [u8],
) -> Result<usize, ClientError> {
    let mut payload = [0u8; MAX_PAYLOAD];
    let limit = MAX_PAYLOAD - CHECKSUM_LENGTH;
    let command_length = postcard::to_slice(command, &mut payload[SIGNED_HEADER_LENGTH..limit])
        .map_err(|_| ClientError::CommandTooLarge)?
        .len();
    let end = SIGNED_HEADER_LENGTH + command_length;
    let mut message = [0u8; MAX_PAYLOAD + 128];
    let message_length = signing::write_command_message(
        &mut message,
        PROTOCOL_VERSION,
        identity,
        challenge,
        &payload[SIGNED_HEADER_LENGTH..end],
    )
    .ok_or(ClientError::CommandTooLarge)?;
    let signature = key.sign(&message[..message_length]).to_bytes();
    payload[0] = PROTOCOL_VERSION;
    payload[1] = SIGNED;
    payload[signing::IDENTITY_OFFSET..signing::CHALLENGE_OFFSET].copy_from_slice(identity);
    payload[signing::CHALLENGE_OFFSET..signing::SIGNATURE_OFFSET].copy_from_slice(challenge);
    payload[signing::SIGNATURE_OFFSET..SIGNED_HEADER_LENGTH].copy_from_slice(&signature);
    encode_frame(&payload[..end], output).map_err(ClientError::Frame)
}
