//! `location=mqtt://HOST[:PORT]/TOPIC` (or `mqtts://` with TLS): the JSON lines go to an MQTT broker, one
//! message per line, QoS 1 (at least once), in order. Lines go through the on-disk outbox (`outbox.rs`); a
//! publisher thread sends what the broker has not acknowledged yet, reconnects after an outage and sends the
//! rest in order. No line can hold up the ones behind it: the element splits lines above `max-message-size`,
//! a line still above it (left by a run with a larger limit) is skipped and counted, and a large line the broker
//! keeps closing the connection over is skipped after `HEAD_OF_LINE_TRIES` connections.

use super::outbox::{Position, Reader};
use rumqttc::{Client, Event, MqttOptions, Packet, QoS, Transport};
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Messages sent ahead of their acknowledgements.
const WINDOW: usize = 32;
/// How long a stopping element waits for the broker to acknowledge what is left (it stays in the outbox for
/// the next run otherwise).
const STOP_GRACE: Duration = Duration::from_secs(5);
const RECONNECT_PAUSE: Duration = Duration::from_millis(500);
/// How often the acknowledged position is recorded on disk (and acknowledged segments deleted).
const PERSIST_EVERY: Duration = Duration::from_millis(250);
/// MQTT 3.1.1's largest packet (its remaining-length field's maximum): what Mosquitto accepts by default.
pub(super) const MQTT_MAX_PACKET: usize = 268_435_455;
/// Connections the broker closed in a row while the same large line was in flight, before that line is skipped
/// (a broker whose limit is below `max-message-size` closes on it every time).
const HEAD_OF_LINE_TRIES: u32 = 3;
const HEAD_OF_LINE_MIN_BYTES: u64 = 64 * 1024;

/// Where and how to connect.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Target {
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) topic: String,
    pub(crate) tls: bool,
}

impl Target {
    /// `mqtt://HOST[:PORT]/TOPIC` (port 1883) or `mqtts://…` (TLS, port 8883); `None` for other locations.
    pub(crate) fn parse(location: &str) -> Option<Result<Target, String>> {
        let (rest, tls) = if let Some(r) = location.strip_prefix("mqtt://") {
            (r, false)
        } else if let Some(r) = location.strip_prefix("mqtts://") {
            (r, true)
        } else {
            return None;
        };
        let bad = |why: &str| {
            Some(Err(format!(
                "bad MQTT location '{location}': {why} (mqtt://HOST[:PORT]/TOPIC)"
            )))
        };
        let Some((authority, topic)) = rest.split_once('/') else {
            return bad("no topic");
        };
        if topic.is_empty() || topic.contains(['+', '#']) {
            return bad("the topic must be non-empty and without wildcards");
        }
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => match p.parse::<u16>() {
                Ok(p) if p > 0 => (h, p),
                _ => return bad("the port is not a number from 1 to 65535"),
            },
            None => (authority, if tls { 8883 } else { 1883 }),
        };
        if host.is_empty() {
            return bad("no host");
        }
        Some(Ok(Target {
            host: host.to_string(),
            port,
            topic: topic.to_string(),
            tls,
        }))
    }
}

/// Connection settings from the element's properties.
#[derive(Debug, Clone, Default)]
pub(super) struct Credentials {
    pub(super) client_id: String,
    pub(super) username: Option<String>,
    pub(super) password: Option<String>,
    /// PEM file of the certificate authority for `mqtts://` (default: the system's roots are not read; a CA
    /// file is required).
    pub(super) ca_file: Option<PathBuf>,
}

/// What the publisher tells the element (its warnings go out as element warnings).
pub(super) trait Report: Send + 'static {
    fn connected(&self, target: &Target);
    fn disconnected(&self, target: &Target, why: &str);
    /// A line of `bytes` was not sent and never will be (counted as lost).
    fn skipped(&self, bytes: u64, why: &str);
}

pub(super) struct Publisher {
    stop: Arc<AtomicBool>,
    pub(super) acknowledged: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl Publisher {
    /// `max_payload`: the longest line sent (the element splits longer ones).
    pub(super) fn start(
        target: Target,
        credentials: Credentials,
        outbox: Reader,
        max_payload: usize,
        report: impl Report,
    ) -> Result<Publisher, String> {
        let options = options(&target, &credentials, max_payload)?;
        let stop = Arc::new(AtomicBool::new(false));
        let acknowledged = Arc::new(AtomicU64::new(0));
        let (s, a) = (stop.clone(), acknowledged.clone());
        let thread = std::thread::Builder::new()
            .name("detectionjson-mqtt".into())
            .spawn(move || {
                crate::fleet::block_io_signals_in_this_thread();
                publish(target, options, outbox, max_payload, &s, &a, report)
            })
            .map_err(|e| format!("cannot start the MQTT thread: {e}"))?;
        Ok(Publisher {
            stop,
            acknowledged,
            thread: Some(thread),
        })
    }

    /// Lets the broker acknowledge what is left for a few seconds, then stops; the rest stays in the outbox.
    pub(super) fn stop(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn options(target: &Target, c: &Credentials, max_payload: usize) -> Result<MqttOptions, String> {
    let mut o = MqttOptions::new(c.client_id.clone(), target.host.clone(), target.port);
    // A PUBLISH packet is its payload, the topic and a few header bytes.
    let packet = max_payload.saturating_add(target.topic.len() + 16).min(MQTT_MAX_PACKET);
    o.set_keep_alive(Duration::from_secs(5))
        .set_clean_session(true)
        .set_max_packet_size(1 << 20, packet);
    if let Some(user) = &c.username {
        o.set_credentials(user.clone(), c.password.clone().unwrap_or_default());
    }
    if target.tls {
        let ca_file = c
            .ca_file
            .as_ref()
            .ok_or("mqtts:// needs a certificate authority: set tls-ca-file to its PEM file")?;
        let ca = std::fs::read(ca_file).map_err(|e| format!("cannot read {}: {e}", ca_file.display()))?;
        // rustls is built without a default crypto provider: use ring, once per process.
        let _ = rustls::crypto::ring::default_provider().install_default();
        o.set_transport(Transport::tls(ca, None, None));
    }
    Ok(o)
}

/// The publisher thread: one connection after another until told to stop.
fn publish(
    target: Target,
    options: MqttOptions,
    mut outbox: Reader,
    max_payload: usize,
    stop: &AtomicBool,
    acknowledged: &AtomicU64,
    report: impl Report,
) {
    let mut stop_deadline: Option<Instant> = None;
    let mut reported_down = false;
    // The large line in flight when the broker last closed the connection, and how often in a row.
    let mut head_closes: Option<(Position, u32)> = None;
    // Lines to leave out (by where they start) and their sizes.
    let mut skip: std::collections::HashMap<Position, u64> = Default::default();
    loop {
        // A fresh client each time: what was not acknowledged is sent again from the outbox, in order.
        let (client, mut connection) = Client::new(options.clone(), WINDOW * 2);
        // Small messages back to back: without TCP_NODELAY, Nagle and delayed acknowledgements stall each window.
        let mut network = rumqttc::NetworkOptions::new();
        network.set_tcp_nodelay(true);
        connection.eventloop.set_network_options(network);
        let mut sending = Sending {
            in_flight: VecDeque::with_capacity(WINDOW),
            max_payload,
        };
        let mut connected = false;
        let mut persisted_at = Instant::now();
        let outcome = loop {
            if stop.load(Ordering::SeqCst) {
                let deadline = *stop_deadline.get_or_insert_with(|| Instant::now() + STOP_GRACE);
                let done = sending.in_flight.is_empty() && outbox.all_acknowledged().unwrap_or(true);
                if done || Instant::now() >= deadline {
                    let _ = outbox.persist();
                    let _ = client.disconnect();
                    return;
                }
            }
            if persisted_at.elapsed() >= PERSIST_EVERY {
                persisted_at = Instant::now();
                if let Err(e) = outbox.persist() {
                    break Err(format!("cannot record progress in the outbox: {e}"));
                }
            }
            if connected && let Err(e) = sending.send_more(&client, &target.topic, &mut outbox, &mut skip, &report) {
                break Err(format!("cannot read the outbox: {e}"));
            }
            match connection.recv_timeout(Duration::from_millis(100)) {
                Ok(Ok(Event::Incoming(Packet::ConnAck(_)))) => {
                    connected = true;
                    reported_down = false;
                    if let Err(e) = outbox.rewind() {
                        break Err(format!("cannot read the outbox: {e}"));
                    }
                    report.connected(&target);
                }
                Ok(Ok(Event::Incoming(Packet::PubAck(_)))) => {
                    // A broker acknowledges QoS 1 messages in the order it received them.
                    if let Some((_, end)) = sending.in_flight.pop_front() {
                        outbox.acknowledged(end);
                        acknowledged.fetch_add(1, Ordering::Relaxed);
                        head_closes = None;
                    }
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) => break Ok(e.to_string()),
                Err(rumqttc::RecvTimeoutError::Timeout) => {}
                Err(rumqttc::RecvTimeoutError::Disconnected) => break Ok("the connection closed".into()),
            }
        };
        let _ = outbox.persist();
        // Closed again and again while the same large line was in flight: a broker that refuses it. (Which
        // line a reset was about cannot be told, nor whether earlier ones were acknowledged: a reset drops the
        // acknowledgements not yet read. The largest line in flight is the suspect.)
        let suspect = sending
            .in_flight
            .iter()
            .filter(|(start, end)| start.segment == end.segment)
            .max_by_key(|(start, end)| end.offset - start.offset)
            .copied()
            .filter(|(start, end)| end.offset - start.offset >= HEAD_OF_LINE_MIN_BYTES);
        match suspect.filter(|_| connected && outcome.is_ok()) {
            Some((start, end)) => {
                let tries = match head_closes {
                    Some((p, n)) if p == start => n + 1,
                    _ => 1,
                };
                head_closes = Some((start, tries));
                if tries >= HEAD_OF_LINE_TRIES {
                    // Left out when the lines are sent again; counted then.
                    skip.insert(start, end.offset - start.offset);
                    head_closes = None;
                }
            }
            None => head_closes = None,
        }
        match outcome {
            Ok(why) => {
                if !reported_down {
                    report.disconnected(&target, &why);
                    reported_down = true;
                }
            }
            Err(e) => {
                report.disconnected(&target, &e);
            }
        }
        if stop.load(Ordering::SeqCst) && stop_deadline.is_some_and(|d| Instant::now() >= d) {
            return;
        }
        std::thread::sleep(RECONNECT_PAUSE);
    }
}

/// One connection's sending state.
struct Sending {
    /// Where each line sent and not yet acknowledged starts and ends (a skipped line after it extends its end).
    in_flight: VecDeque<(Position, Position)>,
    max_payload: usize,
}

impl Sending {
    /// Publishes outbox lines until `WINDOW` are waiting for their acknowledgement.
    fn send_more(
        &mut self,
        client: &Client,
        topic: &str,
        outbox: &mut Reader,
        skip: &mut std::collections::HashMap<Position, u64>,
        report: &impl Report,
    ) -> std::io::Result<()> {
        while self.in_flight.len() < WINDOW {
            let Some((line, end)) = outbox.next_line()? else {
                return Ok(());
            };
            let line = line.to_vec();
            let (start, len) = (outbox.line_start(), line.len());
            let why = if len > self.max_payload {
                // Written by a run with a larger limit: it would break every connection.
                Some(format!("longer than max-message-size ({} bytes)", self.max_payload))
            } else if skip.remove(&start).is_some() {
                Some(format!(
                    "the broker closed the connection {HEAD_OF_LINE_TRIES} times in a row while it was in flight: \
                     set max-message-size to what the broker accepts"
                ))
            } else {
                None
            };
            if let Some(why) = why {
                // Acknowledged with the line before it (or at once), counted as lost.
                match self.in_flight.back_mut() {
                    Some((_, last)) => *last = end,
                    None => outbox.acknowledged(end),
                }
                report.skipped(len as u64, &why);
                continue;
            }
            if client.try_publish(topic, QoS::AtLeastOnce, false, line).is_err() {
                // The client's queue is full: the line is read again after the next acknowledgement.
                outbox.unread()?;
                return Ok(());
            }
            self.in_flight.push_back((start, end));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations() {
        let t = Target::parse("mqtt://broker.local/fleet/cam1").unwrap().unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.topic.as_str(), t.tls),
            ("broker.local", 1883, "fleet/cam1", false)
        );
        let t = Target::parse("mqtts://10.0.0.2:9000/a").unwrap().unwrap();
        assert_eq!((t.port, t.tls), (9000, true));
        assert!(Target::parse("udp://x:1").is_none());
        for bad in [
            "mqtt://host",
            "mqtt://host/",
            "mqtt://:1883/t",
            "mqtt://h:0/t",
            "mqtt://h:x/t",
            "mqtt://h/a/#",
        ] {
            let e = Target::parse(bad).unwrap().unwrap_err();
            assert!(e.contains(bad), "{e}");
        }
    }
}
