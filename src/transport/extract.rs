//! (feature `axum`) RFC 6455 §4.2 as an axum extractor: [`WsUpgrade`]
//! checks the request in the handler's arguments, and
//! [`on_upgrade`](WsUpgrade::on_upgrade) returns the 101 and runs the
//! handler's socket task once axum (hyper underneath) has sent it. The
//! work is [`upgrade`](super::upgrade)'s: this is its axum shape.

use std::future::Future;

use axum::extract::FromRequestParts;
use axum::response::{IntoResponse, Response};
use http::request::Parts;
use hyper::upgrade::OnUpgrade;

use super::upgrade::{UpgradedStream, error_response, prepare};
use super::{Config, Error, WebSocket};

/// A WebSocket upgrade request, checked (§4.2.1), in an axum handler:
///
/// ```no_run
/// use axum::{Router, routing::get};
/// use rfc6455::proto::Message;
/// use rfc6455::transport::WsUpgrade;
///
/// let app: Router = Router::new().route(
///     "/ws",
///     get(|ws: WsUpgrade| async move {
///         ws.on_upgrade(|mut socket| async move {
///             while let Some(Ok(message)) = socket.recv().await {
///                 let data = matches!(message, Message::Text(_) | Message::Binary(_));
///                 if data && socket.send(message).await.is_err() {
///                     break;
///                 }
///             }
///         })
///     }),
/// );
/// ```
///
/// A request that is no valid upgrade is refused before the handler runs,
/// with the handshake's status and reason ([`WsRejection`]).
#[derive(Debug)]
pub struct WsUpgrade {
    parts: Parts,
    on: Option<OnUpgrade>,
    config: Config,
}

impl WsUpgrade {
    /// Uses `config` (subprotocols, limits, timers) instead of the default.
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// The request's subprotocols, in the client's order of preference
    /// (§4.1 item 10), for choosing a [`Config::subprotocols`].
    pub fn protocols(&self) -> Vec<String> {
        self.parts
            .headers
            .get_all(http::header::SEC_WEBSOCKET_PROTOCOL)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|p| p.trim().to_owned())
            .filter(|p| !p.is_empty())
            .collect()
    }

    /// The 101 to return from the handler; `task` runs with the socket
    /// once it has been sent (in a task of its own). If the connection
    /// cannot be handed over, or the client leaves first, `task` never
    /// runs.
    pub fn on_upgrade<F, Fut>(self, task: F) -> Response
    where
        F: FnOnce(WebSocket<UpgradedStream>) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let parts = &self.parts;
        match prepare(
            &parts.method,
            &parts.uri,
            parts.version,
            &parts.headers,
            self.on,
            self.config,
        ) {
            Ok((response, upgrading)) => {
                tokio::spawn(async move {
                    match upgrading.await {
                        Ok(socket) => task(socket).await,
                        Err(e) => tracing::debug!("WebSocket upgrade not completed: {e}"),
                    }
                });
                response.map(|()| axum::body::Body::empty())
            }
            Err(e) => WsRejection(e).into_response(),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for WsUpgrade {
    type Rejection = WsRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        // Checked now, so that a bad request never reaches the handler;
        // checked again (cheaply) when the response is made, with the
        // handler's config.
        let probe = prepare(
            &parts.method,
            &parts.uri,
            parts.version,
            &parts.headers,
            None,
            Config::default(),
        );
        if let Err(e @ Error::Handshake(_)) = probe {
            return Err(WsRejection(e));
        }
        let on = parts.extensions.remove::<OnUpgrade>();
        Ok(Self {
            parts: strip(parts),
            on,
            config: Config::default(),
        })
    }
}

/// The request head without its extensions (hyper's `OnUpgrade` taken).
fn strip(parts: &Parts) -> Parts {
    let mut request = http::Request::new(());
    *request.method_mut() = parts.method.clone();
    *request.uri_mut() = parts.uri.clone();
    *request.version_mut() = parts.version;
    *request.headers_mut() = parts.headers.clone();
    request.into_parts().0
}

/// Why [`WsUpgrade`] refused a request: answered with the handshake
/// error's status and reason ([`error_response`](super::error_response)).
#[derive(Debug)]
pub struct WsRejection(pub Error);

impl IntoResponse for WsRejection {
    fn into_response(self) -> Response {
        error_response(&self.0).map(axum::body::Body::from)
    }
}
