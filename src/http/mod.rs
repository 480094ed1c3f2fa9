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

use crate::functions::app::App;
use std::sync::Arc;

pub use crate::error::ApiError;
pub use crate::reply::Reply;
pub use server::serve;

/// The HTTP side's own state, beside the domain it serves: who may do what, the request
/// pool, the bound address and the connections the watchdog looks after. Made when the
/// socket is bound; every handler gets it.
pub struct Front {
    pub app: Arc<App>,
    pub auth: auth::Auth,
    pub dispatcher: dispatcher::Dispatcher,
    pub local_addr: std::net::SocketAddr,
    pub clients: Arc<clients::Clients>,
}
