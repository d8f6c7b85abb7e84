//! Writes guest memory and reads and writes the CPU's registers through QEMU's gdbstub (the
//! remote serial protocol), which QMP cannot do: the RAM-wipe test plants its secret pattern
//! this way, and the stack-overflow test moves the stack pointer to the stack's limit.

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

/// QEMU's gdb register numbers on M-profile: the stack pointer (the one in use: MSP here).
pub const STACK_POINTER: u32 = 13;
/// The program counter.
pub const PROGRAM_COUNTER: u32 = 15;
/// xPSR: its low 9 bits are the active exception's number (0 in thread mode, 3 HardFault).
pub const XPSR: u32 = 25;

/// A connection to the gdbstub: the guest is paused while it lasts, and runs on at
/// [`Session::detach`].
pub struct Session {
    stream: UnixStream,
}

impl Session {
    /// Connects (which pauses the guest). Reads the target's XML description as gdb does: QEMU
    /// answers `p`/`P` (one register) only to a client that did.
    pub fn attach(socket: &Path) -> Result<Session> {
        let stream = UnixStream::connect(socket)?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut session = Session { stream };
        session.request("qSupported:xmlRegisters=arm")?;
        session.request("qXfer:features:read:target.xml:0,ffb")?;
        Ok(session)
    }

    fn request(&mut self, payload: &str) -> Result<String> {
        self.stream.write_all(packet(payload).as_bytes())?;
        let mut reply = read_reply(&mut self.stream)?;
        // QEMU announces the stop it made on connection (`T02…`) before it answers.
        while reply.starts_with('T') || reply.starts_with('S') {
            reply = read_reply(&mut self.stream)?;
        }
        Ok(reply)
    }

    /// The little-endian 32-bit word the reply to `payload` starts with, in hex.
    fn request_word(&mut self, payload: &str) -> Result<u32> {
        let reply = self.request(payload)?;
        let bytes: Vec<u8> = (0..reply.len() / 2).filter_map(|index| u8::from_str_radix(reply.get(index * 2..index * 2 + 2)?, 16).ok()).collect();
        let word: [u8; 4] = bytes.get(..4).and_then(|word| word.try_into().ok()).ok_or_else(|| format!("gdbstub: {payload}: {reply:?}"))?;
        Ok(u32::from_le_bytes(word))
    }

    /// Register `number` (a 32-bit register, sent little-endian).
    pub fn read_register(&mut self, number: u32) -> Result<u32> {
        self.request_word(&format!("p{number:x}"))
    }

    /// Sets register `number` to `value`.
    pub fn write_register(&mut self, number: u32, value: u32) -> Result<()> {
        let hex: String = value.to_le_bytes().iter().map(|byte| format!("{byte:02x}")).collect();
        match self.request(&format!("P{number:x}={hex}"))?.as_str() {
            "OK" => Ok(()),
            other => Err(format!("gdbstub refused to set register {number}: {other}").into()),
        }
    }

    /// The 32-bit word at `address` (a device register such as the fault status registers, or RAM).
    pub fn read_word(&mut self, address: u32) -> Result<u32> {
        self.request_word(&format!("m{address:x},4"))
    }

    /// Runs the guest until it reaches the Thumb instruction at `address` (a breakpoint, removed
    /// again once hit), within `timeout`; the guest is paused there afterwards.
    pub fn run_to(&mut self, address: u32, timeout: Duration) -> Result<()> {
        match self.request(&format!("Z0,{address:x},2"))?.as_str() {
            "OK" => {}
            other => return Err(format!("gdbstub refused a breakpoint at {address:#x}: {other}").into()),
        }
        self.stream.set_read_timeout(Some(timeout))?;
        self.stream.write_all(packet("c").as_bytes())?;
        let stop = read_reply(&mut self.stream);
        self.stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        let stop = stop?;
        if !(stop.starts_with('T') || stop.starts_with('S')) {
            return Err(format!("gdbstub: no stop at {address:#x}: {stop:?}").into());
        }
        self.request(&format!("z0,{address:x},2"))?;
        Ok(())
    }

    /// Executes one instruction (e.g. off a breakpoint's address, where a breakpoint set again
    /// would stop at once); the guest is paused afterwards.
    pub fn step(&mut self) -> Result<()> {
        self.stream.write_all(packet("s").as_bytes())?;
        let stop = read_reply(&mut self.stream)?;
        if !(stop.starts_with('T') || stop.starts_with('S')) {
            return Err(format!("gdbstub: no stop after a step: {stop:?}").into());
        }
        Ok(())
    }

    /// Detaches: the guest runs on.
    pub fn detach(mut self) -> Result<()> {
        self.stream.write_all(packet("D").as_bytes())?;
        let _ = read_reply(&mut self.stream);
        Ok(())
    }
}
