//! RFC 6455 §5.1, Overview (of data framing): the two ends of a connection.
//!
//! Its own module because both the state machine (`connection/`) and
//! permessage-deflate (`deflate/`, whose context takeover and window
//! parameters name a side) need it, and neither should depend on the other
//! for it.

/// Which end of the connection we are. It decides who masks (§5.1: a client
/// masks every frame, a server none) and who closes TCP first (§7.1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Accepted the connection.
    Server,
    /// Opened the connection.
    Client,
}
