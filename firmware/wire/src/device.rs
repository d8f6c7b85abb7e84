//! The device side: [`ConsoleSession`], a sans-I/O console fed bytes, answering with frames.
//!
//! The session owns the enrolled admin key, the single-use challenge, signature checks and
//! replay protection; it calls a [`ConsoleHandler`] (the firmware: key store, configuration,
//! logs) only for commands that are well formed and authentic. A refused request changes
//! nothing, neither in the session nor in the handler.

use ed25519_dalek::{Signature, VerifyingKey};
use zeroize::Zeroize;

use crate::config::ConfigItem;
use crate::frame::{decode_frame, encode_frame_in_place, FrameError, FrameReceiver, Received, IN_PLACE_PAYLOAD_OFFSET};
use crate::message::{
    CertificateReport, ChainChunk, Command, Credential, DeviceInfo, DeviceState, ErrorCode, LogPage, PublicKey, Response, Status,
    TrustAnchorUpdate, MAX_CERTIFICATE_REQUEST,
};
use crate::secret::Secret;
use crate::signing::{self, SIGNED, SIGNED_HEADER_LENGTH, UNSIGNED, UNSIGNED_HEADER_LENGTH};
use crate::{Challenge, DeviceIdentity, PROTOCOL_VERSION};

/// A source of unpredictable bytes for challenges (the board's entropy source).
pub trait NonceSource {
    /// Fills `buffer` with unpredictable bytes.
    fn fill_bytes(&mut self, buffer: &mut [u8]);
}

/// The real work behind the console, implemented by the firmware. Every method is called only
/// for an authentic command; an `Err` is sent to the host and must mean "nothing changed".
#[allow(async_fn_in_trait)]
pub trait ConsoleHandler {
    /// The firmware version string (at most 32 bytes are sent).
    fn firmware_version(&self) -> &str;
    /// The board name (at most 32 bytes are sent).
    fn board(&self) -> &str;
    /// True while storage is unlocked.
    fn unlocked(&self) -> bool;
    /// Persist the admin public key (enrolment and rotation). The session uses the new key only
    /// after this returned `Ok`.
    async fn store_admin_key(&mut self, key: &PublicKey) -> Result<(), ErrorCode>;
    /// Derive the key-encryption key from the passphrase and unwrap the data key (or create
    /// and wrap one on first use). Rate limiting of failures is the handler's job.
    async fn unlock(&mut self, passphrase: &Secret) -> Result<(), ErrorCode>;
    /// Wipe key material from RAM.
    async fn lock(&mut self) -> Result<(), ErrorCode>;
    /// The device's status.
    async fn status(&mut self) -> Result<Status, ErrorCode>;
    /// Start staging a new configuration.
    async fn config_begin(&mut self) -> Result<(), ErrorCode>;
    /// Add one item to the staged configuration.
    async fn config_put(&mut self, item: &ConfigItem) -> Result<(), ErrorCode>;
    /// Make the staged configuration current if it has `item_count` items.
    async fn config_commit(&mut self, item_count: u16) -> Result<(), ErrorCode>;
    /// Item `index` of the current configuration and the number of items.
    async fn config_get(&mut self, index: u16) -> Result<(u16, ConfigItem), ErrorCode>;
    /// Store a write-only credential.
    async fn set_credential(&mut self, credential: Credential, secret: &Secret) -> Result<(), ErrorCode>;
    /// Store (part of) a trust anchor.
    async fn set_trust_anchor(&mut self, update: &TrustAnchorUpdate) -> Result<(), ErrorCode>;
    /// A page of log entries from sequence number `start`.
    async fn logs(&mut self, start: u32, max_entries: u8) -> Result<LogPage, ErrorCode>;
    /// Destroy the wrapped data key, configuration, credentials and the stored admin key.
    async fn factory_reset(&mut self) -> Result<(), ErrorCode>;
    /// Fetch from the backup MX now.
    async fn fetch_now(&mut self) -> Result<(), ErrorCode>;
    /// Try every queued message now.
    async fn flush_queue(&mut self) -> Result<(), ErrorCode>;
    /// Resume stopped DynDNS updates.
    async fn dyndns_resume(&mut self) -> Result<(), ErrorCode>;
    /// End the active alert named `kind` if it needs the owner ([`ErrorCode::NotFound`]: not
    /// active or unknown; [`ErrorCode::NotAcknowledgeable`]: it ends by itself).
    async fn acknowledge_alert(&mut self, kind: &str) -> Result<(), ErrorCode>;
    /// The certificate request (DER) for the device's TLS key and host name.
    async fn tls_certificate_request(&mut self) -> Result<heapless::Vec<u8, MAX_CERTIFICATE_REQUEST>, ErrorCode>;
    /// Take one chunk of a certificate chain; with the last one, check and install the chain.
    async fn tls_install(&mut self, chunk: &ChainChunk) -> Result<(), ErrorCode>;
    /// The device's own TLS certificate.
    async fn tls_status(&mut self) -> Result<Option<CertificateReport>, ErrorCode>;
    /// Start an ACME run now ([`ErrorCode::NotFound`]: no `[tls.acme]` for the host name).
    async fn tls_renew(&mut self) -> Result<(), ErrorCode>;
}

/// What one call of [`ConsoleSession::receive`] did.
pub struct Reply<'a> {
    /// Bytes taken from the input; call again with the rest.
    pub consumed: usize,
    /// A response frame to write to the link, delimiter included.
    pub frame: Option<&'a [u8]>,
}

/// The console protocol state of one device: feed it the bytes from the serial link.
pub struct ConsoleSession {
    identity: DeviceIdentity,
    admin_key: Option<PublicKey>,
    challenge: Challenge,
    /// Collects a request frame; then holds, in turn, the decoded request, the signed message
    /// (built in place over the request's header), the response's payload and its frame
    /// (encoded in place): one buffer, no second one for sending (1 KB less in the console task).
    receiver: FrameReceiver,
}

impl ConsoleSession {
    /// A session for the device `identity`, with the admin key loaded from the key store
    /// (`None` on a factory-fresh device) and a first challenge from `entropy`.
    pub fn new<N: NonceSource>(identity: DeviceIdentity, admin_key: Option<PublicKey>, entropy: &mut N) -> Self {
        let mut challenge = [0; crate::CHALLENGE_LENGTH];
        entropy.fill_bytes(&mut challenge);
        Self {
            identity,
            admin_key,
            challenge,
            receiver: FrameReceiver::new(),
        }
    }

    /// The device identity.
    pub fn identity(&self) -> &DeviceIdentity {
        &self.identity
    }

    /// The enrolled admin key, if any.
    pub fn admin_key(&self) -> Option<&PublicKey> {
        self.admin_key.as_ref()
    }

    /// The buffer a frame passes through (request and response), to check what it keeps
    /// between frames.
    #[cfg(feature = "testing")]
    pub fn buffers(&mut self) -> [&[u8]; 1] {
        [self.receiver.scratch()]
    }

    /// The challenge the next signed command must be signed over.
    pub fn challenge(&self) -> &Challenge {
        &self.challenge
    }

    /// Takes bytes from `input` up to the end of one frame; when a frame is complete, handles
    /// it and returns the response frame. Call again with `input[consumed..]` until all is
    /// taken. Never panics, whatever the input.
    pub async fn receive<H: ConsoleHandler, N: NonceSource>(
        &mut self,
        input: &[u8],
        handler: &mut H,
        entropy: &mut N,
    ) -> Reply<'_> {
        let (consumed, received) = self.receiver.push(input);
        let response = match received {
            Received::NeedMore | Received::Empty => return Reply { consumed, frame: None },
            Received::Overflow => Response::Error(ErrorCode::FrameTooLong),
            Received::Frame(length) => self.handle_frame(length, handler, entropy).await,
        };
        let length = self.encode_response(&response);
        Reply { consumed, frame: Some(&self.receiver.scratch()[..length]) }
    }

    async fn handle_frame<H: ConsoleHandler, N: NonceSource>(
        &mut self,
        length: usize,
        handler: &mut H,
        entropy: &mut N,
    ) -> Response {
        let signed_over = self.challenge;
        let deep = {
            let checked = authenticate(
                self.receiver.frame(length),
                &self.identity,
                self.admin_key.as_ref(),
                &self.challenge,
            );
            // The request may hold a secret: wipe the raw bytes now that they are decoded, with
            // the signed message `authenticate` built over them (a shorter answer would overwrite
            // only their head, leaving the tail: a passphrase).
            self.receiver.scratch().zeroize();
            // Borrowed, not moved: a command moved out of `checked` and into `execute` existed
            // three times in this future (a passphrase among them), 1 KB more of the console
            // task's RAM.
            let (command, signed) = match &checked {
                Ok((command, signed)) => (command, *signed),
                Err(code) => return Response::Error(*code),
            };
            if signed {
                // The challenge is single-use: consumed before anything is executed.
                entropy.fill_bytes(&mut self.challenge);
            }
            match DeepCommand::of(command) {
                Some(deep) => deep,
                None => return self.execute(command, &signed_over, handler).await.unwrap_or_else(Response::Error),
            }
            // `checked` (the decoded command, 536 bytes; its secret wiped on drop) ends here.
        };
        let result = match &deep {
            DeepCommand::Unlock(passphrase) => handler.unlock(passphrase).await,
            DeepCommand::ConfigCommit(item_count) => handler.config_commit(*item_count).await,
        };
        result.map_or_else(Response::Error, |()| Response::Done)
    }

    async fn execute<H: ConsoleHandler>(
        &mut self,
        command: &Command,
        signed_over: &Challenge,
        handler: &mut H,
    ) -> Result<Response, ErrorCode> {
        let done = |_| Response::Done;
        match command {
            Command::Hello => Ok(Response::DeviceInfo(self.device_info(handler))),
            Command::Enrol { admin_key } => {
                handler.store_admin_key(admin_key).await?;
                self.admin_key = Some(*admin_key);
                Ok(Response::Done)
            }
            Command::RotateAdminKey { new_key, proof } => {
                let old_key = self.admin_key.ok_or(ErrorCode::NotEnrolled)?;
                let mut message = [0; 160];
                let length = signing::rotation_message(&mut message, &self.identity, signed_over, &old_key, new_key);
                verify(new_key, &message[..length], &proof.to_bytes())?;
                handler.store_admin_key(new_key).await?;
                self.admin_key = Some(*new_key);
                Ok(Response::Done)
            }
            Command::FactoryReset => {
                handler.factory_reset().await?;
                self.admin_key = None;
                Ok(Response::Done)
            }
            Command::Status => handler.status().await.map(Response::Status),
            // Run by `handle_frame` once the decoded command is dropped (`DeepCommand`).
            Command::Unlock { .. } | Command::ConfigCommit { .. } => Err(ErrorCode::DeviceFault),
            Command::Lock => handler.lock().await.map(done),
            Command::ConfigBegin => handler.config_begin().await.map(done),
            Command::ConfigPut(item) => handler.config_put(item).await.map(done),
            Command::ConfigGet { index } => {
                let (total, item) = handler.config_get(*index).await?;
                // A user's password hash stays on the device: read back without salt and hash.
                Ok(Response::ConfigItem { index: *index, total, item: item.redacted() })
            }
            Command::SetCredential { credential, secret } => {
                handler.set_credential(*credential, secret).await.map(done)
            }
            Command::SetTrustAnchor(update) => handler.set_trust_anchor(update).await.map(done),
            Command::Logs { start, max_entries } => {
                let wanted = (*max_entries).min(crate::message::MAX_LOG_ENTRIES as u8);
                handler.logs(*start, wanted).await.map(Response::Logs)
            }
            Command::FetchNow => handler.fetch_now().await.map(done),
            Command::FlushQueue => handler.flush_queue().await.map(done),
            Command::DynDnsResume => handler.dyndns_resume().await.map(done),
            Command::AcknowledgeAlert { kind } => handler.acknowledge_alert(kind.as_str()).await.map(done),
            Command::TlsCertificateRequest => handler.tls_certificate_request().await.map(Response::CertificateRequest),
            Command::TlsInstall(chunk) => handler.tls_install(chunk).await.map(done),
            Command::TlsStatus => handler.tls_status().await.map(Response::Certificate),
            Command::TlsRenew => handler.tls_renew().await.map(done),
        }
    }

    fn device_info<H: ConsoleHandler>(&self, handler: &H) -> DeviceInfo {
        let state = match (self.admin_key.is_some(), handler.unlocked()) {
            (false, _) => DeviceState::FactoryFresh,
            (true, false) => DeviceState::Locked,
            (true, true) => DeviceState::Unlocked,
        };
        DeviceInfo {
            protocol_version: PROTOCOL_VERSION,
            identity: self.identity,
            firmware_version: truncated(handler.firmware_version()),
            board: truncated(handler.board()),
            state,
        }
    }

    /// Serializes the response into the receive buffer (free now) and frames it there in place;
    /// returns the frame's length (the frame is the buffer's start, the rest is wiped).
    fn encode_response(&mut self, response: &Response) -> usize {
        let challenge = self.challenge;
        let buffer = self.receiver.scratch();
        let start = IN_PLACE_PAYLOAD_OFFSET;
        let payload_length = payload_of(&mut buffer[start..], challenge, response).or_else(|| {
            payload_of(&mut buffer[start..], challenge, &Response::Error(ErrorCode::DeviceFault))
        });
        let length = payload_length
            .and_then(|length| encode_frame_in_place(buffer, start, length).ok())
            .unwrap_or(0);
        buffer[length..].zeroize();
        length
    }
}

/// The commands whose work goes deepest (the unlock's key derivation and store building, the
/// configuration's commit: both rebuild the mail settings), with only what they need: they run
/// after the decoded [`Command`] (536 bytes) is dropped, so the console task's future does not
/// hold it beside their work (about 500 bytes less).
enum DeepCommand {
    Unlock(Secret),
    ConfigCommit(u16),
}

impl DeepCommand {
    fn of(command: &Command) -> Option<Self> {
        match command {
            Command::Unlock { passphrase } => Some(Self::Unlock(passphrase.clone())),
            Command::ConfigCommit { item_count } => Some(Self::ConfigCommit(*item_count)),
            _ => None,
        }
    }
}

/// Encodes exactly like [`ResponseEnvelope`], without copying the response onto the stack.
#[derive(serde::Serialize)]
struct EnvelopeReference<'a> {
    challenge: &'a Challenge,
    body: &'a Response,
}

fn payload_of(scratch: &mut [u8], challenge: Challenge, response: &Response) -> Option<usize> {
    let envelope = EnvelopeReference { challenge: &challenge, body: response };
    let limit = crate::MAX_PAYLOAD - crate::frame::CHECKSUM_LENGTH;
    let (version, body) = scratch.get_mut(..limit)?.split_first_mut()?;
    *version = PROTOCOL_VERSION;
    postcard::to_slice(&envelope, body).ok().map(|written| written.len() + 1)
}

fn truncated<const N: usize>(text: &str) -> heapless::String<N> {
    let mut end = text.len().min(N);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    heapless::String::try_from(&text[..end]).unwrap_or_default()
}

fn frame_error_code(error: FrameError) -> ErrorCode {
    match error {
        FrameError::TooLong | FrameError::OutputTooSmall => ErrorCode::FrameTooLong,
        FrameError::BadEncoding | FrameError::TooShort => ErrorCode::MalformedFrame,
        FrameError::BadChecksum => ErrorCode::BadChecksum,
    }
}

/// Checks a collected frame from framing to signature; returns the command and whether it was
/// signed. Changes nothing but `encoded`: decoded in place, the signed message built in place
/// over the request's header while it is checked.
fn authenticate(
    encoded: &mut [u8],
    identity: &DeviceIdentity,
    admin_key: Option<&PublicKey>,
    challenge: &Challenge,
) -> Result<(Command, bool), ErrorCode> {
    let payload_length = decode_frame(encoded).map_err(frame_error_code)?.len();
    let payload = &mut encoded[..payload_length];
    let version = payload[0];
    if version != PROTOCOL_VERSION {
        return Err(ErrorCode::UnsupportedVersion { device_version: PROTOCOL_VERSION });
    }
    match payload.get(1) {
        Some(&UNSIGNED) => {
            let command = decode_command(&payload[UNSIGNED_HEADER_LENGTH..])?;
            match command {
                Command::Hello => Ok((command, false)),
                _ => Err(ErrorCode::SignatureRequired),
            }
        }
        Some(&SIGNED) if payload.len() > SIGNED_HEADER_LENGTH => {
            let frame_identity = &payload[signing::IDENTITY_OFFSET..signing::CHALLENGE_OFFSET];
            let frame_challenge = &payload[signing::CHALLENGE_OFFSET..signing::SIGNATURE_OFFSET];
            if frame_identity != identity {
                return Err(ErrorCode::WrongDevice);
            }
            if frame_challenge != challenge {
                return Err(ErrorCode::StaleChallenge);
            }
            let mut signature = [0; signing::SIGNATURE_LENGTH];
            signature.copy_from_slice(&payload[signing::SIGNATURE_OFFSET..SIGNED_HEADER_LENGTH]);
            let command = decode_command(&payload[SIGNED_HEADER_LENGTH..])?;
            let key = match (&command, admin_key) {
                (Command::Enrol { .. }, Some(_)) => return Err(ErrorCode::AlreadyEnrolled),
                (Command::Enrol { admin_key }, None) => *admin_key,
                (_, Some(key)) => *key,
                (_, None) => return Err(ErrorCode::NotEnrolled),
            };
            let message = signing::command_message_in_place(payload, version, identity, challenge)
                .ok_or(ErrorCode::FrameTooLong)?;
            verify(&key, message, &signature)?;
            Ok((command, true))
        }
        _ => Err(ErrorCode::MalformedHeader),
    }
}

fn decode_command(bytes: &[u8]) -> Result<Command, ErrorCode> {
    match postcard::take_from_bytes::<Command>(bytes) {
        Ok((command, [])) => Ok(command),
        _ => Err(ErrorCode::UndecodableCommand),
    }
}

fn verify(key: &PublicKey, message: &[u8], signature: &[u8; 64]) -> Result<(), ErrorCode> {
    let key = VerifyingKey::from_bytes(key).map_err(|_| ErrorCode::BadSignature)?;
    key.verify_strict(message, &Signature::from_bytes(signature))
        .map_err(|_| ErrorCode::BadSignature)
}
