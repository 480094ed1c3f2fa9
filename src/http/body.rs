//! Bounded request body reads: a declared length over the limit is refused before reading,
//! and any body (chunked ones too) is read to at most `limit + 1` bytes.

use super::ApiError;
use std::io::Read;
use tiny_http::Request;

pub fn read_body(request: &mut Request, limit: u64) -> Result<Vec<u8>, ApiError> {
    if let Some(declared) = request.body_length() {
        if declared as u64 > limit {
            return Err(ApiError::BodyTooLarge { limit });
        }
    }
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
    Ok(body)
}
