//! Silent clients. tiny_http never times out a read, so a client that connects and sends
//! nothing, trickles its body a byte a minute, or never reads its answer would hold a thread
//! (and perhaps a worker) for ever. [`Clients`] knows which connections the server itself is
//! busy on: a request taken and not yet answered, except while its body is read. A watchdog
//! thread shuts down every other connection whose client has sent nothing for
//! `--read-timeout`, and the idlest ones past [`MAX_IDLE_CONNECTIONS`]. It also shuts down
//! every connection, busy or not, whose client has taken none of the bytes waiting for it
//! for `--read-timeout`: a client that never reads its answers (while it trickles bytes
//! to look alive) would otherwise hold the thread writing to it for ever. And it shuts down
//! a connection that has sent more than [`MAX_HEAD`] bytes since its last request was
//! taken, while no body of it is being read: tiny_http keeps a request's head in memory
//! however long it is, so one endless header line would grow the server without bound.

use crate::platform::{self, TcpConnection};
use crossbeam_channel::{bounded, Sender};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Connections kept open that the server is not busy on.
pub const MAX_IDLE_CONNECTIONS: usize = 1024;

/// Most bytes a connection may send towards a request that is not taken yet: its request
/// line and headers.
pub const MAX_HEAD: u64 = 64 * 1024;

/// How often the watchdog looks: a request head grows by what a client sends in this time
/// past [`MAX_HEAD`] at most.
pub const WATCH_EVERY: Duration = Duration::from_millis(100);

/// What the server knows of its clients.
pub struct Clients {
    timeout: Duration,
    peers: Mutex<HashMap<SocketAddr, Peer>>,
    /// Of each connection with bytes waiting for its client: how many it had acknowledged
    /// when last seen to take more, and when that was.
    progress: Mutex<HashMap<SocketAddr, (u64, Instant)>>,
    /// Of each connection: where its present request head starts (bytes it had sent by
    /// then), how many of its requests had been taken then, and the bytes it had sent at
    /// the last look.
    heads: Mutex<HashMap<SocketAddr, (u64, u64, u64)>>,
}

struct Peer {
    /// Requests of this client being worked on.
    busy: u32,
    /// Bodies of this client being read.
    reading: u32,
    /// Requests of this client taken so far.
    taken: u64,
    /// Requests of this client being worked on that have a body (read or waiting to be).
    bodies: u32,
    /// When the server last stopped being busy on it.
    since: Instant,
}

impl Clients {
    pub fn new(timeout: Duration) -> Clients {
        Clients {
            timeout,
            peers: Mutex::new(HashMap::new()),
            progress: Mutex::new(HashMap::new()),
            heads: Mutex::new(HashMap::new()),
        }
    }

    /// Marks a request of `peer` (with a body or not) as being worked on until the guard
    /// drops.
    pub fn busy(self: &Arc<Self>, peer: Option<SocketAddr>, with_body: bool) -> Busy {
        self.change(peer, true);
        if let Some(peer) = peer {
            let mut peers = self.peers.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(entry) = peers.get_mut(&peer) {
                entry.taken += 1;
                entry.bodies += u32::from(with_body);
            }
        }
        Busy {
            clients: self.clone(),
            peer,
            with_body,
        }
    }

    /// Marks the server as waiting on `peer` (reading its body) until the guard drops.
    pub fn waiting_on(&self, peer: Option<SocketAddr>) -> Waiting<'_> {
        self.change(peer, false);
        self.reading(peer, true);
        Waiting {
            clients: self,
            peer,
        }
    }

    fn change(&self, peer: Option<SocketAddr>, busy: bool) {
        let Some(peer) = peer else { return };
        let mut peers = self.peers.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = peers.entry(peer).or_insert(Peer {
            busy: 0,
            reading: 0,
            taken: 0,
            bodies: 0,
            since: Instant::now(),
        });
        if busy {
            entry.busy += 1;
        } else {
            entry.busy = entry.busy.saturating_sub(1);
            entry.since = Instant::now();
        }
    }

    /// The connections to shut down among `connections`, as of `now`: the silent ones the
    /// server is not busy on, then the idlest past the cap. Forgets peers it no longer
    /// needs to remember.
    pub fn silent<'a>(
        &self,
        connections: &'a [TcpConnection],
        now: Instant,
    ) -> Vec<&'a TcpConnection> {
        let mut peers = self.peers.lock().unwrap_or_else(PoisonError::into_inner);
        peers.retain(|_, p| p.busy > 0 || now.saturating_duration_since(p.since) < self.timeout);
        let mut idle: Vec<(Duration, &TcpConnection)> = connections
            .iter()
            .filter_map(|c| match peers.get(&c.peer) {
                Some(p) if p.busy > 0 => None,
                Some(p) => Some((c.idle.min(now.saturating_duration_since(p.since)), c)),
                None => Some((c.idle, c)),
            })
            .collect();
        idle.sort_by_key(|(silence, _)| std::cmp::Reverse(*silence));
        let over_cap = idle.len().saturating_sub(MAX_IDLE_CONNECTIONS);
        idle.into_iter()
            .enumerate()
            .filter(|(i, (silence, _))| *i < over_cap || *silence >= self.timeout)
            .map(|(_, (_, c))| c)
            .collect()
    }

    fn reading(&self, peer: Option<SocketAddr>, started: bool) {
        let Some(peer) = peer else { return };
        let mut peers = self.peers.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(entry) = peers.get_mut(&peer) {
            if started {
                entry.reading += 1;
            } else {
                entry.reading = entry.reading.saturating_sub(1);
            }
        }
    }

    /// The connections among `connections` that have sent more than [`MAX_HEAD`] bytes
    /// since a request of theirs was last taken, with no body of theirs being read.
    pub fn oversized_heads<'a>(&self, connections: &'a [TcpConnection]) -> Vec<&'a TcpConnection> {
        let peers = self.peers.lock().unwrap_or_else(PoisonError::into_inner);
        let mut heads = self.heads.lock().unwrap_or_else(PoisonError::into_inner);
        let mut seen = HashMap::with_capacity(heads.len());
        let mut oversized = Vec::new();
        for connection in connections {
            let peer = peers.get(&connection.peer);
            let taken = peer.map_or(0, |p| p.taken);
            // A body arriving (or queued to be read) is not a head.
            let body = peer.is_some_and(|p| p.reading > 0 || p.bodies > 0);
            let now = connection.received;
            let from = match heads.get(&connection.peer) {
                _ if body => now,
                Some(&(from, counted, _)) if counted == taken => from,
                // Requests were taken since the last look: each accounts for a head's worth
                // of what came since; the rest may be the next head. (Fewer taken than
                // counted: the peer was forgotten and seen anew.)
                Some(&(_, counted, last)) if taken > counted => {
                    now.min(last.saturating_add((taken - counted).saturating_mul(MAX_HEAD)))
                }
                Some(_) => now,
                // Seen first: from its first byte, but for the heads of requests taken.
                None => now.min(taken.saturating_mul(MAX_HEAD)),
            };
            if now.saturating_sub(from) > MAX_HEAD {
                oversized.push(connection);
            }
            seen.insert(connection.peer, (from, taken, now));
        }
        *heads = seen;
        oversized
    }

    /// The connections among `connections` whose client has taken none of the bytes
    /// waiting for it for the timeout, as of `now`.
    pub fn stalled<'a>(
        &self,
        connections: &'a [TcpConnection],
        now: Instant,
    ) -> Vec<&'a TcpConnection> {
        let mut progress = self.progress.lock().unwrap_or_else(PoisonError::into_inner);
        let mut seen = HashMap::with_capacity(progress.len());
        let mut stalled = Vec::new();
        for connection in connections.iter().filter(|c| c.sending) {
            let (acked, since) = match progress.get(&connection.peer) {
                Some(&(acked, since)) if acked == connection.acked => (acked, since),
                _ => (connection.acked, now),
            };
            if now.saturating_duration_since(since) >= self.timeout {
                stalled.push(connection);
            }
            seen.insert(connection.peer, (acked, since));
        }
        *progress = seen;
        stalled
    }

    /// One look of the watchdog: shuts down the connections that are silent, send an
    /// oversized head, or take none of their answer.
    fn look(&self) {
        let connections = platform::tcp_connections();
        let now = Instant::now();
        for connection in self.silent(&connections, now) {
            if platform::shut_down(connection) {
                log::info!("closed the silent connection of {}", connection.peer);
            }
        }
        for connection in self.oversized_heads(&connections) {
            if platform::shut_down(connection) {
                log::info!(
                    "closed the connection of {}: it sent more than {MAX_HEAD} bytes of request head",
                    connection.peer
                );
            }
        }
        for connection in self.stalled(&connections, now) {
            if platform::shut_down(connection) {
                log::info!(
                    "closed the connection of {}: it took none of its answer for {:?}",
                    connection.peer,
                    self.timeout
                );
            }
        }
    }

    /// Starts the watchdog thread; it runs until the returned handle is stopped.
    pub fn start_watchdog(self: &Arc<Self>) -> std::io::Result<Watchdog> {
        let (stop, stopped) = bounded::<()>(1);
        let every = (self.timeout / 4).clamp(Duration::from_millis(20), WATCH_EVERY);
        let clients = self.clone();
        let thread = std::thread::Builder::new()
            .name("client-watchdog".into())
            .spawn(move || {
                while let Err(crossbeam_channel::RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(every)
                {
                    // A panic in one look must not end the watchdog for good.
                    let looked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        clients.look();
                    }));
                    if looked.is_err() {
                        log::error!("the client watchdog panicked; it goes on");
                    }
                }
            })?;
        Ok(Watchdog {
            stop,
            thread: Some(thread),
        })
    }
}

/// A request being worked on (see [`Clients::busy`]).
pub struct Busy {
    clients: Arc<Clients>,
    peer: Option<SocketAddr>,
    with_body: bool,
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.clients.change(self.peer, false);
        if let (Some(peer), true) = (self.peer, self.with_body) {
            let mut peers = self
                .clients
                .peers
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if let Some(entry) = peers.get_mut(&peer) {
                entry.bodies = entry.bodies.saturating_sub(1);
            }
        }
    }
}

/// The server waiting on a client (see [`Clients::waiting_on`]).
pub struct Waiting<'a> {
    clients: &'a Clients,
    peer: Option<SocketAddr>,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.clients.change(self.peer, true);
        self.clients.reading(self.peer, false);
    }
}

/// The running watchdog thread.
pub struct Watchdog {
    stop: Sender<()>,
    thread: Option<JoinHandle<()>>,
}

impl Watchdog {
    pub fn stop(mut self) {
        let _ = self.stop.send(());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connection(port: u16, idle_secs: u64) -> TcpConnection {
        TcpConnection::for_test(
            SocketAddr::from(([127, 0, 0, 1], port)),
            Duration::from_secs(idle_secs),
        )
    }

    #[test]
    fn silent_clients_are_cut_busy_ones_never() {
        let clients = Arc::new(Clients::new(Duration::from_secs(30)));
        let all = [connection(1, 31), connection(2, 5), connection(3, 600)];
        let busy = clients.busy(Some(all[2].peer), false);
        let cut: Vec<u16> = clients
            .silent(&all, Instant::now())
            .iter()
            .map(|c| c.peer.port())
            .collect();
        assert_eq!(cut, vec![1]);
        drop(busy);
        // Just answered after a long run: silent by the kernel's count, not by ours.
        let cut = clients.silent(&all, Instant::now());
        assert_eq!(cut.len(), 1);
        let later = Instant::now() + Duration::from_secs(31);
        let cut = clients.silent(&all, later);
        assert_eq!(cut.len(), 2);
    }

    #[test]
    fn a_body_being_read_is_waiting_on_the_client() {
        let clients = Arc::new(Clients::new(Duration::from_secs(30)));
        let slow = [connection(7, 45)];
        let _busy = clients.busy(Some(slow[0].peer), true);
        assert!(clients.silent(&slow, Instant::now()).is_empty());
        let reading = clients.waiting_on(Some(slow[0].peer));
        let later = Instant::now() + Duration::from_secs(31);
        assert_eq!(clients.silent(&slow, later).len(), 1);
        drop(reading);
        assert!(clients.silent(&slow, later).is_empty());
    }

    #[test]
    fn a_client_that_takes_none_of_its_answer_is_cut_busy_or_not() {
        let clients = Arc::new(Clients::new(Duration::from_secs(30)));
        let mut reader = connection(8, 0);
        let mut stuck = connection(9, 0);
        let idle = connection(10, 0);
        for c in [&mut reader, &mut stuck] {
            c.sending = true;
            c.acked = 100;
        }
        let _busy = clients.busy(Some(stuck.peer), false);
        let start = Instant::now();
        assert!(clients
            .stalled(&[reader.clone(), stuck.clone(), idle.clone()], start)
            .is_empty());
        // The slow reader takes a little; the other takes nothing.
        reader.acked = 150;
        let later = start + Duration::from_secs(31);
        let all = [reader.clone(), stuck.clone(), idle.clone()];
        let cut: Vec<u16> = clients
            .stalled(&all, later)
            .iter()
            .map(|c| c.peer.port())
            .collect();
        assert_eq!(cut, vec![9]);
        // Once nothing waits for it, a connection starts afresh.
        stuck.sending = false;
        assert!(clients.stalled(&[stuck.clone()], later).is_empty());
        stuck.sending = true;
        assert!(clients.stalled(&[stuck], later).is_empty());
    }

    #[test]
    fn a_head_longer_than_the_bound_is_cut_requests_and_bodies_are_not() {
        let clients = Arc::new(Clients::new(Duration::from_secs(30)));
        let mut bomb = connection(11, 0);
        let mut keep_alive = connection(12, 0);
        let mut upload = connection(13, 0);
        let all = |b: &TcpConnection, k: &TcpConnection, u: &TcpConnection| {
            vec![b.clone(), k.clone(), u.clone()]
        };
        assert!(clients
            .oversized_heads(&all(&bomb, &keep_alive, &upload))
            .is_empty());
        let _reading = clients.waiting_on(Some(upload.peer));
        // Each sends a megabyte: one head, a thousand small requests, one body.
        for c in [&mut bomb, &mut keep_alive, &mut upload] {
            c.received += 1 << 20;
        }
        for _ in 0..1000 {
            drop(clients.busy(Some(keep_alive.peer), false));
        }
        let cut: Vec<u16> = clients
            .oversized_heads(&all(&bomb, &keep_alive, &upload))
            .iter()
            .map(|c| c.peer.port())
            .collect();
        assert_eq!(cut, vec![11]);
    }

    #[test]
    fn what_came_before_the_first_look_or_after_a_request_counts_too() {
        let clients = Arc::new(Clients::new(Duration::from_secs(30)));
        // Streaming a header line since it connected, before the watchdog first looked.
        let mut early = connection(14, 0);
        early.received = 1 << 20;
        assert_eq!(
            clients.oversized_heads(std::slice::from_ref(&early)).len(),
            1
        );
        // One request taken, then a megabyte more within the same look.
        let mut after = connection(15, 0);
        assert!(clients
            .oversized_heads(std::slice::from_ref(&after))
            .is_empty());
        drop(clients.busy(Some(after.peer), false));
        after.received = 1 << 20;
        assert_eq!(
            clients.oversized_heads(std::slice::from_ref(&after)).len(),
            1
        );
    }

    #[test]
    fn a_peer_forgotten_and_seen_anew_starts_afresh() {
        let clients = Arc::new(Clients::new(Duration::from_secs(30)));
        let mut again = connection(16, 0);
        for _ in 0..3 {
            drop(clients.busy(Some(again.peer), false));
        }
        assert!(clients
            .oversized_heads(std::slice::from_ref(&again))
            .is_empty());
        // Silent long enough to be forgotten: its count of requests starts at 0 again.
        let later = Instant::now() + Duration::from_secs(60);
        let _ = clients.silent(std::slice::from_ref(&again), later);
        drop(clients.busy(Some(again.peer), false));
        again.received = 1000;
        assert!(clients
            .oversized_heads(std::slice::from_ref(&again))
            .is_empty());
    }

    #[test]
    fn past_the_cap_the_idlest_go_first() {
        let clients = Arc::new(Clients::new(Duration::from_secs(30)));
        let all: Vec<TcpConnection> = (0..MAX_IDLE_CONNECTIONS as u16 + 3)
            .map(|i| connection(1000 + i, u64::from(i % 20)))
            .collect();
        let cut = clients.silent(&all, Instant::now());
        assert_eq!(cut.len(), 3);
        assert!(cut.iter().all(|c| c.idle == Duration::from_secs(19)));
    }
}
