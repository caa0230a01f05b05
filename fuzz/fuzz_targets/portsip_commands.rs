//! Fuzz target: arbitrary text frames (one per line) through a PortSIP session of each
//! protocol generation: every frame gets a reply that is JSON with a `status`, and
//! nothing panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pbxtap::dialect::portsip::Version;
use pbxtap::sink::websocket::portsip::{Gate, Role, Session, User, Users};

fuzz_target!(|data: &[u8]| {
    let users = [
        User {
            username: "101".into(),
            domain: "pbx.local".into(),
            extension_number: Some("101".into()),
            password: "pw".into(),
            role: Role::Extension,
            queues: vec!["8001".into()],
        },
        User {
            username: "root".into(),
            domain: String::new(),
            extension_number: None,
            password: "pw".into(),
            role: Role::System,
            queues: vec![],
        },
    ];
    for version in [Version::V16, Version::V22] {
        let with = Users {
            users: &users,
            version,
            tenant_id: "t1",
        };
        let mut session = Session::default();
        for line in data.split(|&b| b == b'\n') {
            let text = String::from_utf8_lossy(line);
            let out = session.handle(&text, &with, Gate::Open);
            let json = out.reply.to_json(version);
            assert!(json.starts_with('{') && json.contains("\"status\":"), "{json}");
        }
    }
});
