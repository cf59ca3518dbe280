//! The todo board in Yew. It runs in the browser only (Yew's state is not `Send`, which the
//! native client requires of listeners): `cargo xtask demo` builds it for wasm32.

#[cfg(target_arch = "wasm32")]
mod app;

fn main() {
    #[cfg(target_arch = "wasm32")]
    app::start();
    #[cfg(not(target_arch = "wasm32"))]
    eprintln!("the Yew front end runs in the browser: `cargo xtask demo` builds and serves it");
}
