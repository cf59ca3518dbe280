//! What the client does with the browser's events: send at once when the network comes back
//! (`online`), say so when it goes (`offline`), let its ID go when the page goes away
//! (`pagehide`), and, without Web Locks, take it back when the page comes back (`pageshow`).

use std::sync::{Arc, Weak};

use wasm_bindgen::{JsCast, JsValue, closure::Closure};
use web_sys::EventTarget;

use crate::{core::Input, shared::Shared};

/// A listener: its target, its event and itself.
type PageListener = (EventTarget, &'static str, Closure<dyn FnMut(JsValue)>);

/// Event listeners, removed when this is dropped.
#[derive(Default)]
pub(crate) struct PageListeners(Vec<PageListener>);

impl PageListeners {
    /// Calls `handler` on every `event` at `target`.
    pub(crate) fn on(
        &mut self,
        target: &EventTarget,
        event: &'static str,
        handler: impl FnMut(JsValue) + 'static,
    ) {
        let handler = Closure::<dyn FnMut(JsValue)>::new(handler);
        if target
            .add_event_listener_with_callback(event, handler.as_ref().unchecked_ref())
            .is_ok()
        {
            self.0.push((target.clone(), event, handler));
        }
    }

    /// Calls `handler` on every `event` at the window.
    pub(crate) fn on_window(
        &mut self,
        event: &'static str,
        handler: impl FnMut(JsValue) + 'static,
    ) {
        if let Some(window) = web_sys::window() {
            self.on(&window.into(), event, handler);
        }
    }

    /// Calls `handler` on every `event` at the document.
    pub(crate) fn on_document(
        &mut self,
        event: &'static str,
        handler: impl FnMut(JsValue) + 'static,
    ) {
        if let Some(document) = web_sys::window().and_then(|w| w.document()) {
            self.on(&document.into(), event, handler);
        }
    }
}

impl Drop for PageListeners {
    fn drop(&mut self) {
        for (target, event, handler) in &self.0 {
            let _ =
                target.remove_event_listener_with_callback(event, handler.as_ref().unchecked_ref());
        }
    }
}

/// Whether a `pageshow` or `pagehide` event is about a page kept in the back/forward cache.
pub(crate) fn persisted(event: &JsValue) -> bool {
    event
        .dyn_ref::<web_sys::PageTransitionEvent>()
        .is_some_and(web_sys::PageTransitionEvent::persisted)
}

/// The client's listeners on `window`; removed when the client is dropped.
pub(crate) fn install(inner: &Arc<Shared>) -> PageListeners {
    let mut listeners = PageListeners::default();
    let weak: Weak<Shared> = Arc::downgrade(inner);
    let with = move |f: fn(&Shared)| {
        let weak = weak.clone();
        move |_: JsValue| {
            if let Some(inner) = weak.upgrade() {
                f(&inner);
            }
        }
    };
    listeners.on_window(
        "online",
        with(|inner| {
            inner.kick_stream();
            inner.post(Input::Sync);
        }),
    );
    listeners.on_window("offline", with(|inner| inner.post(Input::Offline)));
    listeners.on_window("pagehide", with(Shared::release_when_saved));
    if !crate::leases::available() {
        // Without Web Locks to take the ID back (`leases`), the page takes it back when it
        // comes out of the back/forward cache, unless another page took it meanwhile.
        let weak = Arc::downgrade(inner);
        listeners.on_window("pageshow", move |event: JsValue| {
            if persisted(&event)
                && let Some(inner) = weak.upgrade()
            {
                inner.take_back();
            }
        });
    }
    listeners
}
