use crate::roimeta::{BoxSource, boxes};
use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::subclass::prelude::*;
use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{LazyLock, Mutex};
use std::thread::JoinHandle;

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

#[derive(Debug, Clone)]
struct Settings {
    location: String,
    source: BoxSource,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            location: DEFAULT_LOCATION.into(),
            source: BoxSource::Detections,
        }
    }
}

enum Output {
    Stdout,
    File(std::io::BufWriter<std::fs::File>),
    Udp(std::net::UdpSocket, std::net::SocketAddr),
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
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Output::File(f) => f.flush(),
            _ => Ok(()),
        }
    }
}

enum Job {
    Line(Vec<u8>),
    /// Flush and acknowledge (EOS): the element holds EOS until every line is written.
    Drain(SyncSender<()>),
}

struct State {
    sender: SyncSender<Job>,
    writer: Option<JoinHandle<()>>,
    frame: u64,
    line: String,
    /// Frame size from the negotiated caps.
    size: (u32, u32),
}

#[derive(Default)]
pub struct DetectionJson {
    settings: Mutex<Settings>,
    state: Mutex<Option<State>>,
}

fn writer_loop(element: super::DetectionJson, mut out: Output, jobs: Receiver<Job>, location: String) {
    for job in jobs {
        let result = match job {
            Job::Line(l) => out.write_line(&l),
            Job::Drain(ack) => {
                let r = out.flush();
                let _ = ack.send(());
                r
            }
        };
        if let Err(e) = result {
            gst::element_error!(
                element,
                gst::ResourceError::Write,
                ("cannot write to {}: {}", location, e)
            );
            return;
        }
    }
    if let Err(e) = out.flush() {
        gst::element_error!(
            element,
            gst::ResourceError::Write,
            ("cannot write to {}: {}", location, e)
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
    fn format_frame(line: &mut String, buf: &gst::BufferRef, frame: u64, (w, h): (u32, u32), source: BoxSource) {
        line.clear();
        let _ = write!(line, "{{\"frame\":{frame},\"timestamp\":");
        match buf.pts() {
            Some(t) => {
                let _ = write!(line, "{}", t.nseconds());
            }
            None => line.push_str("null"),
        }
        let _ = write!(line, ",\"width\":{w},\"height\":{h},\"detections\":[");
        for (i, b) in boxes(buf, source).enumerate() {
            if i > 0 {
                line.push(',');
            }
            let (x, y, bw, bh) = b.rect;
            line.push_str("{\"label\":");
            json_string(line, b.label);
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
        }
        line.push_str("]}\n");
    }

    fn drain(&self) {
        let sender = self.state.lock().unwrap().as_ref().map(|s| s.sender.clone());
        if let Some(sender) = sender {
            let (ack, done) = sync_channel(1);
            if sender.send(Job::Drain(ack)).is_ok() {
                let _ = done.recv();
            }
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
                    .blurb("Where the JSON lines go: a file path, '-' for stdout, or udp://HOST:PORT (one datagram per frame)")
                    .default_value(Some(DEFAULT_LOCATION))
                    .mutable_ready()
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
            other => unimplemented!("property {other}"),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let s = self.settings.lock().unwrap();
        match pspec.name() {
            "location" => s.location.to_value(),
            "source" => s.source.to_value(),
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
        static PAD_TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            let caps = gst::Caps::new_empty_simple("video/x-raw");
            vec![
                gst::PadTemplate::new("src", gst::PadDirection::Src, gst::PadPresence::Always, &caps).unwrap(),
                gst::PadTemplate::new("sink", gst::PadDirection::Sink, gst::PadPresence::Always, &caps).unwrap(),
            ]
        });
        PAD_TEMPLATES.as_ref()
    }
}

impl BaseTransformImpl for DetectionJson {
    const MODE: gst_base::subclass::BaseTransformMode = gst_base::subclass::BaseTransformMode::AlwaysInPlace;
    const PASSTHROUGH_ON_SAME_CAPS: bool = true;
    const TRANSFORM_IP_ON_PASSTHROUGH: bool = true;

    fn start(&self) -> Result<(), gst::ErrorMessage> {
        let location = self.settings.lock().unwrap().location.clone();
        let out = Output::open(&location).map_err(|e| gst::error_msg!(gst::ResourceError::OpenWrite, ["{}", e]))?;
        let (sender, jobs) = sync_channel(QUEUE_LINES);
        let element = self.obj().clone();
        let writer = std::thread::Builder::new()
            .name("detectionjson-writer".into())
            .spawn(move || writer_loop(element, out, jobs, location))
            .map_err(|e| gst::error_msg!(gst::CoreError::Thread, ["cannot start the writer thread: {}", e]))?;
        *self.state.lock().unwrap() = Some(State {
            sender,
            writer: Some(writer),
            frame: 0,
            line: String::with_capacity(1024),
            size: (0, 0),
        });
        gst::debug!(CAT, imp = self, "started");
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        if let Some(mut state) = self.state.lock().unwrap().take() {
            let writer = state.writer.take();
            drop(state);
            if let Some(w) = writer {
                let _ = w.join();
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
        Self::format_frame(&mut line, buf.as_ref(), state.frame, state.size, source);
        state.frame += 1;
        let bytes = line.as_bytes().to_vec();
        state.line = line;
        let sender = state.sender.clone();
        drop(guard);
        sender.send(Job::Line(bytes)).map_err(|_| {
            gst::element_imp_error!(self, gst::ResourceError::Write, ["the JSON writer stopped"]);
            gst::FlowError::Error
        })?;
        Ok(gst::FlowSuccess::Ok)
    }
}
