//! Asterisk Manager Interface: the wire format (`frame`) and the TCP session (`client`).

pub mod frame;
