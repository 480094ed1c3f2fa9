//! Everything the accept loop would otherwise write to a client itself: health answers,
//! refusals (rate limit, full queue, stopping) and requests that must be let go. The accept
//! loop never writes: writing to a client that does not read blocks, and tiny_http makes
//! an answer wait for every earlier answer of its connection, so one client could stall
//! every endpoint. Here answers go to a few threads of their own, each connection may have
//! at most [`MAX_PIPELINED`] requests outstanding, and a request that cannot be answered
//! (its connection over that bound, or the answering threads all taken) is let go on a
//! thread that first shuts its connection down, so that nothing waits on its client.
//! Never runs a handler other than health, and never blocks its caller.

use super::ApiError;
use crate::platform;
use crossbeam_channel::{unbounded, Sender};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use threadpool::ThreadPool;
use tiny_http::Request;

/// Requests of one connection taken by the accept loop and not yet answered. HTTP/1.1
/// clients send one at a time or pipeline a few; past this the connection is cut.
pub const MAX_PIPELINED: usize = 8;

/// Threads answering health and refusals.
const RESPONDERS: usize = 4;

/// Answers waiting for a responder thread before requests are let go instead.
const MAX_WAITING: usize = 1024;

/// Counts, per connection, the requests taken and not yet answered.
#[derive(Clone, Default)]
struct Outstanding(Arc<Mutex<HashMap<SocketAddr, usize>>>);

/// One request counted against its connection until it drops (with its answer).
pub struct InFlight {
    outstanding: Outstanding,
    peer: Option<SocketAddr>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let Some(peer) = self.peer else { return };
        let mut map = self
            .outstanding
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = map.get_mut(&peer) {
            *count -= 1;
            if *count == 0 {
                map.remove(&peer);
            }
        }
    }
}

pub struct Responder {
    pool: ThreadPool,
    waiting: Arc<AtomicUsize>,
    outstanding: Outstanding,
    let_go: Sender<(Request, Option<Arc<AtomicBool>>)>,
    /// Connections refused for ambiguous framing, when, and whether their refusal has been
    /// sent: whatever else tiny_http reads from them is let go once it has, never handled.
    poisoned: Mutex<HashMap<SocketAddr, (Instant, Arc<AtomicBool>)>>,
}

/// Longest a request of a refused connection waits for the refusal to be sent before it is
/// let go (cutting the connection) anyway.
const REFUSAL_WAIT: Duration = Duration::from_secs(5);

/// How long a connection stays marked after an ambiguous request (its address may be
/// reused by a new connection after that).
const POISONED_FOR: Duration = Duration::from_secs(60);

impl Responder {
    pub fn start() -> std::io::Result<Responder> {
        let (let_go, requests) = unbounded::<(Request, Option<Arc<AtomicBool>>)>();
        std::thread::Builder::new()
            .name("http-let-go".into())
            .spawn(move || {
                for (request, after) in requests {
                    // Letting go cuts the connection: not before its refusal is out.
                    if let Some(sent) = after {
                        let started = Instant::now();
                        while !sent.load(Ordering::SeqCst) && started.elapsed() < REFUSAL_WAIT {
                            std::thread::sleep(Duration::from_millis(1));
                        }
                    }
                    super::server::discard(request);
                }
            })?;
        Ok(Responder {
            pool: ThreadPool::with_name("http-responder".into(), RESPONDERS),
            waiting: Arc::new(AtomicUsize::new(0)),
            outstanding: Outstanding::default(),
            let_go,
            poisoned: Mutex::new(HashMap::new()),
        })
    }

    /// Counts `request` against its connection; a connection past [`MAX_PIPELINED`] has
    /// the request let go (and is cut) and gets `None`.
    pub fn admit(&self, request: Request) -> Option<(Request, InFlight)> {
        let peer = request.remote_addr().copied();
        if let Some(sent) = peer.and_then(|peer| self.refused(peer)) {
            self.send_to_let_go(request, Some(sent));
            return None;
        }
        if let Some(peer) = peer {
            let mut map = self
                .outstanding
                .0
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let count = map.entry(peer).or_insert(0);
            if *count >= MAX_PIPELINED {
                drop(map);
                log::warn!("cutting the connection of {peer}: over {MAX_PIPELINED} requests waiting for their answers");
                self.let_go(request);
                return None;
            }
            *count += 1;
        }
        let in_flight = InFlight {
            outstanding: self.outstanding.clone(),
            peer,
        };
        Some((request, in_flight))
    }

    /// Runs `answer` on a responder thread; if every one is taken and too many wait, the
    /// request is let go instead.
    pub fn answer(
        &self,
        request: Request,
        in_flight: InFlight,
        answer: impl FnOnce(Request) + Send + 'static,
    ) {
        if self.waiting.load(Ordering::SeqCst) >= MAX_WAITING {
            drop(in_flight);
            return self.let_go(request);
        }
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let waiting = self.waiting.clone();
        self.pool.execute(move || {
            waiting.fetch_sub(1, Ordering::SeqCst);
            answer(request);
            drop(in_flight);
        });
    }

    /// Answers `request` with `error` on a responder thread. The client's body is not
    /// read: reading stops, so that letting the request go never waits for a body a client
    /// may never send, and the connection closes after the answer.
    pub fn refuse(&self, request: Request, in_flight: InFlight, error: ApiError) {
        self.answer(request, in_flight, move |request| {
            if super::server::has_body(&request) {
                stop_reading(&request);
            }
            super::server::answer_without_handler(request, &error);
        });
    }

    /// Answers an ambiguous request with 400 and closes its connection; anything read from
    /// it later is let go.
    pub fn refuse_ambiguous(&self, request: Request, in_flight: InFlight, reason: String) {
        let sent = Arc::new(AtomicBool::new(false));
        if let Some(peer) = request.remote_addr().copied() {
            let mut poisoned = self.poisoned.lock().unwrap_or_else(PoisonError::into_inner);
            poisoned.retain(|_, (at, _)| at.elapsed() < POISONED_FOR);
            poisoned.insert(peer, (Instant::now(), sent.clone()));
        }
        self.answer(request, in_flight, move |request| {
            let peer = request.remote_addr().copied();
            stop_reading(&request);
            super::server::answer_without_handler(request, &ApiError::RequestAmbiguous { reason });
            platform::tcp_connections()
                .iter()
                .filter(|c| Some(c.peer) == peer)
                .for_each(|c| {
                    platform::shut_down(c);
                });
            sent.store(true, Ordering::SeqCst);
        });
    }

    /// Whether `peer`'s connection was refused for ambiguous framing: the flag of its
    /// refusal having been sent.
    fn refused(&self, peer: SocketAddr) -> Option<Arc<AtomicBool>> {
        self.poisoned
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&peer)
            .filter(|(at, _)| at.elapsed() < POISONED_FOR)
            .map(|(_, sent)| sent.clone())
    }

    fn let_go(&self, request: Request) {
        self.send_to_let_go(request, None);
    }

    fn send_to_let_go(&self, request: Request, after: Option<Arc<AtomicBool>>) {
        if let Err(err) = self.let_go.send((request, after)) {
            // Only while stopping: the thread is gone; let go here.
            super::server::discard(err.into_inner().0);
        }
    }

    /// Waits until every answer handed over has been sent.
    pub fn join(&self) {
        self.pool.join();
    }
}

fn stop_reading(request: &Request) {
    let peer = request.remote_addr().copied();
    platform::tcp_connections()
        .iter()
        .filter(|c| Some(c.peer) == peer)
        .for_each(|c| {
            platform::shut_down_reading(c);
        });
}
