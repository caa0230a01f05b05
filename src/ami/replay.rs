//! A fake AMI peer that replays recorded Asterisk sessions byte for byte. It stands in for
//! Asterisk in the tests, and `pbxtap demo` serves the embedded recordings with it.
//!
//! Per connection it sends the banner, checks the Login (plain secret or MD5 challenge),
//! answers Ping and CoreShowChannels, and, once CoreShowChannels is answered, writes the
//! recordings' event bytes. From each recording it strips what belongs to the recorded
//! client's own session: the banner line, the Login reply that follows it, and the final
//! Logoff reply (`Response: Goodbye`). Everything in between is sent unchanged.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use super::frame::{Frame, Limits, Parser};
use super::recording::message_end;
use super::session::md5_key;

/// The banner the peer sends, as Asterisk 22 does.
pub const BANNER: &[u8] = b"Asterisk Call Manager/11.0.0\r\n";
/// The challenge the peer hands out for MD5 logins.
pub const CHALLENGE: &str = "318462972";

/// A channel listed in the answer to CoreShowChannels.
#[derive(Debug, Clone)]
pub struct ListedChannel {
    pub channel: String,
    pub uniqueid: String,
    pub linkedid: String,
    pub caller_id_num: String,
    pub exten: String,
}

/// What the peer does.
#[derive(Debug, Clone)]
pub struct ReplayConfig {
    pub username: String,
    pub secret: String,
    /// Recordings, played in order as one stream.
    pub recordings: Vec<Vec<u8>>,
    /// Close the first connection abruptly after this many messages of the stream; the
    /// next connection goes on with the rest.
    pub drop_after: Option<usize>,
    /// Close every connection abruptly once this many messages of the stream were sent
    /// on it (an Asterisk that keeps going away); the next connection goes on with the
    /// rest.
    pub drop_every: Option<usize>,
    pub answer_pings: bool,
    /// Listed in the answer to CoreShowChannels.
    pub channels: Vec<ListedChannel>,
    /// Close the connection once everything is sent (else stay and answer pings).
    pub close_after_replay: bool,
    /// Pause between messages (none: as fast as the socket takes them, written in batches
    /// of up to `BATCH` bytes).
    pub pace: Option<Duration>,
    /// Pause between messages as the recordings were made (`ami::pace`), with
    /// [`BETWEEN_RECORDINGS`] before each recording but the first; instead of `pace`.
    pub recorded_pace: bool,
    /// Times the whole stream is played, back to back (a flood for the benches: the
    /// recordings are held once, whatever the count).
    pub repeat: usize,
}

impl ReplayConfig {
    pub fn new(recordings: Vec<Vec<u8>>) -> Self {
        ReplayConfig {
            username: "tap".into(),
            secret: "tapsecret".into(),
            recordings,
            drop_after: None,
            drop_every: None,
            answer_pings: true,
            channels: Vec::new(),
            close_after_replay: false,
            pace: None,
            recorded_pace: false,
            repeat: 1,
        }
    }
}

/// Most bytes the peer writes at once when it is not pacing: enough messages per write that
/// the peer, not the socket calls, keeps up with a fast client.
const BATCH: usize = 64 * 1024;

/// With `recorded_pace`: the pause before each recording but the first.
pub const BETWEEN_RECORDINGS: Duration = Duration::from_secs(1);

/// What the peer saw, for the tests.
#[derive(Debug, Default)]
pub struct PeerStats {
    pub connections: AtomicUsize,
    pub logins_ok: AtomicUsize,
    pub logins_failed: AtomicUsize,
    pub pings: AtomicUsize,
    /// `CoreShowChannels` lists asked for.
    pub channel_lists: AtomicUsize,
    /// Messages of the stream written so far.
    pub sent: AtomicUsize,
    /// The `Events:` mask of the last Login.
    pub events_mask: Mutex<String>,
}

/// A running peer.
pub struct ReplayPeer {
    pub address: String,
    pub stats: Arc<PeerStats>,
    /// Messages in the stream, counting every repeat.
    pub total: usize,
    task: JoinHandle<()>,
}

impl Drop for ReplayPeer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The event messages of a recording: its bytes minus the banner, the Login reply and the
/// Logoff reply, split into messages (each with its blank line).
pub fn messages_of(recording: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut rest = recording;
    if rest.starts_with(b"Asterisk Call Manager/") {
        let end = rest
            .iter()
            .position(|&b| b == b'\n')
            .map_or(rest.len(), |i| i + 1);
        rest = &rest[end..];
    }
    while !rest.is_empty() {
        let end = message_end(rest).unwrap_or(rest.len());
        out.push(&rest[..end]);
        rest = &rest[end..];
    }
    // The recorded client's Login reply and Logoff reply.
    if out.first().is_some_and(|m| m.starts_with(b"Response: ")) {
        out.remove(0);
    }
    if out
        .last()
        .is_some_and(|m| m.starts_with(b"Response: Goodbye"))
    {
        out.pop();
    }
    out
}

/// Starts a peer on 127.0.0.1 at a free port.
pub async fn start(cfg: ReplayConfig) -> std::io::Result<ReplayPeer> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?.to_string();
    let stream: Vec<Vec<u8>> = cfg
        .recordings
        .iter()
        .flat_map(|r| messages_of(r).into_iter().map(<[u8]>::to_vec))
        .collect();
    // The wait before each message of the stream, when paced as recorded.
    let waits: Vec<Duration> = if cfg.recorded_pace {
        let mut all = Vec::with_capacity(stream.len());
        for r in &cfg.recordings {
            let mut d = super::pace::delays(&messages_of(r));
            if let Some(first) = d.first_mut() {
                *first = BETWEEN_RECORDINGS;
            }
            all.extend(d);
        }
        all
    } else {
        Vec::new()
    };
    let total = stream.len().saturating_mul(cfg.repeat);
    let stats = Arc::new(PeerStats::default());
    let shared = Arc::new((cfg, stream, waits));
    let st = stats.clone();
    let task = tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            let n = st.connections.fetch_add(1, Ordering::Relaxed);
            // One connection at a time, like a client that redials.
            let _ = serve(sock, &shared.0, &shared.1, &shared.2, &st, n == 0).await;
        }
    });
    Ok(ReplayPeer {
        address,
        stats,
        total,
        task,
    })
}

async fn serve(
    mut sock: TcpStream,
    cfg: &ReplayConfig,
    stream: &[Vec<u8>],
    waits: &[Duration],
    stats: &PeerStats,
    first: bool,
) -> std::io::Result<()> {
    let one_by_one = cfg.pace.is_some() || !waits.is_empty();
    sock.write_all(BANNER).await?;
    let mut parser = Parser::new(Limits::default());
    parser.push(BANNER, &mut |_| {});
    let mut buf = vec![0u8; 4096];
    let mut batch = Vec::with_capacity(BATCH);
    let total = stream.len().saturating_mul(cfg.repeat);
    let mut logged_in = false;
    let mut replaying = false;
    // Where in the stream this connection drops (once it starts replaying).
    let mut drop_at: Option<usize> = None;
    loop {
        // Replay once the client has its channel list; interleave reading its actions.
        if replaying {
            let at = stats.sent.load(Ordering::Relaxed);
            if at < total {
                let drop_at = *drop_at.get_or_insert_with(|| {
                    let after = cfg.drop_after.filter(|_| first);
                    let every = cfg.drop_every.map(|n| at.saturating_add(n.max(1)));
                    after.into_iter().chain(every).min().unwrap_or(usize::MAX)
                });
                if at == drop_at {
                    return Ok(()); // dropped mid-stream: the socket closes here
                }
                // One message when pacing, else as many as fit a batch, up to a drop point.
                let mut next = at;
                batch.clear();
                loop {
                    let msg = &stream[next % stream.len()];
                    if next > at && (batch.len() + msg.len() > BATCH || one_by_one) {
                        break;
                    }
                    batch.extend_from_slice(msg);
                    next += 1;
                    if next == total || next == drop_at {
                        break;
                    }
                }
                // The very first message goes at once; the others wait as recorded.
                if let Some(w) = waits.get(at % stream.len()).filter(|_| at > 0) {
                    tokio::time::sleep(*w).await;
                }
                sock.write_all(&batch).await?;
                stats.sent.store(next, Ordering::Relaxed);
                if let Some(p) = cfg.pace {
                    tokio::time::sleep(p).await;
                }
                // Take actions (pings) that arrived meanwhile, without waiting (and without
                // a timer per message, which would cap the replay at about 1000 messages/s).
                match sock.try_read(&mut buf) {
                    Ok(0) => return Ok(()),
                    Ok(n) => {
                        let replies = answer(
                            &mut parser,
                            &buf[..n],
                            cfg,
                            stats,
                            &mut logged_in,
                            &mut replaying,
                        );
                        sock.write_all(&replies).await?;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
                continue;
            }
            if cfg.close_after_replay {
                sock.shutdown().await?;
                return Ok(());
            }
        }
        let n = sock.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        let replies = answer(
            &mut parser,
            &buf[..n],
            cfg,
            stats,
            &mut logged_in,
            &mut replaying,
        );
        sock.write_all(&replies).await?;
    }
}

/// Answers the client's actions in `data`.
fn answer(
    parser: &mut Parser,
    data: &[u8],
    cfg: &ReplayConfig,
    stats: &PeerStats,
    logged_in: &mut bool,
    replaying: &mut bool,
) -> Vec<u8> {
    let mut out = String::new();
    parser.push(data, &mut |f| {
        let Ok(Frame::Message(m)) = f else { return };
        let id = m.action_id().unwrap_or("");
        match m.get("Action").unwrap_or("") {
            a if a.eq_ignore_ascii_case("Challenge") => {
                out.push_str(&format!("Response: Success\r\nActionID: {id}\r\nChallenge: {CHALLENGE}\r\n\r\n"));
            }
            a if a.eq_ignore_ascii_case("Login") => {
                let ok = m.get("Username") == Some(cfg.username.as_str())
                    && (m.get("Secret") == Some(cfg.secret.as_str())
                        || m.get("Key") == Some(md5_key(CHALLENGE, &cfg.secret).as_str()));
                if ok {
                    *logged_in = true;
                    stats.logins_ok.fetch_add(1, Ordering::Relaxed);
                    *stats.events_mask.lock().unwrap() = m.get("Events").unwrap_or("").to_string();
                    out.push_str(&format!("Response: Success\r\nActionID: {id}\r\nMessage: Authentication accepted\r\n\r\n"));
                } else {
                    stats.logins_failed.fetch_add(1, Ordering::Relaxed);
                    out.push_str(&format!("Response: Error\r\nActionID: {id}\r\nMessage: Authentication failed\r\n\r\n"));
                }
            }
            _ if !*logged_in => {
                out.push_str(&format!("Response: Error\r\nActionID: {id}\r\nMessage: Permission denied\r\n\r\n"));
            }
            a if a.eq_ignore_ascii_case("Ping") => {
                stats.pings.fetch_add(1, Ordering::Relaxed);
                if cfg.answer_pings {
                    out.push_str(&format!("Response: Success\r\nActionID: {id}\r\nPing: Pong\r\nTimestamp: 1795376847.000000\r\n\r\n"));
                }
            }
            a if a.eq_ignore_ascii_case("CoreShowChannels") => {
                stats.channel_lists.fetch_add(1, Ordering::Relaxed);
                out.push_str(&format!("Response: Success\r\nActionID: {id}\r\nEventList: start\r\nMessage: Channels will follow\r\n\r\n"));
                for c in &cfg.channels {
                    out.push_str(&format!(
                        "Event: CoreShowChannel\r\nActionID: {id}\r\nChannel: {}\r\nChannelState: 6\r\nChannelStateDesc: Up\r\nCallerIDNum: {}\r\nExten: {}\r\nUniqueid: {}\r\nLinkedid: {}\r\n\r\n",
                        c.channel, c.caller_id_num, c.exten, c.uniqueid, c.linkedid
                    ));
                }
                out.push_str(&format!(
                    "Event: CoreShowChannelsComplete\r\nActionID: {id}\r\nEventList: Complete\r\nListItems: {}\r\n\r\n",
                    cfg.channels.len()
                ));
                *replaying = true;
            }
            a if a.eq_ignore_ascii_case("Logoff") => {
                out.push_str(&format!("Response: Goodbye\r\nActionID: {id}\r\nMessage: Thanks for all the fish.\r\n\r\n"));
            }
            _ => out.push_str(&format!("Response: Error\r\nActionID: {id}\r\nMessage: Invalid/unknown command\r\n\r\n")),
        }
    });
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recording_is_stripped_of_the_recorded_clients_session() {
        let rec = include_bytes!("../../tests/fixtures/ami/02-call-answered.ami");
        let msgs = messages_of(rec);
        assert!(msgs[0].starts_with(b"Event: FullyBooted"));
        assert!(msgs.last().unwrap().starts_with(b"Event: "));
        assert_eq!(msgs.len(), 117);
        // Byte for byte: banner + login reply + messages + goodbye is the file.
        let body: usize = msgs.iter().map(|m| m.len()).sum();
        assert!(rec.len() > body && rec.ends_with(b"\r\n\r\n"));
    }
}
