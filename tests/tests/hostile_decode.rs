//! The decoders against hostile input: no panic, no allocation beyond the input's size.

#![cfg(not(target_arch = "wasm32"))]

use crudp::{
    Action, ClientId, Outcome,
    protocol::{
        Batch, Bytes, PROTOCOL_VERSION, Packet, PacketResult, Results, decode_batch,
        decode_results, encode_batch, encode_results,
    },
};
use crudp_tests::alloc;

#[global_allocator]
static ALLOCATOR: alloc::Counting = alloc::Counting;

/// Bytes allocated at the peak of `f`, above what was held before it.
fn peak_of(f: impl FnOnce()) -> usize {
    alloc::peak_of(f).1
}

const MAX_U32_VARINT: [u8; 5] = [0xff, 0xff, 0xff, 0xff, 0x0f];
const MAX_U64_VARINT: [u8; 10] = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];

#[test]
fn huge_length_prefixes_fail_without_allocating() {
    let mut claims = Vec::new();
    for prefix in [&MAX_U32_VARINT[..], &MAX_U64_VARINT[..]] {
        // Client 1, one module (7), then a packet count of 4 GiB (and of 2^64 - 1), with a
        // limit that lets it through.
        let mut count = vec![PROTOCOL_VERSION, 1, 1, 7];
        count.extend_from_slice(prefix);
        count.extend_from_slice(&[1, 0, 0]);
        claims.push(count);
        // A module table of 4 GiB entries.
        let mut modules = vec![PROTOCOL_VERSION, 1];
        modules.extend_from_slice(prefix);
        modules.extend_from_slice(&[7, 1, 1, 0, 0]);
        claims.push(modules);
        // One packet (seq 1, a long head: module 0, action 0) whose args claim 4 GiB.
        let mut args = vec![PROTOCOL_VERSION, 1, 1, 7, 1, 1, 64];
        args.extend_from_slice(prefix);
        args.extend_from_slice(&[0; 32]);
        claims.push(args);
    }
    for claim in &claims {
        let claim = Bytes::from(claim.clone());
        let grew = peak_of(|| assert!(decode_batch(&claim, usize::MAX).is_err()));
        assert!(grew < 1024, "decoding {claim:?} allocated {grew} bytes");
    }

    let mut results = vec![PROTOCOL_VERSION];
    results.extend_from_slice(&MAX_U32_VARINT);
    results.extend_from_slice(&[1, 0]);
    let results = Bytes::from(results);
    let grew = peak_of(|| assert!(decode_results(&results, usize::MAX).is_err()));
    assert!(grew < 1024, "decoding results allocated {grew} bytes");
}

#[test]
fn random_and_mutated_input_never_panics() {
    let batch = encode_batch(&Batch {
        version: PROTOCOL_VERSION,
        client: ClientId(u64::MAX),
        packets: (0..8)
            .map(|i| Packet {
                seq: i,
                handler: i as u32 * 1000,
                action: Action::Update,
                args: vec![i as u8; i as usize].into(),
            })
            .collect(),
    });
    let results = encode_results(&Results {
        results: vec![
            PacketResult {
                seq: 1,
                outcome: Outcome::Ok(vec![1, 2].into()),
            },
            PacketResult {
                seq: 2,
                outcome: Outcome::Unavailable {
                    message: "later".into(),
                },
            },
        ],
    });
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut decoded = 0;
    for round in 0..20_000 {
        let input: Vec<u8> = match round % 3 {
            0 => (0..next() % 64).map(|_| next() as u8).collect(),
            1 => {
                let mut bytes = batch.clone();
                for _ in 0..1 + next() % 4 {
                    let at = next() as usize % bytes.len();
                    bytes[at] = next() as u8;
                }
                bytes
            }
            _ => {
                let mut bytes = results.clone();
                let at = next() as usize % bytes.len();
                bytes[at] = next() as u8;
                bytes.truncate(1 + next() as usize % bytes.len());
                bytes
            }
        };
        let input = Bytes::from(input);
        let grew = peak_of(|| {
            decoded += usize::from(decode_batch(&input, 4096).is_ok());
            decoded += usize::from(decode_results(&input, 4096).is_ok());
        });
        assert!(
            grew <= 64 * input.len() + 1024,
            "{input:?} made the decoder allocate {grew} bytes"
        );
    }
    assert!(decoded > 0, "some mutations should still decode");
}
