//! What the client does with the browser: remember its ID across reloads (per tab, in
//! `sessionStorage`), send at once when the network comes back (`online`), and save its queue
//! and let its ID go when the page goes away (`pagehide`).

use std::sync::{Arc, Weak};

use crudp_runtime::ClientId;
use wasm_bindgen::{JsCast, closure::Closure};

use crate::client::Inner;

/// The listeners on `window`; removed when the client is dropped.
pub(crate) struct Hooks {
    online: Closure<dyn FnMut()>,
    offline: Closure<dyn FnMut()>,
    pagehide: Closure<dyn FnMut()>,
}

impl Hooks {
    pub(crate) fn install(inner: &Arc<Inner>) -> Option<Self> {
        let window = web_sys::window()?;
        let weak: Weak<Inner> = Arc::downgrade(inner);
        let online = Closure::<dyn FnMut()>::new({
            let weak = weak.clone();
            move || {
                if let Some(inner) = weak.upgrade() {
                    inner.network_back();
                }
            }
        });
        let offline = Closure::<dyn FnMut()>::new({
            let weak = weak.clone();
            move || {
                if let Some(inner) = weak.upgrade() {
                    inner.went_offline();
                }
            }
        });
        let pagehide = Closure::<dyn FnMut()>::new(move || {
            if let Some(inner) = weak.upgrade() {
                inner.release();
            }
        });
        window
            .add_event_listener_with_callback("online", online.as_ref().unchecked_ref())
            .ok()?;
        window
            .add_event_listener_with_callback("pagehide", pagehide.as_ref().unchecked_ref())
            .ok()?;
        window
            .add_event_listener_with_callback("offline", offline.as_ref().unchecked_ref())
            .ok()?;
        Some(Self {
            online,
            offline,
            pagehide,
        })
    }
}

impl Drop for Hooks {
    fn drop(&mut self) {
        if let Some(window) = web_sys::window() {
            let _ = window.remove_event_listener_with_callback(
                "offline",
                self.offline.as_ref().unchecked_ref(),
            );
            let _ = window.remove_event_listener_with_callback(
                "online",
                self.online.as_ref().unchecked_ref(),
            );
            let _ = window.remove_event_listener_with_callback(
                "pagehide",
                self.pagehide.as_ref().unchecked_ref(),
            );
        }
    }
}

fn session() -> Option<web_sys::Storage> {
    web_sys::window()?.session_storage().ok().flatten()
}

/// The client ID this tab used before a reload.
pub(crate) fn previous_identity(url: &str) -> Option<ClientId> {
    let value = session()?
        .get_item(&format!("crudp:{url}:tab"))
        .ok()
        .flatten()?;
    u64::from_str_radix(&value, 16).ok().map(ClientId)
}

/// Remembers this tab's client ID for its next load.
pub(crate) fn remember_identity(url: &str, client: ClientId) {
    if let Some(session) = session() {
        let _ = session.set_item(&format!("crudp:{url}:tab"), &client.to_string());
    }
}
