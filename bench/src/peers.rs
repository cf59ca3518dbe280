//! The typed-RPC frameworks a Rust user would pick instead, doing the same creates through
//! their own macros: jsonrpsee (HTTP, one JSON-RPC batch request of N calls) and tarpc (N
//! concurrent calls on one TCP connection, bincode, `TCP_NODELAY` on both ends: without it,
//! Nagle's algorithm stalls tarpc's small frames).

use std::net::SocketAddr;

use example_api::Todo;
use futures_util::{StreamExt, future};
use jsonrpsee::{
    core::{client::ClientT, params::BatchRequestBuilder},
    http_client::{HttpClient, HttpClientBuilder},
    proc_macros::rpc,
    server::{Server, ServerConfig},
    types::ErrorObjectOwned,
};
use tarpc::{
    client, context,
    server::{BaseChannel, Channel},
    tokio_serde::formats::Bincode,
};

use crate::server::Board;

/// The todo service, for jsonrpsee.
#[rpc(server)]
pub(crate) trait Rpc {
    /// Stores a todo.
    #[method(name = "create")]
    async fn create(&self, title: String) -> Result<Todo, ErrorObjectOwned>;
}

#[jsonrpsee::core::async_trait]
impl RpcServer for Board {
    async fn create(&self, title: String) -> Result<Todo, ErrorObjectOwned> {
        Ok(Board::create(self, title))
    }
}

/// The todo service, for tarpc.
#[tarpc::service]
pub(crate) trait Tarpc {
    /// Stores a todo.
    async fn create(title: String) -> Todo;
}

#[derive(Clone)]
struct TarpcBoard(Board);

impl Tarpc for TarpcBoard {
    async fn create(self, _: context::Context, title: String) -> Todo {
        self.0.create(title)
    }
}

/// Starts both peers' servers on `board`; returns their addresses (jsonrpsee, tarpc).
pub(crate) async fn serve(board: &Board) -> (SocketAddr, SocketAddr) {
    // Batches of any size are the default.
    let config = ServerConfig::builder().max_connections(100_000).build();
    let server = Server::builder()
        .set_config(config)
        .build("127.0.0.1:0")
        .await
        .expect("a free port");
    let jsonrpsee = server.local_addr().expect("an address");
    let handle = server.start(board.clone().into_rpc());
    tokio::spawn(handle.stopped());

    let mut listener = tarpc::serde_transport::tcp::listen("127.0.0.1:0", Bincode::default)
        .await
        .expect("a free port");
    listener.config_mut().max_frame_length(usize::MAX);
    let tarpc = listener.local_addr();
    let board = board.clone();
    tokio::spawn(
        listener
            .filter_map(|transport| future::ready(transport.ok()))
            .for_each(move |transport| {
                let _ = transport.get_ref().set_nodelay(true);
                let server = TarpcBoard(board.clone());
                tokio::spawn(
                    BaseChannel::with_defaults(transport)
                        .execute(server.serve())
                        .for_each(|call| async {
                            tokio::spawn(call);
                        }),
                );
                future::ready(())
            }),
    );
    (jsonrpsee, tarpc)
}

/// A jsonrpsee HTTP client.
pub(crate) fn jsonrpsee_client(address: SocketAddr) -> HttpClient {
    HttpClientBuilder::default()
        .max_request_size(u32::MAX)
        .max_response_size(u32::MAX)
        .build(format!("http://{address}"))
        .expect("a client")
}

/// `titles` created in one JSON-RPC batch request; how many came back.
pub(crate) async fn jsonrpsee_creates(client: &HttpClient, titles: Vec<String>) -> usize {
    let mut batch = BatchRequestBuilder::new();
    for title in titles {
        batch
            .insert("create", jsonrpsee::rpc_params![title])
            .expect("a title encodes");
    }
    match client.batch_request::<Todo>(batch).await {
        Ok(responses) => responses.into_ok().map_or(0, Iterator::count),
        Err(_) => 0,
    }
}

/// A tarpc client on one TCP connection.
pub(crate) async fn tarpc_client(address: SocketAddr) -> TarpcClient {
    let mut connect = tarpc::serde_transport::tcp::connect(address, Bincode::default);
    connect.config_mut().max_frame_length(usize::MAX);
    let transport = connect.await.expect("the tarpc server");
    transport.get_ref().set_nodelay(true).expect("TCP_NODELAY");
    let mut config = client::Config::default();
    config.max_in_flight_requests = 1 << 20;
    config.pending_request_buffer = 1 << 16;
    TarpcClient::new(config, transport).spawn()
}

/// `titles` created by as many concurrent calls; how many came back.
pub(crate) async fn tarpc_creates(client: &TarpcClient, titles: Vec<String>) -> usize {
    let calls = titles
        .into_iter()
        .map(|title| client.create(context::current(), title));
    future::join_all(calls)
        .await
        .into_iter()
        .filter(Result::is_ok)
        .count()
}
