//! Requests whose framing two parties could read differently: more than one length, a
//! length beside a transfer encoding, a length that is not a plain number, an encoding
//! other than `chunked`. tiny_http reads such a request one way; a proxy in front may read
//! it another, and the bytes it counts as the next request then run as one here
//! (smuggling). Each is refused with 400, and its connection is closed (see `responder`).
//! Looks only at headers: never reads a body.

use tiny_http::Request;

/// Why `request`'s framing is ambiguous, if it is.
pub fn ambiguity(request: &Request) -> Option<String> {
    let lengths = values(request, "Content-Length");
    let encodings = values(request, "Transfer-Encoding");
    if let Some(bad) = lengths
        .iter()
        .find(|v| v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()))
    {
        return Some(format!("Content-Length '{bad}' is not a number of bytes"));
    }
    if lengths.windows(2).any(|pair| pair[0] != pair[1]) {
        return Some("it has Content-Length headers that disagree".into());
    }
    if !lengths.is_empty() && !encodings.is_empty() {
        return Some("it has both Content-Length and Transfer-Encoding".into());
    }
    if encodings.len() > 1 || encodings.iter().any(|e| !e.eq_ignore_ascii_case("chunked")) {
        return Some(format!(
            "Transfer-Encoding '{}' is not 'chunked'",
            encodings.join(", ")
        ));
    }
    None
}

/// Why `request` is refused before anything handles it: a control character in its request
/// line or in a header (tiny_http keeps a bare CR or LF inside a line), which could forge
/// log lines or reach a function's environment.
pub fn control_characters(request: &Request) -> Option<&'static str> {
    let control = |text: &str| text.chars().any(|c| c.is_control() && c != '\t');
    if control(request.url()) || control(request.method().as_str()) {
        return Some("the request line holds a control character");
    }
    if request
        .headers()
        .iter()
        .any(|h| control(h.field.as_str().as_str()) || control(h.value.as_str()))
    {
        return Some("a header holds a control character");
    }
    None
}

/// The trimmed values of every header called `name`.
fn values<'a>(request: &'a Request, name: &'static str) -> Vec<&'a str> {
    request
        .headers()
        .iter()
        .filter(|h| h.field.equiv(name))
        .map(|h| h.value.as_str().trim())
        .collect()
}
