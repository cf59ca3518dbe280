//! What a UI shows: connected or not, and how many calls wait.

/// The state of the client's link to the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Connection {
    /// Connected: calls are sent and results arrive.
    Online,
    /// Connecting, or the connection dropped and the client is reconnecting.
    Reconnecting,
    /// The server has been unreachable for several attempts; calls stay queued and the client
    /// keeps trying with back-off.
    Offline,
}

/// A snapshot of the client, for status bars: "offline, 3 queued".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Status {
    /// The link to the server.
    pub connection: Connection,
    /// Calls not sent yet, with those of the queues left behind by closed pages that this
    /// client sends.
    pub queued: usize,
    /// Calls sent whose result has not arrived, the same way.
    pub in_flight: usize,
    /// The event stream could not get through (a proxy that buffers it), so results and
    /// broadcasts come by long polling `GET /poll` instead.
    pub polling: bool,
}

impl Status {
    /// Calls whose outcome is not known yet: queued and in flight.
    pub fn pending(&self) -> usize {
        self.queued + self.in_flight
    }
}
