//! The server's own TCP connections as the kernel sees them (Linux): each connected socket
//! among the process's descriptors, its peer, and how long since the peer last sent a byte.
//! tiny_http has no read timeouts and hides its sockets; this lets the HTTP layer find a
//! silent client's connection and shut it down.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::unix::io::RawFd;
use std::time::Duration;

/// One connected TCP socket of this process.
#[derive(Debug, Clone)]
pub struct TcpConnection {
    fd: RawFd,
    /// The client's address.
    pub peer: SocketAddr,
    /// Time since the client last sent data or acknowledged ours (since the connection
    /// opened if it did neither): a client slowly reading a long answer is not silent.
    pub idle: Duration,
    /// Bytes of ours the client has acknowledged so far.
    pub acked: u64,
    /// Bytes the client has sent that the process has read so far (what waits in the
    /// kernel's receive queue is not counted).
    pub received: u64,
    /// Whether some of our bytes wait to be sent or acknowledged.
    pub sending: bool,
    /// The client has closed its side: nothing more will come from it.
    pub closed_by_peer: bool,
}

impl TcpConnection {
    /// A connection that no descriptor holds, for tests of what to do with connections.
    #[cfg(test)]
    pub fn for_test(peer: SocketAddr, idle: Duration) -> TcpConnection {
        TcpConnection {
            fd: -1,
            peer,
            idle,
            acked: 0,
            received: 0,
            sending: false,
            closed_by_peer: false,
        }
    }
}

/// The kernel's state of a connection whose peer sent its end (`include/net/tcp_states.h`).
const TCP_CLOSE_WAIT: u8 = 8;

/// Every connected TCP socket of the process, once each (tiny_http holds two descriptors of
/// every connection); listening sockets, pipes, files and Unix sockets are left out.
pub fn tcp_connections() -> Vec<TcpConnection> {
    let Ok(entries) = std::fs::read_dir("/proc/self/fd") else {
        return Vec::new();
    };
    let mut seen = std::collections::HashSet::new();
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<RawFd>().ok())
        .filter_map(|fd| {
            let peer = peer_of(fd).filter(|peer| !seen.contains(peer))?;
            // Counted as seen only once read whole: tiny_http may close one of the two
            // descriptors of a connection meanwhile, and the other must stand for it.
            let info = tcp_info(fd)?;
            seen.insert(peer);
            Some(TcpConnection {
                fd,
                peer,
                idle: Duration::from_millis(u64::from(
                    info.tcpi_last_data_recv.min(info.tcpi_last_ack_recv),
                )),
                acked: info.tcpi_bytes_acked,
                received: info.tcpi_bytes_received.saturating_sub(unread(fd)),
                // Fields an older kernel does not fill stay zero.
                sending: info.tcpi_unacked > 0 || info.tcpi_notsent_bytes > 0,
                closed_by_peer: info.tcpi_state == TCP_CLOSE_WAIT,
            })
        })
        .collect()
}

/// Shuts a connection down both ways, so whoever reads or writes it gets an end of stream
/// or an error at once. Checks first that the descriptor still holds the same peer.
pub fn shut_down(connection: &TcpConnection) -> bool {
    if peer_of(connection.fd) != Some(connection.peer) {
        return false;
    }
    // SAFETY: shutdown(2) on a descriptor we just saw holding this connection; it does not
    // close the descriptor, whose owner still does.
    unsafe { libc::shutdown(connection.fd, libc::SHUT_RDWR) == 0 }
}

/// Shuts the reading side of a connection: reads of it end at once, writes still go out.
pub fn shut_down_reading(connection: &TcpConnection) -> bool {
    if peer_of(connection.fd) != Some(connection.peer) {
        return false;
    }
    // SAFETY: as in `shut_down`.
    unsafe { libc::shutdown(connection.fd, libc::SHUT_RD) == 0 }
}

/// Turns every descriptor of the process that holds a connection to `peer` into one of
/// `/dev/null`: the connection closes, and whoever reads or writes those descriptors as a
/// socket fails at once ("not a socket"), without a byte written into its buffer. The descriptors stay open for
/// their owners to close. Call only while holding something that keeps them open (the
/// request of that connection), so that no number is reused meanwhile. A connection is
/// held by two descriptors (tiny_http's reading and writing halves): finding more means
/// another connection from the same address (to another local address), whose descriptors
/// nothing here keeps open, so nothing is detached. Returns whether it was.
pub fn detach(peer: SocketAddr) -> bool {
    let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    else {
        return false;
    };
    let Ok(entries) = std::fs::read_dir("/proc/self/fd") else {
        return false;
    };
    let fds: Vec<RawFd> = entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<RawFd>().ok())
        .filter(|fd| peer_of(*fd) == Some(peer))
        .collect();
    if fds.len() > 2 {
        return false;
    }
    use std::os::unix::io::AsRawFd;
    fds.iter().fold(false, |any, fd| {
        if peer_of(*fd) != Some(peer) {
            return any;
        }
        // SAFETY: shutdown(2) on a descriptor holding the connection closes nothing. First,
        // so that what was written goes out ahead of the end.
        unsafe { libc::shutdown(*fd, libc::SHUT_WR) };
        // SAFETY: dup3(2) onto a descriptor that holds the connection, which the caller
        // keeps open; it atomically makes that number refer to /dev/null instead.
        let done = unsafe { libc::dup3(null.as_raw_fd(), *fd, libc::O_CLOEXEC) } == *fd;
        any || done
    })
}

/// Bytes waiting in a socket's receive queue, not read yet.
fn unread(fd: RawFd) -> u64 {
    let mut waiting: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int through the pointer, for a descriptor we hold.
    let ok = unsafe { libc::ioctl(fd, libc::FIONREAD, &mut waiting) } == 0;
    if ok {
        u64::try_from(waiting).unwrap_or(0)
    } else {
        0
    }
}

fn peer_of(fd: RawFd) -> Option<SocketAddr> {
    // SAFETY: an all-zero sockaddr_storage is valid, and getpeername writes at most `len`
    // bytes into it.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    let ok = unsafe {
        libc::getpeername(
            fd,
            (&mut storage as *mut libc::sockaddr_storage).cast(),
            &mut len,
        )
    };
    if ok != 0 {
        return None;
    }
    match i32::from(storage.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let v4: libc::sockaddr_in =
                unsafe { std::ptr::read((&storage as *const libc::sockaddr_storage).cast()) };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(v4.sin_addr.s_addr)),
                u16::from_be(v4.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            let v6: libc::sockaddr_in6 =
                unsafe { std::ptr::read((&storage as *const libc::sockaddr_storage).cast()) };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(v6.sin6_addr.s6_addr),
                u16::from_be(v6.sin6_port),
                v6.sin6_flowinfo,
                v6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

fn tcp_info(fd: RawFd) -> Option<libc::tcp_info> {
    // SAFETY: an all-zero tcp_info is valid; the kernel fills at most `len` bytes.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    let ok = unsafe {
        libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        )
    };
    (ok == 0).then_some(info)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_detached_connection_reads_as_empty_and_closes() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut accepted, peer) = listener.accept().unwrap();
        client.write_all(b"queued").unwrap();
        std::thread::sleep(Duration::from_millis(50));
        assert!(detach(peer));
        let mut buffer = [0u8; 16];
        assert!(
            accepted.read(&mut buffer).is_err(),
            "nothing read, not even queued bytes"
        );
        assert_eq!(buffer, [0u8; 16]);
        let mut rest = Vec::new();
        // Closed with bytes it never read: a reset, or an end if the queue was empty.
        let end = client.read_to_end(&mut rest);
        assert!(
            matches!(&end, Ok(0))
                || end
                    .as_ref()
                    .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset),
            "{end:?}"
        );
        assert!(tcp_connections().iter().all(|c| c.peer != peer));
    }
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};

    #[test]
    fn finds_a_connection_and_shuts_it_down() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut accepted, peer) = listener.accept().unwrap();
        client.write_all(b"x").unwrap();
        let mut byte = [0u8; 1];
        accepted.read_exact(&mut byte).unwrap();
        let ours = tcp_connections()
            .into_iter()
            .find(|c| c.peer == peer)
            .expect("the accepted socket is listed by its peer");
        assert!(ours.idle < Duration::from_secs(5));
        assert!(shut_down(&ours));
        let mut rest = Vec::new();
        assert_eq!(accepted.read_to_end(&mut rest).unwrap(), 0);
        // The listening socket is never listed.
        use std::os::unix::io::AsRawFd;
        let listening = listener.as_raw_fd();
        assert!(tcp_connections().iter().all(|c| c.fd != listening));
    }
}
