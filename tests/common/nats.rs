//! NATS helpers: a real nats-server on a free port (optionally with JetStream), and the
//! JetStream stream the tests and the sinks bench read back what the sink delivered.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use async_nats::jetstream;

use super::{require, wait_for_port};

/// A nats-server child on 127.0.0.1:`port`, killed when dropped.
pub struct NatsServer {
    pub port: u16,
    /// Arguments after the address and port; a restart uses them as they are then.
    pub args: Vec<String>,
    child: Option<Child>,
}

impl NatsServer {
    /// Starts nats-server with `extra` arguments and waits until it accepts connections.
    pub fn start(port: u16, extra: &[&str]) -> Self {
        let mut s = NatsServer {
            port,
            args: extra.iter().map(|a| a.to_string()).collect(),
            child: None,
        };
        s.restart();
        s
    }

    /// With JetStream, storing its streams under `dir` (they survive restarts).
    pub fn with_jetstream(port: u16, dir: &Path) -> Self {
        NatsServer::start(port, &["-js", "-sd", dir.to_str().unwrap()])
    }

    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let bin = require("nats-server", "nats-server");
        let child = Command::new(bin)
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string()])
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nats-server");
        self.child = Some(child);
        wait_for_port(self.port, Duration::from_secs(10));
        self.wait_for_info(Duration::from_secs(10));
    }

    /// Waits until the server greets a client with its `INFO` line: listening is not yet
    /// ready (a JetStream server can reset connections while it starts).
    fn wait_for_info(&mut self, within: Duration) {
        use std::io::Read;
        let start = std::time::Instant::now();
        loop {
            let mut greeting = [0u8; 5];
            let ok = std::net::TcpStream::connect(("127.0.0.1", self.port))
                .and_then(|mut c| {
                    c.set_read_timeout(Some(Duration::from_secs(1)))?;
                    c.read_exact(&mut greeting)
                })
                .is_ok();
            if ok && &greeting == b"INFO " {
                return;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "nats-server on port {} exited during start: {status}",
                    self.port
                );
            }
            assert!(
                start.elapsed() < within,
                "nats-server on port {} did not greet within {within:?}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL: the server vanishes without a goodbye, as in a crash or power loss.
    pub fn kill(&mut self) {
        let mut child = self.child.take().expect("not running");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// The running server's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("not running").id()
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A stream capturing `<base>.>`, stored on disk: it survives the server's restarts, so
/// the test reads afterwards exactly what the sink delivered, in the order it arrived.
pub async fn create_stream(url: &str, base: &str) {
    let c = connect(url).await;
    jetstream::new(c)
        .create_stream(jetstream::stream::Config {
            name: "EVENTS".into(),
            subjects: vec![format!("{base}.>")],
            storage: jetstream::stream::StorageType::File,
            ..Default::default()
        })
        .await
        .unwrap();
}

/// How many messages the stream `EVENTS` holds; `None` while the server cannot say.
pub async fn stored_count(url: &str) -> Option<u64> {
    let c = async_nats::connect(url).await.ok()?;
    let mut s = jetstream::new(c).get_stream("EVENTS").await.ok()?;
    Some(s.info().await.ok()?.state.messages)
}

/// Subscribes to `subject` on the server at `url` and counts what arrives until nothing
/// has for 2 s; the subscription is live when this returns.
pub async fn count_messages(url: &str, subject: &str) -> tokio::task::JoinHandle<u64> {
    use futures_util::StreamExt;
    let consumer = connect(url).await;
    let mut sub = consumer.subscribe(subject.to_string()).await.unwrap();
    consumer.flush().await.unwrap();
    tokio::spawn(async move {
        let _consumer = consumer;
        let mut n = 0u64;
        while let Ok(Some(_)) = tokio::time::timeout(Duration::from_secs(2), sub.next()).await {
            n += 1;
        }
        n
    })
}

/// Connects a consumer, retrying for a few seconds: a JetStream server that has just
/// started may still reset a connection.
pub async fn connect(url: &str) -> async_nats::Client {
    let mut tries = 0;
    loop {
        match async_nats::connect(url).await {
            Ok(c) => return c,
            Err(e) if tries < 50 => {
                tries += 1;
                eprintln!("connecting to {url}: {e}; retrying");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("cannot connect to nats-server at {url}: {e}"),
        }
    }
}

/// What a consumer that starts now learns of the present kept in `stream` under `filter`
/// (`sink::nats::state`): subject → payload of the last message of each subject, as the
/// `last per subject` delivery policy gives it; an empty payload (a piece gone) is left
/// out.
pub async fn last_values(
    url: &str,
    stream: &str,
    filter: &str,
) -> std::collections::BTreeMap<String, String> {
    use futures_util::StreamExt;
    use jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
    let js = jetstream::new(connect(url).await);
    let stream = js.get_stream(stream).await.unwrap();
    let mut consumer = stream
        .create_consumer(pull::Config {
            deliver_policy: DeliverPolicy::LastPerSubject,
            filter_subject: filter.into(),
            ack_policy: AckPolicy::None,
            ..Default::default()
        })
        .await
        .unwrap();
    let pending = consumer.info().await.unwrap().num_pending as usize;
    let mut out = std::collections::BTreeMap::new();
    if pending == 0 {
        return out;
    }
    let mut messages = consumer
        .fetch()
        .max_messages(pending)
        .expires(Duration::from_secs(5))
        .messages()
        .await
        .unwrap();
    while let Some(m) = messages.next().await {
        let m = m.unwrap();
        if !m.payload.is_empty() {
            let payload = String::from_utf8_lossy(&m.payload).to_string();
            out.insert(m.subject.to_string(), payload);
        }
    }
    out
}
