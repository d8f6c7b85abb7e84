//! defmt logging for the STM32H573I-DK: frames go into an RTT buffer in RAM that the debug
//! probe reads (`probe-rs run` decodes them on the host). Timestamps are milliseconds since
//! boot from embassy-time.

use defmt_rtt as _;

defmt::timestamp!("{=u64:ms}", embassy_time::Instant::now().as_millis());
