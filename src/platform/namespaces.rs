//! Fresh namespaces made ahead of the runs that need them (Linux, as root). Every run of a
//! confined uid gets System V IPC of its own, and a run of a `"network": false` function a
//! network of its own. Making one is the slow part of a start: `unshare(2)` took 70 µs for
//! IPC and 400 µs for a network on the bench machine, where joining a made one with
//! `setns(2)` takes 8 µs. So a thread of its own keeps a few of each kind in stock, made
//! while runs are under way rather than in their start: it unshares itself into a new
//! namespace, opens it through `/proc/thread-self/ns` and goes back to its own. A run takes
//! one and joins it, and is its only user: nothing else ever enters a namespace of the
//! stock, and none is handed out twice. When the stock is empty (a burst of starts) the run makes its own as before.
//! A kind is only made once some run has asked for it, and never again once making one
//! failed (not root, no network namespaces in this kernel).

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::{Condvar, Mutex, OnceLock, PoisonError};

/// Namespaces of each kind kept ready.
const DEPTH: usize = 4;

/// The kinds of namespace kept in stock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Ipc,
    Net,
}

impl Kind {
    const ALL: [Kind; 2] = [Kind::Ipc, Kind::Net];

    fn index(self) -> usize {
        match self {
            Kind::Ipc => 0,
            Kind::Net => 1,
        }
    }

    fn flag(self) -> libc::c_int {
        match self {
            Kind::Ipc => libc::CLONE_NEWIPC,
            Kind::Net => libc::CLONE_NEWNET,
        }
    }

    fn proc_name(self) -> &'static str {
        match self {
            Kind::Ipc => "ipc",
            Kind::Net => "net",
        }
    }
}

/// One kind's stock.
#[derive(Default)]
struct Shelf {
    ready: Vec<OwnedFd>,
    /// Some run asked for this kind.
    wanted: bool,
    /// Making one failed: the kind is not made any more.
    failed: bool,
}

impl Shelf {
    fn short(&self) -> bool {
        self.wanted && !self.failed && self.ready.len() < DEPTH
    }
}

struct Stock {
    shelves: Mutex<[Shelf; 2]>,
    /// Signalled when a namespace is taken.
    taken: Condvar,
}

fn stock() -> &'static Stock {
    static STOCK: OnceLock<Stock> = OnceLock::new();
    STOCK.get_or_init(|| {
        let stock = Stock {
            shelves: Mutex::new(Default::default()),
            taken: Condvar::new(),
        };
        let started = std::thread::Builder::new()
            .name("namespaces".into())
            .spawn(keep_stocked);
        if let Err(err) = started {
            // Runs make their own namespaces, as they would with an empty stock.
            log::warn!("cannot start the namespace thread: {err}");
            let mut shelves = stock.shelves.lock().unwrap_or_else(PoisonError::into_inner);
            for shelf in shelves.iter_mut() {
                shelf.failed = true;
            }
        }
        stock
    })
}

/// A fresh namespace of `kind` that nothing has entered, for one run to join; None when
/// the stock is empty (the run makes its own).
pub fn take(kind: Kind) -> Option<OwnedFd> {
    let stock = stock();
    let mut shelves = stock.shelves.lock().unwrap_or_else(PoisonError::into_inner);
    let shelf = &mut shelves[kind.index()];
    shelf.wanted = true;
    let taken = shelf.ready.pop();
    drop(shelves);
    stock.taken.notify_one();
    taken
}

/// The stock's thread: makes namespaces while a wanted kind is short, else waits for a take.
fn keep_stocked() {
    let stock = stock();
    let home = Kind::ALL.map(|kind| {
        File::open(format!("/proc/thread-self/ns/{}", kind.proc_name())).map(OwnedFd::from)
    });
    loop {
        let kind = {
            let mut shelves = stock.shelves.lock().unwrap_or_else(PoisonError::into_inner);
            loop {
                if let Some(kind) = Kind::ALL.into_iter().find(|k| shelves[k.index()].short()) {
                    break kind;
                }
                shelves = stock
                    .taken
                    .wait(shelves)
                    .unwrap_or_else(PoisonError::into_inner);
            }
        };
        let made = match &home[kind.index()] {
            Ok(home) => make(kind, home),
            Err(err) => Err(io::Error::new(
                err.kind(),
                format!("cannot open this thread's own namespace: {err}"),
            )),
        };
        let mut shelves = stock.shelves.lock().unwrap_or_else(PoisonError::into_inner);
        let shelf = &mut shelves[kind.index()];
        match made {
            Ok(namespace) => shelf.ready.push(namespace),
            Err(err) => {
                log::warn!(
                    "cannot make {} namespaces ahead of runs ({err}); each run makes its own",
                    kind.proc_name()
                );
                shelf.failed = true;
            }
        }
    }
}

/// Makes a namespace of `kind`: moves this thread into a new one, opens it, and goes back
/// to `home` (the thread's own), so that no thread of the server is ever in a namespace a
/// run gets. On an error nothing made is kept.
fn make(kind: Kind, home: &OwnedFd) -> io::Result<OwnedFd> {
    // SAFETY: unshare(2) with one namespace flag changes only this thread's namespaces.
    if unsafe { libc::unshare(kind.flag()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let opened = File::open(format!("/proc/thread-self/ns/{}", kind.proc_name()));
    // SAFETY: setns(2) on a namespace descriptor we own, for this thread only.
    if unsafe { libc::setns(home.as_raw_fd(), kind.flag()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(OwnedFd::from(opened?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn inode(fd: &OwnedFd) -> u64 {
        File::from(fd.try_clone().expect("dup"))
            .metadata()
            .expect("fstat")
            .ino()
    }

    #[test]
    fn each_namespace_taken_is_new_and_handed_out_once() {
        // SAFETY: geteuid(2) cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            return;
        }
        for kind in Kind::ALL {
            let own = std::fs::metadata(format!("/proc/self/ns/{}", kind.proc_name()))
                .expect("our namespace")
                .ino();
            let mut seen = vec![own];
            // Kept open: a namespace freed could give its inode number to a later one.
            let mut held = Vec::new();
            // The first take asks for the kind; wait for the thread to make some.
            let mut taken = 0;
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
            while taken < DEPTH + 2 && std::time::Instant::now() < deadline {
                match take(kind) {
                    Some(fd) => {
                        let ino = inode(&fd);
                        assert!(!seen.contains(&ino), "{kind:?} namespace handed out twice");
                        seen.push(ino);
                        held.push(fd);
                        taken += 1;
                    }
                    None => std::thread::sleep(std::time::Duration::from_millis(5)),
                }
            }
            assert_eq!(taken, DEPTH + 2, "{kind:?}: the stock was never refilled");
        }
    }
}
