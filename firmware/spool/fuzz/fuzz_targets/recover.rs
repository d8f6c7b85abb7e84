//! Fuzz target: recovery from arbitrary flash contents must not panic or hang, and the
//! spool must stay usable (list, read, write, reclaim) afterwards.
//!
//! Input byte 0 picks the mode: even = the rest is a raw flash image (8 sectors of 4 KiB);
//! odd = the rest is a list of (offset u16, xor byte) mutations applied to a valid spool
//! image (messages, one with 110 recipients whose envelope takes three records, delivery
//! state, a deletion, an open message with a four-record envelope), so the fuzzer reaches
//! past authentication into the record logic via torn-like and tamper-like damage.
#![no_main]

use homemx_spool::testing::{block_on, SimulatedFlash, TestRandom};
use homemx_spool::{Envelope, Spool, CHUNK_CAPACITY, ENVELOPE_CAPACITY, MAX_RECIPIENTS};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

type Flash = SimulatedFlash<4, 4096>;
const SIZE: usize = 8 * 4096;
const KEY: [u8; 32] = [3; 32];

fn addresses(count: usize) -> Vec<Vec<u8>> {
    (0..count).map(|index| format!("rcpt-{index:03}@fuzz.example.org").into_bytes()).collect()
}

fn valid_image() -> &'static Vec<u8> {
    static IMAGE: OnceLock<Vec<u8>> = OnceLock::new();
    IMAGE.get_or_init(|| {
        let flash = Flash::new(SIZE);
        let mut spool: Spool<_, _, 8, 8> = Spool::new(flash.clone(), 0..SIZE as u32, &KEY, TestRandom::new(1)).unwrap();
        block_on(async {
            spool.mount().await.unwrap();
            let envelope = Envelope::new(b"s@x", &[b"a@y", b"b@y"]).unwrap();
            let mut ids = Vec::new();
            for length in [300usize, 5000, 40, 2500] {
                let mut writer = spool.begin_message(&envelope, length as u32).await.unwrap();
                spool.append(&mut writer, &vec![b'm'; length]).await.unwrap();
                ids.push(spool.commit(writer).await.unwrap().id);
            }
            let many = addresses(110);
            let list: Vec<&[u8]> = many.iter().map(|a| a.as_slice()).collect();
            let large = Envelope::new(b"s@x", &list).unwrap().with_queued_at(1_700_000_000);
            let mut writer = spool.begin_message(&large, 700).await.unwrap();
            spool.append(&mut writer, &[b'w'; 700]).await.unwrap();
            ids.push(spool.commit(writer).await.unwrap().id);
            spool.mark_delivered(ids[0], 1).await.unwrap();
            spool.mark_delivered(ids[4], 105).await.unwrap();
            spool.set_next_retry(ids[1], 99).await.unwrap();
            spool.delete(ids[2]).await.unwrap();
            let many = addresses(MAX_RECIPIENTS);
            let list: Vec<&[u8]> = many.iter().map(|a| a.as_slice()).collect();
            let largest = Envelope::new(b"s@x", &list).unwrap();
            let mut open = spool.begin_message(&largest, 900).await.unwrap();
            spool.append(&mut open, &[b'o'; 900]).await.unwrap();
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
    let mut spool: Spool<_, _, 8, 8> = Spool::new(flash, 0..SIZE as u32, &KEY, TestRandom::new(2)).unwrap();
    block_on(async {
        let Ok(_report) = spool.mount().await else { return };
        let ids: Vec<_> = spool.messages().map(|m| m.id).collect();
        let mut chunk = [0u8; CHUNK_CAPACITY];
        for id in ids.iter().copied() {
            let mut envelope = [0u8; ENVELOPE_CAPACITY];
            let _ = spool.read_envelope(id, &mut envelope).await;
            if let Ok(mut reader) = spool.open_message(id).await {
                while let Ok(length) = spool.read_chunk(&mut reader, &mut chunk).await {
                    if length == 0 {
                        break;
                    }
                }
            }
            let _ = spool.mark_delivered(id, 0).await;
            let _ = spool.mark_failed(id, 127).await;
        }
        let _ = spool.maintain().await;
        let envelope = Envelope::new(b"s@x", &[b"a@y"]).unwrap();
        if let Ok(mut writer) = spool.begin_message(&envelope, 3000).await {
            if spool.append(&mut writer, &[b'n'; 3000]).await.is_ok() {
                let _ = spool.commit(writer).await;
            }
        }
        for id in ids {
            let _ = spool.delete(id).await;
        }
        // The spool must still mount after all that.
        let _ = spool.mount().await;
    });
});
