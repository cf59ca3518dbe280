//! The native transport: reqwest over a keep-alive connection pool.

use super::{Transport, TransportError, TransportFuture};

/// Sends batches with [`reqwest`]; the default transport of [`Client::new`](crate::Client::new)
/// on native targets.
#[derive(Debug, Clone, Default)]
pub struct ReqwestTransport {
    http: reqwest::Client,
}

impl ReqwestTransport {
    /// A transport with its own connection pool.
    pub fn new() -> Self {
        Self::default()
    }

    /// A transport that shares an existing reqwest client (its pool, proxies and TLS set-up).
    pub fn with_client(http: reqwest::Client) -> Self {
        Self { http }
    }
}

impl Transport for ReqwestTransport {
    fn post(
        &self,
        url: &str,
        body: Vec<u8>,
    ) -> TransportFuture<'_, Result<Vec<u8>, TransportError>> {
        let request = self
            .http
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(body);
        Box::pin(async move {
            let unreachable = |e: reqwest::Error| TransportError::Unreachable(e.to_string());
            let response = request.send().await.map_err(unreachable)?;
            let status = response.status();
            let body = response.bytes().await.map_err(unreachable)?;
            if status.is_success() {
                Ok(body.into())
            } else {
                Err(TransportError::Status {
                    status: status.as_u16(),
                    message: String::from_utf8_lossy(&body).into_owned(),
                })
            }
        })
    }
}
