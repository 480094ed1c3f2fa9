//! Clients that hold connections without doing their part: bodies declaring absurd lengths,
//! bodies that trickle, connections that stay silent. tiny_http has no read timeouts; the
//! server's watchdog (`--read-timeout`) and allocator must make each of these harmless.

use crate::harness::{eventually, go, Server};
use serde_json::json;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

fn connect(server: &Server) -> TcpStream {
    let stream = TcpStream::connect(("127.0.0.1", server.port())).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(15)))
        .expect("timeout");
    stream
}

/// Reads until the server closes the connection; panics if it keeps it open 15 s.
fn read_until_closed(stream: &mut TcpStream) -> String {
    let mut answer = Vec::new();
    match stream.read_to_end(&mut answer) {
        Ok(_) => {}
        Err(err) if err.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(err) => panic!(
            "the server kept the connection open ({err}); read so far: {}",
            String::from_utf8_lossy(&answer)
        ),
    }
    String::from_utf8_lossy(&answer).into_owned()
}

fn resident_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

#[test]
fn absurd_declared_body_lengths_are_refused_and_the_server_lives() {
    let server = Server::new().arg("--read-timeout").arg("1s").start();
    server.register_ok("hello", go::HELLO, json!({}));
    // Past the host's memory; past the address space; past what a Vec may hold.
    let lengths = [
        "100000000000",
        "17592186044417",
        "9223372036854775807",
        "18446744073709551615",
    ];
    for length in lengths {
        for (method, path, status) in [
            ("PUT", "/register", "413"),
            ("GET", "/hello", "413"),
            ("POST", "/nosuch", "404"),
        ] {
            let mut stream = connect(&server);
            let head = format!(
                "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n\r\nabc"
            );
            stream.write_all(head.as_bytes()).expect("write");
            let answer = read_until_closed(&mut stream);
            assert!(
                answer.starts_with(&format!("HTTP/1.1 {status}")),
                "{method} {path} declaring {length} bytes: {answer}"
            );
            server.get("/health").expect(200);
        }
    }
    let rss = resident_kib(server.pid());
    assert!(
        rss < 100 * 1024,
        "the server holds {rss} KiB after the absurd bodies"
    );
    server.get("/hello").expect(200);
}

#[test]
fn a_trickling_body_loses_its_worker_after_the_read_timeout() {
    let server = Server::new()
        .one_worker_no_queue()
        .arg("--read-timeout")
        .arg("1s")
        .start();
    server.register_ok("hello", go::HELLO, json!({}));
    let mut slow = connect(&server);
    slow.write_all(b"POST /hello HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789")
        .expect("write");
    let started = Instant::now();
    // The only worker reads the slow body until the watchdog cuts the client off; the
    // truncated body is refused, never run.
    let answer = read_until_closed(&mut slow);
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 400"),
        "a truncated body got: {answer}"
    );
    let runs = server.get("/functions/hello/runs").expect(200).json();
    assert_eq!(runs.as_array().map(Vec::len), Some(0), "runs: {runs}");
    assert!(
        eventually(Duration::from_secs(5), || server.get("/hello").status
            == 200),
        "the worker never came back"
    );
}

#[test]
fn silent_connections_close_but_long_runs_do_not() {
    let server = Server::new().arg("--read-timeout").arg("1s").start();
    server.register_ok("nap", &go::sleeper(2500), json!({}));
    // Connected, never a byte.
    let mut mute = connect(&server);
    // One request answered, then kept alive in silence.
    let mut kept = connect(&server);
    kept.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("write");
    let started = Instant::now();
    // A run longer than the read timeout: the server is busy on it, not waiting.
    server.get("/nap").expect(200);
    assert_eq!(read_until_closed(&mut mute), "");
    let answer = read_until_closed(&mut kept);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(server.log_count("closed the silent connection") >= 2);
}

#[test]
fn refused_huge_bodies_close_at_once_and_hold_nothing() {
    // The default read timeout: only the refusal itself may end these connections early.
    let server = Server::new().start();
    let started = Instant::now();
    let mut streams: Vec<TcpStream> = (0..16)
        .map(|_| {
            let mut stream = connect(&server);
            stream
                .write_all(b"PUT /register HTTP/1.1\r\nHost: x\r\nContent-Length: 8796093022208\r\n\r\nabc")
                .expect("write");
            stream
        })
        .collect();
    for stream in &mut streams {
        let answer = read_until_closed(stream);
        assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the refused connections were held for {:?}",
        started.elapsed()
    );
    server.get("/health").expect(200);
}

/// One connection that pipelines up to `count` requests of `head`, never reads an answer
/// and trickles a byte every half second until `stop` is set (30 s at most).
fn pipeliner(
    server: &Server,
    head: &'static [u8],
    count: usize,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<()> {
    let mut stream = connect(server);
    stream
        .set_write_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    std::thread::spawn(move || {
        use std::sync::atomic::Ordering;
        for _ in 0..count {
            if stream.write_all(head).is_err() || stop.load(Ordering::SeqCst) {
                break;
            }
        }
        let started = Instant::now();
        while !stop.load(Ordering::SeqCst) && started.elapsed() < Duration::from_secs(30) {
            if stream.write_all(b"G").is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    })
}

/// A request on a connection of its own that must be answered within 10 s.
fn answered_soon(server: &Server, path: &str) -> String {
    let mut stream = connect(server);
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let head = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    stream.write_all(head.as_bytes()).expect("write");
    let mut answer = Vec::new();
    if let Err(err) = stream.read_to_end(&mut answer) {
        panic!("GET {path} got no answer while one client pipelined without reading: {err}");
    }
    String::from_utf8_lossy(&answer).into_owned()
}

#[test]
fn a_client_that_pipelines_and_never_reads_stalls_nobody() {
    for flags in [&[][..], &["--rate-limit", "5"][..]] {
        let mut builder = Server::new();
        for flag in flags {
            builder = builder.arg(*flag);
        }
        let server = builder.start();
        server.register_ok("hello", go::HELLO, json!({}));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let attack = pipeliner(
            &server,
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
            40_000,
            stop.clone(),
        );
        // Give the flood time to fill the socket buffers before probing.
        let pending = || server.log_count("GET / ") + server.log_count("cutting the connection");
        assert!(
            eventually(Duration::from_secs(10), || pending() > 100),
            "{flags:?}"
        );
        for path in ["/", "/functions", "/hello"] {
            let answer = answered_soon(&server, path);
            assert!(
                answer.starts_with("HTTP/1.1 200") || answer.starts_with("HTTP/1.1 429"),
                "{flags:?} GET {path}: {answer}"
            );
        }
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = attack.join();
    }
}

/// Descriptors and threads of a process.
fn descriptors_and_threads(pid: u32) -> (usize, usize) {
    let count =
        |dir: &str| std::fs::read_dir(format!("/proc/{pid}/{dir}")).map_or(0, |d| d.count());
    (count("fd"), count("task"))
}

#[test]
fn absurd_declared_bodies_give_back_every_descriptor_and_thread() {
    let server = Server::new().start();
    server.get("/health").expect(200);
    let (fds, threads) = descriptors_and_threads(server.pid());
    for round in 0..64 {
        let path = ["/register", "/nosuch", "/health"][round % 3];
        let mut stream = connect(&server);
        // A pebibyte: past the allocator's sink threshold.
        let head = format!(
            "PUT {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 1125899906842624\r\n\r\nabc"
        );
        stream.write_all(head.as_bytes()).expect("write");
        read_until_closed(&mut stream);
    }
    server.get("/health").expect(200);
    let settled = eventually(Duration::from_secs(10), || {
        let (now_fds, now_threads) = descriptors_and_threads(server.pid());
        now_fds <= fds + 4 && now_threads <= threads + 4
    });
    assert!(
        settled,
        "before: {fds} descriptors, {threads} threads; after 64 absurd bodies: {:?}",
        descriptors_and_threads(server.pid())
    );
}

#[test]
fn a_client_that_never_takes_its_answer_is_cut_after_the_read_timeout() {
    let server = Server::new()
        .arg("--read-timeout")
        .arg("1s")
        .arg("--max-output")
        .arg("16MiB")
        .start();
    server.register_ok("spew", go::SPEW, json!({"response": "raw"}));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // 8 MB: more than the socket buffers hold; the client reads none of it and trickles.
    let attack = pipeliner(
        &server,
        b"GET /spew?n=8000000 HTTP/1.1\r\nHost: x\r\n\r\n",
        1,
        stop.clone(),
    );
    server.expect_log("took none of its answer", Duration::from_secs(15));
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let _ = attack.join();
    server.get("/spew?n=10").expect(200);
}

#[test]
fn an_endless_header_line_is_cut_off_before_it_grows_the_server() {
    let server = Server::new().start();
    server.get("/health").expect(200);
    let before = resident_kib(server.pid());
    let mut bomb = connect(&server);
    bomb.set_write_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    bomb.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nX-Bomb: ")
        .expect("write");
    let chunk = vec![b'a'; 64 * 1024];
    let started = Instant::now();
    let mut sent = 0usize;
    // At most 3 s or 2 GiB, as the attack did; the server cuts it off well before.
    while started.elapsed() < Duration::from_secs(3) && sent < 2 << 30 {
        if bomb.write_all(&chunk).is_err() {
            break;
        }
        sent += chunk.len();
    }
    let after = resident_kib(server.pid());
    assert!(
        after < before + 8 * 1024,
        "the server went from {before} to {after} KiB while a client sent {sent} bytes of one header"
    );
    server.expect_log("bytes of request head", Duration::from_secs(5));
    server.get("/health").expect(200);
}

#[test]
fn health_pipelined_behind_a_slow_run_holds_no_thread_anyone_else_needs() {
    let server = Server::new().start();
    let marker = server.io_path("started");
    server.register_ok(
        "slow",
        &go::sleeper(4_000),
        json!({"env": {"MARKER": marker.display().to_string()}}),
    );
    // One connection: a slow run, then more health checks than there are answering
    // threads, all waiting behind the run's answer.
    let mut pipelined = connect(&server);
    let mut head = String::from("GET /slow HTTP/1.1\r\nHost: x\r\n\r\n");
    for _ in 0..6 {
        head.push_str("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    }
    pipelined.write_all(head.as_bytes()).expect("write");
    assert!(eventually(Duration::from_secs(20), || marker.exists()));
    // Another client is answered while that run still goes.
    server.get("/").expect(200);
    server.get("/functions").expect(200);
    let runs = server.get("/functions/slow/runs").json();
    assert_eq!(
        runs[0]["status"], "running",
        "health waited for the slow run: {runs}"
    );
    // And the pipelined connection gets all its answers, in order.
    let mut answers = String::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut buffer = [0u8; 4096];
    while answers.matches("HTTP/1.1 200").count() < 7 && Instant::now() < deadline {
        match pipelined.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => answers.push_str(&String::from_utf8_lossy(&buffer[..n])),
        }
    }
    assert_eq!(answers.matches("HTTP/1.1 200").count(), 7, "{answers}");
    assert!(answers
        .find("woke")
        .is_some_and(|at| at < answers.find("\"status\"").unwrap_or(0)));
}
