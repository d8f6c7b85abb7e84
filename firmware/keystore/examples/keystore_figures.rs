//! Prints the key store's figures: the default PBKDF2 iteration count, the measured host time
//! of one unlock at that count, and the *estimated* Cortex-M4 instructions and seconds at
//! 168 MHz (from ≈ 3,100 instructions per SHA-256 compression; see the `kdf` module doc).
//!
//! `cargo run -p homemx-keystore --release --example keystore_figures`

use homemx_keystore::kdf::{
    estimated_instructions, estimated_milliseconds_at_reference_clock, COMPRESSIONS_PER_ITERATION,
    ESTIMATED_INSTRUCTIONS_PER_COMPRESSION, REFERENCE_CORE_CLOCK_HZ,
};
use homemx_keystore::record::{RECORD_AREA_LENGTH, RECORD_LENGTH};
use homemx_keystore::{Keystore, KeystoreConfig, DEFAULT_ITERATIONS};
use homemx_spool::testing::{block_on, SimulatedFlash, TestRandom};
use std::time::Instant;

fn main() {
    let iterations = DEFAULT_ITERATIONS;
    let flash = SimulatedFlash::<4, 4096>::new(0x4000);
    let config = KeystoreConfig { iterations };
    let mut store = block_on(Keystore::mount(flash.clone(), 0..0x4000, TestRandom::new(1), config))
        .expect("mount");
    let started = Instant::now();
    block_on(store.initialise(b"correct horse battery staple", [7; 32])).expect("initialise");
    let initialise_time = started.elapsed();
    store.lock();

    let runs = 5;
    let mut best = f64::MAX;
    for _ in 0..runs {
        let started = Instant::now();
        block_on(store.unlock(b"correct horse battery staple", 0)).expect("unlock");
        best = best.min(started.elapsed().as_secs_f64());
        store.lock();
    }
    let counters = flash.counters();

    println!("homemx-keystore figures");
    println!("  PBKDF2-HMAC-SHA256 iterations (default)    {iterations}");
    println!("  host time per unlock (best of {runs})          {:.1} ms", best * 1000.0);
    println!("  host time for initialise                   {:.1} ms", initialise_time.as_secs_f64() * 1000.0);
    println!(
        "  ESTIMATE Cortex-M4 instructions per unlock {:.1} M  ({} per compression x {} per iteration)",
        estimated_instructions(iterations) as f64 / 1e6,
        ESTIMATED_INSTRUCTIONS_PER_COMPRESSION,
        COMPRESSIONS_PER_ITERATION
    );
    println!(
        "  ESTIMATE unlock time at {} MHz            {:.2} s  (budget 2 s; 1 instruction per cycle)",
        REFERENCE_CORE_CLOCK_HZ / 1_000_000,
        estimated_milliseconds_at_reference_clock(iterations) as f64 / 1000.0
    );
    println!("  record bytes / record area per sector      {RECORD_LENGTH} / {RECORD_AREA_LENGTH}");
    println!("  attempt-log entries per 4 KiB sector       {}", store.attempt_log_capacity());
    println!(
        "  flash for initialise + {runs} unlocks          {} programs, {} bytes, {} erases",
        counters.program_operations, counters.bytes_programmed, counters.sectors_erased
    );
}
