//! The few things the client needs from an async runtime: spawn, sleep, yield, randomness.

use std::time::Duration;

#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn spawn(task: impl Future<Output = ()> + Send + 'static) -> Result<(), String> {
    #[cfg(feature = "native")]
    if let Ok(handle) = tokio::runtime::Handle::try_current() {
        handle.spawn(task);
        return Ok(());
    }
    drop(task);
    if cfg!(feature = "native") {
        Err("no async runtime to send the call on: make calls from inside a Tokio runtime".into())
    } else {
        Err("no async runtime: enable the `native` feature of crudp-client".into())
    }
}

#[cfg(target_arch = "wasm32")]
pub(crate) fn spawn(task: impl Future<Output = ()> + 'static) -> Result<(), String> {
    wasm_bindgen_futures::spawn_local(task);
    Ok(())
}

pub(crate) async fn sleep(duration: Duration) {
    #[cfg(all(feature = "native", not(target_arch = "wasm32")))]
    tokio::time::sleep(duration).await;
    #[cfg(target_arch = "wasm32")]
    gloo_timers::future::sleep(duration).await;
    #[cfg(not(any(feature = "native", target_arch = "wasm32")))]
    let _ = duration;
}

/// Lets the runtime's other tasks run before going on: for long work made of steps that are
/// each ready at once (hashing a file held in memory), which would otherwise hold the thread.
pub(crate) async fn yield_now() {
    let mut yielded = false;
    std::future::poll_fn(|cx| {
        if yielded {
            return std::task::Poll::Ready(());
        }
        yielded = true;
        cx.waker().wake_by_ref();
        std::task::Poll::Pending
    })
    .await;
}

/// 64 random bits, for client IDs and back-off jitter: from `crypto.getRandomValues` in the
/// browser, the operating system's generator natively.
pub(crate) fn random_u64() -> u64 {
    #[cfg(target_arch = "wasm32")]
    {
        // Client IDs are the exactly-once key: from the platform's cryptographic generator.
        let mut bytes = [0u8; 8];
        let crypto = web_sys::window()
            .and_then(|w| w.crypto().ok())
            .map(|c| c.get_random_values_with_u8_array(&mut bytes));
        if let Some(Ok(_)) = crypto {
            return u64::from_le_bytes(bytes);
        }
        // No `window` (a worker): `Math.random` is the fallback, for jitter at worst.
        let high = (js_sys::Math::random() * 4_294_967_296.0) as u64;
        let low = (js_sys::Math::random() * 4_294_967_296.0) as u64;
        (high << 32) | low
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        #[cfg(feature = "native")]
        if let Ok(value) = getrandom::u64() {
            return value;
        }
        use std::hash::{BuildHasher, RandomState};
        RandomState::new().hash_one(std::time::SystemTime::now())
    }
}

/// Seconds since the Unix epoch.
pub(crate) fn unix_now() -> u64 {
    #[cfg(target_arch = "wasm32")]
    {
        (js_sys::Date::now() / 1000.0) as u64
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    #[cfg(target_arch = "wasm32")]
    {
        js_sys::Date::now() as u64
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    }
}

/// Milliseconds on a clock that never goes back (unlike the wall clock), for timers.
pub(crate) fn monotonic_ms() -> u64 {
    #[cfg(target_arch = "wasm32")]
    {
        web_sys::window()
            .and_then(|w| w.performance())
            .map_or_else(js_sys::Date::now, |p| p.now()) as u64
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
        let start = START.get_or_init(std::time::Instant::now);
        u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

/// Whether [`spawn`] can run a task here and now.
pub(crate) fn can_spawn() -> bool {
    #[cfg(target_arch = "wasm32")]
    {
        true
    }
    #[cfg(all(feature = "native", not(target_arch = "wasm32")))]
    {
        tokio::runtime::Handle::try_current().is_ok()
    }
    #[cfg(not(any(feature = "native", target_arch = "wasm32")))]
    {
        false
    }
}

/// The client ID this tab used before a reload, where the platform remembers one.
pub(crate) fn previous_identity(url: &str) -> Option<crudp_runtime::ClientId> {
    #[cfg(target_arch = "wasm32")]
    {
        browser::previous_identity(url)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        let _ = url;
        None
    }
}

/// Remembers this tab's client ID for its next load.
pub(crate) fn remember_identity(url: &str, client: crudp_runtime::ClientId) {
    #[cfg(target_arch = "wasm32")]
    browser::remember_identity(url, client);
    #[cfg(not(target_arch = "wasm32"))]
    let _ = (url, client);
}

/// Forgets this tab's client ID: its next load takes a new one.
pub(crate) fn forget_identity(url: &str) {
    #[cfg(target_arch = "wasm32")]
    browser::forget_identity(url);
    #[cfg(not(target_arch = "wasm32"))]
    let _ = url;
}

/// A digest of `text` (FNV-1a), for names that only need to differ between the few texts of
/// one browser, such as its users or its client keys.
pub(crate) fn digest(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// A new client key: base64url of 16 random bytes.
pub(crate) fn random_key() -> String {
    use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&random_u64().to_le_bytes());
    bytes[8..].copy_from_slice(&random_u64().to_le_bytes());
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The tab's identity across reloads, in `sessionStorage`.
#[cfg(target_arch = "wasm32")]
mod browser {
    use crudp_runtime::ClientId;

    fn session() -> Option<web_sys::Storage> {
        web_sys::window()?.session_storage().ok().flatten()
    }

    /// The client ID this tab used before a reload.
    pub(super) fn previous_identity(url: &str) -> Option<ClientId> {
        let value = session()?
            .get_item(&format!("crudp:{url}:tab"))
            .ok()
            .flatten()?;
        u64::from_str_radix(&value, 16).ok().map(ClientId)
    }

    /// Remembers this tab's client ID for its next load.
    pub(super) fn remember_identity(url: &str, client: ClientId) {
        if let Some(session) = session() {
            let _ = session.set_item(&format!("crudp:{url}:tab"), &client.to_string());
        }
    }

    /// Forgets this tab's client ID.
    pub(super) fn forget_identity(url: &str) {
        if let Some(session) = session() {
            let _ = session.remove_item(&format!("crudp:{url}:tab"));
        }
    }
}
