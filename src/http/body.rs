//! Bounded request body reads: a declared length over the limit is refused before reading,
//! and any body (chunked ones too) is read to at most `limit + 1` bytes. While it reads,
//! the server is waiting on the client, so the silent-client watchdog may cut it off; a body
//! shorter than its declared length is refused, never passed on truncated. A chunked body
//! cut inside a chunk reads as ended (tiny_http's decoder then returns an end of stream),
//! so one whose client has closed its side when it ends is refused too: a client must not
//! close before it has sent the last chunk.

use super::ApiError;
use super::Front;
use std::io::Read;
use tiny_http::Request;

thread_local! {
    /// Whether the request being handled on this thread had its body read.
    static BODY_READ: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Forgets whether a body was read, before a new request is handled on this thread.
pub fn reset_body_read() {
    BODY_READ.with(|read| read.set(false));
}

/// Whether the request handled on this thread since [`reset_body_read`] had its body read
/// to its end.
pub fn body_was_read() -> bool {
    BODY_READ.with(|read| read.get())
}

pub fn read_body(front: &Front, request: &mut Request) -> Result<Vec<u8>, ApiError> {
    read_body_up_to(front, request, front.app.config.max_body)
}

/// [`read_body`] with a bound of its own (a registration carries a package's archive).
pub fn read_body_up_to(
    front: &Front,
    request: &mut Request,
    limit: u64,
) -> Result<Vec<u8>, ApiError> {
    let declared = request.body_length();
    if declared.is_some_and(|n| n as u64 > limit) {
        return Err(ApiError::BodyTooLarge { limit });
    }
    let _waiting = front.clients.waiting_on(request.remote_addr().copied());
    let mut body = Vec::new();
    request
        .as_reader()
        .take(limit.saturating_add(1))
        .read_to_end(&mut body)
        .map_err(|err| ApiError::BodyMalformed {
            reason: format!("the body could not be read: {err}"),
        })?;
    if body.len() as u64 > limit {
        return Err(ApiError::BodyTooLarge { limit });
    }
    if let Some(declared) = declared.filter(|n| *n != body.len()) {
        return Err(ApiError::BodyMalformed {
            reason: format!(
                "the body ended after {} of its {declared} declared bytes",
                body.len()
            ),
        });
    }
    let chunked = declared.is_none() && super::server::has_body(request);
    let peer = request.remote_addr().copied();
    if chunked
        && crate::platform::tcp_connections()
            .iter()
            .any(|c| Some(c.peer) == peer && c.closed_by_peer)
    {
        return Err(ApiError::BodyMalformed {
            reason: "the chunked body ended before its last chunk (the client closed its side)"
                .into(),
        });
    }
    // Read to its end: nothing is left for tiny_http to drain.
    BODY_READ.with(|read| read.set(true));
    Ok(body)
}
