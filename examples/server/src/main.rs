//! The todo example's server: the `Todos` and `Board` modules over SQLite under `/crudp`, a
//! sign-in page at `/`, who is connected at `/online`, and the Leptos and Yew front ends at
//! `/leptos/` and `/yew/`.
//!
//! `todo-server [ADDRESS] [--db FILE] [--files DIR] [--dist DIR] [--redis URL]`: by default
//! `127.0.0.1:3000`, `todo.db`, uploaded files in `todo.files` next to the database, and the
//! front ends that `cargo xtask demo` builds into `target/demo`. With `--redis`, several servers that share the Redis server and the
//! database file act as one; they must share a token secret too, in `CRUDP_TOKEN_SECRET`
//! (32 bytes or more).

mod attachments;
mod presence;
mod signin;
mod store;

use std::path::PathBuf;

use axum::routing::{get, post};
use crudp::server::{Crudp, CrudpBuilder, SqliteEffects, SqliteOutcomes};
use crudp_redis::RedisBackend;
use example_api::{AttachmentsServer, BoardServer, TodosServer};
use tower_http::services::{ServeDir, ServeFile};

struct Options {
    address: String,
    db: PathBuf,
    files: Option<PathBuf>,
    dist: PathBuf,
    redis: Option<String>,
}

fn options() -> Result<Options, String> {
    let mut options = Options {
        address: "127.0.0.1:3000".into(),
        db: "todo.db".into(),
        files: None,
        dist: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/demo"),
        redis: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--db" => options.db = args.next().ok_or("--db needs a file")?.into(),
            "--files" => {
                options.files = Some(args.next().ok_or("--files needs a directory")?.into())
            }
            "--dist" => options.dist = args.next().ok_or("--dist needs a directory")?.into(),
            "--redis" => options.redis = Some(args.next().ok_or("--redis needs a URL")?),
            flag if flag.starts_with("--") => return Err(format!("unknown option {flag}")),
            address => options.address = address.into(),
        }
    }
    Ok(options)
}

/// A front end's files, with `index.html` for the directory itself.
fn front_end(dist: &std::path::Path, name: &str) -> ServeDir<ServeFile> {
    let dir = dist.join(name);
    ServeDir::new(&dir).fallback(ServeFile::new(dir.join("index.html")))
}

/// A server that shares the Redis server at `url` with others, and their token secret.
async fn shared(url: &str) -> Result<CrudpBuilder, String> {
    let secret = std::env::var("CRUDP_TOKEN_SECRET").map_err(|_| {
        "servers that share Redis must share a token secret: set CRUDP_TOKEN_SECRET to the same 32 or more random bytes for each".to_owned()
    })?;
    let backend = RedisBackend::connect(url)
        .await
        .map_err(|e| format!("cannot reach Redis at {url}: {e}"))?;
    Ok(Crudp::builder()
        .backend(backend)
        .token_secret(secret.as_bytes()))
}

#[tokio::main]
async fn main() -> Result<(), String> {
    // `RUST_LOG=info` shows a line per call and per batch as their spans close (the
    // module, the action, the outcome, the time); the default leaves CRUDP's spans out.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,crudp_runtime=warn".into()),
        )
        .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE)
        .init();
    // The server's metrics, in Prometheus's text format at `/metrics`.
    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .map_err(|e| format!("cannot record metrics: {e}"))?;
    let options = options()?;
    let files = options
        .files
        .clone()
        .unwrap_or_else(|| options.db.with_extension("files"));
    let db = options.db.display().to_string();
    let cannot_open = |e: &dyn std::fmt::Display| format!("cannot open {db}: {e}");
    // ANCHOR: server
    // Who is connected, for `/online`.
    let presence = presence::Presence::default();
    let (db, builder) = match &options.redis {
        // One server: the todos and the exactly-once state in one SQLite file that survives
        // restarts.
        None => {
            let outcomes = SqliteOutcomes::open(&options.db).map_err(|e| cannot_open(&e))?;
            let builder = Crudp::builder().outcome_store(outcomes.clone());
            (store::Db::Outcomes(outcomes), builder)
        }
        // Several servers as one: events and exactly-once state in Redis, the todos in a
        // file they share.
        Some(url) => {
            let db = SqliteEffects::open(&options.db).map_err(|e| cannot_open(&e))?;
            (store::Db::Effects(db), shared(url).await?)
        }
    };
    let store = store::Store::open(db).await.map_err(|e| cannot_open(&e))?;
    let api = builder
        .authenticator(signin::authenticate)
        .handler(TodosServer::new(store.clone()))
        .handler(BoardServer::new(store.clone()))
        // Files attached to todos: uploaded to this directory, then attached.
        .handler(AttachmentsServer::new(store.clone()))
        .files_dir(&files)
        // `GET /crudp/modules`: every module's actions and types, to signed-in users.
        .describe_modules(true)
        .on_connect({
            let presence = presence.clone();
            move |peer| presence.connected(peer)
        })
        .on_disconnect({
            let presence = presence.clone();
            move |peer| presence.disconnected(peer)
        })
        .build();
    let app = axum::Router::new()
        .nest("/crudp", api.router())
        .route("/", get(signin::home))
        .route("/signin", post(signin::sign_in))
        .route("/signout", get(signin::sign_out))
        .route("/online", get(move || async move { presence.show() }))
        .route("/metrics", get(move || async move { metrics.render() }))
        .route(
            "/files/{id}",
            get(attachments::download).with_state((api.clone(), store)),
        )
        .nest_service("/leptos", front_end(&options.dist, "leptos"))
        .nest_service("/yew", front_end(&options.dist, "yew"))
        .route_service("/board.css", ServeFile::new(options.dist.join("board.css")));
    // ANCHOR_END: server

    let listener = tokio::net::TcpListener::bind(&options.address)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", options.address))?;
    let address = listener.local_addr().map_err(|e| e.to_string())?;
    println!(
        "todo board at http://{address}/ (front ends from {})",
        options.dist.display()
    );
    crudp::server::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .map_err(|e| e.to_string())
}
