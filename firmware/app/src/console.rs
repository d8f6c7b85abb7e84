//! The serial console (UART on QEMU, USB CDC-ACM on the real board): a line-based text
//! console that answers `version` and `help`. The authenticated provisioning protocol of
//! the key-store work replaces it; until then nothing on it reads or changes state.

use embedded_io_async::{Read, Write};

use crate::network::PartsTypes;
use crate::{bsp, FIRMWARE_VERSION};

type Serial = <bsp::Parts as PartsTypes>::Serial;

const LINE_LIMIT: usize = 128;

#[embassy_executor::task]
pub async fn console_task(mut serial: Serial) -> ! {
    let _ = serial.write_all(b"homemx console\r\n").await;
    let mut line = heapless::Vec::<u8, LINE_LIMIT>::new();
    let mut overflow = false;
    let mut byte = [0u8; 1];
    loop {
        if serial.read(&mut byte).await.unwrap_or(0) == 0 {
            continue;
        }
        match byte[0] {
            b'\r' | b'\n' => {
                if !line.is_empty() || overflow {
                    let reply: &[&[u8]] = if overflow {
                        &[b"error: line too long\r\n"]
                    } else {
                        match line.as_slice() {
                            b"version" => &[b"homemx ", FIRMWARE_VERSION.as_bytes(), b" on ", bsp::BOARD_NAME.as_bytes(), b"\r\n"],
                            b"help" => &[b"commands: version, help\r\n"],
                            _ => &[b"error: unknown command (try help)\r\n"],
                        }
                    };
                    for part in reply {
                        let _ = serial.write_all(part).await;
                    }
                    line.clear();
                    overflow = false;
                }
            }
            other => {
                if line.push(other).is_err() {
                    overflow = true;
                }
            }
        }
    }
}
