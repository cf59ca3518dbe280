//! SSE framing. Frames are built by hand, once per event, so every connection shares the same
//! bytes; axum's `Event` would build them again for each connection.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use bytes::Bytes;

use crate::protocol::EventKind;

/// The heartbeat comment.
pub const PING: &[u8] = b": ping\n\n";

/// `id: <id>`, `event: <kind>`, `data: <base64url(data)>`.
pub fn event_frame(id: u64, kind: EventKind, data: &[u8]) -> Bytes {
    let kind = kind.as_str();
    // Room for the longest ID: the frame must never outgrow its first allocation, which
    // `Bytes` keeps whole for as long as the event is buffered for replay.
    let mut frame = String::with_capacity(48 + kind.len() + data.len().div_ceil(3) * 4);
    frame.push_str("id: ");
    frame.push_str(&id.to_string());
    frame.push_str("\nevent: ");
    frame.push_str(kind);
    frame.push_str("\ndata: ");
    URL_SAFE_NO_PAD.encode_string(data, &mut frame);
    frame.push_str("\n\n");
    Bytes::from(frame)
}

/// The `retry:` hint: how long a browser waits before reconnecting.
pub fn retry_frame(millis: u64) -> Bytes {
    Bytes::from(format!("retry: {millis}\n\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_has_the_id_the_kind_and_base64url_data() {
        let frame = event_frame(42, EventKind::Broadcast, &[0xfb, 0xff]);
        assert_eq!(&frame[..], b"id: 42\nevent: broadcast\ndata: -_8\n\n");
    }
}
