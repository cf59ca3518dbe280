//! What the client does with the browser's events: send at once when the network comes back
//! (`online`), say so when it goes (`offline`), and let its ID go when the page goes away
//! (`pagehide`).

use std::sync::{Arc, Weak};

use wasm_bindgen::{JsCast, closure::Closure};

use crate::{core::Input, shared::Shared};

/// The listeners on `window`; removed when the client is dropped.
pub(crate) struct Hooks {
    online: Closure<dyn FnMut()>,
    offline: Closure<dyn FnMut()>,
    pagehide: Closure<dyn FnMut()>,
}

impl Hooks {
    pub(crate) fn install(inner: &Arc<Shared>) -> Option<Self> {
        let window = web_sys::window()?;
        let weak: Weak<Shared> = Arc::downgrade(inner);
        let online = Closure::<dyn FnMut()>::new({
            let weak = weak.clone();
            move || {
                if let Some(inner) = weak.upgrade() {
                    inner.kick_stream();
                    inner.post(Input::Sync);
                }
            }
        });
        let offline = Closure::<dyn FnMut()>::new({
            let weak = weak.clone();
            move || {
                if let Some(inner) = weak.upgrade() {
                    inner.post(Input::Offline);
                }
            }
        });
        let pagehide = Closure::<dyn FnMut()>::new(move || {
            if let Some(inner) = weak.upgrade() {
                inner.release_when_saved();
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
