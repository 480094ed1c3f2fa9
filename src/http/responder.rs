//! Everything the accept loop would otherwise write to a client itself: health answers,
//! refusals (rate limit, full queue, stopping, ambiguous framing) and requests that must be
//! let go. The accept loop never writes: writing to a client that does not read blocks.
//!
//! tiny_http makes each answer (and the answer dropping a request writes) wait until every
//! earlier answer of its connection is out. So a job of this module for a connection that
//! still has an earlier request outstanding (a slow run, say) is not handed to a thread: it
//! waits on its connection and is started once all that came before it is done. No
//! answering thread ever waits on another request. Each connection may have at most
//! [`MAX_PIPELINED`] requests outstanding: past that it is cut. Never runs a handler other
//! than health, and never blocks its caller.

use super::ApiError;
use crate::platform;
use crossbeam_channel::{unbounded, Sender};
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
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

/// How long a connection stays marked after an ambiguous request (its address may be
/// reused by a new connection after that).
const POISONED_FOR: Duration = Duration::from_secs(60);

type Job = Box<dyn FnOnce() + Send>;

/// One connection's requests taken and not done, and the jobs waiting for their turn.
#[derive(Default)]
struct Connection {
    outstanding: usize,
    deferred: VecDeque<Job>,
}

/// Every connection with requests outstanding, and the threads that run their jobs.
#[derive(Clone)]
struct Connections {
    map: Arc<Mutex<HashMap<SocketAddr, Connection>>>,
    pool: ThreadPool,
}

impl Connections {
    /// Counts one more request of `peer`, unless it has `cap` outstanding already.
    fn enter(&self, peer: Option<SocketAddr>, cap: Option<usize>) -> Option<InFlight> {
        if let Some(peer) = peer {
            let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
            let connection = map.entry(peer).or_default();
            if cap.is_some_and(|cap| connection.outstanding >= cap) {
                return None;
            }
            connection.outstanding += 1;
        }
        Some(InFlight {
            connections: self.clone(),
            peer,
        })
    }

    /// Runs `job` (which holds the [`InFlight`] of a request of `peer`) now if nothing else
    /// of its connection is outstanding, else once everything before it is done.
    fn run_in_turn(&self, peer: Option<SocketAddr>, job: Job) {
        if let Some(peer) = peer {
            let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(connection) = map.get_mut(&peer).filter(|c| c.outstanding > 1) {
                connection.deferred.push_back(job);
                return;
            }
        }
        self.pool.execute(job);
    }
}

/// One request counted against its connection until it drops (with its answer); then the
/// next job of the connection, if only jobs are left, gets its turn.
pub struct InFlight {
    connections: Connections,
    peer: Option<SocketAddr>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let Some(peer) = self.peer else { return };
        let next = {
            let mut map = self
                .connections
                .map
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let Some(connection) = map.get_mut(&peer) else {
                return;
            };
            connection.outstanding -= 1;
            if connection.outstanding == 0 {
                map.remove(&peer);
                None
            } else if connection.outstanding == connection.deferred.len() {
                connection.deferred.pop_front()
            } else {
                None
            }
        };
        if let Some(job) = next {
            self.connections.pool.execute(job);
        }
    }
}

pub struct Responder {
    waiting: Arc<AtomicUsize>,
    connections: Connections,
    /// Connections to cut at once, on a thread of its own (finding a socket lists them all).
    cut: Sender<SocketAddr>,
    /// Connections refused and closed (see [`Responder::refuse_and_close`]), and when: whatever else tiny_http reads
    /// from them is let go after the refusal, never handled.
    poisoned: Mutex<HashMap<SocketAddr, Instant>>,
}

impl Responder {
    pub fn start() -> std::io::Result<Responder> {
        let (cut, peers) = unbounded::<SocketAddr>();
        std::thread::Builder::new()
            .name("http-cut".into())
            .spawn(move || {
                for peer in peers {
                    platform::shut_down_peer(Some(peer));
                }
            })?;
        Ok(Responder {
            waiting: Arc::new(AtomicUsize::new(0)),
            connections: Connections {
                map: Arc::new(Mutex::new(HashMap::new())),
                pool: ThreadPool::with_name("http-responder".into(), RESPONDERS),
            },
            cut,
            poisoned: Mutex::new(HashMap::new()),
        })
    }

    /// Counts `request` against its connection; a connection past [`MAX_PIPELINED`], or
    /// one refused and closed, has the request let go and gets `None`.
    pub fn admit(&self, request: Request) -> Option<(Request, InFlight)> {
        let peer = request.remote_addr().copied();
        if peer.is_some_and(|peer| self.refused(peer)) {
            // After the refusal, which closes the connection.
            self.let_go(request, false);
            return None;
        }
        match self.connections.enter(peer, Some(MAX_PIPELINED)) {
            Some(in_flight) => Some((request, in_flight)),
            None => {
                log::warn!(
                    "cutting the connection of {}: over {MAX_PIPELINED} requests waiting for their answers",
                    peer.map_or_else(|| "?".to_string(), |p| p.to_string())
                );
                self.let_go(request, true);
                None
            }
        }
    }

    /// Runs `answer` on a responder thread in its connection's turn; if too many answers
    /// wait already, the request is let go instead.
    pub fn answer(
        &self,
        request: Request,
        in_flight: InFlight,
        answer: impl FnOnce(Request) + Send + 'static,
    ) {
        if self.waiting.load(Ordering::SeqCst) >= MAX_WAITING {
            drop(in_flight);
            return self.let_go(request, true);
        }
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let waiting = self.waiting.clone();
        let peer = in_flight.peer;
        let job: Job = Box::new(move || {
            waiting.fetch_sub(1, Ordering::SeqCst);
            answer(request);
            drop(in_flight);
        });
        self.connections.run_in_turn(peer, job);
    }

    /// Answers `request` with `error` on a responder thread. The client's body is not
    /// read: reading stops, so that letting the request go never waits for a body a client
    /// may never send, and the connection closes after the answer.
    pub fn refuse(&self, request: Request, in_flight: InFlight, error: ApiError) {
        self.answer(request, in_flight, move |request| {
            if super::server::has_body(&request) {
                platform::stop_reading_peer(request.remote_addr().copied());
            }
            super::server::answer_without_handler(request, &error);
        });
    }

    /// Answers a request that cannot be trusted (ambiguous framing, control characters)
    /// with `error` and closes its connection; anything read from it later is let go.
    pub fn refuse_and_close(&self, request: Request, in_flight: InFlight, error: ApiError) {
        if let Some(peer) = request.remote_addr().copied() {
            let mut poisoned = self.poisoned.lock().unwrap_or_else(PoisonError::into_inner);
            poisoned.retain(|_, at| at.elapsed() < POISONED_FOR);
            poisoned.insert(peer, Instant::now());
        }
        self.answer(request, in_flight, move |request| {
            let peer = request.remote_addr().copied();
            platform::stop_reading_peer(peer);
            super::server::answer_without_handler(request, &error);
            platform::shut_down_peer(peer);
        });
    }

    fn refused(&self, peer: SocketAddr) -> bool {
        self.poisoned
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&peer)
            .is_some_and(|at| at.elapsed() < POISONED_FOR)
    }

    /// Lets go of a request in its connection's turn (its drop must not wait on an earlier
    /// answer); with `cut_now`, its connection is cut at once, so that those earlier
    /// answers fail at once too.
    fn let_go(&self, request: Request, cut_now: bool) {
        let peer = request.remote_addr().copied();
        if let (true, Some(peer)) = (cut_now, peer) {
            let _ = self.cut.send(peer);
        }
        let Some(in_flight) = self.connections.enter(peer, None) else {
            return;
        };
        let job: Job = Box::new(move || {
            super::server::discard(request);
            drop(in_flight);
        });
        self.connections.run_in_turn(peer, job);
    }

    /// Waits until every answer handed over has been sent.
    pub fn join(&self) {
        self.connections.pool.join();
    }
}
