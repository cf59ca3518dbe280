//! What each fuzz target checks of one input. The fuzz targets (`cargo xtask fuzz`) and the
//! normal test suite (`tests/tests/fuzz_corpus.rs`, which replays the seed corpus and every
//! input that once failed) share these.

use std::sync::LazyLock;

use crudp::{
    protocol::{
        Bytes, decode_batch, decode_batch_after, decode_client_results, decode_results,
        encode_client_results, encode_packets_after, encode_results,
    },
    server::TokenKey,
    transport::SseEvent,
};

/// The most packets a batch may hold here, as on a server with default limits.
const MAX_PACKETS: usize = 4096;

/// A `POST /call` or `/sync` body: any bytes decode to a batch within the packet limit, or to
/// an error; what decodes encodes back to a body that decodes the same.
pub fn batch(data: &[u8]) {
    let data = Bytes::copy_from_slice(data);
    let decoded = decode_batch_after(&data, MAX_PACKETS);
    assert_eq!(
        decode_batch(&data, MAX_PACKETS),
        decoded.clone().map(|(batch, _)| batch)
    );
    if let Ok((batch, after)) = decoded {
        assert!(batch.packets.len() <= MAX_PACKETS);
        let again = encode_packets_after(batch.client, after, batch.packets.iter());
        assert_eq!(
            decode_batch_after(&again.into(), MAX_PACKETS).ok(),
            Some((batch, after))
        );
    }
}

/// What a client decodes: `POST /call` results and an `event: results`'s client results;
/// what decodes encodes back to bytes that decode the same.
pub fn results(data: &[u8]) {
    let data = Bytes::copy_from_slice(data);
    if let Ok(results) = decode_results(&data, MAX_PACKETS) {
        assert!(results.results.len() <= MAX_PACKETS);
        let again = encode_results(&results);
        assert_eq!(decode_results(&again.into(), MAX_PACKETS), Ok(results));
    }
    if let Ok((client, results)) = decode_client_results(&data, MAX_PACKETS) {
        assert!(results.results.len() <= MAX_PACKETS);
        let again = encode_client_results(client, &results);
        assert_eq!(
            decode_client_results(&again.into(), MAX_PACKETS),
            Ok((client, results))
        );
    }
}

static KEY: LazyLock<TokenKey> =
    LazyLock::new(|| TokenKey::new(b"the fuzzer's secret, 32 bytes or more"));

/// An event-stream token: any text verifies only if this key signed it (signing its claims
/// gives it back), or is refused.
pub fn token(data: &[u8]) {
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(claims) = KEY.verify(token, 0) {
        assert_eq!(KEY.verify(&KEY.sign(&claims), 0).ok(), Some(claims));
    }
}

/// The client's event decoding: the input is an event's name, a newline, then its data. It
/// decodes, is ignored, or is refused with a reason.
pub fn events(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (name, data) = text.split_once('\n').unwrap_or((&text, ""));
    let event = SseEvent {
        id: None,
        event: Some(name.to_owned()),
        data: data.to_owned(),
    };
    if let Some(Err(reason)) = event.decode() {
        assert!(!reason.is_empty());
    }
}
