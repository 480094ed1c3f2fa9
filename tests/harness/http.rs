//! A deliberately small HTTP/1.1 client over `std::net::TcpStream`: one request per
//! connection (`Connection: close`), fixed-length or chunked request bodies, and responses
//! framed by Content-Length, chunked encoding, or end of stream.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// How long a client waits for an answer: long enough for a compilation on a busy machine.
const READ_TIMEOUT: Duration = Duration::from_secs(120);

pub enum Body<'a> {
    Fixed(&'a [u8]),
    /// Sent with `Transfer-Encoding: chunked` in chunks of the given size.
    Chunked(&'a [u8], usize),
}

#[derive(Debug, Clone)]
pub struct Response {
    pub method: String,
    pub path: String,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub elapsed: Duration,
}

impl Response {
    /// The first header of that name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON; panics with the request and the raw body if it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "{} {} -> {}: body is not JSON ({e}): {:?}",
                self.method,
                self.path,
                self.status,
                self.text()
            )
        })
    }

    /// Asserts the status and returns `self` for chaining.
    #[track_caller]
    pub fn expect(&self, status: u16) -> &Response {
        assert_eq!(
            self.status,
            status,
            "{} {}: expected {status}, got {}\nbody: {}",
            self.method,
            self.path,
            self.status,
            self.text()
        );
        self
    }

    /// The `"message"` of a json-mode invocation answer, asserting 200 and that `message` is
    /// the only key.
    #[track_caller]
    pub fn message(&self) -> String {
        self.expect(200);
        let body = self.json();
        let object = body
            .as_object()
            .unwrap_or_else(|| panic!("{} {}: not an object: {body}", self.method, self.path));
        assert_eq!(
            object.keys().collect::<Vec<_>>(),
            vec!["message"],
            "{} {}: json answer must have exactly the key \"message\": {body}",
            self.method,
            self.path
        );
        body["message"]
            .as_str()
            .unwrap_or_else(|| panic!("message is not a string: {body}"))
            .to_string()
    }
}

pub fn request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Body<'_>,
) -> io::Result<Response> {
    let started = Instant::now();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(READ_TIMEOUT))?;
    stream.set_write_timeout(Some(Duration::from_secs(30)))?;

    let mut head =
        format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    match body {
        Body::Fixed(bytes) => {
            if !bytes.is_empty() || !matches!(method, "GET" | "HEAD") {
                head.push_str(&format!("Content-Length: {}\r\n", bytes.len()));
            }
        }
        Body::Chunked(..) => head.push_str("Transfer-Encoding: chunked\r\n"),
    }
    head.push_str("\r\n");

    // A server may answer (413, 404) and close before reading the whole body; a failed write
    // is then not an error of the exchange, so the answer is still read.
    let write_result = (|| -> io::Result<()> {
        stream.write_all(head.as_bytes())?;
        match body {
            Body::Fixed(bytes) => stream.write_all(bytes)?,
            Body::Chunked(bytes, size) => {
                for chunk in bytes.chunks(size.max(1)) {
                    stream.write_all(format!("{:x}\r\n", chunk.len()).as_bytes())?;
                    stream.write_all(chunk)?;
                    stream.write_all(b"\r\n")?;
                }
                stream.write_all(b"0\r\n\r\n")?;
            }
        }
        stream.flush()
    })();

    match read_response(&mut stream) {
        Ok((status, headers, body)) => Ok(Response {
            method: method.to_string(),
            path: path.to_string(),
            status,
            headers,
            body,
            elapsed: started.elapsed(),
        }),
        Err(read_error) => Err(write_result.err().unwrap_or(read_error)),
    }
}

type Parsed = (u16, Vec<(String, String)>, Vec<u8>);

fn read_response(stream: &mut TcpStream) -> io::Result<Parsed> {
    let mut reader = BufReader::new(stream);
    let bad = |what: String| io::Error::new(io::ErrorKind::InvalidData, what);

    let mut status_line = String::new();
    if reader.read_line(&mut status_line)? == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed before any answer",
        ));
    }
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| bad(format!("bad status line {status_line:?}")))?;

    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Err(bad("connection closed inside the headers".into()));
        }
        let line = line.trim_end_matches(['\r', '\n']);
        if line.is_empty() {
            break;
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| bad(format!("bad header line {line:?}")))?;
        headers.push((name.trim().to_string(), value.trim().to_string()));
    }
    let find = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };

    let mut body = Vec::new();
    if status == 204 || status == 304 || (100..200).contains(&status) {
        // no body
    } else if find("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
    {
        loop {
            let mut size_line = String::new();
            if reader.read_line(&mut size_line)? == 0 {
                return Err(bad("connection closed inside a chunked body".into()));
            }
            let size_text = size_line.trim().split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size_text, 16)
                .map_err(|_| bad(format!("bad chunk size {size_line:?}")))?;
            if size == 0 {
                // trailers, then the final blank line
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
                        break;
                    }
                }
                break;
            }
            let start = body.len();
            body.resize(start + size, 0);
            reader.read_exact(&mut body[start..])?;
            let mut crlf = String::new();
            reader.read_line(&mut crlf)?;
        }
    } else if let Some(length) = find("content-length") {
        let length: usize = length
            .parse()
            .map_err(|_| bad(format!("bad Content-Length {length:?}")))?;
        body.resize(length, 0);
        reader.read_exact(&mut body)?;
    } else {
        reader.read_to_end(&mut body)?;
    }
    Ok((status, headers, body))
}

/// A request whose head and first body bytes are sent; the rest follows with
/// [`Unfinished::finish`], so a test can act while the server waits for the body.
pub struct Unfinished {
    stream: TcpStream,
    method: String,
    path: String,
    started: Instant,
}

/// Sends `method path` declaring a body of `length` bytes, and the first bytes of it.
pub fn begin(
    port: u16,
    method: &str,
    path: &str,
    length: usize,
    first: &[u8],
) -> io::Result<Unfinished> {
    let started = Instant::now();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(READ_TIMEOUT))?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\
         Content-Length: {length}\r\n\r\n"
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(first)?;
    stream.flush()?;
    Ok(Unfinished {
        stream,
        method: method.into(),
        path: path.into(),
        started,
    })
}

impl Unfinished {
    /// Sends the rest of the body and reads the answer.
    pub fn finish(mut self, rest: &[u8]) -> io::Result<Response> {
        self.stream.write_all(rest)?;
        self.stream.flush()?;
        let (status, headers, body) = read_response(&mut self.stream)?;
        Ok(Response {
            method: self.method,
            path: self.path,
            status,
            headers,
            body,
            elapsed: self.started.elapsed(),
        })
    }
}
