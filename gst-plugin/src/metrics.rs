//! Every element's counters at one Prometheus text endpoint per process (`GET /metrics`), turned on without
//! touching the pipeline by `MOBILENETDETECT_METRICS_ADDRESS=HOST:PORT` in the environment, or by the
//! `metrics-address` property of any `mobilenetdetect`. Elements register a [`Source`] when they are created;
//! their figures are read when Prometheus scrapes, so the streaming threads only bump atomics.

use gst::glib;
use gst::prelude::*;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write as _};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, OnceLock};
use std::time::Duration;

pub const ADDRESS_ENV: &str = "MOBILENETDETECT_METRICS_ADDRESS";

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "mobilenetdetect-metrics",
        gst::DebugColorFlags::empty(),
        Some("Prometheus metrics endpoint"),
    )
});

/// One element's figures, written when the endpoint is scraped.
pub trait Source: Send + Sync {
    fn write(&self, element: &gst::Element, out: &mut Exposition);
}

/// An element and what it reports.
type Registered = (glib::WeakRef<gst::Element>, Arc<dyn Source>);

static REGISTRY: Mutex<Vec<Registered>> = Mutex::new(Vec::new());

/// Adds `element`'s figures to the endpoint (dropped when the element is), and starts the endpoint if the
/// environment names an address.
pub fn register(element: &gst::Element, source: Arc<dyn Source>) {
    let mut registry = REGISTRY.lock().unwrap();
    registry.retain(|(e, _)| e.upgrade().is_some());
    registry.push((element.downgrade(), source));
    drop(registry);
    if let Some(address) = std::env::var(ADDRESS_ENV).ok().filter(|a| !a.is_empty())
        && let Err(e) = serve(&address)
    {
        // Reported once per element, not fatal: the pipeline runs without metrics.
        gst::warning!(CAT, obj = element, "{ADDRESS_ENV}: {e}");
        eprintln!("mobilenetdetect: {ADDRESS_ENV}: {e}");
    }
}

/// The address the endpoint listens on, once one was started.
static SERVING: OnceLock<Result<std::net::SocketAddr, String>> = OnceLock::new();

/// Starts the process's endpoint at `address` (`HOST:PORT`; port 0 picks one), or checks that the one running
/// serves there. Returns the address served.
pub fn serve(address: &str) -> Result<std::net::SocketAddr, String> {
    let result = SERVING.get_or_init(|| {
        let listener = TcpListener::bind(address).map_err(|e| format!("cannot serve metrics at {address}: {e}"))?;
        let bound = listener.local_addr().map_err(|e| e.to_string())?;
        std::thread::Builder::new()
            .name("mobilenetdetect-metrics".into())
            .spawn(move || {
                crate::fleet::block_io_signals_in_this_thread();
                for stream in listener.incoming().flatten() {
                    answer(stream);
                }
            })
            .map_err(|e| format!("cannot start the metrics thread: {e}"))?;
        gst::info!(CAT, "serving metrics at http://{bound}/metrics");
        Ok(bound)
    });
    match result {
        Ok(bound) => {
            let same = address == bound.to_string()
                || address
                    .parse::<std::net::SocketAddr>()
                    .is_ok_and(|a| a.port() == 0 || a == *bound);
            if same {
                Ok(*bound)
            } else {
                Err(format!(
                    "metrics are already served at {bound} (one endpoint per process); {address} is not used"
                ))
            }
        }
        Err(e) => Err(e.clone()),
    }
}

/// One request: `GET /metrics` gets the exposition, anything else a 404. A slow client is dropped.
fn answer(mut stream: TcpStream) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
    let mut request = String::new();
    let mut reader = BufReader::new(&stream);
    if reader.read_line(&mut request).is_err() {
        return;
    }
    // The headers are read (and ignored) so that the client sees an orderly close.
    let mut line = String::new();
    while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
        line.clear();
    }
    let path = request.split_whitespace().nth(1).unwrap_or("");
    let (status, body) = if path == "/metrics" || path.starts_with("/metrics?") {
        ("200 OK", exposition())
    } else {
        ("404 Not Found", "only /metrics is served here\n".to_string())
    };
    let _ = write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
}

/// The text exposition of every live element's figures.
pub fn exposition() -> String {
    let sources: Vec<(gst::Element, Arc<dyn Source>)> = REGISTRY
        .lock()
        .unwrap()
        .iter()
        .filter_map(|(e, s)| e.upgrade().map(|e| (e, s.clone())))
        .collect();
    let mut out = Exposition::default();
    for (element, source) in &sources {
        source.write(element, &mut out);
    }
    out.render()
}

/// Samples grouped by metric family, as the text format requires.
#[derive(Default)]
pub struct Exposition {
    families: BTreeMap<&'static str, (&'static str, &'static str, String)>,
}

/// The labels every sample of an element carries: its name and its pipeline's.
fn element_labels(element: &gst::Element) -> String {
    let mut top: gst::Object = element.clone().upcast();
    while let Some(parent) = top.parent() {
        top = parent;
    }
    format!(
        "element=\"{}\",pipeline=\"{}\"",
        escape(&element.name()),
        escape(&top.name())
    )
}

fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

impl Exposition {
    /// One sample of `name` (a counter, gauge or info) for `element`, with `extra` labels.
    pub fn sample(
        &mut self,
        element: &gst::Element,
        (name, kind, help): (&'static str, &'static str, &'static str),
        extra: &[(&str, &str)],
        value: f64,
    ) {
        let family = self.families.entry(name).or_insert((kind, help, String::new()));
        let mut labels = element_labels(element);
        for (k, v) in extra {
            let _ = write!(labels, ",{k}=\"{}\"", escape(v));
        }
        let _ = writeln!(family.2, "{name}{{{labels}}} {value}");
    }

    pub fn histogram(&mut self, element: &gst::Element, name: &'static str, help: &'static str, h: &Histogram) {
        let family = self.families.entry(name).or_insert(("histogram", help, String::new()));
        let labels = element_labels(element);
        let mut cumulative = 0;
        for (bound, count) in Histogram::BOUNDS.iter().zip(&h.buckets) {
            cumulative += count.load(Ordering::Relaxed);
            let _ = writeln!(family.2, "{name}_bucket{{{labels},le=\"{bound}\"}} {cumulative}");
        }
        let count = h.count.load(Ordering::Relaxed);
        let _ = writeln!(family.2, "{name}_bucket{{{labels},le=\"+Inf\"}} {count}");
        let sum = h.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(family.2, "{name}_sum{{{labels}}} {sum}");
        let _ = writeln!(family.2, "{name}_count{{{labels}}} {count}");
    }

    fn render(&self) -> String {
        let mut out = String::new();
        for (name, (kind, help, samples)) in &self.families {
            let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{samples}");
        }
        out
    }
}

/// Durations in seconds, in Prometheus's cumulative buckets.
#[derive(Default)]
pub struct Histogram {
    buckets: [AtomicU64; 12],
    count: AtomicU64,
    sum_us: AtomicU64,
}

impl Histogram {
    /// Upper bounds in seconds: 1 ms to 2.5 s, enough to tell a CPU from an accelerator and a stall.
    const BOUNDS: [f64; 12] = [
        0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56,
    ];

    pub fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        if let Some(i) = Self::BOUNDS.iter().position(|&b| s <= b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }
}

/// Read-only `u64` properties exposed as metrics: (property, metric name, type, help).
pub struct Properties(pub &'static [(&'static str, &'static str, &'static str, &'static str)]);

impl Source for Properties {
    fn write(&self, element: &gst::Element, out: &mut Exposition) {
        for &(property, name, kind, help) in self.0 {
            let value: u64 = element.property(property);
            out.sample(element, (name, kind, help), &[], value as f64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_and_labels_escaped() {
        gst::init().unwrap();
        let h = Histogram::default();
        for ms in [3, 3, 30, 5000] {
            h.observe(Duration::from_millis(ms));
        }
        let element = gst::ElementFactory::make("identity").name("a\"b").build().unwrap();
        let mut out = Exposition::default();
        out.histogram(&element, "x_seconds", "help", &h);
        out.sample(
            &element,
            ("x_total", "counter", "help"),
            &[("class", "stop\nsign")],
            2.0,
        );
        let text = out.render();
        assert!(
            text.contains("x_seconds_bucket{element=\"a\\\"b\",pipeline=\"a\\\"b\",le=\"0.005\"} 2"),
            "{text}"
        );
        assert!(text.contains("le=\"0.04\"} 3"), "{text}");
        assert!(text.contains("le=\"+Inf\"} 4"), "{text}");
        assert!(
            text.contains("x_seconds_count{element=\"a\\\"b\",pipeline=\"a\\\"b\"} 4"),
            "{text}"
        );
        assert!(text.contains("class=\"stop\\nsign\"} 2"), "{text}");
        assert!(text.contains("# TYPE x_total counter"), "{text}");
    }
}
