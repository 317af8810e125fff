//! brain's integration tests: its router without a socket, and brain calling a real heart.

mod helpers;
mod pulse;
mod router;
