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
    /// Of each connection: the bytes it had sent when a request of it was last taken (or
    /// it was first seen), and how many requests had been taken then.
    heads: Mutex<HashMap<SocketAddr, (u64, u64)>>,
}

struct Peer {
    /// Requests of this client being worked on.
    busy: u32,
    /// Bodies of this client being read.
    reading: u32,
    /// Requests of this client taken so far.
    taken: u64,
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

    /// Marks a request of `peer` as being worked on until the guard drops.
    pub fn busy(self: &Arc<Self>, peer: Option<SocketAddr>) -> Busy {
        self.change(peer, true);
        if let Some(peer) = peer {
            if let Some(entry) = self
                .peers
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get_mut(&peer)
            {
                entry.taken += 1;
            }
        }
        Busy {
            clients: self.clone(),
            peer,
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
            let reading = peer.is_some_and(|p| p.reading > 0);
            let (from, counted) = match heads.get(&connection.peer) {
                Some(&(from, counted)) if counted == taken && !reading => (from, counted),
                _ => (connection.received, taken),
            };
            if connection.received.saturating_sub(from) > MAX_HEAD {
                oversized.push(connection);
            }
            seen.insert(connection.peer, (from, counted));
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
                    let connections = platform::tcp_connections();
                    let now = Instant::now();
                    for connection in clients.silent(&connections, now) {
                        if platform::shut_down(connection) {
                            log::info!("closed the silent connection of {}", connection.peer);
                        }
                    }
                    for connection in clients.oversized_heads(&connections) {
                        if platform::shut_down(connection) {
                            log::info!(
                                "closed the connection of {}: it sent more than {MAX_HEAD} bytes of request head",
                                connection.peer
                            );
                        }
                    }
                    for connection in clients.stalled(&connections, now) {
                        if platform::shut_down(connection) {
                            log::info!(
                                "closed the connection of {}: it took none of its answer for {:?}",
                                connection.peer,
                                clients.timeout
                            );
                        }
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
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.clients.change(self.peer, false);
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
        let busy = clients.busy(Some(all[2].peer));
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
        let _busy = clients.busy(Some(slow[0].peer));
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
        let _busy = clients.busy(Some(stuck.peer));
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
            drop(clients.busy(Some(keep_alive.peer)));
        }
        let cut: Vec<u16> = clients
            .oversized_heads(&all(&bomb, &keep_alive, &upload))
            .iter()
            .map(|c| c.peer.port())
            .collect();
        assert_eq!(cut, vec![11]);
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
