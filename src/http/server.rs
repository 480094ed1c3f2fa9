//! The accept loop: a tiny_http server hands each request to a fixed pool of `--workers`
//! threads; past `--workers + --max-queue` outstanding requests the loop answers 503 itself.
//! Every handler runs inside `catch_unwind`, so a panic is a 500, never a dead worker. On
//! the stop signal it stops accepting, answers what is still queued with 503, waits for the
//! requests in progress, and returns.

use super::auth::Access;
use super::clients::Busy;
use super::dispatcher::{Dispatcher, Slot};
use super::rate_limit::RateLimit;
use super::{router, ApiError, Reply};
use crate::app::App;
use crate::ids::new_id;
use crate::platform;
use crossbeam_channel::Receiver;
use std::io::{self, Write};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tiny_http::{Header, Request, Response, Server, SslConfig, StatusCode};

/// How often the loop looks at the stop signal while idle.
const POLL: Duration = Duration::from_millis(100);

/// Serves until `stop` receives (or its sender is dropped).
pub fn serve(app: &Arc<App>, stop: &Receiver<()>) -> io::Result<()> {
    let server = match &app.config.tls {
        None => Server::http(&app.config.addr),
        Some((cert, key)) => {
            let read = |path: &std::path::Path| {
                std::fs::read(path).map_err(|err| {
                    io::Error::new(err.kind(), format!("cannot read {}: {err}", path.display()))
                })
            };
            let config = SslConfig {
                certificate: read(cert)?,
                private_key: read(key)?,
            };
            Server::https(&app.config.addr, config)
        }
    }
    .map_err(|err| {
        io::Error::new(
            io::ErrorKind::AddrInUse,
            format!("cannot listen on {}: {err}", app.config.addr),
        )
    })?;
    let scheme = if app.config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let addr = server
        .server_addr()
        .to_ip()
        .ok_or_else(|| io::Error::other("the server is not on an IP address"))?;
    let _ = app.local_addr.set(addr);
    {
        let mut out = io::stdout().lock();
        writeln!(out, "golambda listening on {scheme}://{addr}")?;
        out.flush()?;
    }
    log::info!(
        "listening on {addr} with {} workers, {} queue places, {} functions",
        app.config.workers,
        app.config.max_queue,
        app.registry.len()
    );
    let dispatcher = app.dispatcher.get_or_init(|| {
        Dispatcher::new(
            app.config.workers,
            app.config.max_queue,
            app.config.compile_jobs + 2,
        )
    });
    let rejecter = Rejecter::start();
    let watchdog = app.clients.start_watchdog()?;
    let mut rate_limit = RateLimit::new(app.config.rate_limit);
    let mut listener_failed = None;
    loop {
        if !matches!(stop.try_recv(), Err(crossbeam_channel::TryRecvError::Empty)) {
            break;
        }
        let request = match server.recv_timeout(POLL) {
            Ok(Some(request)) => request,
            Ok(None) => continue,
            Err(err) => {
                // tiny_http's accept thread ends on its first error (out of file
                // descriptors, say): no connection would ever come again. Stop like on a
                // signal, then exit non-zero so a supervisor restarts the server.
                log::error!("the listener failed ({err}); stopping");
                listener_failed = Some(err);
                break;
            }
        };
        let client = request.remote_addr().map(|a| a.ip());
        if let Some(client) = client {
            if !rate_limit.allow(client, Instant::now()) {
                rejecter.reject(
                    request,
                    ApiError::TooManyRequests {
                        reason: "this address is over --rate-limit",
                    },
                );
                continue;
            }
        }
        let access = Access::of(request.url());
        let lane = match access {
            Access::Invoke => &dispatcher.invoke,
            Access::Admin | Access::Open => &dispatcher.admin,
        };
        if access == Access::Open && !has_body(&request) {
            // Health answers at once, whatever the load.
            let busy = app.clients.busy(request.remote_addr().copied());
            handle(app, request, lane.take_unbounded(), busy);
            continue;
        }
        let Some(slot) = lane.try_take() else {
            rejecter.reject(request, ApiError::QueueFull);
            continue;
        };
        let busy = app.clients.busy(request.remote_addr().copied());
        let app = app.clone();
        lane.execute(move || handle(&app, request, slot, busy));
    }
    app.scheduler.stop_firing();
    log::info!(
        "stopping: no new requests or cron fires; waiting for {} in progress",
        dispatcher.outstanding()
    );
    while let Ok(Some(request)) = server.try_recv() {
        rejecter.reject(request, ApiError::ShuttingDown);
    }
    drop(server);
    dispatcher.join();
    watchdog.stop();
    match listener_failed {
        Some(err) => Err(io::Error::other(format!("the listener failed: {err}"))),
        None => Ok(()),
    }
}

/// Unread bodies up to this size are read and dropped, keeping the connection open.
const LARGEST_DRAINED_BODY: usize = 1 << 20;

/// Most threads answering refused requests at once.
const MAX_REJECTERS: usize = 128;

/// Answers requests the pool cannot take. A request without a body is answered here and
/// now; one with a body gets a thread of its own, because dropping a request whose body was
/// not read makes tiny_http read that body, and a client that never sends it would stall
/// whoever drops it.
struct Rejecter {
    live: Arc<AtomicUsize>,
}

impl Rejecter {
    fn start() -> Rejecter {
        Rejecter {
            live: Arc::new(AtomicUsize::new(0)),
        }
    }

    fn reject(&self, request: Request, error: ApiError) {
        if !has_body(&request) || self.live.load(Ordering::SeqCst) >= MAX_REJECTERS {
            return answer_without_handler(request, &error);
        }
        let slot = Slot::take(&self.live);
        let spawned = std::thread::Builder::new()
            .name("http-rejecter".into())
            .spawn(move || {
                let _slot = slot;
                answer_without_handler(request, &error);
            });
        if let Err(err) = spawned {
            log::warn!("cannot start a thread to refuse a request: {err}");
        }
    }
}

/// Whether a request carries a body that dropping it unread would make tiny_http read.
fn has_body(request: &Request) -> bool {
    request.body_length().is_some_and(|n| n > 0)
        || request
            .headers()
            .iter()
            .any(|h| h.field.equiv("Transfer-Encoding"))
}

/// Runs the router for one request and sends its answer.
fn handle(app: &Arc<App>, mut request: Request, slot: Slot, busy: Busy) {
    let started = Instant::now();
    let request_id = new_id();
    let method = request.method().to_string();
    let path: String = request
        .url()
        .split('?')
        .next()
        .unwrap_or("")
        .chars()
        .take(200)
        .collect();
    let mut slot = Some(slot);
    super::body::reset_body_read();
    let reply = catch_unwind(AssertUnwindSafe(|| {
        router::route(app, &mut request, &request_id, &mut slot)
    }))
    .unwrap_or_else(|_| {
        Err(ApiError::Internal {
            context: "the request handler panicked".into(),
        })
    })
    .unwrap_or_else(|error| Reply::from_error(&error));
    log::info!(
        "{method} {path} {} {:.1}ms",
        reply.status,
        started.elapsed().as_secs_f64() * 1000.0
    );
    // The work is done (or handed to an async run): the place is free before the client
    // can send its next request.
    drop(slot);
    // From here the server waits on the client to take its answer.
    drop(busy);
    respond(request, reply, &request_id);
}

fn answer_without_handler(request: Request, error: &ApiError) {
    let method = request.method().to_string();
    let path: String = request.url().chars().take(200).collect();
    respond(request, Reply::from_error(error), &new_id());
    log::info!("{method} {path} {} 0.0ms", error.status());
}

fn respond(request: Request, reply: Reply, request_id: &str) {
    let mut response = Response::from_data(reply.body).with_status_code(StatusCode(reply.status));
    let fixed = [
        ("Content-Type".to_string(), reply.content_type),
        ("X-Request-Id".to_string(), request_id.to_string()),
    ];
    for (name, value) in fixed.into_iter().chain(reply.headers) {
        if let Ok(header) = Header::from_bytes(name.as_bytes(), value.as_bytes()) {
            response.add_header(header);
        }
    }
    if request
        .body_length()
        .is_some_and(|n| n > platform::LARGEST_DISCARDABLE_BODY)
    {
        return answer_and_abandon(request, response);
    }
    // A large body nobody read would be read to its end by tiny_http before the connection
    // is free (held by a client that trickles it, with a buffer of its declared size): stop
    // reading the connection instead; the answer still goes out, then it closes.
    if request
        .body_length()
        .is_some_and(|n| n > LARGEST_DRAINED_BODY)
        && !super::body::body_was_read()
    {
        let peer = request.remote_addr().copied();
        platform::tcp_connections()
            .iter()
            .filter(|c| Some(c.peer) == peer)
            .for_each(|c| {
                platform::shut_down_reading(c);
            });
    }
    // Answering drops the request, and tiny_http then discards the unread rest of its
    // body. For a declared length beyond what a Vec can hold, that discarding panics; the
    // answer is sent by then, and the panic must not take the thread with it.
    match catch_unwind(AssertUnwindSafe(|| request.respond(response))) {
        Ok(Ok(())) => {}
        Ok(Err(err)) => log::debug!("client went away before the answer: {err}"),
        Err(_) => log::warn!("tiny_http panicked discarding an unread request body"),
    }
}

/// Answers a request whose declared body is too large for tiny_http to discard (see
/// [`platform::LARGEST_DISCARDABLE_BODY`]): the answer goes out, the connection is shut
/// down, and the request's reader is never dropped, since dropping it would try to allocate
/// the declared length. Costs a leaked connection (two descriptors and tiny_http's blocked
/// connection thread) per such request instead of the whole server.
fn answer_and_abandon<R: io::Read>(request: Request, response: Response<R>) {
    let peer = request.remote_addr().copied();
    let stream = request.upgrade("close", response);
    let shut = platform::tcp_connections()
        .iter()
        .filter(|c| Some(c.peer) == peer)
        .any(platform::shut_down);
    log::warn!(
        "abandoned the connection of {} after refusing a body of absurd declared length{}",
        peer.map_or_else(|| "?".to_string(), |p| p.to_string()),
        if shut {
            ""
        } else {
            " (it could not be shut down)"
        }
    );
    std::mem::forget(stream);
}
