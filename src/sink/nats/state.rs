//! The present in JetStream, for a consumer that starts late: each piece of state
//! (`crate::state`) is also published to `<subject>.state.<host>.<kind>.<key>`, its latest
//! event as the payload, or an empty payload once the piece is gone. A stream that stores
//! those subjects with `max_msgs_per_subject = 1` holds exactly the present; a consumer
//! reads it with the `last per subject` delivery policy. At start, what an earlier run
//! left there is purged ([`sweep`]).

use async_nats::jetstream::Context;

use crate::state::Entry;

/// `<prefix>.<kind>.<key>[.<second key>]`: where a piece of state is published; `.`,
/// `*`, `>` and white space in a key written as `_`.
pub fn subject(prefix: &str, entry: &Entry<'_>) -> String {
    entry.path(prefix, '.', |c| {
        matches!(c, '.' | '*' | '>') || c.is_whitespace()
    })
}

/// `<subject>.state.<host>`: the prefix of this appliance's state subjects (the host is
/// an identity token, `settings::is_identity`: one subject token).
pub fn prefix(subject: &str, host: &str) -> String {
    format!("{subject}.state.{host}")
}

/// Purges what an earlier run left under `prefix` from the stream that stores it. `None`
/// when no stream stores it: the present is then not kept.
pub async fn sweep(js: &Context, prefix: &str) -> Result<Option<u64>, String> {
    use async_nats::jetstream::context::GetStreamByNameErrorKind;
    let name = match js.stream_by_subject(format!("{prefix}.any")).await {
        Ok(name) => name,
        Err(e) if matches!(e.kind(), GetStreamByNameErrorKind::NotFound) => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    let stream = js.get_stream(&name).await.map_err(|e| e.to_string())?;
    let purged = stream
        .purge()
        .filter(format!("{prefix}.>"))
        .await
        .map_err(|e| e.to_string())?;
    Ok(Some(purged.purged))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Kind;

    #[test]
    fn each_part_of_a_state_key_is_one_token() {
        let contact = Entry {
            kind: Kind::Contact,
            key: ["101", "sip:101@10.0.0.5:5060"],
            set: true,
        };
        let prefix = prefix("pbx", "lab");
        assert_eq!(
            subject(&prefix, &contact),
            "pbx.state.lab.contact.101.sip:101@10_0_0_5:5060"
        );
        let call = Entry {
            kind: Kind::Call,
            key: ["lab-1796.4", ""],
            set: false,
        };
        assert_eq!(subject(&prefix, &call), "pbx.state.lab.call.lab-1796_4");
        let odd = Entry {
            kind: Kind::Trunk,
            key: ["a b*c>d", ""],
            set: true,
        };
        assert_eq!(subject(&prefix, &odd), "pbx.state.lab.trunk.a_b_c_d");
    }
}
