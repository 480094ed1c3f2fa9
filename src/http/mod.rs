//! The HTTP side: the accept loop and pool ([`server`]), routing ([`router`]), the reply
//! type and the error type. Handlers return `Result<Reply, ApiError>`; one function turns
//! that into the response.

mod api_error;
pub mod auth;
mod body;
pub mod clients;
pub mod dispatcher;
mod framing;
mod rate_limit;
mod reply;
mod responder;
mod router;
mod server;

pub use api_error::ApiError;
pub use reply::Reply;
pub use server::serve;
