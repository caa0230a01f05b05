//! The state sweep, once at start before the first event: the retained state an earlier
//! run left under `<topic>/state/<host>/` is cleared, since what was true then (a call, a
//! registration) may not be now. The snapshot after each AMI login (contacts, live calls,
//! trunks) publishes the present again right after. A second, short-lived connection
//! (client id `<client_id>-sweep`, no last will) subscribes to the prefix, takes the
//! retained topics the broker sends until none came for [`QUIET`], and publishes an empty
//! retained message to each, which deletes it.

use std::time::Duration;

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::time::Instant;

/// Retained topics cleared in one sweep; past that the rest are left (logged). Far more
/// than the normalizer's tables can set (contacts, calls, queue callers, trunks).
pub const MAX_SWEPT: usize = 4096;
/// The broker sends the retained messages right after the subscription's
/// acknowledgement; the sweep takes them until none came for this long.
pub const QUIET: Duration = Duration::from_millis(500);
/// Longest a sweep may take, connect to disconnect.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// Clears every retained topic under `prefix` (`<topic>/state/<host>`). Returns how many
/// were cleared, or why the sweep could not be done.
pub async fn sweep(options: MqttOptions, prefix: &str) -> Result<usize, String> {
    let (client, mut events) = AsyncClient::new(options, 16);
    let filter = format!("{prefix}/#");
    let deadline = Instant::now() + DEADLINE;
    let mut found = Vec::new();
    let mut left = 0usize;
    let mut quiet_from: Option<Instant> = None;
    loop {
        let until = quiet_from.map_or(deadline, |t| (t + QUIET).min(deadline));
        let event = match tokio::time::timeout_at(until, events.poll()).await {
            Err(_) if quiet_from.is_some() => break,
            Err(_) => {
                return Err(format!(
                    "no answer to the state subscription within {DEADLINE:?}"
                ))
            }
            Ok(Err(e)) => return Err(e.to_string()),
            Ok(Ok(event)) => event,
        };
        match event {
            Event::Incoming(Packet::ConnAck(_)) => client
                .try_subscribe(filter.as_str(), QoS::AtLeastOnce)
                .map_err(|e| e.to_string())?,
            Event::Incoming(Packet::SubAck(_)) => quiet_from = Some(Instant::now()),
            Event::Incoming(Packet::Publish(p)) if p.retain && !p.payload.is_empty() => {
                if found.len() < MAX_SWEPT {
                    found.push(p.topic);
                } else {
                    left += 1;
                }
                quiet_from = Some(Instant::now());
            }
            _ => {}
        }
    }
    if left > 0 {
        tracing::warn!(prefix, left, "more retained state than one sweep clears ({MAX_SWEPT}); the rest stays until it is published again");
    }
    // QoS 0 in order on one connection, then a clean disconnect: the broker has them all
    // before it closes the session.
    for topic in &found {
        while client
            .try_publish(topic.as_str(), QoS::AtMostOnce, true, Vec::new())
            .is_err()
        {
            poll_before(&mut events, deadline).await?;
        }
    }
    client.try_disconnect().map_err(|e| e.to_string())?;
    while poll_before(&mut events, deadline).await? {}
    Ok(found.len())
}

/// One step of the event loop before `deadline`: `false` once the connection closed
/// (after our disconnect, the broker closes it).
async fn poll_before(events: &mut rumqttc::EventLoop, deadline: Instant) -> Result<bool, String> {
    match tokio::time::timeout_at(deadline, events.poll()).await {
        Err(_) => Err(format!(
            "the state sweep did not finish within {DEADLINE:?}"
        )),
        Ok(Ok(_)) => Ok(true),
        Ok(Err(_)) => Ok(false),
    }
}
