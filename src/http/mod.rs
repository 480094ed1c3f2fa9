//! The HTTP side: the accept loop and pool ([`server`]), routing ([`router`]), the reply
//! type and the error type. Handlers return `Result<Reply, ApiError>`; one function turns
//! that into the response.

pub mod auth;
mod body;
pub mod clients;
pub mod dispatcher;
mod framing;
mod rate_limit;
mod responder;
mod router;
mod server;

pub use crate::error::ApiError;
pub use crate::reply::Reply;
pub use server::serve;
