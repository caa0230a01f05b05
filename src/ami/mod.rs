//! Asterisk Manager Interface: its settings (`config`), the wire format (`frame`), the
//! session state machine (`session`), the TCP connection (`client`), what the manager
//! user may read (`permissions`), and a replaying stand-in for Asterisk (`replay`).

pub mod client;
pub mod config;
pub mod filter;
pub mod frame;
pub mod pace;
pub mod permissions;
pub mod replay;
pub mod session;
