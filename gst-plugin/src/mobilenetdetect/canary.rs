//! What a device measures about the model it runs (since that model was swapped in), and the verdicts it
//! publishes over MQTT for `mobilenet-trainer rollout status`: one retained JSON message per device on
//! TOPIC/DEVICE-ID, every watch interval and at once when the model changes.

use super::imp::CAT;
use detection_common::release::Verdict;
use rumqttc::{Client, Event, MqttOptions, Packet, QoS};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Run times kept for the p95: the last this many.
const RECENT_RUNS: usize = 256;
const POLL: Duration = Duration::from_millis(200);
/// How long a stopping element waits for the broker to take its last verdict.
const STOP_GRACE: Duration = Duration::from_secs(2);

#[derive(Clone)]
struct RecentTimes {
    ms: Vec<f32>,
    next: usize,
}

impl Default for RecentTimes {
    fn default() -> Self {
        Self {
            ms: Vec::with_capacity(RECENT_RUNS),
            next: 0,
        }
    }
}

impl RecentTimes {
    fn push(&mut self, run: Duration) {
        let ms = run.as_secs_f32() * 1000.0;
        if self.ms.len() < RECENT_RUNS {
            self.ms.push(ms);
        } else {
            self.ms[self.next] = ms;
        }
        self.next = (self.next + 1) % RECENT_RUNS;
    }

    fn p95(&self) -> Option<f64> {
        if self.ms.is_empty() {
            return None;
        }
        let mut sorted = self.ms.clone();
        sorted.sort_by(f32::total_cmp);
        let at = ((sorted.len() as f64 * 0.95).ceil() as usize).clamp(1, sorted.len()) - 1;
        Some(f64::from(sorted[at]))
    }
}

#[derive(Default, Clone)]
struct Counts {
    model: String,
    canary: bool,
    frames: u64,
    inferences: u64,
    detections: u64,
    shadow_frames: u64,
    agreement_sum: f64,
    shadow_detections: u64,
    errors: u64,
    stable_errors: u64,
    nonfinite: u64,
    runs: RecentTimes,
    shadow_runs: RecentTimes,
}

/// Counted by the streaming thread (a short uncontended lock per frame), read by the verdict publisher.
#[derive(Default)]
pub(super) struct CanaryStats {
    counts: Mutex<Counts>,
    /// Frames since the start, whatever the model.
    total_frames: AtomicU64,
}

impl CanaryStats {
    /// A new model is in use: its counts start from zero.
    pub(super) fn restart(&self, model: &str, canary: bool) {
        *self.counts.lock().unwrap() = Counts {
            model: model.to_string(),
            canary,
            ..Default::default()
        };
    }

    pub(super) fn frame(&self) {
        self.total_frames.fetch_add(1, Ordering::Relaxed);
        self.counts.lock().unwrap().frames += 1;
    }

    pub(super) fn inference(&self, run: Duration, detections: usize, nonfinite: usize) {
        let mut c = self.counts.lock().unwrap();
        c.inferences += 1;
        c.detections += detections as u64;
        c.nonfinite += nonfinite as u64;
        c.runs.push(run);
    }

    /// A shadow run of the stable model finished, and how far the two agreed on that frame.
    pub(super) fn shadow(&self, run: Duration, stable_detections: usize, agreement: f64) {
        let mut c = self.counts.lock().unwrap();
        c.shadow_frames += 1;
        c.shadow_detections += stable_detections as u64;
        c.agreement_sum += agreement;
        c.shadow_runs.push(run);
    }

    /// A run of the model in use failed (the pipeline stops with an error; the last verdict says so).
    pub(super) fn failed_run(&self) {
        self.counts.lock().unwrap().errors += 1;
    }

    pub(super) fn failed_shadow_run(&self) {
        self.counts.lock().unwrap().stable_errors += 1;
    }

    pub(super) fn verdict(&self, device: &str) -> Verdict {
        let c = self.counts.lock().unwrap().clone();
        let per = |n: u64, of: u64| if of == 0 { 0.0 } else { n as f64 / of as f64 };
        let shadowed = c.shadow_frames > 0;
        Verdict {
            device: device.to_string(),
            model: c.model,
            canary: c.canary,
            total_frames: self.total_frames.load(Ordering::Relaxed),
            frames: c.frames,
            inferences: c.inferences,
            detections_per_inference: per(c.detections, c.inferences),
            shadow_frames: c.shadow_frames,
            agreement: shadowed.then(|| per_f(c.agreement_sum, c.shadow_frames)),
            stable_detections_per_inference: shadowed.then(|| per(c.shadow_detections, c.shadow_frames)),
            p95_ms: c.runs.p95(),
            stable_p95_ms: c.shadow_runs.p95(),
            errors: c.errors,
            stable_errors: c.stable_errors,
            nonfinite: c.nonfinite,
        }
    }
}

fn per_f(sum: f64, n: u64) -> f64 {
    if n == 0 { 0.0 } else { sum / n as f64 }
}

/// The thread that publishes this device's verdicts.
pub(super) struct VerdictPublisher {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<()>,
}

/// What the thread driving the MQTT connection tells the publisher.
enum Link {
    Connected,
    Acknowledged,
    Failed(String),
}

/// A device id is one MQTT topic level: no separators or wildcards.
pub(super) fn check_device_id(device: &str) -> Result<(), String> {
    if device.is_empty() || device.contains(['/', '+', '#']) {
        return Err(format!(
            "device-id '{device}' cannot name an MQTT topic level for verdicts (no '/', '+' or '#')"
        ));
    }
    Ok(())
}

impl VerdictPublisher {
    /// `location`: mqtt://HOST[:PORT]/TOPIC. Problems reaching the broker are logged and retried; the stream
    /// never waits for it.
    pub(super) fn start(
        location: &str,
        device: String,
        interval: Duration,
        stats: Arc<CanaryStats>,
        element: &super::MobilenetDetect,
    ) -> Result<Self, String> {
        let target = match crate::detectionjson::mqtt::Target::parse(location) {
            Some(Ok(t)) if !t.tls => t,
            Some(Ok(_)) => return Err(format!("verdicts={location}: only mqtt:// is supported for verdicts")),
            Some(Err(e)) => return Err(format!("verdicts: {e}")),
            None => return Err(format!("verdicts={location}: not an mqtt://HOST[:PORT]/TOPIC location")),
        };
        check_device_id(&device)?;
        let client_id = format!(
            "mobilenetdetect-verdicts-{device}-{}-{}",
            std::process::id(),
            gst::prelude::GstObjectExt::name(element)
        );
        let mut options = MqttOptions::new(client_id, &target.host, target.port);
        options.set_keep_alive(Duration::from_secs(10));
        let topic = format!("{}/{device}", target.topic);
        let stop = Arc::new(AtomicBool::new(false));
        let (client, connection) = Client::new(options, 16);
        let (link_tx, link) = crossbeam_channel::unbounded();
        // The connection is driven on a thread of its own, never interrupted (a timed-out poll would abandon a
        // connection handshake in progress); it ends when the client is dropped, or at a failure once stopping.
        let stopping = stop.clone();
        std::thread::Builder::new()
            .name("mobilenetdetect-verdicts-mqtt".into())
            .spawn(move || {
                crate::fleet::block_io_signals_in_this_thread();
                drive(connection, &link_tx, &stopping)
            })
            .map_err(|e| format!("cannot start the verdict thread: {e}"))?;
        let flag = stop.clone();
        let weak = gst::glib::object::ObjectExt::downgrade(element);
        let handle = std::thread::Builder::new()
            .name("mobilenetdetect-verdicts".into())
            .spawn(move || {
                let mut next = Instant::now();
                let mut published_model = None;
                let mut connected = false;
                loop {
                    for event in link.try_iter() {
                        match event {
                            Link::Connected => connected = true,
                            Link::Acknowledged => {}
                            Link::Failed(e) => {
                                if connected && let Some(element) = weak.upgrade() {
                                    gst::warning!(CAT, obj = element, "verdicts to {topic}: {e}; retrying");
                                }
                                connected = false;
                            }
                        }
                    }
                    let stopping = flag.load(Ordering::SeqCst);
                    let verdict = stats.verdict(&device);
                    let due = Instant::now() >= next || published_model.as_ref() != Some(&verdict.model);
                    // Only while connected: verdicts queued during an outage would be stale, and a full queue
                    // would refuse the newest.
                    if connected && (due || stopping) {
                        next = Instant::now() + interval;
                        published_model = Some(verdict.model.clone());
                        let _ = client.try_publish(&topic, QoS::AtLeastOnce, true, verdict.to_json());
                    }
                    if stopping {
                        // The last verdict (all the frames) waits for its acknowledgement, for a while.
                        let until = Instant::now() + STOP_GRACE;
                        while connected && Instant::now() < until {
                            match link.recv_timeout(POLL) {
                                Ok(Link::Acknowledged) | Ok(Link::Failed(_)) => break,
                                _ => {}
                            }
                        }
                        let _ = client.disconnect();
                        break;
                    }
                    std::thread::sleep(POLL);
                }
            })
            .map_err(|e| format!("cannot start the verdict thread: {e}"))?;
        Ok(Self { stop, handle })
    }

    /// Publishes a last verdict (waiting up to 2 s for the broker) and ends the thread.
    pub(super) fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.handle.join();
    }
}

fn drive(mut connection: rumqttc::Connection, link: &crossbeam_channel::Sender<Link>, stopping: &AtomicBool) {
    for event in connection.iter() {
        let sent = match event {
            Ok(Event::Incoming(Packet::ConnAck(_))) => link.send(Link::Connected),
            Ok(Event::Incoming(Packet::PubAck(_))) => link.send(Link::Acknowledged),
            Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => break,
            Ok(_) => Ok(()),
            Err(e) => {
                if stopping.load(Ordering::SeqCst) {
                    break;
                }
                let sent = link.send(Link::Failed(e.to_string()));
                std::thread::sleep(Duration::from_millis(500));
                sent
            }
        };
        if sent.is_err() {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_p95_of_recent_runs() {
        let mut r = RecentTimes::default();
        assert_eq!(r.p95(), None);
        for ms in 1..=100 {
            r.push(Duration::from_millis(ms));
        }
        assert_eq!(r.p95(), Some(95.0));
        // Only the last RECENT_RUNS count.
        for _ in 0..RECENT_RUNS {
            r.push(Duration::from_millis(2));
        }
        assert_eq!(r.p95(), Some(2.0));
    }
}
