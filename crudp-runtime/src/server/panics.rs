//! Handler panics: each is caught with its call and logged once, as a `tracing` error, rather
//! than printed by the process's panic hook; a caller able to make a handler panic cannot
//! flood standard error with messages and backtraces.

use std::{
    backtrace::{Backtrace, BacktraceStatus},
    cell::{Cell, RefCell},
    future::Future,
    pin::Pin,
    sync::Once,
    task::{Context, Poll},
};

thread_local! {
    /// Whether a handler's future is being polled on this thread.
    static IN_HANDLER: Cell<bool> = const { Cell::new(false) };
    /// What the hook saw of the latest handler panic on this thread.
    static CAUGHT: RefCell<Option<Caught>> = const { RefCell::new(None) };
}

/// Where a handler panicked, and its backtrace if `RUST_BACKTRACE` asks for one.
#[derive(Debug, Default)]
pub(super) struct Caught {
    pub(super) location: String,
    pub(super) backtrace: Option<String>,
}

/// Installs, once per process, a panic hook that keeps quiet about panics inside handlers
/// (the server logs them) and passes every other panic to the hook installed before it.
pub(super) fn install_hook() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !IN_HANDLER.with(Cell::get) {
                return previous(info);
            }
            // `capture` honours `RUST_BACKTRACE` and `RUST_LIB_BACKTRACE`.
            let backtrace = Backtrace::capture();
            let caught = Caught {
                location: info.location().map(ToString::to_string).unwrap_or_default(),
                backtrace: (backtrace.status() == BacktraceStatus::Captured)
                    .then(|| backtrace.to_string()),
            };
            CAUGHT.with(|c| *c.borrow_mut() = Some(caught));
        }));
    });
}

/// What the hook saw of the handler panic just caught on this thread.
pub(super) fn take_caught() -> Caught {
    CAUGHT.with(|c| c.borrow_mut().take()).unwrap_or_default()
}

/// A handler's future, marked as one while it is polled.
pub(super) struct Marked<F>(pub(super) F);

impl<F: Future + Unpin> Future for Marked<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        /// Puts the mark back as it was, when the poll returns or unwinds.
        struct Restore(bool);
        impl Drop for Restore {
            fn drop(&mut self) {
                IN_HANDLER.with(|mark| mark.set(self.0));
            }
        }
        let _restore = Restore(IN_HANDLER.with(|mark| mark.replace(true)));
        Pin::new(&mut self.0).poll(cx)
    }
}
