//! Reading a CGI response (RFC 3875 section 6) from a function's stdout: header lines, an
//! empty line, the body. `Status` sets the status code, `Location` alone means 302, other
//! headers pass through except those that describe the connection. What is malformed is
//! reported, never guessed at.

use crate::reply::Reply;

/// Largest header block accepted.
const MAX_HEADER_BLOCK: usize = 64 * 1024;

/// Headers the server sets itself.
const DROPPED: &[&str] = &[
    "connection",
    "keep-alive",
    "transfer-encoding",
    "content-length",
    "status",
    "content-type",
    "x-request-id",
    "server-timing",
    "date",
    "server",
    "upgrade",
    "trailer",
    "x-content-type-options",
];

/// Turns stdout into a reply, or says why it is not a CGI response.
pub fn parse_response(stdout: &[u8]) -> Result<Reply, String> {
    let (head, body) = split_head(stdout)?;
    let head =
        std::str::from_utf8(head).map_err(|_| "the header block is not UTF-8".to_string())?;
    let mut status: Option<u16> = None;
    let mut content_type: Option<String> = None;
    let mut location = false;
    let mut headers = Vec::new();
    for line in head.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| format!("header line '{}' has no ':'", clip(line)))?;
        let valid_name = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        if !valid_name {
            return Err(format!("'{}' is not a header name", clip(name)));
        }
        let value = value.trim();
        if value.bytes().any(|b| b < 0x20 && b != b'\t') {
            return Err(format!("header '{name}' holds a control character"));
        }
        // An HTTP header value is ASCII: one that is not could only be dropped, and a
        // dropped Content-Type leaves browsers to guess.
        if !value.is_ascii() {
            return Err(format!(
                "header '{name}' holds a character that is not ASCII"
            ));
        }
        match name.to_ascii_lowercase().as_str() {
            "status" => {
                let code = value
                    .split_whitespace()
                    .next()
                    .and_then(|c| c.parse::<u16>().ok())
                    .filter(|c| (200..=599).contains(c))
                    .ok_or_else(|| {
                        format!("'Status: {}' is not a status from 200 to 599", clip(value))
                    })?;
                status = Some(code);
            }
            "content-type" => content_type = Some(value.to_string()),
            "location" => {
                location = true;
                headers.push((name.to_string(), value.to_string()));
            }
            lower if DROPPED.contains(&lower) => {}
            _ => headers.push((name.to_string(), value.to_string())),
        }
    }
    let status = status.unwrap_or(if location { 302 } else { 200 });
    // 204 and 304 carry no body (RFC 9110 15.3.5, 15.4.5): what the function wrote after its
    // headers is not sent.
    let body = if matches!(status, 204 | 304) {
        Vec::new()
    } else {
        body.to_vec()
    };
    let mut reply = Reply::bytes(
        status,
        content_type.unwrap_or_else(|| "text/plain; charset=utf-8".into()),
        body,
    );
    for (name, value) in headers {
        reply = reply.with_header(&name, value);
    }
    Ok(reply)
}

/// Splits at the first empty line (`\n\n` or `\r\n\r\n`).
fn split_head(stdout: &[u8]) -> Result<(&[u8], &[u8]), String> {
    let mut line_start = 0;
    for (i, b) in stdout.iter().enumerate() {
        if *b != b'\n' {
            continue;
        }
        let line = &stdout[line_start..i];
        if line.is_empty() || line == b"\r" {
            if line_start == 0 {
                return Err("it starts with an empty line: there is no header".into());
            }
            let head_end = line_start.saturating_sub(1);
            let head = &stdout[..head_end];
            let head = head.strip_suffix(b"\r").unwrap_or(head);
            return Ok((head, &stdout[i + 1..]));
        }
        if i > MAX_HEADER_BLOCK {
            break;
        }
        line_start = i + 1;
    }
    if stdout.len() > MAX_HEADER_BLOCK {
        Err("no empty line ends the headers within 64 KiB".into())
    } else {
        Err("no empty line ends the headers".into())
    }
}

fn clip(text: &str) -> String {
    text.chars().take(60).collect()
}

#[cfg(test)]
mod tests {
    use super::parse_response;

    fn header<'a>(reply: &'a crate::reply::Reply, name: &str) -> Option<&'a str> {
        reply
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn go_cgi_style_answer() {
        let reply = parse_response(
            b"Status: 201 Created\r\nContent-Type: application/json\r\nX-Thing: yes\r\n\r\n{\"ok\":true}",
        )
        .expect("valid");
        assert_eq!(reply.status, 201);
        assert_eq!(reply.content_type, "application/json");
        assert_eq!(header(&reply, "X-Thing"), Some("yes"));
        assert_eq!(reply.body, b"{\"ok\":true}");
    }

    #[test]
    fn bare_newlines_defaults_and_redirects() {
        let reply = parse_response(b"Content-Type: text/html\n\n<p>hi</p>\n").expect("valid");
        assert_eq!(reply.status, 200);
        assert_eq!(reply.body, b"<p>hi</p>\n");
        let reply = parse_response(b"Location: https://example.com/\n\n").expect("valid");
        assert_eq!(reply.status, 302);
        assert_eq!(header(&reply, "Location"), Some("https://example.com/"));
        let reply = parse_response(b"X-Only: 1\n\n").expect("valid");
        assert_eq!(reply.content_type, "text/plain; charset=utf-8");
        assert!(reply.body.is_empty());
    }

    #[test]
    fn hop_by_hop_headers_are_dropped() {
        let reply =
            parse_response(b"Connection: close\nContent-Length: 99\nX-Request-Id: forged\n\nbody")
                .expect("valid");
        assert!(reply.headers.is_empty(), "{:?}", reply.headers);
    }

    #[test]
    fn malformed_answers() {
        for bad in [
            &b"Hello, World!\n"[..],
            b"Hello, World!\n\nbody",
            b"\n\nbody",
            b"Status: 999 Nope\n\n",
            b"Status: abc\n\n",
            b"Bad Name: x\n\n",
            b": empty\n\n",
            b"",
        ] {
            assert!(
                parse_response(bad).is_err(),
                "{:?} should be refused",
                String::from_utf8_lossy(bad)
            );
        }
        let huge = vec![b'a'; 70 * 1024];
        assert!(parse_response(&huge).is_err());
    }

    #[test]
    fn property_never_panics_and_statuses_stay_valid() {
        let seed =
            b"Status: 201 Created\r\nContent-Type: application/json\r\nX-A: b\r\n\r\n{}".to_vec();
        let mut rng = crate::prop::Rng::new(0xc61);
        for _ in 0..20_000 {
            let mut input = seed.clone();
            for _ in 0..1 + rng.below(6) {
                crate::prop::mutate(&mut rng, &mut input);
            }
            if let Ok(reply) = parse_response(&input) {
                assert!((200..=599).contains(&reply.status));
                assert!(reply
                    .headers
                    .iter()
                    .all(|(n, v)| !n.is_empty() && !v.bytes().any(|b| b == b'\n' || b == b'\r')));
            }
        }
    }
}
