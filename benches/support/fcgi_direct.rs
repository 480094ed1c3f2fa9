//! The ceiling of the warm mode: the Go `net/http/fcgi` function driven directly over its
//! Unix socket by a minimal FastCGI client, with no HTTP server in between. Whatever the
//! server does, it cannot serve a warm function faster than this on the same machine.

use std::io::{BufReader, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Requests per second the function at `exe` serves to `connections` clients over `window`,
/// with its environment set as `env` (for example `GOMAXPROCS`).
pub fn rate(
    exe: &Path,
    work: &Path,
    env: &[(&str, &str)],
    connections: usize,
    window: Duration,
) -> f64 {
    let socket = work.join(format!("direct-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&socket);
    let listener = UnixListener::bind(&socket).expect("bind the function's socket");
    let mut child = Command::new(exe)
        .stdin(Stdio::from(OwnedFd::from(listener)))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .envs(env.iter().copied())
        .spawn()
        .expect("start the fcgi function");
    let request = Arc::new(request_bytes());
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..connections)
        .map(|_| {
            let (socket, request, done, stop) =
                (socket.clone(), request.clone(), done.clone(), stop.clone());
            std::thread::spawn(move || {
                let stream = UnixStream::connect(&socket).expect("connect to the function");
                let mut reader = BufReader::with_capacity(16 * 1024, stream);
                while !stop.load(Ordering::Relaxed) {
                    reader.get_mut().write_all(&request).expect("send");
                    read_answer(&mut reader);
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    // The first 300 ms warm up (connections accepted, Go's threads started) and are not
    // counted.
    std::thread::sleep(Duration::from_millis(300));
    let before = done.load(Ordering::Relaxed);
    let started = Instant::now();
    std::thread::sleep(window);
    let served = done.load(Ordering::Relaxed) - before;
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.join().expect("fcgi client");
    }
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_file(&socket);
    served as f64 / elapsed.as_secs_f64()
}

/// BEGIN_REQUEST (responder, keep the connection), the CGI variables the server passes for
/// `GET /warm`, the end of PARAMS and an empty STDIN.
fn request_bytes() -> Vec<u8> {
    let params = [
        ("GATEWAY_INTERFACE", "CGI/1.1"),
        ("SERVER_PROTOCOL", "HTTP/1.1"),
        ("SERVER_SOFTWARE", "golambda"),
        ("REQUEST_METHOD", "GET"),
        ("SCRIPT_NAME", "/warm"),
        ("PATH_INFO", ""),
        ("QUERY_STRING", ""),
        ("REQUEST_URI", "/warm"),
        ("CONTENT_LENGTH", "0"),
        ("REMOTE_ADDR", "127.0.0.1"),
        ("HTTP_HOST", "bench"),
        ("GOLAMBDA_FUNCTION", "warm"),
        ("GOLAMBDA_VERSION", "1"),
        ("GOLAMBDA_TRIGGER", "http"),
        ("GOLAMBDA_REQUEST_ID", "0123456789abcdef0123456789abcdef"),
    ];
    let mut pairs = Vec::new();
    for (name, value) in params {
        pairs.push(name.len() as u8);
        pairs.push(value.len() as u8);
        pairs.extend_from_slice(name.as_bytes());
        pairs.extend_from_slice(value.as_bytes());
    }
    let mut out = Vec::new();
    record(&mut out, 1, &[0, 1, 1, 0, 0, 0, 0, 0]);
    record(&mut out, 4, &pairs);
    record(&mut out, 4, &[]);
    record(&mut out, 5, &[]);
    out
}

fn record(out: &mut Vec<u8>, kind: u8, content: &[u8]) {
    let padding = (8 - content.len() % 8) % 8;
    out.extend_from_slice(&[1, kind, 0, 1]);
    out.extend_from_slice(&(content.len() as u16).to_be_bytes());
    out.extend_from_slice(&[padding as u8, 0]);
    out.extend_from_slice(content);
    out.extend(std::iter::repeat_n(0, padding));
}

/// Reads records up to END_REQUEST, checking the answer's body.
fn read_answer(reader: &mut impl Read) {
    let mut stdout = Vec::new();
    loop {
        let mut header = [0u8; 8];
        reader.read_exact(&mut header).expect("record header");
        let length = usize::from(u16::from_be_bytes([header[4], header[5]]));
        let mut content = vec![0u8; length + usize::from(header[6])];
        reader.read_exact(&mut content).expect("record content");
        match header[1] {
            6 => stdout.extend_from_slice(&content[..length]),
            3 => break,
            _ => {}
        }
    }
    assert!(
        stdout.ends_with(b"Hello, World!\n"),
        "unexpected answer {:?}",
        String::from_utf8_lossy(&stdout)
    );
}
