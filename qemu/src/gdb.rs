//! Writes guest memory through QEMU's gdbstub (the remote serial protocol), which QMP cannot
//! do: the RAM-wipe test plants its secret pattern this way.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use crate::Result;

fn packet(payload: &str) -> String {
    let checksum = payload.bytes().fold(0u8, |sum, byte| sum.wrapping_add(byte));
    format!("${payload}#{checksum:02x}")
}

fn read_reply(stream: &mut UnixStream) -> Result<String> {
    let mut reply = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        stream.read_exact(&mut byte)?;
        match byte[0] {
            b'+' if reply.is_empty() => continue,
            b'#' => {
                let mut checksum = [0u8; 2];
                stream.read_exact(&mut checksum)?;
                stream.write_all(b"+")?;
                let text = String::from_utf8_lossy(&reply).into_owned();
                return Ok(text.trim_start_matches('$').to_string());
            }
            other => reply.push(other),
        }
    }
}

/// Connects to the gdbstub (which pauses the guest), writes `bytes` at `address`, and
/// detaches (which lets the guest run on).
pub fn write_memory(socket: &Path, writes: &[(u32, &[u8])]) -> Result<()> {
    let mut stream = UnixStream::connect(socket)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    for (address, bytes) in writes {
        let hex: String = bytes.iter().map(|byte| format!("{byte:02x}")).collect();
        stream.write_all(packet(&format!("M{address:x},{:x}:{hex}", bytes.len())).as_bytes())?;
        let mut reply = read_reply(&mut stream)?;
        // QEMU announces the stop it made on connection (`T02…`) before it answers.
        while reply.starts_with('T') || reply.starts_with('S') {
            reply = read_reply(&mut stream)?;
        }
        if reply != "OK" {
            return Err(format!("gdbstub refused the write at {address:#x}: {reply}").into());
        }
    }
    stream.write_all(packet("D").as_bytes())?;
    let _ = read_reply(&mut stream);
    Ok(())
}
