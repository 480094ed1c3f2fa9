//! What a handler answers: status, content type, body and extra headers. A leaf like
//! [`crate::error`]: a function's CGI answer becomes one without knowing of HTTP's server.

use crate::error::ApiError;
use serde_json::Value;

#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub content_type: String,
    pub body: Vec<u8>,
    pub headers: Vec<(String, String)>,
}

impl Reply {
    pub fn json(status: u16, value: &Value) -> Reply {
        let mut body = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
        body.push(b'\n');
        Reply::bytes(status, "application/json", body)
    }

    pub fn bytes(status: u16, content_type: impl Into<String>, body: Vec<u8>) -> Reply {
        Reply {
            status,
            content_type: content_type.into(),
            body,
            headers: Vec::new(),
        }
    }

    pub fn empty(status: u16) -> Reply {
        Reply::bytes(status, "text/plain; charset=utf-8", Vec::new())
    }

    pub fn with_header(mut self, name: &str, value: String) -> Reply {
        self.headers.push((name.to_string(), value));
        self
    }

    /// The answer for an error: its status, headers and JSON body.
    pub fn from_error(error: &ApiError) -> Reply {
        let mut reply = Reply::json(error.status(), &error.body());
        for (name, value) in error.headers() {
            reply = reply.with_header(name, value);
        }
        reply
    }
}
