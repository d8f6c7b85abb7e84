//! Connections to the device: a serial port, a UNIX socket (QEMU's UART) or TCP.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use crate::error::{CliError, ExitCode, Result};

/// A byte stream to the device with a read timeout.
pub trait Link: Read + Write + Send {}
impl<T: Read + Write + Send> Link for T {}

/// Where the device is, parsed from `--device`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceAddress {
    /// A serial port path (USB CDC-ACM, e.g. /dev/ttyACM0, or a pty).
    Serial(String),
    /// A UNIX socket path (QEMU's UART).
    Unix(String),
    /// A TCP address `host:port`.
    Tcp(String),
}

impl DeviceAddress {
    /// Parses `unix:PATH`, `tcp:HOST:PORT` or a serial port path.
    pub fn parse(text: &str) -> std::result::Result<Self, String> {
        if let Some(path) = text.strip_prefix("unix:") {
            if path.is_empty() {
                return Err("unix: needs a socket path, e.g. unix:qemu/run/demo/serial.sock".into());
            }
            Ok(Self::Unix(path.into()))
        } else if let Some(address) = text.strip_prefix("tcp:") {
            match address.rsplit_once(':') {
                Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => Ok(Self::Tcp(address.into())),
                _ => Err("tcp: needs HOST:PORT, e.g. tcp:127.0.0.1:4321".into()),
            }
        } else if text.is_empty() {
            Err("empty device; give a serial port path, unix:PATH or tcp:HOST:PORT".into())
        } else {
            Ok(Self::Serial(text.into()))
        }
    }

    /// Opens the connection; reads time out after `timeout`.
    pub fn open(&self, timeout: Duration) -> Result<Box<dyn Link>> {
        match self {
            DeviceAddress::Serial(path) => {
                let port = serialport::new(path, 115_200).timeout(timeout).open().map_err(|error| {
                    CliError::new(ExitCode::Connection, format!("cannot open serial port {path}: {error}"))
                        .hint("check the path (ls /dev/ttyACM*), the cable, and that you may use the port (group dialout)")
                })?;
                Ok(Box::new(port))
            }
            DeviceAddress::Unix(path) => {
                let stream = UnixStream::connect(path)
                    .map_err(|error| CliError::connection(&format!("cannot connect to {path}"), error))?;
                stream.set_read_timeout(Some(timeout)).map_err(|error| CliError::connection(path, error))?;
                Ok(Box::new(stream))
            }
            DeviceAddress::Tcp(address) => {
                let stream = TcpStream::connect(address)
                    .map_err(|error| CliError::connection(&format!("cannot connect to {address}"), error))?;
                stream.set_read_timeout(Some(timeout)).map_err(|error| CliError::connection(address, error))?;
                let _ = stream.set_nodelay(true);
                Ok(Box::new(stream))
            }
        }
    }
}
