//! Shared test plumbing: a device (session + in-memory handler) and a client in one process.
#![allow(dead_code)]

use homemx_wire::client::{AdminSigningKey, ClientSession};
use homemx_wire::device::ConsoleSession;
use homemx_wire::message::{Command, Response};
use homemx_wire::testing::{CountingEntropy, MemoryHandler};
use homemx_wire::{DeviceIdentity, MAX_ENCODED_FRAME};

/// The identity of the device under test.
pub const IDENTITY: DeviceIdentity = *b"homemx-device-01";
/// Another device.
pub const OTHER_IDENTITY: DeviceIdentity = *b"homemx-device-02";

/// A fixed admin key (deterministic signatures, so golden frames are stable).
pub fn admin_key() -> AdminSigningKey {
    AdminSigningKey::from_bytes(&[7; 32])
}

/// Another key.
pub fn stranger_key() -> AdminSigningKey {
    AdminSigningKey::from_bytes(&[9; 32])
}

/// One device and its handler.
pub struct Device {
    pub session: ConsoleSession,
    pub handler: MemoryHandler,
    pub entropy: CountingEntropy,
}

impl Device {
    pub fn fresh() -> Self {
        Self::with(IDENTITY, MemoryHandler::with_log(15))
    }

    pub fn with(identity: DeviceIdentity, handler: MemoryHandler) -> Self {
        let mut entropy = CountingEntropy::default();
        let session = ConsoleSession::new(identity, handler.admin_key, &mut entropy);
        Self { session, handler, entropy }
    }

    /// Feeds bytes (in one piece) and returns every response frame, delimiters included.
    pub fn feed(&mut self, mut input: &[u8]) -> Vec<Vec<u8>> {
        let mut frames = Vec::new();
        while !input.is_empty() {
            let reply = futures::executor::block_on(self.session.receive(input, &mut self.handler, &mut self.entropy));
            if let Some(frame) = reply.frame {
                frames.push(frame.to_vec());
            }
            input = &input[reply.consumed..];
        }
        frames
    }

    /// What a test compares to prove "nothing changed".
    pub fn snapshot(&self) -> (MemoryHandler, Option<[u8; 32]>, [u8; 32]) {
        (self.handler.clone(), self.session.admin_key().copied(), *self.session.challenge())
    }
}

/// Reads a response frame (delimiter included) into the client.
pub fn accept(client: &mut ClientSession, frame: &[u8]) -> Response {
    assert_eq!(frame.last(), Some(&0), "a frame ends with the delimiter");
    let mut encoded = frame[..frame.len() - 1].to_vec();
    client.accept_response(&mut encoded).expect("response decodes")
}

/// Hello, so the client knows identity and challenge.
pub fn hello(device: &mut Device, client: &mut ClientSession) -> Response {
    let mut frame = [0; MAX_ENCODED_FRAME];
    let length = ClientSession::hello_frame(&mut frame).unwrap();
    let replies = device.feed(&frame[..length]);
    assert_eq!(replies.len(), 1);
    accept(client, &replies[0])
}

/// A signed frame for `command` from `client`.
pub fn signed(client: &ClientSession, command: &Command) -> Vec<u8> {
    let mut frame = [0; MAX_ENCODED_FRAME];
    let length = client.signed_frame(command, &mut frame).unwrap();
    frame[..length].to_vec()
}

/// Sends a signed command and reads the one response.
pub fn run(device: &mut Device, client: &mut ClientSession, command: &Command) -> Response {
    let frame = signed(client, command);
    let replies = device.feed(&frame);
    assert_eq!(replies.len(), 1, "one response per request");
    accept(client, &replies[0])
}

/// A fresh device, enrolled with the admin key and unlocked with "correct horse".
pub fn enrolled_unlocked() -> (Device, ClientSession) {
    let mut device = Device::fresh();
    let mut client = ClientSession::new(admin_key());
    hello(&mut device, &mut client);
    let key = client.public_key();
    assert_eq!(run(&mut device, &mut client, &Command::Enrol { admin_key: key }), Response::Done);
    let unlock = Command::Unlock { passphrase: homemx_wire::secret::Secret::new(b"correct horse").unwrap() };
    assert_eq!(run(&mut device, &mut client, &unlock), Response::Done);
    (device, client)
}
