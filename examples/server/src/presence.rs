//! Who is connected: the event streams open for each user and the clients they carry, kept by
//! the server's presence hooks and shown at `GET /online` as JSON, for example
//! `{"ann":{"streams":1,"clients":3}}` for one browser with three tabs open.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex, PoisonError},
};

use axum::Json;
use crudp::server::Peer;
use serde::Serialize;

/// The open streams by user.
#[derive(Clone, Default)]
pub(crate) struct Presence(Arc<Mutex<BTreeMap<String, Online>>>);

/// One user's open streams.
#[derive(Serialize, Clone, Copy, Default)]
pub(crate) struct Online {
    streams: usize,
    clients: usize,
}

impl Presence {
    /// For [`CrudpBuilder::on_connect`](crudp::server::CrudpBuilder::on_connect).
    pub(crate) fn connected(&self, peer: &Peer) {
        let mut users = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let online = users.entry(peer.user.id.clone()).or_default();
        online.streams += 1;
        online.clients += peer.clients.len();
    }

    /// For [`CrudpBuilder::on_disconnect`](crudp::server::CrudpBuilder::on_disconnect).
    pub(crate) fn disconnected(&self, peer: &Peer) {
        let mut users = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(online) = users.get_mut(&peer.user.id) {
            online.streams = online.streams.saturating_sub(1);
            online.clients = online.clients.saturating_sub(peer.clients.len());
            if online.streams == 0 {
                users.remove(&peer.user.id);
            }
        }
    }

    /// The users with a stream open.
    pub(crate) fn show(&self) -> Json<BTreeMap<String, Online>> {
        Json(
            self.0
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        )
    }
}
