use crate::background::{Work, Writer};
use crate::roimeta::{BoxSource, boxes};
use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::subclass::prelude::*;
use std::fmt::Write as _;
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
            username: None,
            password: None,
            tls_ca_file: None,
        }
    }
}

/// The default outbox of a device and destination: `$XDG_STATE_HOME/mobilenetdetect/outbox/DEVICE/DEST`.
fn default_outbox(device_id: &str, location: &str) -> std::path::PathBuf {
    crate::fleet::state_dir("outbox", device_id, location)
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
    line: String,
    /// Where each detection of `line` ends (to split a frame into datagrams without parsing it).
    detection_ends: Vec<usize>,
    /// Whether lines go out as UDP datagrams (and must fit one).
    udp: bool,
    /// Frame size from the negotiated caps.
    size: (u32, u32),
    /// MQTT: sends the outbox to the broker.
    publisher: Option<super::mqtt::Publisher>,
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

/// Blocks SIGPIPE in the calling thread: writing to a closed stdout or pipe then fails with EPIPE (a warning)
/// instead of killing the whole process (gst-launch-1.0 and most applications keep SIGPIPE's default).
fn block_sigpipe() {
    // SAFETY: plain libc calls on a local, initialised signal set; only this thread's mask changes.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGPIPE);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
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
        let n = self
            .element
            .imp()
            .lost
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
            + 1;
        let location = &self.location;
        gst::warning!(
            CAT,
            obj = self.element,
            "cannot write to {location}: {e} ({n} lines lost)"
        );
        if n == 1 || n.is_power_of_two() {
            gst::element_warning!(
                self.element,
                gst::ResourceError::Write,
                (
                    "cannot write to {}: {} ({} lines lost so far; the stream goes on)",
                    location,
                    e,
                    n
                )
            );
        }
    }
}

impl Work for LineWriter {
    type Item = Vec<u8>;

    fn started(&mut self) {
        block_sigpipe();
    }

    fn write(&mut self, line: Vec<u8>) -> Result<(), ()> {
        let result = if self.unterminated && !matches!(self.out, Output::Udp(..)) {
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
}

/// Appends `s` as a JSON string literal.
fn json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

impl DetectionJson {
    /// Writes a frame's line into `line` and where each detection's object ends into `ends` (both reused);
    /// returns where the first detection starts.
    fn format_frame(
        line: &mut String,
        ends: &mut Vec<usize>,
        buf: &gst::BufferRef,
        frame: u64,
        (w, h): (u32, u32),
        source: BoxSource,
    ) -> usize {
        line.clear();
        ends.clear();
        let _ = write!(line, "{{\"frame\":{frame},\"timestamp\":");
        match buf.pts() {
            Some(t) => {
                let _ = write!(line, "{}", t.nseconds());
            }
            None => line.push_str("null"),
        }
        let _ = write!(line, ",\"width\":{w},\"height\":{h},\"detections\":[");
        let first = line.len();
        for (i, b) in boxes(buf, source, (w, h)).enumerate() {
            if i > 0 {
                line.push(',');
            }
            let (x, y, bw, bh) = b.rect;
            line.push_str("{\"label\":");
            json_string(line, b.label);
            if let Some(id) = b.track_id {
                let _ = write!(line, ",\"track_id\":{id}");
            }
            let (fw, fh) = (w.max(1) as f64, h.max(1) as f64);
            let _ = write!(
                line,
                ",\"class_id\":{},\"confidence\":{:.6},\"x\":{x},\"y\":{y},\"width\":{bw},\"height\":{bh},\
                 \"box\":{{\"x_min\":{:.6},\"y_min\":{:.6},\"x_max\":{:.6},\"y_max\":{:.6}}}}}",
                b.class_id,
                b.confidence,
                x as f64 / fw,
                y as f64 / fh,
                (x + bw) as f64 / fw,
                (y + bh) as f64 / fh
            );
            ends.push(line.len());
        }
        line.push_str("]}\n");
        first
    }

    /// For UDP: a frame line longer than one datagram becomes several lines, each a complete JSON object with
    /// the frame's fields, `part` (0-based), `parts`, and as many whole detections as fit. A single detection
    /// that alone exceeds a datagram (an absurd label) is left out of them and counted as lost.
    /// `first` and `ends` are where `format_frame` put the detections.
    fn split_for_datagrams(&self, line: &str, first: usize, ends: &[usize]) -> Vec<Vec<u8>> {
        const MARK: &str = ",\"detections\":[";
        let head = &line[..first - MARK.len()];
        let starts = std::iter::once(first).chain(ends.iter().map(|e| e + 1));
        let detections = starts.zip(ends).map(|(start, &end)| &line[start..end]);
        let room = MAX_DATAGRAM.saturating_sub(head.len() + 64);
        let mut groups: Vec<Vec<&str>> = vec![Vec::new()];
        let mut used = 0;
        for d in detections {
            if d.len() + 1 > room {
                self.lost.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                continue;
            }
            if used + d.len() + 1 > room {
                groups.push(Vec::new());
                used = 0;
            }
            used += d.len() + 1;
            groups.last_mut().expect("never empty").push(d);
        }
        let parts = groups.len();
        groups
            .iter()
            .enumerate()
            .map(|(i, g)| format!("{head},\"part\":{i},\"parts\":{parts}{MARK}{}]}}\n", g.join(",")).into_bytes())
            .collect()
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
                    .blurb("This device's name in a fleet: the MQTT client id (default: the host name)")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("outbox")
                    .nick("Outbox folder")
                    .blurb("MQTT: folder of the on-disk outbox (default: $XDG_STATE_HOME/mobilenetdetect/outbox/DEVICE/LOCATION); lines not yet acknowledged by the broker are kept there across restarts")
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
                    .blurb("UDP only: frames whose line exceeded one datagram (65507 bytes) and went out as several lines with 'part' and 'parts'")
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
        let udp = location.starts_with("udp://");
        let open_failed = |e: String| gst::error_msg!(gst::ResourceError::OpenWrite, ["{}", e]);
        let (out, publisher) = match super::mqtt::Target::parse(&location) {
            None => (Output::open(&location).map_err(open_failed)?, None),
            Some(target) => {
                let target = target.map_err(|e| gst::error_msg!(gst::ResourceError::Settings, ["{}", e]))?;
                let dir = settings
                    .outbox
                    .clone()
                    .map(std::path::PathBuf::from)
                    .unwrap_or_else(|| default_outbox(&settings.device_id, &location));
                let (appender, reader) = super::outbox::open(&dir).map_err(open_failed)?;
                let credentials = super::mqtt::Credentials {
                    client_id: settings.device_id.clone(),
                    username: settings.username.clone(),
                    password: settings.password.clone(),
                    ca_file: settings.tls_ca_file.clone().map(Into::into),
                };
                let report = BrokerReport(self.obj().clone());
                let publisher = super::mqtt::Publisher::start(target, credentials, reader, report)
                    .map_err(|e| gst::error_msg!(gst::ResourceError::Settings, ["{}", e]))?;
                gst::info!(CAT, imp = self, "lines go through the outbox {}", dir.display());
                (Output::Mqtt(appender), Some(publisher))
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
            line: String::with_capacity(1024),
            detection_ends: Vec::with_capacity(128),
            udp,
            size: (0, 0),
            publisher,
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
        let mut line = std::mem::take(&mut state.line);
        let first = Self::format_frame(
            &mut line,
            &mut state.detection_ends,
            buf.as_ref(),
            state.frame,
            state.size,
            source,
        );
        state.frame += 1;
        // The usual frame is one line; only an oversized UDP frame builds a list of parts.
        let (first, more) = if state.udp && line.len() > MAX_DATAGRAM {
            let n = self.split.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
            gst::debug!(
                CAT,
                imp = self,
                "frame of {} bytes split into datagrams ({n} frames so far)",
                line.len()
            );
            let mut parts = self.split_for_datagrams(&line, first, &state.detection_ends);
            (parts.remove(0), parts)
        } else {
            (line.as_bytes().to_vec(), Vec::new())
        };
        state.line = line;
        let queue = state.writer.queue.clone();
        drop(guard);
        for bytes in std::iter::once(first).chain(more) {
            queue.send(bytes).map_err(|_| {
                gst::element_imp_error!(self, gst::ResourceError::Write, ["the JSON writer stopped"]);
                gst::FlowError::Error
            })?;
        }
        Ok(gst::FlowSuccess::Ok)
    }
}
