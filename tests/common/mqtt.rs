//! MQTT test helpers: a real mosquitto on a free port, and a real subscriber.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::sync::mpsc;

use super::{free_port, require, wait_for_port};

/// A mosquitto broker run by the test, with its config, data and log in `dir`.
pub struct Mosquitto {
    pub port: u16,
    pub dir: PathBuf,
    child: Option<Child>,
}

impl Mosquitto {
    /// Starts mosquitto on a free port with persistence in `dir` and `extra` config lines
    /// (listeners, password file, ...).
    pub fn start(dir: &Path, extra: &str) -> Mosquitto {
        let port = free_port();
        let conf = dir.join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "listener {port} 127.0.0.1\n\
                 {anonymous}\
                 user root\n\
                 persistence true\n\
                 persistence_location {dir}/\n\
                 max_queued_messages 100000\n\
                 log_dest file {dir}/mosquitto.log\n\
                 log_type all\n\
                 {extra}\n",
                dir = dir.display(),
                anonymous = if extra.contains("allow_anonymous") {
                    ""
                } else {
                    "allow_anonymous true\n"
                },
            ),
        )
        .unwrap();
        let mut m = Mosquitto {
            port,
            dir: dir.to_path_buf(),
            child: None,
        };
        m.restart();
        m
    }

    /// Starts (again) with the same config, data and port.
    pub fn restart(&mut self) {
        let bin = require("mosquitto", "mosquitto");
        let child = Command::new(bin)
            .arg("-c")
            .arg(self.dir.join("mosquitto.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mosquitto");
        self.child = Some(child);
        wait_for_port(self.port, Duration::from_secs(10));
    }

    /// Stops it the way an operator does (SIGTERM: it saves its sessions) and waits.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            )
            .unwrap();
            child.wait().unwrap();
        }
    }

    /// SIGKILL: the broker vanishes without a goodbye and without saving, as in a crash.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// Has the broker write its persistence database now (SIGUSR1), so that what it knows
    /// at this moment (sessions, subscriptions) survives a later `kill`; waits until the
    /// file is there.
    pub fn save(&self) {
        let db = self.dir.join("mosquitto.db");
        let _ = std::fs::remove_file(&db);
        let child = self.child.as_ref().expect("not running");
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGUSR1,
        )
        .unwrap();
        let start = std::time::Instant::now();
        while !db.is_file() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "mosquitto did not save {} within 10 s",
                db.display()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("mosquitto.log")).unwrap_or_default()
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One message as the subscriber got it.
#[derive(Debug, Clone)]
pub struct Msg {
    pub topic: String,
    pub payload: String,
    pub retain: bool,
    /// Set when the broker re-delivers a message its subscriber may have had already.
    pub dup: bool,
    pub qos: QoS,
}

/// A real MQTT subscriber (rumqttc, QoS 1). With `persistent`, its session (and the
/// messages queued for it) survives its own reconnects and a broker restart.
pub struct Subscriber {
    rx: mpsc::UnboundedReceiver<Msg>,
    task: tokio::task::JoinHandle<()>,
}

impl Subscriber {
    pub async fn start(port: u16, id: &str, filter: &str, persistent: bool) -> Subscriber {
        let mut opts = MqttOptions::new(id, "127.0.0.1", port);
        opts.set_clean_session(!persistent)
            .set_keep_alive(Duration::from_secs(5))
            .set_max_packet_size(64 * 1024, 64 * 1024);
        let (client, mut eventloop) = AsyncClient::new(opts, 16);
        let (tx, rx) = mpsc::unbounded_channel();
        let (subscribed_tx, subscribed) = tokio::sync::oneshot::channel();
        let filter = filter.to_string();
        let task = tokio::spawn(async move {
            let mut subscribed_tx = Some(subscribed_tx);
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) if subscribed_tx.is_some() => {
                        client
                            .subscribe(filter.clone(), QoS::AtLeastOnce)
                            .await
                            .unwrap();
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        if let Some(s) = subscribed_tx.take() {
                            let _ = s.send(());
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let _ = tx.send(Msg {
                            topic: p.topic.clone(),
                            payload: String::from_utf8_lossy(&p.payload).to_string(),
                            retain: p.retain,
                            dup: p.dup,
                            qos: p.qos,
                        });
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(10), subscribed)
            .await
            .expect("subscriber not subscribed within 10 s")
            .unwrap();
        Subscriber { rx, task }
    }

    /// The next message, or a panic after `within`.
    pub async fn next(&mut self, within: Duration) -> Msg {
        tokio::time::timeout(within, self.rx.recv())
            .await
            .unwrap_or_else(|_| panic!("no MQTT message within {within:?}"))
            .expect("subscriber stopped")
    }

    /// Messages until one satisfies `done` (included), or a panic after `within`
    /// naming what came.
    pub async fn until(&mut self, within: Duration, done: impl Fn(&Msg) -> bool) -> Vec<Msg> {
        let deadline = tokio::time::Instant::now() + within;
        let mut got = Vec::new();
        loop {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(m)) => {
                    let last = done(&m);
                    got.push(m);
                    if last {
                        return got;
                    }
                }
                _ => panic!(
                    "condition not met within {within:?}; got {} messages, last: {:?}",
                    got.len(),
                    got.last()
                ),
            }
        }
    }

    /// Whatever arrived already.
    pub fn drain(&mut self) -> Vec<Msg> {
        let mut got = Vec::new();
        while let Ok(m) = self.rx.try_recv() {
            got.push(m);
        }
        got
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The `seq` of a native JSON payload.
pub fn seq_of(payload: &str) -> u64 {
    super::json_u64(payload.as_bytes(), "seq").unwrap_or_else(|| panic!("no seq in {payload}"))
}

/// What a consumer that connects now learns of the retained messages under `filter`:
/// topic → payload. It subscribes to `filter`, then to a fence it published retained
/// itself; the broker answers subscriptions in order, so once the fence arrives every
/// retained message of `filter` has.
pub async fn retained(port: u16, filter: &str) -> std::collections::BTreeMap<String, String> {
    let id = format!("late-{}", super::free_port());
    let fence = format!("fence/{id}");
    let mut opts = MqttOptions::new(&id, "127.0.0.1", port);
    opts.set_keep_alive(Duration::from_secs(5))
        .set_max_packet_size(64 * 1024, 64 * 1024);
    let (client, mut eventloop) = AsyncClient::new(opts, 16);
    let mut out = std::collections::BTreeMap::new();
    let read = async {
        loop {
            match eventloop
                .poll()
                .await
                .expect("the late consumer's connection")
            {
                Event::Incoming(Packet::ConnAck(_)) => {
                    client
                        .publish(&fence, QoS::AtLeastOnce, true, "fence")
                        .await
                        .unwrap();
                }
                Event::Incoming(Packet::PubAck(_)) => {
                    client.subscribe(filter, QoS::AtLeastOnce).await.unwrap();
                    client.subscribe(&fence, QoS::AtLeastOnce).await.unwrap();
                }
                Event::Incoming(Packet::Publish(p)) if p.topic == fence => break,
                Event::Incoming(Packet::Publish(p)) if p.retain => {
                    let payload = String::from_utf8_lossy(&p.payload).to_string();
                    out.insert(p.topic.clone(), payload);
                }
                _ => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("the retained messages and the fence within 10 s");
    // The fence goes, so it is not left on the broker.
    let _ = client.publish(&fence, QoS::AtLeastOnce, true, "").await;
    let _ = client.disconnect().await;
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while eventloop.poll().await.is_ok() {}
    })
    .await;
    out
}
