//! The benches' client of the real server: start the release binary on a data dir of its
//! own, register functions, and time requests over keep-alive HTTP/1.1 connections with
//! a client that reads just enough of each answer.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Server {
    pub child: Child,
    pub port: u16,
}

impl Server {
    pub fn start(binary: &Path, data: &Path) -> Server {
        Server::start_with(binary, data, &[])
    }

    /// [`Server::start`] with more flags.
    pub fn start_with(binary: &Path, data: &Path, flags: &[String]) -> Server {
        std::fs::create_dir_all(data).expect("data dir");
        let mut child = Command::new(binary)
            .args(["--addr", "127.0.0.1:0", "--data-dir"])
            .arg(data)
            .args(flags)
            .stdout(Stdio::piped())
            // The default log level, written to a file as a service's log would be.
            .stderr(std::fs::File::create(data.join("server.log")).expect("log file"))
            .spawn()
            .expect("start the server");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("stdout");
        BufReader::new(stdout).read_line(&mut line).expect("banner");
        let port = line
            .trim()
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("port in the banner");
        Server { child, port }
    }

    pub fn register(&self, name: &str, source: &str, response: &str) {
        self.register_with(name, source, response, "");
    }

    /// `extra`: more JSON members for the body, each with a leading comma.
    pub fn register_with(&self, name: &str, source: &str, response: &str, extra: &str) {
        use base64::Engine;
        let code = base64::engine::general_purpose::STANDARD.encode(source);
        let body = format!(
            r#"{{"name":"{name}","trigger":"http","response":"{response}","code":"{code}"{extra}}}"#
        );
        let mut connection = Connection::open(self.port);
        let (status, answer) = connection.send("PUT", "/register", body.as_bytes());
        assert!(
            status == 200 || status == 201,
            "register {name}: {status} {}",
            String::from_utf8_lossy(&answer)
        );
    }

    /// How long each of `count` requests on one connection took (after 20 unmeasured).
    pub fn times(&self, path: &'static str, answer: &'static [u8], count: usize) -> Vec<Duration> {
        let mut connection = Connection::open(self.port);
        for _ in 0..20 {
            connection.get(path, answer);
        }
        connection.times(path, answer, count)
    }

    pub fn p50(&self, path: &'static str, answer: &'static [u8], count: usize) -> Duration {
        median(&mut self.times(path, answer, count))
    }

    pub fn stop(mut self) {
        // SAFETY: kill(2) with a pid we spawned and still own.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let _ = self.child.wait();
    }
}

/// A keep-alive HTTP/1.1 connection that understands just enough to read one answer.
pub struct Connection {
    reader: BufReader<TcpStream>,
}

impl Connection {
    pub fn open(port: u16) -> Connection {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        Connection {
            reader: BufReader::new(stream),
        }
    }

    /// How long each of `count` requests of `path` took; each must answer `answer`.
    pub fn times(&mut self, path: &str, answer: &[u8], count: usize) -> Vec<Duration> {
        (0..count)
            .map(|_| {
                let started = Instant::now();
                assert!(self.get(path, answer), "GET {path} failed");
                started.elapsed()
            })
            .collect()
    }

    pub fn get(&mut self, path: &str, answer: &[u8]) -> bool {
        let (status, body) = self.send("GET", path, b"");
        status == 200 && body == answer
    }

    pub fn send(&mut self, method: &str, path: &str, body: &[u8]) -> (u16, Vec<u8>) {
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: bench\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        let stream = self.reader.get_mut();
        stream.write_all(head.as_bytes()).expect("send");
        stream.write_all(body).expect("send body");
        let mut line = String::new();
        self.reader.read_line(&mut line).expect("status line");
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let mut length = 0usize;
        loop {
            line.clear();
            self.reader.read_line(&mut line).expect("header");
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0; length];
        self.reader.read_exact(&mut body).expect("body");
        (status, body)
    }
}

/// Runs `command` with its stdout read to the end (stdin and stderr the null device);
/// asserts it exits 0 and prints the hello world.
pub fn spawn_hello(command: &mut Command) {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let mut out = Vec::with_capacity(64);
    if let Some(mut stdout) = child.stdout.take() {
        stdout.read_to_end(&mut out).expect("read");
    }
    assert!(child.wait().expect("wait").success());
    assert_eq!(out, b"Hello, World!\n");
}

/// Milliseconds of `d`.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The middle value (sorts `values`).
pub fn median<T: PartialOrd + Copy>(values: &mut [T]) -> T {
    values.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    values[values.len() / 2]
}
