//! The owner at the console: the simulator provisions the device over the simulated serial
//! link with the same signed wire protocol as the CLI (`homemx_wire::client`): hello, enrol
//! the admin key, the first unlock (which creates the data key), the configuration, the
//! provider's credentials and trust anchors.
//!
//! Owns: the client session and its frame receiver. Calls: nothing.

use embedded_io_async::{Read, Write};
use homemx_wire::client::{AdminSigningKey, ClientSession};
use homemx_wire::config::ConfigItem;
use homemx_wire::frame::{FrameReceiver, Received};
use homemx_wire::message::{Command, Credential, Response, Status, TlsService, TrustAnchor, TrustAnchorUpdate, MAX_CERTIFICATE_CHUNK};
use homemx_wire::secret::Secret;
use homemx_wire::MAX_ENCODED_FRAME;

/// A console session over any byte link.
pub struct Owner<L> {
    link: L,
    client: ClientSession,
    receiver: FrameReceiver,
    pending: Vec<u8>,
}

/// Why the console failed: the simulation ends with it.
#[derive(Debug)]
pub struct ConsoleError(pub String);

impl<L: Read + Write> Owner<L> {
    /// Says hello over `link` with the admin key `key`.
    pub async fn open(link: L, key: AdminSigningKey) -> Result<Self, ConsoleError> {
        let mut owner = Self { link, client: ClientSession::new(key), receiver: FrameReceiver::new(), pending: Vec::new() };
        let mut frame = [0u8; MAX_ENCODED_FRAME + 1];
        let length = ClientSession::hello_frame(&mut frame[1..]).map_err(|error| ConsoleError(error.describe().into()))?;
        owner.send(&frame[..length + 1]).await?;
        match owner.receive().await? {
            Response::DeviceInfo(_) => Ok(owner),
            other => Err(ConsoleError(format!("hello answered {other:?}"))),
        }
    }

    /// Sends `command` signed and expects `Done`.
    pub async fn expect_done(&mut self, command: &Command) -> Result<(), ConsoleError> {
        let mut frame = [0u8; MAX_ENCODED_FRAME];
        let length = self.client.signed_frame(command, &mut frame).map_err(|error| ConsoleError(error.describe().into()))?;
        self.send(&frame[..length]).await?;
        match self.receive().await? {
            Response::Done => Ok(()),
            other => Err(ConsoleError(format!("{} answered {other:?}", command.name()))),
        }
    }

    /// Enrols the admin key, sets the passphrase with the first unlock and sends `items`.
    pub async fn provision(&mut self, passphrase: &str, items: &[ConfigItem]) -> Result<(), ConsoleError> {
        let admin_key = self.client.public_key();
        self.expect_done(&Command::Enrol { admin_key }).await?;
        self.unlock(passphrase).await?;
        self.expect_done(&Command::ConfigBegin).await?;
        for item in items {
            self.expect_done(&Command::ConfigPut(item.clone())).await?;
        }
        self.expect_done(&Command::ConfigCommit { item_count: items.len() as u16 }).await
    }

    /// Stores `credential` (e.g. the smarthost password) in the device's vault.
    pub async fn set_credential(&mut self, credential: Credential, value: &str) -> Result<(), ConsoleError> {
        let secret = Secret::new(value.as_bytes()).ok_or_else(|| ConsoleError("credential too long".into()))?;
        self.expect_done(&Command::SetCredential { credential, secret }).await
    }

    /// Makes the CA certificate `der` the trust anchor of `service`, in chunks as the CLI sends
    /// it.
    pub async fn set_trust_anchor(&mut self, service: TlsService, der: &[u8]) -> Result<(), ConsoleError> {
        for (index, chunk) in der.chunks(MAX_CERTIFICATE_CHUNK).enumerate() {
            let anchor = TrustAnchor::CertificateChunk {
                total_length: der.len() as u16,
                offset: (index * MAX_CERTIFICATE_CHUNK) as u16,
                bytes: heapless::Vec::from_slice(chunk).map_err(|_| ConsoleError("chunk too long".into()))?,
            };
            self.expect_done(&Command::SetTrustAnchor(TrustAnchorUpdate { service, anchor })).await?;
        }
        Ok(())
    }

    /// The device's status (queue length, spool space, ...).
    pub async fn status(&mut self) -> Result<Status, ConsoleError> {
        let mut frame = [0u8; MAX_ENCODED_FRAME];
        let length = self.client.signed_frame(&Command::Status, &mut frame).map_err(|error| ConsoleError(error.describe().into()))?;
        self.send(&frame[..length]).await?;
        match self.receive().await? {
            Response::Status(status) => Ok(status),
            other => Err(ConsoleError(format!("status answered {other:?}"))),
        }
    }

    /// Unlocks the storage with `passphrase`.
    pub async fn unlock(&mut self, passphrase: &str) -> Result<(), ConsoleError> {
        let passphrase = Secret::new(passphrase.as_bytes()).ok_or_else(|| ConsoleError("passphrase too long".into()))?;
        self.expect_done(&Command::Unlock { passphrase }).await
    }

    async fn send(&mut self, bytes: &[u8]) -> Result<(), ConsoleError> {
        self.link.write_all(bytes).await.map_err(|error| ConsoleError(format!("console write: {error:?}")))?;
        self.link.flush().await.map_err(|error| ConsoleError(format!("console flush: {error:?}")))
    }

    async fn receive(&mut self) -> Result<Response, ConsoleError> {
        let mut buffer = [0u8; 256];
        loop {
            if self.pending.is_empty() {
                let count = self.link.read(&mut buffer).await.map_err(|error| ConsoleError(format!("console read: {error:?}")))?;
                if count == 0 {
                    return Err(ConsoleError("the device closed the console".into()));
                }
                self.pending.extend_from_slice(&buffer[..count]);
            }
            let (consumed, received) = self.receiver.push(&self.pending);
            self.pending.drain(..consumed);
            match received {
                Received::NeedMore | Received::Empty => {}
                Received::Overflow => return Err(ConsoleError("overlong frame from the device".into())),
                Received::Frame(length) => {
                    let frame = self.receiver.frame(length);
                    return self.client.accept_response(frame).map_err(|error| ConsoleError(error.describe().into()));
                }
            }
        }
    }
}
