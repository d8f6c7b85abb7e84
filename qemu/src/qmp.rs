//! A small client for QEMU's machine protocol (QMP) over a UNIX socket: reset, memory dumps,
//! status queries.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::Result;

/// A connected QMP session in command mode.
pub struct QmpClient {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl QmpClient {
    /// Connects (retrying while QEMU starts up) and negotiates capabilities.
    pub fn connect(path: &Path, timeout: Duration) -> Result<Self> {
        let deadline = Instant::now() + timeout;
        let stream = loop {
            match UnixStream::connect(path) {
                Ok(stream) => break stream,
                Err(error) if Instant::now() >= deadline => return Err(format!("QMP socket {}: {error}", path.display()).into()),
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        };
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        let mut client = QmpClient { reader: BufReader::new(stream.try_clone()?), writer: stream };
        client.read_message()?; // greeting
        client.execute("qmp_capabilities", json!({}))?;
        Ok(client)
    }

    fn read_message(&mut self) -> Result<Value> {
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Err("QMP connection closed".into());
        }
        Ok(serde_json::from_str(&line)?)
    }

    /// Runs a command and returns its `return` value; QMP errors become `Err`.
    pub fn execute(&mut self, command: &str, arguments: Value) -> Result<Value> {
        let request = json!({ "execute": command, "arguments": arguments });
        writeln!(self.writer, "{request}")?;
        loop {
            let message = self.read_message()?;
            if message.get("event").is_some() {
                continue;
            }
            if let Some(error) = message.get("error") {
                return Err(format!("QMP {command}: {error}").into());
            }
            return Ok(message.get("return").cloned().unwrap_or(Value::Null));
        }
    }

    /// Saves `length` bytes of guest physical memory at `address` into `file`.
    pub fn save_physical_memory(&mut self, address: u64, length: u64, file: &Path) -> Result<()> {
        self.execute("pmemsave", json!({ "val": address, "size": length, "filename": file.to_string_lossy() }))?;
        Ok(())
    }

    /// Resets the machine like the reset button (RAM contents are kept by QEMU).
    pub fn system_reset(&mut self) -> Result<()> {
        self.execute("system_reset", json!({}))?;
        Ok(())
    }
}
