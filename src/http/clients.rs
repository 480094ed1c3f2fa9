//! Silent clients. tiny_http never times out a read, so a client that connects and sends
//! nothing, trickles its body a byte a minute, or never reads its answer would hold a thread
//! (and perhaps a worker) for ever. [`Clients`] knows which connections the server itself is
//! busy on: a request taken and not yet answered, except while its body is read. A watchdog
//! thread shuts down every other connection whose client has sent nothing for
//! `--read-timeout`, and the idlest ones past [`MAX_IDLE_CONNECTIONS`].

use crate::platform::{self, TcpConnection};
use crossbeam_channel::{bounded, Sender};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Connections kept open that the server is not busy on.
pub const MAX_IDLE_CONNECTIONS: usize = 1024;

/// What the server knows of its clients.
pub struct Clients {
    timeout: Duration,
    peers: Mutex<HashMap<SocketAddr, Peer>>,
}

struct Peer {
    /// Requests of this client being worked on.
    busy: u32,
    /// When the server last stopped being busy on it.
    since: Instant,
}

impl Clients {
    pub fn new(timeout: Duration) -> Clients {
        Clients {
            timeout,
            peers: Mutex::new(HashMap::new()),
        }
    }

    /// Marks a request of `peer` as being worked on until the guard drops.
    pub fn busy(self: &Arc<Self>, peer: Option<SocketAddr>) -> Busy {
        self.change(peer, true);
        Busy {
            clients: self.clone(),
            peer,
        }
    }

    /// Marks the server as waiting on `peer` (reading its body) until the guard drops.
    pub fn waiting_on(&self, peer: Option<SocketAddr>) -> Waiting<'_> {
        self.change(peer, false);
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

    /// Starts the watchdog thread; it runs until the returned handle is stopped.
    pub fn start_watchdog(self: &Arc<Self>) -> std::io::Result<Watchdog> {
        let (stop, stopped) = bounded::<()>(1);
        let every = (self.timeout / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
        let clients = self.clone();
        let thread = std::thread::Builder::new()
            .name("client-watchdog".into())
            .spawn(move || {
                while let Err(crossbeam_channel::RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(every)
                {
                    let connections = platform::tcp_connections();
                    for connection in clients.silent(&connections, Instant::now()) {
                        if platform::shut_down(connection) {
                            log::info!("closed the silent connection of {}", connection.peer);
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
