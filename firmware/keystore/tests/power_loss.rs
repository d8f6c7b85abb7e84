//! Power cut at every program and erase of every operation that writes, once clean and once
//! torn: after "reboot" the store mounts, and exactly the old or the new secret works (never
//! neither), with the same data key; the store stays usable afterwards.

mod common;
use common::*;
use homemx_keystore::{KeystoreState, UnlockError};

/// What the device may look like after the cut.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Outcome {
    Old,
    New,
}

/// Runs `operation` on a store mounted from `image` with a cut at every mutating operation
/// (both modes), then reboots and hands the recovered store to `judge`.
fn cut_everywhere(
    image: &[u8],
    prepare: impl Fn(&mut Store),
    operation: impl Fn(&mut Store) -> bool,
    judge: impl Fn(&Flash, &mut Store) -> Outcome,
) -> (usize, usize) {
    // Count the operation's programs and erases on an uncut run.
    let flash = Flash::from_image(REGION.end as usize, image);
    let mut store = mount(&flash, 10).unwrap();
    prepare(&mut store);
    let before = flash.mutating_operations();
    assert!(operation(&mut store), "uncut run must succeed");
    let total = flash.mutating_operations() - before;
    assert!(total >= 1);
    eprintln!("{total} programs/erases, each cut clean and torn");
    let mut seen = (0, 0);
    for mode in [CutMode::Clean, CutMode::Torn] {
        for cut in 1..=total + 1 {
            let flash = Flash::from_image(REGION.end as usize, image);
            let mut store = mount(&flash, 10).unwrap();
            prepare(&mut store);
            flash.cut_power_at(cut, mode, cut * 7919 + 1);
            let completed = operation(&mut store);
            assert_eq!(completed, cut > total, "cut {cut} of {total} ({mode:?})");
            drop(store);
            flash.restore_power();
            let mut store = mount(&flash, 20 + cut)
                .unwrap_or_else(|error| panic!("mount after cut {cut} {mode:?}: {error:?}"));
            let outcome = judge(&flash, &mut store);
            match outcome {
                Outcome::Old => seen.0 += 1,
                Outcome::New => seen.1 += 1,
            }
            if cut > total {
                assert_eq!(outcome, Outcome::New, "the completed operation took effect");
            }
        }
    }
    seen
}

/// After recovery the store must accept a further rewrite and keep working.
fn still_usable(flash: &Flash, passphrase: &[u8], key: [u8; 32]) {
    let mut store = mount(flash, 77).unwrap();
    assert_eq!(unlock(&mut store, passphrase, 0), Ok(key));
    block_on(store.change_passphrase(passphrase, b"afterwards", 0)).unwrap();
    block_on(store.rotate_admin_key([0x77; 32])).unwrap();
    drop(store);
    let mut store = mount(flash, 78).unwrap();
    assert_eq!(unlock(&mut store, b"afterwards", 0), Ok(key));
    assert_eq!(sectors_with_records(flash).len(), 1);
}

/// `image` with garbage (as left by a torn erase) in every sector but the record's, so that
/// rewrites and resets have to erase first: more cut points.
fn with_garbage_in_free_slots(image: &[u8]) -> Vec<u8> {
    let flash = Flash::from_image(REGION.end as usize, image);
    let keep = sectors_with_records(&flash);
    let mut image = image.to_vec();
    for sector in 0..REGION.end as usize / SECTOR {
        if !keep.contains(&sector) {
            for (index, byte) in image[sector * SECTOR..sector * SECTOR + 300].iter_mut().enumerate() {
                *byte = (index as u8).wrapping_mul(37) ^ 0x5A;
            }
        }
    }
    image
}

#[test]
fn initialise_is_all_or_nothing() {
    for image in [fresh_flash().snapshot(), with_garbage_in_free_slots(&fresh_flash().snapshot())] {
        initialise_cut_everywhere(&image);
    }
}

fn initialise_cut_everywhere(image: &[u8]) {
    let (old, new) = cut_everywhere(
        image,
        |_| {},
        |store| block_on(store.initialise(PASSPHRASE, ADMIN)).is_ok(),
        |flash, store| match store.state() {
            KeystoreState::FactoryFresh => {
                // Enrolment can simply be repeated.
                let mut again = mount(flash, 5).unwrap();
                block_on(again.initialise(PASSPHRASE, ADMIN)).unwrap();
                Outcome::Old
            }
            KeystoreState::Locked => {
                assert_eq!(store.admin_public_key(), Some(ADMIN));
                let key = unlock(store, PASSPHRASE, 0).expect("provisioned record unlocks");
                still_usable(flash, PASSPHRASE, key);
                Outcome::New
            }
            KeystoreState::Unlocked => unreachable!(),
        },
    );
    assert!(old > 0 && new > 0, "{old} {new}");
}

#[test]
fn change_passphrase_leaves_old_or_new() {
    let (flash, key) = provisioned();
    for image in [flash.snapshot(), with_garbage_in_free_slots(&flash.snapshot())] {
        change_passphrase_cut_everywhere(&image, key);
    }
}

fn change_passphrase_cut_everywhere(image: &[u8], key: [u8; 32]) {
    let (old, new) = cut_everywhere(
        image,
        |store| {
            unlock(store, PASSPHRASE, 0).unwrap();
        },
        |store| block_on(store.change_passphrase(PASSPHRASE, NEW_PASSPHRASE, 0)).is_ok(),
        |flash, store| {
            assert_eq!(store.state(), KeystoreState::Locked);
            let outcome = match unlock(store, PASSPHRASE, 0) {
                Ok(found) => {
                    assert_eq!(found, key);
                    Outcome::Old
                }
                Err(UnlockError::WrongPassphrase) => {
                    assert_eq!(unlock(store, NEW_PASSPHRASE, 0), Ok(key), "neither works");
                    Outcome::New
                }
                Err(other) => panic!("unexpected {other:?}"),
            };
            drop(core::mem::replace(store, mount(flash, 6).unwrap()));
            let passphrase = if outcome == Outcome::Old { PASSPHRASE } else { NEW_PASSPHRASE };
            // Exactly one passphrase works.
            let other = if outcome == Outcome::Old { NEW_PASSPHRASE } else { PASSPHRASE };
            assert_eq!(unlock(store, other, 0), Err(UnlockError::WrongPassphrase));
            still_usable(flash, passphrase, key);
            outcome
        },
    );
    assert!(old > 0 && new > 0, "{old} {new}");
}

#[test]
fn rotate_admin_key_leaves_old_or_new() {
    let (flash, key) = provisioned();
    for image in [flash.snapshot(), with_garbage_in_free_slots(&flash.snapshot())] {
        rotate_cut_everywhere(&image, key);
    }
}

fn rotate_cut_everywhere(image: &[u8], key: [u8; 32]) {
    let (old, new) = cut_everywhere(
        image,
        |store| {
            unlock(store, PASSPHRASE, 0).unwrap();
        },
        |store| block_on(store.rotate_admin_key(OTHER_ADMIN)).is_ok(),
        |flash, store| {
            let admin = store.admin_public_key();
            assert_eq!(unlock(store, PASSPHRASE, 0), Ok(key));
            still_usable(flash, PASSPHRASE, key);
            match admin {
                Some(ADMIN) => Outcome::Old,
                Some(OTHER_ADMIN) => Outcome::New,
                other => panic!("admin key {other:?}"),
            }
        },
    );
    assert!(old > 0 && new > 0, "{old} {new}");
}

#[test]
fn factory_reset_leaves_provisioned_or_fresh() {
    let (flash, key) = provisioned();
    // Give it a second record generation so several slots have been used.
    let mut store = mount(&flash, 2).unwrap();
    unlock(&mut store, PASSPHRASE, 0).unwrap();
    block_on(store.rotate_admin_key(OTHER_ADMIN)).unwrap();
    drop(store);
    for image in [flash.snapshot(), with_garbage_in_free_slots(&flash.snapshot())] {
        factory_reset_cut_everywhere(&image, key);
    }
}

fn factory_reset_cut_everywhere(image: &[u8], key: [u8; 32]) {
    let (old, new) = cut_everywhere(
        image,
        |_| {},
        |store| block_on(store.factory_reset()).is_ok(),
        |_flash, store| match store.state() {
            KeystoreState::Locked => {
                assert_eq!(unlock(store, PASSPHRASE, 0), Ok(key));
                Outcome::Old
            }
            KeystoreState::FactoryFresh => Outcome::New,
            KeystoreState::Unlocked => unreachable!(),
        },
    );
    assert!(new > 0, "{old} {new}");
}

#[test]
fn unlock_cut_counts_conservatively() {
    let (flash, key) = provisioned();
    let image = flash.snapshot();
    for mode in [CutMode::Clean, CutMode::Torn] {
        // Cut at the attempt word: the KDF never ran; the attempt counts if anything landed.
        // Cut at the success word: the attempt counts as a failure.
        for cut in 1..=2 {
            let flash = Flash::from_image(REGION.end as usize, &image);
            let mut store = mount(&flash, 3).unwrap();
            flash.cut_power_at(cut, mode, 5);
            assert!(matches!(unlock(&mut store, PASSPHRASE, 0), Err(UnlockError::Flash(_))));
            assert_eq!(store.state(), KeystoreState::Locked, "no key kept after a flash error");
            drop(store);
            flash.restore_power();
            let mut store = mount(&flash, 4).unwrap();
            assert!(store.failed_attempts() <= 1);
            if cut == 2 && mode == CutMode::Clean {
                // (A torn success word may count as the success it was meant to be.)
                assert_eq!(store.failed_attempts(), 1);
            }
            assert_eq!(unlock(&mut store, PASSPHRASE, 0), Ok(key));
            assert_eq!(store.failed_attempts(), 0);
        }
    }
}

#[test]
fn moving_a_full_attempt_log_keeps_the_count() {
    let (flash, key) = provisioned();
    let mut store = mount(&flash, 2).unwrap();
    let capacity = store.attempt_log_capacity();
    let mut now = 0;
    for _ in 0..capacity {
        now += store.unlock_wait_seconds(now);
        assert_eq!(unlock(&mut store, b"guess", now), Err(UnlockError::WrongPassphrase));
    }
    drop(store);
    const LATER: u64 = 1_000_000;
    for image in [flash.snapshot(), with_garbage_in_free_slots(&flash.snapshot())] {
        let (old, new) = cut_everywhere(
            &image,
            |_| {},
            |store| unlock(store, PASSPHRASE, LATER).is_ok(),
            |_flash, store| {
                let failures = store.failed_attempts();
                if failures == 0 {
                    return Outcome::New;
                }
                // The count was carried (or the old sector still holds it), plus maybe this try.
                assert!(failures >= capacity, "{failures} < {capacity}");
                assert_eq!(unlock(store, PASSPHRASE, LATER), Ok(key));
                Outcome::Old
            },
        );
        assert!(old > 0 && new > 0, "{old} {new}");
    }
}
