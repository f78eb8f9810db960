use crate::background::{Work, Writer};
use crate::roimeta::{BoxSource, boxes};
use detection_common::jsonline::{Entry, Header, LineBuilder};
use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::subclass::prelude::*;
use std::io::Write as _;
use std::sync::{LazyLock, Mutex};

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "detectionjson",
        gst::DebugColorFlags::empty(),
        Some("Detections as JSON lines"),
    )
});

const DEFAULT_LOCATION: &str = "-";
/// Lines waiting for the writer thread; a full queue applies backpressure rather than dropping lines.
const QUEUE_LINES: usize = 1024;
/// The largest UDP payload over IPv4 (65535 minus the IP and UDP headers): a longer frame is split.
pub const MAX_DATAGRAM: usize = 65_507;

#[derive(Debug, Clone)]
struct Settings {
    location: String,
    source: BoxSource,
    device_id: String,
    outbox: Option<String>,
    max_message_size: u32,
    username: Option<String>,
    password: Option<String>,
    tls_ca_file: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            location: DEFAULT_LOCATION.into(),
            source: BoxSource::Detections,
            device_id: crate::fleet::host_name(),
            outbox: None,
            max_message_size: DEFAULT_MAX_MESSAGE,
            username: None,
            password: None,
            tls_ca_file: None,
        }
    }
}

/// MQTT: the longest message by default, MQTT 3.1.1's maximum less room for the packet's header and topic
/// (what Mosquitto accepts unless configured otherwise).
const DEFAULT_MAX_MESSAGE: u32 = (super::mqtt::MQTT_MAX_PACKET - 65_536) as u32;

/// The default outbox of an MQTT client and destination: `$XDG_STATE_HOME/mobilenetdetect/outbox/CLIENT/DEST`.
fn default_outbox(client_id: &str, location: &str) -> std::path::PathBuf {
    crate::fleet::state_dir("outbox", client_id, location)
}

enum Output {
    Stdout,
    File(std::io::BufWriter<std::fs::File>),
    Udp(std::net::UdpSocket, std::net::SocketAddr),
    /// The outbox the MQTT publisher sends from.
    Mqtt(super::outbox::Appender),
}

impl Output {
    fn open(location: &str) -> Result<Output, String> {
        if location == "-" {
            return Ok(Output::Stdout);
        }
        if let Some(dest) = location.strip_prefix("udp://") {
            use std::net::ToSocketAddrs;
            let addr = dest
                .to_socket_addrs()
                .map_err(|e| format!("bad UDP destination '{dest}': {e}"))?
                .next()
                .ok_or_else(|| format!("UDP destination '{dest}' resolves to no address"))?;
            let bind = if addr.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" };
            let socket = std::net::UdpSocket::bind(bind).map_err(|e| format!("cannot open a UDP socket: {e}"))?;
            return Ok(Output::Udp(socket, addr));
        }
        let f = std::fs::File::create(location).map_err(|e| format!("cannot create {location}: {e}"))?;
        Ok(Output::File(std::io::BufWriter::new(f)))
    }

    fn write_line(&mut self, line: &[u8]) -> std::io::Result<()> {
        match self {
            Output::Stdout => {
                let mut out = std::io::stdout().lock();
                out.write_all(line)?;
                out.flush()
            }
            Output::File(f) => f.write_all(line),
            Output::Udp(s, addr) => s.send_to(line, *addr).map(|_| ()),
            Output::Mqtt(outbox) => outbox.append(line),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Output::File(f) => f.flush(),
            _ => Ok(()),
        }
    }
}

struct State {
    /// Lines go out on this thread; EOS waits until every line is written.
    writer: Writer<Vec<u8>>,
    frame: u64,
    line: LineBuilder,
    /// The longest line the destination takes (a UDP datagram, an MQTT message); longer frames are split.
    max_line: Option<usize>,
    /// Frame size from the negotiated caps.
    size: (u32, u32),
    /// MQTT: sends the outbox to the broker.
    publisher: Option<super::mqtt::Publisher>,
    /// MQTT: the client id this element holds (no other element of this host uses it meanwhile).
    client: Option<crate::fleet::Claim>,
}

#[derive(Default)]
pub struct DetectionJson {
    settings: Mutex<Settings>,
    state: Mutex<Option<State>>,
    /// Lines that could not be written (closed stdout, vanished receiver, full disk).
    lost: std::sync::atomic::AtomicU64,
    /// UDP frames too large for one datagram, sent in several parts.
    split: std::sync::atomic::AtomicU64,
}

/// The writer thread's side: lines to the output, failures counted as lost lines.
struct LineWriter {
    element: super::DetectionJson,
    out: Output,
    location: String,
    /// After a failed write (a full disk) part of a line may be out: the next line starts on a new one.
    unterminated: bool,
}

impl LineWriter {
    fn failed(&self, e: std::io::Error) {
        // A reader that went away (closed stdout, no UDP receiver) or a full disk must not stop the video:
        // the line is counted as lost and later lines are still tried.
        count_lost(&self.element, &format!("cannot write to {}: {e}", self.location));
    }
}

/// Counts a line that will never reach its destination: a warning at the 1st, 2nd, 4th, 8th, … and the stream
/// goes on.
fn count_lost(element: &super::DetectionJson, why: &str) {
    let n = element.imp().lost.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
    gst::warning!(CAT, obj = element, "{why} ({n} lines lost)");
    if n == 1 || n.is_power_of_two() {
        gst::element_warning!(
            element,
            gst::ResourceError::Write,
            ("{} ({} lines lost so far; the stream goes on)", why, n)
        );
    }
}

impl Work for LineWriter {
    type Item = Vec<u8>;

    fn started(&mut self) {
        crate::fleet::block_io_signals_in_this_thread();
    }

    fn write(&mut self, line: Vec<u8>) -> Result<(), ()> {
        // A datagram or an outbox append is whole or absent; a file or stdout may keep half a line.
        let result = if self.unterminated && matches!(self.out, Output::Stdout | Output::File(_)) {
            self.out.write_line(b"\n").and_then(|()| self.out.write_line(&line))
        } else {
            self.out.write_line(&line)
        };
        self.unterminated = result.is_err();
        if let Err(e) = result {
            self.failed(e);
        }
        Ok(())
    }

    fn flush(&mut self) {
        if let Err(e) = self.out.flush() {
            self.failed(e);
        }
    }
}

/// The MQTT publisher's news, as element messages and warnings.
struct BrokerReport(super::DetectionJson);

impl super::mqtt::Report for BrokerReport {
    fn connected(&self, target: &super::mqtt::Target) {
        gst::info!(CAT, obj = self.0, "connected to {}:{}", target.host, target.port);
    }

    fn disconnected(&self, target: &super::mqtt::Target, why: &str) {
        gst::warning!(CAT, obj = self.0, "MQTT broker {}:{}: {why}", target.host, target.port);
        gst::element_warning!(
            self.0,
            gst::ResourceError::Write,
            (
                "MQTT broker {}:{} unreachable ({}): lines wait in the outbox and go out in order once it is back",
                target.host,
                target.port,
                why
            )
        );
    }

    fn skipped(&self, bytes: u64, why: &str) {
        count_lost(&self.0, &format!("MQTT: a line of {bytes} bytes skipped: {why}"));
    }
}

impl DetectionJson {
    /// Writes a frame's line into `line`.
    fn format_frame(line: &mut LineBuilder, buf: &gst::BufferRef, header: &Header<'_>, source: BoxSource) {
        line.start(header);
        for b in boxes(buf, source, (header.width, header.height)) {
            line.push(&Entry {
                label: b.label,
                track_id: b.track_id,
                class_id: b.class_id,
                confidence: b.confidence,
                rect: b.rect,
            });
        }
    }

    fn drain(&self) {
        let queue = self.state.lock().unwrap().as_ref().map(|s| s.writer.queue.clone());
        if let Some(queue) = queue {
            queue.drain();
        }
    }
}

#[glib::object_subclass]
impl ObjectSubclass for DetectionJson {
    const NAME: &'static str = "GstDetectionJson";
    type Type = super::DetectionJson;
    type ParentType = gst_base::BaseTransform;
}

impl ObjectImpl for DetectionJson {
    fn constructed(&self) {
        self.parent_constructed();
        let counters = crate::metrics::Properties(&[
            (
                "acknowledged",
                "detectionjson_acknowledged_total",
                "counter",
                "MQTT: lines the broker acknowledged since start",
            ),
            (
                "lost",
                "detectionjson_lost_total",
                "counter",
                "Lines that could not be written",
            ),
            (
                "split",
                "detectionjson_split_total",
                "counter",
                "Frames whose line went out as several parts",
            ),
        ]);
        crate::metrics::register(self.obj().upcast_ref(), std::sync::Arc::new(counters));
    }

    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            vec![
                glib::ParamSpecString::builder("location")
                    .nick("Location")
                    .blurb("Where the JSON lines go: a file path, '-' for stdout, udp://HOST:PORT (one datagram per frame), or mqtt://HOST[:PORT]/TOPIC (mqtts:// with TLS): one message per line, QoS 1, in order, through an on-disk outbox so a broker outage loses nothing")
                    .default_value(Some(DEFAULT_LOCATION))
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("device-id")
                    .nick("Device id")
                    .blurb("This device's name in a fleet: the MQTT client id, or DEVICE-2, DEVICE-3, ... for further detectionjson elements of this host sending to the same broker (see client-id); default: the host name")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("outbox")
                    .nick("Outbox folder")
                    .blurb("MQTT: folder of the on-disk outbox, used by one element at a time (default: $XDG_STATE_HOME/mobilenetdetect/outbox/CLIENT-ID/LOCATION); lines not yet acknowledged by the broker are kept there across restarts")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("client-id")
                    .nick("MQTT client id")
                    .blurb("MQTT: the client id in use (read-only): device-id for the first detectionjson of this host on a broker, device-id-2, -3, ... for the others, so two pipelines never take over each other's session; also the 'device' field of each line")
                    .read_only()
                    .build(),
                glib::ParamSpecUInt::builder("max-message-size")
                    .nick("Maximum message size")
                    .blurb("MQTT: the longest message sent, in bytes (default: MQTT's maximum, what Mosquitto accepts unless configured otherwise); a longer frame goes out as several lines with 'part' and 'parts', each a complete JSON object. Set it to the broker's limit (e.g. 131072 for AWS IoT Core)")
                    .minimum(1024)
                    .maximum(DEFAULT_MAX_MESSAGE)
                    .default_value(DEFAULT_MAX_MESSAGE)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("username")
                    .nick("Username")
                    .blurb("MQTT: user name for the broker")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("password")
                    .nick("Password")
                    .blurb("MQTT: password for the broker")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("tls-ca-file")
                    .nick("TLS CA file")
                    .blurb("mqtts://: PEM file of the certificate authority that signed the broker's certificate")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt64::builder("acknowledged")
                    .nick("Acknowledged lines")
                    .blurb("MQTT: lines the broker has acknowledged since start")
                    .read_only()
                    .build(),
                glib::ParamSpecUInt64::builder("lost")
                    .nick("Lost lines")
                    .blurb("Lines that could not be written (closed stdout, vanished receiver, full disk): each failure is a warning and the stream goes on")
                    .read_only()
                    .build(),
                glib::ParamSpecUInt64::builder("split")
                    .nick("Split frames")
                    .blurb("UDP and MQTT: frames whose line exceeded one datagram (65507 bytes) or max-message-size and went out as several lines with 'part' and 'parts'")
                    .read_only()
                    .build(),
                glib::ParamSpecEnum::builder_with_default("source", BoxSource::Detections)
                    .nick("Source")
                    .blurb("Which boxes to write: the detector's (detections) or a labelled source's (ground-truth)")
                    .mutable_playing()
                    .build(),
            ]
        });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut s = self.settings.lock().unwrap();
        match pspec.name() {
            "location" => {
                s.location = value
                    .get::<Option<String>>()
                    .expect("type checked upstream")
                    .unwrap_or_else(|| DEFAULT_LOCATION.into())
            }
            "source" => s.source = value.get().expect("type checked upstream"),
            "device-id" => {
                s.device_id = value
                    .get::<Option<String>>()
                    .expect("type checked upstream")
                    .filter(|v| !v.is_empty())
                    .unwrap_or_else(crate::fleet::host_name)
            }
            "outbox" => s.outbox = value.get().expect("type checked upstream"),
            "max-message-size" => s.max_message_size = value.get().expect("type checked upstream"),
            "username" => s.username = value.get().expect("type checked upstream"),
            "password" => s.password = value.get().expect("type checked upstream"),
            "tls-ca-file" => s.tls_ca_file = value.get().expect("type checked upstream"),
            other => unimplemented!("property {other}"),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let s = self.settings.lock().unwrap();
        match pspec.name() {
            "location" => s.location.to_value(),
            "source" => s.source.to_value(),
            "device-id" => s.device_id.to_value(),
            "outbox" => s.outbox.to_value(),
            "max-message-size" => s.max_message_size.to_value(),
            "client-id" => self
                .state
                .lock()
                .unwrap()
                .as_ref()
                .and_then(|st| st.client.as_ref())
                .map(|c| c.id.clone())
                .to_value(),
            "username" => s.username.to_value(),
            // Not shown back: it would end up in logs and gst-inspect output.
            "password" => None::<String>.to_value(),
            "tls-ca-file" => s.tls_ca_file.to_value(),
            "acknowledged" => self
                .state
                .lock()
                .unwrap()
                .as_ref()
                .and_then(|st| st.publisher.as_ref())
                .map(|p| p.acknowledged.load(std::sync::atomic::Ordering::Relaxed))
                .unwrap_or(0)
                .to_value(),
            "lost" => self.lost.load(std::sync::atomic::Ordering::SeqCst).to_value(),
            "split" => self.split.load(std::sync::atomic::Ordering::SeqCst).to_value(),
            other => unimplemented!("property {other}"),
        }
    }
}

impl GstObjectImpl for DetectionJson {}

impl ElementImpl for DetectionJson {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static METADATA: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "Detections to JSON",
                "Filter/Analyzer/Video",
                "Writes one JSON object per frame with the frame's detections (or ground truth) to a file, stdout or UDP",
                "mobilenetdetect developers",
            )
        });
        Some(&*METADATA)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static PAD_TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(crate::video::any_video_templates);
        PAD_TEMPLATES.as_ref()
    }
}

impl BaseTransformImpl for DetectionJson {
    const MODE: gst_base::subclass::BaseTransformMode = gst_base::subclass::BaseTransformMode::AlwaysInPlace;
    const PASSTHROUGH_ON_SAME_CAPS: bool = true;
    const TRANSFORM_IP_ON_PASSTHROUGH: bool = true;

    fn start(&self) -> Result<(), gst::ErrorMessage> {
        let settings = self.settings.lock().unwrap().clone();
        let location = settings.location.clone();
        let open_failed = |e: String| gst::error_msg!(gst::ResourceError::OpenWrite, ["{}", e]);
        let (out, publisher, client, max_line) = match super::mqtt::Target::parse(&location) {
            None => {
                let max_line = location.starts_with("udp://").then_some(MAX_DATAGRAM);
                (Output::open(&location).map_err(open_failed)?, None, None, max_line)
            }
            Some(target) => {
                let target = target.map_err(|e| gst::error_msg!(gst::ResourceError::Settings, ["{}", e]))?;
                // One session per element: a second pipeline of this host with the same device id gets its own
                // client id (and so its own default outbox) instead of taking over the first one's session.
                let broker = format!("{}:{}", target.host, target.port);
                let client = crate::fleet::claim_identity("mqtt", &broker, &settings.device_id).map_err(open_failed)?;
                let dir = settings
                    .outbox
                    .clone()
                    .map(std::path::PathBuf::from)
                    .unwrap_or_else(|| default_outbox(&client.id, &location));
                let (appender, reader) = super::outbox::open(&dir).map_err(open_failed)?;
                if reader.cut_at_open > 0 {
                    gst::warning!(
                        CAT,
                        imp = self,
                        "outbox {}: removed a line an earlier run left half-written ({} bytes)",
                        dir.display(),
                        reader.cut_at_open
                    );
                }
                let credentials = super::mqtt::Credentials {
                    client_id: client.id.clone(),
                    username: settings.username.clone(),
                    password: settings.password.clone(),
                    ca_file: settings.tls_ca_file.clone().map(Into::into),
                };
                let report = BrokerReport(self.obj().clone());
                let max_message = settings.max_message_size as usize;
                let publisher = super::mqtt::Publisher::start(target, credentials, reader, max_message, report)
                    .map_err(|e| gst::error_msg!(gst::ResourceError::Settings, ["{}", e]))?;
                gst::info!(
                    CAT,
                    imp = self,
                    "client {} sends through the outbox {}",
                    client.id,
                    dir.display()
                );
                // The outbox keeps the newline, the message does not.
                (
                    Output::Mqtt(appender),
                    Some(publisher),
                    Some(client),
                    Some(max_message + 1),
                )
            }
        };
        let lines = LineWriter {
            element: self.obj().clone(),
            out,
            location,
            unterminated: false,
        };
        let writer = Writer::start("detectionjson-writer", QUEUE_LINES, lines)
            .map_err(|e| gst::error_msg!(gst::CoreError::Thread, ["cannot start the writer thread: {}", e]))?;
        self.lost.store(0, std::sync::atomic::Ordering::SeqCst);
        self.split.store(0, std::sync::atomic::Ordering::SeqCst);
        *self.state.lock().unwrap() = Some(State {
            writer,
            frame: 0,
            line: LineBuilder::with_capacity(1024, 128),
            max_line,
            size: (0, 0),
            publisher,
            client,
        });
        gst::debug!(CAT, imp = self, "started");
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        let state = self.state.lock().unwrap().take();
        if let Some(state) = state {
            // Every line into the outbox first, then the broker gets a few seconds for the rest.
            state.writer.stop();
            if let Some(p) = state.publisher {
                p.stop();
            }
        }
        Ok(())
    }

    fn set_caps(&self, incaps: &gst::Caps, outcaps: &gst::Caps) -> Result<(), gst::LoggableError> {
        let info =
            gst_video::VideoInfo::from_caps(incaps).map_err(|_| gst::loggable_error!(CAT, "bad caps {incaps}"))?;
        if let Some(state) = self.state.lock().unwrap().as_mut() {
            state.size = (info.width(), info.height());
        }
        self.parent_set_caps(incaps, outcaps)
    }

    fn sink_event(&self, event: gst::Event) -> bool {
        if let gst::EventView::Eos(_) = event.view() {
            // Every line is written before EOS goes downstream.
            self.drain();
        }
        self.parent_sink_event(event)
    }

    fn transform_ip_passthrough(&self, buf: &gst::Buffer) -> Result<gst::FlowSuccess, gst::FlowError> {
        let source = self.settings.lock().unwrap().source;
        let mut guard = self.state.lock().unwrap();
        let state = guard.as_mut().ok_or(gst::FlowError::Flushing)?;
        let header = Header {
            frame: state.frame,
            timestamp: buf.pts().map(|t| t.nseconds()),
            width: state.size.0,
            height: state.size.1,
            device: state.client.as_ref().map(|c| c.id.as_str()),
        };
        Self::format_frame(&mut state.line, buf.as_ref(), &header, source);
        state.frame += 1;
        let line = state.line.finish();
        // The usual frame is one line; only a frame longer than the destination takes builds a list of parts.
        let lines = match state.max_line {
            Some(max) if line.len() > max => {
                let n = self.split.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                gst::debug!(
                    CAT,
                    imp = self,
                    "frame of {} bytes split ({n} frames so far)",
                    line.len()
                );
                let parts = state.line.parts(max);
                self.lost
                    .fetch_add(parts.left_out as u64, std::sync::atomic::Ordering::SeqCst);
                parts.lines
            }
            _ => vec![line.as_bytes().to_vec()],
        };
        let queue = state.writer.queue.clone();
        drop(guard);
        for bytes in lines {
            queue.send(bytes).map_err(|_| {
                gst::element_imp_error!(self, gst::ResourceError::Write, ["the JSON writer stopped"]);
                gst::FlowError::Error
            })?;
        }
        Ok(gst::FlowSuccess::Ok)
    }
}
