//! The kept-alive connections to one warm process: a bounded pool (its size is how many
//! requests the process serves at once), and one request exchanged over one connection, the
//! whole exchange bounded by the request's deadline. A connection that saw anything but a
//! complete answer is dropped, never reused. Each request on a connection has an id of its
//! own, one above the last, so records a handler writes after its request ended are told
//! from the next caller's answer and dropped; a connection that runs out of ids is closed.

use super::answer::{self, Answer, ReadFailure};
use super::fastcgi;
use super::process::Failure;
use crate::platform::{self, LocalStream};
use crate::runner::STDERR_KEEP;
use crate::sync::lock;
use std::io::{self, BufReader, Read, Write};
use std::path::PathBuf;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Instant;

/// Requests written inline up to this size; a larger one is written on a thread of its own
/// while the answer is read, so a handler that answers before reading its body never
/// deadlocks against us.
const INLINE_REQUEST: usize = 64 * 1024;

/// One kept-alive connection and the id of the last request it carried.
pub struct Connection {
    reader: BufReader<LocalStream>,
    last_id: u16,
}

impl Connection {
    fn new(stream: LocalStream) -> Connection {
        Connection {
            reader: BufReader::with_capacity(16 * 1024, stream),
            last_id: 0,
        }
    }

    /// Whether another request may go over this connection.
    pub fn reusable(&self) -> bool {
        self.last_id < u16::MAX
    }
}

pub struct Connections {
    socket: PathBuf,
    pool: Mutex<Pool>,
    freed: Condvar,
    max: usize,
}

#[derive(Default)]
struct Pool {
    idle: Vec<Connection>,
    open: usize,
    /// Requests waiting for a connection: only then is a freed one signalled (a signal is
    /// a system call, and most requests find a connection at once).
    waiting: usize,
}

/// Why no connection was had.
pub enum Checkout {
    /// Every connection stayed busy until the deadline.
    Busy,
    /// The process did not take the connection.
    Refused(io::Error),
}

impl Connections {
    /// Up to `max` connections to the process listening at `socket`.
    pub fn new(socket: PathBuf, max: usize) -> Connections {
        Connections {
            socket,
            pool: Mutex::new(Pool::default()),
            freed: Condvar::new(),
            max: max.max(1),
        }
    }

    /// An idle connection, a new one, or one freed before the deadline.
    pub fn checkout(&self, deadline: Instant) -> Result<Connection, Checkout> {
        let mut pool = lock(&self.pool);
        loop {
            if let Some(connection) = pool.idle.pop() {
                return Ok(connection);
            }
            if pool.open < self.max {
                pool.open += 1;
                drop(pool);
                return match platform::connect_local(&self.socket) {
                    Ok(stream) => Ok(Connection::new(stream)),
                    Err(err) => {
                        self.discard();
                        Err(Checkout::Refused(err))
                    }
                };
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Checkout::Busy);
            }
            pool.waiting += 1;
            pool = self
                .freed
                .wait_timeout(pool, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
            pool.waiting -= 1;
        }
    }

    /// Gives back a connection that carried a complete answer (one out of ids is closed).
    pub fn checkin(&self, connection: Connection) {
        if !connection.reusable() {
            drop(connection);
            return self.discard();
        }
        let mut pool = lock(&self.pool);
        pool.idle.push(connection);
        self.signal_freed(pool);
    }

    /// Forgets a connection that failed (dropped by its holder).
    pub fn discard(&self) {
        let mut pool = lock(&self.pool);
        pool.open = pool.open.saturating_sub(1);
        self.signal_freed(pool);
    }

    fn signal_freed(&self, pool: MutexGuard<'_, Pool>) {
        let anyone = pool.waiting > 0;
        drop(pool);
        if anyone {
            self.freed.notify_one();
        }
    }

    /// Closes the idle connections.
    pub fn close(&self) {
        lock(&self.pool).idle.clear();
    }
}

/// Sends one request over `connection` and reads its answer, all before `deadline`.
pub fn exchange(
    connection: &mut Connection,
    params: &[(String, String)],
    body: &[u8],
    deadline: Instant,
    max_output: u64,
) -> Result<Answer, Failure> {
    let request_id = connection
        .last_id
        .checked_add(1)
        .ok_or_else(|| Failure::Broken("the connection has used every request id".into()))?;
    connection.last_id = request_id;
    let bytes = fastcgi::encode_request(request_id, params, body);
    let stream = connection.reader.get_mut();
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(Failure::TimedOut);
    }
    stream.set_write_timeout(Some(left)).map_err(io_failure)?;
    let writer = if bytes.len() <= INLINE_REQUEST {
        stream.write_all(&bytes).map_err(io_failure)?;
        None
    } else {
        let mut clone = stream.try_clone().map_err(io_failure)?;
        Some(std::thread::spawn(move || clone.write_all(&bytes)))
    };
    let read = answer::read_answer(
        &mut Deadlined {
            reader: &mut connection.reader,
            deadline,
        },
        request_id,
        max_output,
        STDERR_KEEP,
    );
    let answer = read.map_err(|failure| match failure {
        ReadFailure::Io(err) => io_failure(err),
        ReadFailure::Protocol(reason) => Failure::Broken(reason),
        ReadFailure::OutputTooLarge => Failure::OutputTooLarge,
    })?;
    if let Some(writer) = writer {
        // The answer came; the body is sent (or the write timed out: the connection
        // is not reused then).
        match writer.join() {
            Ok(Ok(())) => {}
            _ => return Err(Failure::Broken("the request body could not be sent".into())),
        }
    }
    Ok(answer)
}

/// A timeout is a timeout; any other I/O failure is a lost connection.
fn io_failure(err: io::Error) -> Failure {
    match err.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Failure::TimedOut,
        _ => Failure::Broken(format!("the connection to the process failed: {err}")),
    }
}

/// Reads a connection with every read bounded by what is left until the deadline.
struct Deadlined<'a> {
    reader: &'a mut BufReader<LocalStream>,
    deadline: Instant,
}

impl Read for Deadlined<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.reader.buffer().is_empty() {
            let left = self.deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::Error::from(io::ErrorKind::TimedOut));
            }
            self.reader.get_ref().set_read_timeout(Some(left))?;
        }
        self.reader.read(buf)
    }
}
