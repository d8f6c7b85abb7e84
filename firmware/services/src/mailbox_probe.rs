//! The connection probe to the LAN mailbox host: TCP connect, read the greeting, `QUIT`.
//! The delivery task runs it when no delivery or probe has talked to the host for
//! [`probe_due_after`] (one [`PROBE_INTERVAL`] less the probe's timeout and the task's poll), so
//! the status page's headline stays current while the spool is empty and names an outage within
//! one probe interval of its start. The delivery task
//! gives it a socket with small buffers (on its future, never at the same time as a
//! delivery's) and releases it after. Calls nothing else in the crate (it stays outside the
//! app's import cycle). Every step is bounded by a timeout.
//!
//! Owns: nothing (the socket is lent by the delivery task). Calls: nothing.

use embassy_net::tcp::TcpSocket;
use embassy_net::IpEndpoint;
use embassy_time::{with_timeout, Duration};
use homemx_status::MailboxFailure;

/// The longest the headline may still say the mailbox host is reachable after it went away.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(60);

/// How old the last contact with the mailbox host may be before a task that looks every `poll`
/// probes it: early enough that a probe that fails (by its timeout at worst) has ended within
/// [`PROBE_INTERVAL`] of the outage's start. (45 s with the delivery task's 5 s poll.)
pub fn probe_due_after(poll: Duration) -> Duration {
    PROBE_INTERVAL - PROBE_TIMEOUT - poll
}
/// The whole probe (connect, greeting, QUIT) ends within this.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);
/// Receive buffer for the probe's socket (a greeting line or a few).
pub const RECEIVE_BUFFER: usize = 256;
/// Transmit buffer for the probe's socket (`QUIT`).
pub const TRANSMIT_BUFFER: usize = 16;
/// Most reads of greeting bytes (a long multi-line `220-` greeting is still read to its end).
const GREETING_READS: usize = 16;

/// Probes the mailbox host at `host` over `socket` (fresh, its buffers [`RECEIVE_BUFFER`] and
/// [`TRANSMIT_BUFFER`] bytes; the caller releases it): `Ok` for a `220` greeting, else how it
/// failed.
pub async fn probe(socket: &mut TcpSocket<'_>, host: IpEndpoint) -> Result<(), MailboxFailure> {
    socket.set_timeout(Some(PROBE_TIMEOUT));
    with_timeout(PROBE_TIMEOUT, exchange(socket, host)).await.unwrap_or(Err(MailboxFailure::Unreachable))
}

async fn exchange(socket: &mut TcpSocket<'_>, host: IpEndpoint) -> Result<(), MailboxFailure> {
    socket.connect(host).await.map_err(|_| MailboxFailure::Unreachable)?;
    let code = greeting_code(socket).await.ok_or(MailboxFailure::Unreachable)?;
    // QUIT whatever the greeting said (RFC 5321 3.1: a 554 greeting still takes QUIT).
    let _ = socket.write(b"QUIT\r\n").await;
    let _ = socket.flush().await;
    if code == *b"220" {
        Ok(())
    } else {
        Err(MailboxFailure::Refusing)
    }
}

/// The code of the greeting's last line (`220 ` after any `220-` lines), or `None` when the
/// connection ends first or the greeting is not a reply.
async fn greeting_code(socket: &mut TcpSocket<'_>) -> Option<[u8; 3]> {
    let mut line = [0u8; 4];
    let mut filled = 0;
    let mut chunk = [0u8; 64];
    for _ in 0..GREETING_READS {
        let count = socket.read(&mut chunk).await.ok().filter(|count| *count > 0)?;
        for &byte in &chunk[..count] {
            if byte == b'\n' {
                if filled < 4 || !line[..3].iter().all(u8::is_ascii_digit) {
                    return None;
                }
                if line[3] == b' ' || line[3] == b'\r' {
                    return Some([line[0], line[1], line[2]]);
                }
                filled = 0;
            } else if filled < line.len() {
                line[filled] = byte;
                filled += 1;
            }
        }
    }
    None
}
