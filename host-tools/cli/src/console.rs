//! A console session with the device over a [`Link`]: hello, then signed commands.

use std::time::{Duration, Instant};

use homemx_wire::client::{AdminSigningKey, ClientSession};
use homemx_wire::frame::{FrameReceiver, Received};
use homemx_wire::message::{Command, DeviceInfo, Response};
use homemx_wire::MAX_ENCODED_FRAME;

use crate::error::{CliError, ExitCode, Result};
use crate::link::Link;

/// An open console: the link and the client session.
pub struct Console {
    link: Box<dyn Link>,
    client: ClientSession,
    receiver: FrameReceiver,
    timeout: Duration,
    /// What the device said in its hello.
    pub device: DeviceInfo,
}

impl Console {
    /// Says hello over `link` and learns the device's identity and challenge.
    pub fn open(link: Box<dyn Link>, key: AdminSigningKey, timeout: Duration) -> Result<Self> {
        let mut console = Self {
            link,
            client: ClientSession::new(key),
            receiver: FrameReceiver::new(),
            timeout,
            device: placeholder_info(),
        };
        // A lone delimiter ends whatever partial frame the device may hold.
        let mut frame = [0u8; MAX_ENCODED_FRAME + 1];
        let length = ClientSession::hello_frame(&mut frame[1..]).map_err(protocol)?;
        console.send(&frame[..length + 1])?;
        match console.receive()? {
            Response::DeviceInfo(info) => console.device = info,
            Response::Error(code) => return Err(CliError::refused("hello", code)),
            other => return Err(unexpected("hello", &other)),
        }
        Ok(console)
    }

    /// The public half of the key this console signs with.
    pub fn public_key(&self) -> [u8; 32] {
        self.client.public_key()
    }

    /// The client session (for key-rotation proofs).
    pub fn client(&self) -> &ClientSession {
        &self.client
    }

    /// Sends a signed command and returns the device's response (errors included).
    pub fn call(&mut self, command: &Command) -> Result<Response> {
        let mut frame = [0u8; MAX_ENCODED_FRAME];
        let length = self.client.signed_frame(command, &mut frame).map_err(protocol)?;
        self.send(&frame[..length])?;
        self.receive()
    }

    /// Sends a signed command; a refusal becomes an error.
    pub fn expect(&mut self, command: &Command) -> Result<Response> {
        match self.call(command)? {
            Response::Error(code) => Err(CliError::refused(command.name(), code)),
            response => Ok(response),
        }
    }

    /// Sends a signed command that must answer `Done`.
    pub fn expect_done(&mut self, command: &Command) -> Result<()> {
        match self.expect(command)? {
            Response::Done => Ok(()),
            other => Err(unexpected(command.name(), &other)),
        }
    }

    fn send(&mut self, bytes: &[u8]) -> Result<()> {
        self.link
            .write_all(bytes)
            .and_then(|()| self.link.flush())
            .map_err(|error| CliError::connection("writing to the device", error))
    }

    fn receive(&mut self) -> Result<Response> {
        let deadline = Instant::now() + self.timeout;
        let mut buffer = [0u8; 256];
        let mut pending: Vec<u8> = Vec::new();
        loop {
            if pending.is_empty() {
                if Instant::now() >= deadline {
                    return Err(timed_out(self.timeout));
                }
                match self.link.read(&mut buffer) {
                    Ok(0) => {
                        return Err(CliError::new(ExitCode::Connection, "the device closed the connection")
                            .hint("is another program (or `cargo xtask run`'s console) using the port?"))
                    }
                    Ok(count) => pending.extend_from_slice(&buffer[..count]),
                    Err(error)
                        if matches!(
                            error.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut | std::io::ErrorKind::Interrupted
                        ) =>
                    {
                        continue
                    }
                    Err(error) => return Err(CliError::connection("reading from the device", error)),
                }
            }
            let (consumed, received) = self.receiver.push(&pending);
            pending.drain(..consumed);
            match received {
                Received::NeedMore | Received::Empty => {}
                Received::Overflow => {
                    return Err(CliError::new(ExitCode::Protocol, "the device sent an overlong frame"))
                }
                Received::Frame(length) => {
                    let frame = self.receiver.frame(length);
                    return self.client.accept_response(frame).map_err(protocol);
                }
            }
        }
    }
}

fn timed_out(timeout: Duration) -> CliError {
    CliError::new(ExitCode::Connection, format!("the device did not answer within {} s", timeout.as_secs()))
        .hint("check --device and the cable; a device busy deriving keys may need a longer --timeout")
}

fn protocol(error: homemx_wire::client::ClientError) -> CliError {
    let hint = match error {
        homemx_wire::client::ClientError::VersionMismatch { device_version } => format!(
            "the device speaks protocol version {device_version}, this CLI version {}: use a matching CLI",
            homemx_wire::PROTOCOL_VERSION
        ),
        _ => "check the cable and retry".to_string(),
    };
    CliError::new(ExitCode::Protocol, error.describe()).hint(hint)
}

/// An answer that does not fit the command.
pub fn unexpected(command: &str, response: &Response) -> CliError {
    CliError::new(ExitCode::Protocol, format!("unexpected answer to {command}: {response:?}"))
}

fn placeholder_info() -> DeviceInfo {
    DeviceInfo {
        protocol_version: 0,
        identity: [0; 16],
        firmware_version: heapless::String::new(),
        board: heapless::String::new(),
        state: homemx_wire::message::DeviceState::Locked,
    }
}
