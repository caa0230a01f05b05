//! Asterisk Manager Interface: its settings (`config`), the wire format (`frame`), the
//! session state machine (`session`), the TCP connection (`client`), what the manager
//! user may read (`permissions`), a replaying stand-in for Asterisk (`replay`), and the
//! capture file it replays (`recording`).

pub mod client;
pub mod config;
pub mod filter;
pub mod frame;
pub mod pace;
pub mod permissions;
pub mod recording;
pub mod replay;
pub mod session;
