//! The HTTP server: the app on actix-http's HTTP/1 service, with WebSocket connections taken off
//! the HTTP layer once their `101` is written.
//!
//! actix-http hands every request that asks for a WebSocket upgrade (`Upgrade: websocket`, and
//! CONNECT) to an upgrade service together with the connection itself. Ours answers it through the
//! same app as any request (routes, auth, CORS, metrics, error shape); when the answer is a
//! WebSocket handshake, the handler's [`Handoff`] runs the connection from then on, and no HTTP
//! dispatcher (nor its two 8 KiB buffers) stays for the life of the WebSocket. Any other answer is
//! written and the connection closed.

use std::convert::Infallible;
use std::future::poll_fn;
use std::net::{SocketAddr, ToSocketAddrs};
use std::pin::Pin;
use std::rc::Rc;
use std::time::Duration;

use actix_codec::{AsyncWrite, Framed};
use actix_http::body::{to_bytes, MessageBody};
use actix_http::{h1, ConnectionType, HttpMessage, HttpService, KeepAlive, Request, Response, StatusCode};
use actix_server::Server;
use actix_service::{fn_factory, fn_service, map_config, IntoServiceFactory, Service, ServiceFactory};
use actix_web::dev::{AppConfig, ServiceResponse};
use actix_web::rt::net::TcpStream;
use actix_web::web::Bytes;
use futures_util::{FutureExt, TryFutureExt};

use super::ws::upgrade::{Handoff, UpgradeRequest};
use super::{app, AppState};

/// What actix-web's `HttpServer` used by default, which the server kept.
const KEEP_ALIVE: Duration = Duration::from_secs(5);
const CLIENT_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
const CLIENT_DISCONNECT_TIMEOUT: Duration = Duration::from_secs(1);
const BACKLOG: i32 = 1024;
/// Seconds in-flight requests get to finish on a graceful stop.
const SHUTDOWN_TIMEOUT_SECS: u64 = 5;

/// Binds the whole app on `bind` (`127.0.0.1:0` for an ephemeral port) with `workers` workers,
/// wired as the binary runs it (signals left to the caller), and starts it. Returns the running
/// server (await it, or spawn it) and the addresses it listens on.
pub fn start_server(state: AppState, workers: usize, bind: &str) -> std::io::Result<(Server, Vec<SocketAddr>)> {
    let mut builder = Server::build()
        .workers(workers.max(1))
        .disable_signals()
        .shutdown_timeout(SHUTDOWN_TIMEOUT_SECS);
    let stopping = builder.graceful_shutdown_signal();
    let open = state.metrics.connections_gauge();
    let mut addrs = Vec::new();
    for listener in listeners(bind)? {
        let addr = listener.local_addr()?;
        addrs.push(addr);
        let state = state.clone();
        let stopping = stopping.clone();
        let open = open.clone();
        builder = builder.listen(format!("clusterd-http-{addr}"), listener, move || {
            // One instance of the app per worker, for plain requests and upgrades alike.
            let app = map_config(app(state.clone()), |_| AppConfig::default())
                .into_factory()
                .new_service(())
                .map_ok(Rc::new)
                .shared();
            let upgrades = app.clone();
            let stopping = stopping.clone();
            let open = open.clone();
            HttpService::build()
                // Counted while the connection's HTTP dispatcher lives (a WebSocket's session
                // counts itself after the handoff).
                .on_connect_ext(move |_: &TcpStream, ext: &mut actix_http::Extensions| {
                    ext.insert(super::metrics::OpenConnection::new(open.clone()));
                })
                // Idle keep-alive connections close at once on a graceful stop.
                .graceful_shutdown_signal(move || {
                    let stopping = stopping.clone();
                    async move { stopping.notified().await }
                })
                .keep_alive(KeepAlive::Timeout(KEEP_ALIVE))
                .client_request_timeout(CLIENT_REQUEST_TIMEOUT)
                .client_disconnect_timeout(CLIENT_DISCONNECT_TIMEOUT)
                .h1_allow_half_closed(true)
                .local_addr(addr)
                .upgrade(fn_factory(move || {
                    let app = upgrades.clone();
                    async move {
                        let app = app.await?;
                        Ok::<_, ()>(fn_service(move |(req, framed)| answer_upgrade(app.clone(), req, framed)))
                    }
                }))
                .finish(fn_factory(move || app.clone()))
                .tcp()
        })?;
    }
    Ok((builder.run(), addrs))
}

/// A listener on every address `bind` resolves to, as `HttpServer::bind` made them: at least one
/// must bind.
fn listeners(bind: &str) -> std::io::Result<Vec<std::net::TcpListener>> {
    let mut listeners = Vec::new();
    let mut last_error = None;
    for addr in bind.to_socket_addrs()? {
        match listener(addr) {
            Ok(listener) => listeners.push(listener),
            Err(e) => last_error = Some(e),
        }
    }
    match (listeners.is_empty(), last_error) {
        (false, _) => Ok(listeners),
        (true, Some(e)) => Err(e),
        (true, None) => Err(std::io::Error::other("the address resolves to nothing")),
    }
}

fn listener(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

/// Answers an upgrade request through the app. A WebSocket handshake hands the connection to the
/// session it started; any other answer (an error, or a route that is not a WebSocket) is written
/// as it is and the connection closed, since the request's body, if any, was never framed.
async fn answer_upgrade<S, B>(
    app: Rc<S>,
    req: Request,
    framed: Framed<TcpStream, h1::Codec>,
) -> Result<(), Infallible>
where
    S: Service<Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody + 'static,
{
    req.extensions_mut().insert(UpgradeRequest);
    let mut res = match app.call(req).await {
        Ok(res) => Response::from(res).map_into_boxed_body(),
        Err(e) => Response::from(e),
    };
    let handoff = res.extensions_mut().remove::<Handoff>();
    let (mut res, body) = res.into_parts();
    match handoff {
        Some(handoff) if res.status() == StatusCode::SWITCHING_PROTOCOLS => {
            match h1::SendResponse::new(framed, res.set_body(())).await {
                Ok(framed) => {
                    // What the client sent after its request (its first frames) is in the read
                    // buffer; the buffers themselves are dropped here.
                    let parts = framed.into_parts();
                    handoff.run(parts.io, Bytes::copy_from_slice(&parts.read_buf));
                }
                Err(e) => tracing::debug!(error = %e, "writing a WebSocket handshake failed"),
            }
        }
        _ => {
            // Answers here are errors and small documents: read whole, they are written as one.
            let body = match to_bytes(body).await {
                Ok(body) => body,
                Err(e) => {
                    tracing::debug!(error = %e, "the answer to an upgrade request failed");
                    return Ok(());
                }
            };
            res.head_mut().set_connection_type(ConnectionType::Close);
            match h1::SendResponse::new(framed, res.set_body(body)).await {
                Ok(mut framed) => {
                    if let Err(e) = poll_fn(|cx| Pin::new(framed.io_mut()).poll_shutdown(cx)).await {
                        tracing::debug!(error = %e, "closing an answered upgrade request failed");
                    }
                }
                Err(e) => tracing::debug!(error = %e, "answering an upgrade request failed"),
            }
        }
    }
    Ok(())
}
