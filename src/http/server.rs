//! The accept loop: a tiny_http server hands each request to a fixed pool of `--workers`
//! threads; past `--workers + --max-queue` outstanding requests the loop answers 503 itself.
//! Every handler runs inside `catch_unwind`, so a panic is a 500, never a dead worker. On
//! the stop signal it stops accepting, answers what is still queued with 503, waits for the
//! requests in progress, and returns.

use super::auth::Access;
use super::auth::Auth;
use super::clients::{Busy, Clients};
use super::dispatcher::{Dispatcher, Slot};
use super::rate_limit::RateLimit;
use super::responder::Responder;
use super::Front;
use super::{router, ApiError, Reply};
use crate::functions::app::App;
use crate::ids::new_id;
use crate::platform;
use crossbeam_channel::Receiver;
use std::io::{self, Write};
use std::panic::{catch_unwind, AssertUnwindSafe};
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
    let config = &app.config;
    let front = Arc::new(Front {
        app: app.clone(),
        auth: Auth::new(
            config.token.clone(),
            config.jwt_secret.clone(),
            config.invoke_auth,
            !config.jwt_allow_no_exp,
        ),
        dispatcher: Dispatcher::new(
            config.workers,
            config.max_queue,
            config.compile_jobs + 2,
            usize::try_from(config.queue_bytes).unwrap_or(usize::MAX),
        ),
        local_addr: addr,
        clients: Arc::new(Clients::new(config.read_timeout)),
    });
    let dispatcher = &front.dispatcher;
    let responder = Responder::start()?;
    let watchdog = front.clients.start_watchdog()?;
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
        // From here nothing on this thread writes to the client (see `responder`).
        let Some((request, in_flight)) = responder.admit(request) else {
            continue;
        };
        if let Some(reason) = super::framing::ambiguity(&request) {
            responder.refuse_and_close(request, in_flight, ApiError::RequestAmbiguous { reason });
            continue;
        }
        if let Some(reason) = super::framing::control_characters(&request) {
            responder.refuse_and_close(request, in_flight, ApiError::RequestMalformed { reason });
            continue;
        }
        let client = request.remote_addr().map(|a| a.ip());
        if let Some(client) = client {
            if !rate_limit.allow(client, Instant::now()) {
                let error = ApiError::TooManyRequests {
                    reason: "this address is over --rate-limit",
                };
                responder.refuse(request, in_flight, error);
                continue;
            }
        }
        let access = Access::of(request.url());
        let lane = match access {
            Access::Invoke => &dispatcher.invoke,
            Access::Admin if request.url().split('?').next() == Some("/register") => {
                &dispatcher.build
            }
            Access::Admin | Access::Open => &dispatcher.admin,
        };
        if access == Access::Open && !has_body(&request) {
            // Health answers at once, whatever the load.
            let busy = front.clients.busy(request.remote_addr().copied(), false);
            let slot = lane.take_unbounded();
            let front = front.clone();
            responder.answer(request, in_flight, move |request| {
                handle(&front, request, slot, busy)
            });
            continue;
        }
        let Some(slot) = lane.try_take() else {
            responder.refuse(request, in_flight, ApiError::QueueFull);
            continue;
        };
        let busy = front
            .clients
            .busy(request.remote_addr().copied(), has_body(&request));
        let front = front.clone();
        lane.execute(move || {
            handle(&front, request, slot, busy);
            drop(in_flight);
        });
    }
    app.scheduler.stop_firing();
    log::info!(
        "stopping: no new requests or cron fires; waiting for {} in progress",
        dispatcher.outstanding()
    );
    while let Ok(Some(request)) = server.try_recv() {
        if let Some((request, in_flight)) = responder.admit(request) {
            responder.refuse(request, in_flight, ApiError::ShuttingDown);
        }
    }
    drop(server);
    dispatcher.join();
    responder.join();
    watchdog.stop();
    match listener_failed {
        Some(err) => Err(io::Error::other(format!("the listener failed: {err}"))),
        None => Ok(()),
    }
}

/// Unread bodies up to this size are read and dropped, keeping the connection open.
const LARGEST_DRAINED_BODY: usize = 1 << 20;

/// Whether a request carries a body that dropping it unread would make tiny_http read.
pub(super) fn has_body(request: &Request) -> bool {
    request.body_length().is_some_and(|n| n > 0)
        || request
            .headers()
            .iter()
            .any(|h| h.field.equiv("Transfer-Encoding"))
}

/// Runs the router for one request and sends its answer.
fn handle(front: &Front, mut request: Request, slot: Slot, busy: Busy) {
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
        router::route(front, &mut request, &request_id, &mut slot)
    }))
    .unwrap_or_else(|_| {
        Err(ApiError::Internal {
            context: "the request handler panicked".into(),
        })
    })
    .unwrap_or_else(|error| Reply::from_error(&error));
    log::info!(
        "{} {} {} {:.1}ms",
        log_safe(&method),
        log_safe(&path),
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

pub(super) fn answer_without_handler(request: Request, error: &ApiError) {
    let method = request.method().to_string();
    let path: String = request.url().chars().take(200).collect();
    respond(request, Reply::from_error(error), &new_id());
    log::info!(
        "{} {} {} 0.0ms",
        log_safe(&method),
        log_safe(&path),
        error.status()
    );
}

/// What a client sent, as a log line may hold it: control characters (line breaks, tabs,
/// escape sequences) escaped, so no client can forge a line or colour a terminal.
pub(super) fn log_safe(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            let escaped: Vec<char> = if c.is_control() {
                c.escape_default().collect()
            } else {
                vec![c]
            };
            escaped
        })
        .collect()
}

fn respond(request: Request, reply: Reply, request_id: &str) {
    let mut response = Response::from_data(reply.body).with_status_code(StatusCode(reply.status));
    // nosniff: a browser takes every answer for what its Content-Type says, a function's
    // page too (see the README's origin model).
    let fixed = [
        ("Content-Type".to_string(), reply.content_type),
        ("X-Request-Id".to_string(), request_id.to_string()),
        ("X-Content-Type-Options".to_string(), "nosniff".to_string()),
    ];
    for (name, value) in fixed.into_iter().chain(reply.headers) {
        match Header::from_bytes(name.as_bytes(), value.as_bytes()) {
            Ok(header) => response.add_header(header),
            Err(()) => log::warn!(
                "an answer's header {} was not valid and was left out",
                log_safe(&name)
            ),
        }
    }
    if declares_absurd_body(&request) {
        return answer_and_detach(request, response);
    }
    // A large body nobody read would be read to its end by tiny_http before the connection
    // is free (held by a client that trickles it, with a buffer of its declared size): stop
    // reading the connection instead; the answer still goes out, then it closes.
    if request
        .body_length()
        .is_some_and(|n| n > LARGEST_DRAINED_BODY)
        && !super::body::body_was_read()
    {
        platform::stop_reading_peer(request.remote_addr().copied());
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

/// Whether tiny_http may not be left to discard `request`'s unread body on an attached
/// connection (see [`platform::LARGEST_DISCARDABLE_BODY`]).
fn declares_absurd_body(request: &Request) -> bool {
    request
        .body_length()
        .is_some_and(|n| n > platform::LARGEST_DISCARDABLE_BODY)
}

/// Answers a request whose declared body is too large for tiny_http to discard: the answer
/// goes out, then the connection is detached (closed, its descriptors reading as empty), so
/// that discarding the body allocates only a sink and reads nothing.
fn answer_and_detach<R: io::Read>(request: Request, response: Response<R>) {
    let peer = request.remote_addr().copied();
    let stream = request.upgrade("close", response);
    let_go_detached(peer, stream);
}

/// Lets go of a request the server will not answer (see `responder`): its connection is
/// cut first, so that tiny_http's own answer and the discarding of its body end at once.
pub(super) fn discard(request: Request) {
    let peer = request.remote_addr().copied();
    if declares_absurd_body(&request) {
        return let_go_detached(peer, request);
    }
    platform::shut_down_peer(peer);
    if catch_unwind(AssertUnwindSafe(|| drop(request))).is_err() {
        log::warn!("tiny_http panicked letting go of a request");
    }
}

/// Drops what holds a connection with an absurd declared body once the connection is
/// detached. Where it cannot be detached (no listing of sockets here), dropping would
/// allocate the declared length, so it is kept for good: a connection leaked instead of
/// the server lost.
fn let_go_detached<T>(peer: Option<std::net::SocketAddr>, holder: T) {
    if peer.is_some_and(platform::detach) {
        if catch_unwind(AssertUnwindSafe(|| drop(holder))).is_err() {
            log::warn!("tiny_http panicked discarding an unread request body");
        }
        return;
    }
    log::warn!(
        "abandoned the connection of {} after refusing a body of absurd declared length",
        peer.map_or_else(|| "?".to_string(), |p| p.to_string()),
    );
    std::mem::forget(holder);
}
