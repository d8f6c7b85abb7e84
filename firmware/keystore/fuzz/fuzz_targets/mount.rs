//! Fuzz target: mounting arbitrary flash contents must not panic or hang, and every operation
//! afterwards (unlock right and wrong, rotate, change passphrase, factory reset, re-enrol)
//! must not panic either; a mounted record must never unlock with a wrong passphrase.
//!
//! Input byte 0 picks the mode: even = the rest is a raw image of the 4-sector region;
//! odd = the rest is a list of (offset u16, xor byte) mutations applied to a valid provisioned
//! image (with a few failed attempts logged), so the fuzzer reaches past the integrity hash
//! into the attempt log and the slot selection.
#![no_main]

use homemx_keystore::{Keystore, KeystoreConfig, KeystoreState, UnlockError};
use homemx_spool::testing::{block_on, SimulatedFlash, TestRandom};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

type Flash = SimulatedFlash<4, 4096>;
const SIZE: usize = 4 * 4096;
const CONFIG: KeystoreConfig = KeystoreConfig { iterations: 1 };
const PASSPHRASE: &[u8] = b"fuzz passphrase";

fn valid_image() -> &'static Vec<u8> {
    static IMAGE: OnceLock<Vec<u8>> = OnceLock::new();
    IMAGE.get_or_init(|| {
        let flash = Flash::new(SIZE);
        block_on(async {
            let mut store = Keystore::mount(flash.clone(), 0..SIZE as u32, TestRandom::new(1), CONFIG)
                .await
                .unwrap();
            store.initialise(PASSPHRASE, [9; 32]).await.unwrap();
            store.rotate_admin_key([8; 32]).await.unwrap();
            store.lock();
            for _ in 0..3 {
                let _ = store.unlock(b"wrong", 0).await;
            }
        });
        flash.snapshot()
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let image = if mode % 2 == 0 {
        rest.to_vec()
    } else {
        let mut image = valid_image().clone();
        for mutation in rest.chunks_exact(3) {
            let offset = usize::from(u16::from_le_bytes([mutation[0], mutation[1]])) % SIZE;
            image[offset] ^= mutation[2];
        }
        image
    };
    let flash = Flash::from_image(SIZE, &image);
    block_on(async {
        let Ok(mut store) = Keystore::mount(flash, 0..SIZE as u32, TestRandom::new(2), CONFIG).await
        else {
            return;
        };
        let _ = store.admin_public_key();
        let _ = store.failed_attempts();
        if store.state() == KeystoreState::Locked {
            let now = store.unlock_wait_seconds(0);
            let wrong = store.unlock(b"not the passphrase", now).await;
            assert!(wrong.is_err(), "wrong passphrase unlocked");
            let now = now + store.unlock_wait_seconds(now);
            match store.unlock(PASSPHRASE, now).await {
                Ok(_key) => {
                    let _ = store.rotate_admin_key([1; 32]).await;
                    let _ = store.change_passphrase(PASSPHRASE, b"next", now).await;
                }
                Err(UnlockError::Flash(_)) => {}
                Err(_) => {}
            }
        }
        let _ = store.factory_reset().await;
        assert_eq!(store.state(), KeystoreState::FactoryFresh);
        let _ = store.initialise(PASSPHRASE, [3; 32]).await.unwrap();
    });
});
