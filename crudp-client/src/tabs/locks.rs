//! Exclusive Web Locks (`navigator.locks`), held until released or dropped. web-sys has them
//! only behind `--cfg=web_sys_unstable_apis`, which every application would have to set: the
//! one method needed is bound here instead.

use futures_channel::oneshot;
use js_sys::{Function, Object, Promise, Reflect};
use wasm_bindgen::{JsCast, JsValue, closure::Closure, prelude::wasm_bindgen};

#[wasm_bindgen]
extern "C" {
    type LockManager;

    #[wasm_bindgen(method, js_name = request)]
    fn request(this: &LockManager, name: &str, options: &Object, callback: &Function) -> Promise;

    #[wasm_bindgen(method, js_name = query)]
    fn query(this: &LockManager) -> Promise;
}

fn manager() -> Option<LockManager> {
    let navigator = web_sys::window()?.navigator();
    let locks = Reflect::get(&navigator, &JsValue::from_str("locks")).ok()?;
    (locks.is_object()).then(|| locks.unchecked_into())
}

/// Whether this browser has Web Locks.
pub(crate) fn available() -> bool {
    manager().is_some()
}

/// The names of the locks held now, by this page or another of its origin: none where the
/// browser has no Web Locks, or cannot tell.
pub(crate) async fn held() -> Vec<String> {
    let Some(manager) = manager() else {
        return Vec::new();
    };
    let Ok(snapshot) = wasm_bindgen_futures::JsFuture::from(manager.query()).await else {
        return Vec::new();
    };
    let Ok(held) = Reflect::get(&snapshot, &"held".into()) else {
        return Vec::new();
    };
    let Ok(held) = held.dyn_into::<js_sys::Array>() else {
        return Vec::new();
    };
    held.iter()
        .filter_map(|lock| Reflect::get(&lock, &"name".into()).ok()?.as_string())
        .collect()
}

/// A lock this page holds; released when dropped.
pub(crate) struct Held {
    release: Option<Function>,
}

impl Held {
    /// Releases the lock now.
    pub(crate) fn release(&mut self) {
        if let Some(release) = self.release.take() {
            let _ = release.call0(&JsValue::UNDEFINED);
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.release();
    }
}

/// Aborts a lock request still waiting when its future is dropped.
struct Pending(Option<web_sys::AbortController>);

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some(abort) = self.0.take() {
            abort.abort();
        }
    }
}

/// The exclusive lock `name`: waits for it, or, with `if_available`, takes it only if no one
/// holds it (`None` otherwise). `None` too where the browser has no Web Locks.
pub(crate) async fn acquire(name: &str, if_available: bool) -> Option<Held> {
    let manager = manager()?;
    let mut resolve = None;
    let held = Promise::new(&mut |release, _| resolve = Some(release));
    let release = resolve?;
    let (granted, answer) = oneshot::channel::<()>();
    // Called with the lock, or with `null` when `ifAvailable` finds it taken. The lock is held
    // until the promise it returns settles; if nobody waits for it any more, it is let go.
    let callback = Closure::once_into_js(move |lock: JsValue| -> JsValue {
        if lock.is_null() || granted.send(()).is_err() {
            return JsValue::UNDEFINED;
        }
        held.into()
    });
    let options = Object::new();
    let abort = web_sys::AbortController::new().ok()?;
    let _ = Reflect::set(&options, &"ifAvailable".into(), &if_available.into());
    if !if_available {
        let _ = Reflect::set(&options, &"signal".into(), &abort.signal());
    }
    let mut pending = Pending(Some(abort));
    let request = manager.request(name, &options, callback.unchecked_ref());
    // An aborted request rejects: that is expected, not an error to report.
    wasm_bindgen_futures::spawn_local(async move {
        let _ = wasm_bindgen_futures::JsFuture::from(request).await;
    });
    answer.await.ok()?;
    pending.0 = None;
    Some(Held {
        release: Some(release),
    })
}
