//! defmt logging for the QEMU board: frames go to QEMU's stdout through semihosting and are
//! decoded on the host (`cargo xtask run`, the e2e harness). Timestamps are milliseconds
//! since boot from the embassy-time driver.

use defmt_semihosting as _;

defmt::timestamp!("{=u64:ms}", crate::time_driver::ticks());
