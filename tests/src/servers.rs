//! The real servers the fleet tests talk to, started on free 127.0.0.1 ports and stopped when dropped: Debian's
//! Mosquitto (MQTT broker), moto's server mode (an S3 implementation over HTTP, from PyPI; scripts/setup
//! installs it into .deps/s3-venv), Debian's Prometheus and Label Studio (PyPI, in .deps/label-studio-venv). On a machine without one, a test is skipped with a note, except under CI,
//! where a missing server fails it.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn missing(what: &str, how: &str) {
    assert!(std::env::var_os("CI").is_none(), "{what} is missing: {how}");
    eprintln!("skipped: {what} is missing ({how})");
}

fn wait_listening(port: u16, what: &str, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "{what} did not listen on port {port}; its log ({}):\n{}",
            log.display(),
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// SIGTERM, as a service manager stops a server, then wait.
fn terminate(child: &mut Child) {
    // SAFETY: signalling our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let _ = child.wait();
}

/// A Mosquitto broker on 127.0.0.1 with persistence in its folder (subscriptions and queued messages survive a
/// restart, as on a real server).
pub struct Broker {
    exe: PathBuf,
    dir: PathBuf,
    pub port: u16,
    child: Option<Child>,
}

impl Broker {
    /// The broker's configuration in `dir`, not yet started; None (test skipped) without Mosquitto.
    pub fn new(dir: &Path) -> Option<Broker> {
        Self::with_config(dir, "")
    }

    /// The same with `extra` lines of Mosquitto configuration (e.g. `max_packet_size 100000`).
    pub fn with_config(dir: &Path, extra: &str) -> Option<Broker> {
        let exe = ["/usr/sbin/mosquitto", "/usr/bin/mosquitto", "/usr/local/sbin/mosquitto"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.exists());
        let Some(exe) = exe else {
            missing("mosquitto", "scripts/setup installs it (Debian package 'mosquitto')");
            return None;
        };
        let port = free_port();
        // Started as root, Mosquitto switches to the user 'mosquitto', which cannot write its persistence file
        // into our folder ("Error saving in-memory database ... Permission denied"): sessions and queued messages
        // would then not survive a restart. `user root` keeps it as it is (the setting is ignored otherwise).
        // SAFETY: geteuid has no preconditions.
        let user = if unsafe { libc::geteuid() } == 0 {
            "user root\n"
        } else {
            ""
        };
        // The default limit of 1000 queued messages per client drops QoS 1 messages for a subscriber that falls
        // behind a burst (a loaded CI machine); the tests count every message.
        std::fs::write(
            dir.join("mosquitto.conf"),
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location {}/\n\
                 max_queued_messages 0\n{user}{extra}\n",
                dir.display()
            ),
        )
        .unwrap();
        Some(Broker {
            exe,
            dir: dir.to_path_buf(),
            port,
            child: None,
        })
    }

    pub fn start(&mut self) {
        let log_path = self.dir.join("mosquitto.log");
        let log = std::fs::File::create(&log_path).unwrap();
        let child = Command::new(&self.exe)
            .arg("-c")
            .arg(self.dir.join("mosquitto.conf"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("mosquitto starts");
        self.child = Some(child);
        wait_listening(self.port, "mosquitto", &log_path);
    }

    /// What the broker has logged so far (connections, takeovers, refused packets).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("mosquitto.log")).unwrap_or_default()
    }

    /// SIGTERM (it saves its persistence file).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            terminate(&mut c);
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop();
    }
}

/// moto's S3 server (`moto_server`) on 127.0.0.1; it keeps objects in memory, like a fresh bucket per test.
pub struct S3Server {
    pub port: u16,
    child: Child,
}

/// The moto_server scripts/setup installs, or MOBILENETDETECT_MOTO_SERVER.
fn moto_server() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("MOBILENETDETECT_MOTO_SERVER") {
        return Some(PathBuf::from(p));
    }
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.deps/s3-venv/bin/moto_server");
    p.exists().then_some(p)
}

impl S3Server {
    /// Starts a server logging to `dir`; None (test skipped) when moto is not installed.
    pub fn start(dir: &Path) -> Option<S3Server> {
        Self::start_on(dir, free_port())
    }

    /// The same on `port` (a server that comes back where clients expect it).
    pub fn start_on(dir: &Path, port: u16) -> Option<S3Server> {
        let Some(exe) = moto_server() else {
            missing(
                "moto_server",
                "scripts/setup installs PyPI's moto[server] into .deps/s3-venv",
            );
            return None;
        };
        let log_path = dir.join("moto.log");
        let log = std::fs::File::create(&log_path).unwrap();
        let child = Command::new(exe)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("moto_server starts");
        let server = S3Server { port, child };
        wait_listening(port, "moto_server", &log_path);
        Some(server)
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The environment a client of this server needs (any credentials are accepted).
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint()),
            ("AWS_ACCESS_KEY_ID", "fleet-test".into()),
            ("AWS_SECRET_ACCESS_KEY", "fleet-test-secret".into()),
            ("AWS_REGION", "us-east-1".into()),
        ]
    }

    /// Sets `env()` in this process (for elements created in-process).
    pub fn export_env(&self) {
        for (k, v) in self.env() {
            // SAFETY: tests set these before starting any pipeline thread that reads the environment.
            unsafe { std::env::set_var(k, v) };
        }
    }

    /// Creates a bucket (moto accepts unsigned requests).
    pub fn create_bucket(&self, name: &str) {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        write!(
            s,
            "PUT /{name} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.port
        )
        .unwrap();
        let mut reply = String::new();
        s.read_to_string(&mut reply).unwrap();
        assert!(reply.starts_with("HTTP/1.1 200"), "creating bucket {name}: {reply}");
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        terminate(&mut self.child);
    }
}

/// A server that accepts connections and never answers: what a hung S3 endpoint or a black-holing proxy looks
/// like to a client. Stops (closing every connection) when dropped.
pub struct StalledServer {
    pub port: u16,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl StalledServer {
    pub fn start() -> StalledServer {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut held = Vec::new();
            while !flag.load(std::sync::atomic::Ordering::SeqCst) {
                match listener.accept() {
                    Ok((conn, _)) => held.push(conn),
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        StalledServer {
            port,
            stop,
            thread: Some(thread),
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for StalledServer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Debian's Prometheus on 127.0.0.1, scraping `targets` (HOST:PORT, path /metrics) every 500 ms, with its data in
/// its folder; None (test skipped) when it is not installed (scripts/setup --for-tests installs it).
pub struct Prometheus {
    pub port: u16,
    child: Child,
}

impl Prometheus {
    pub fn start(dir: &Path, targets: &[String]) -> Option<Prometheus> {
        let exe = std::env::var_os("MOBILENETDETECT_PROMETHEUS")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/usr/bin/prometheus"));
        if !exe.exists() {
            missing(
                "prometheus",
                "scripts/setup --for-tests installs Debian's prometheus package",
            );
            return None;
        }
        let config = dir.join("prometheus.yml");
        let quoted: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 500ms\n  scrape_timeout: 400ms\nscrape_configs:\n  - job_name: pipeline\n    \
                 static_configs:\n      - targets: [{}]\n",
                quoted.join(", ")
            ),
        )
        .unwrap();
        let port = free_port();
        let log_path = dir.join("prometheus.log");
        let log = std::fs::File::create(&log_path).unwrap();
        let child = Command::new(exe)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("prometheus-data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("prometheus starts");
        let server = Prometheus { port, child };
        wait_listening(port, "prometheus", &log_path);
        Some(server)
    }

    /// The body of `GET path` on the server's HTTP API (e.g. `/api/v1/query?query=up`).
    pub fn get(&self, path: &str) -> String {
        http_get(self.port, path)
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        terminate(&mut self.child);
    }
}

/// The body of a plain HTTP/1.1 `GET path` on 127.0.0.1:`port` (empty when the server does not answer).
pub fn http_get(port: u16, path: &str) -> String {
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    );
    let mut reply = String::new();
    let _ = s.read_to_string(&mut reply);
    reply
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default()
}

/// The Python of the Label Studio that scripts/setup installs, or MOBILENETDETECT_LABEL_STUDIO_VENV's.
fn label_studio_venv() -> Option<PathBuf> {
    let venv = std::env::var_os("MOBILENETDETECT_LABEL_STUDIO_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.deps/label-studio-venv"));
    venv.join("bin/label-studio").exists().then_some(venv)
}

/// Signs in through the web form as a person does and creates a personal access token (Account & Settings >
/// Personal Access Token): Label Studio 1.23 accepts no legacy tokens in a new organization.
const CREATE_TOKEN: &str = r#"
import sys, requests
base, email, password = sys.argv[1:4]
s = requests.Session()
s.get(base + "/user/login/").raise_for_status()
r = s.post(base + "/user/login/", data={"email": email, "password": password,
           "csrfmiddlewaretoken": s.cookies["csrftoken"]}, headers={"Referer": base + "/user/login/"},
           allow_redirects=False)
assert r.status_code in (302, 303), (r.status_code, r.text[:500])
r = s.post(base + "/api/token/", headers={"X-CSRFToken": s.cookies["csrftoken"], "Referer": base + "/"})
r.raise_for_status()
print(r.json()["token"])
"#;

/// Label Studio (PyPI `label-studio`, SQLite in its folder) on 127.0.0.1 with one user and a personal access
/// token for it; None (test skipped) when it is not installed (scripts/setup --for-tests installs it).
pub struct LabelStudio {
    pub port: u16,
    /// A personal access token of the user.
    pub token: String,
    child: Child,
}

impl LabelStudio {
    pub fn start(dir: &Path) -> Option<LabelStudio> {
        let Some(venv) = label_studio_venv() else {
            missing(
                "label-studio",
                "scripts/setup --for-tests installs PyPI's label-studio into .deps/label-studio-venv",
            );
            return None;
        };
        let port = free_port();
        let (email, password) = ("reviewer@example.org", "review-pass-1234");
        let log_path = dir.join("label-studio.log");
        let log = std::fs::File::create(&log_path).unwrap();
        let child = Command::new(venv.join("bin/label-studio"))
            .args([
                "start",
                "--no-browser",
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
            ])
            .args(["--username", email, "--password", password])
            .env("LABEL_STUDIO_BASE_DATA_DIR", dir.join("label-studio-data"))
            // Nothing leaves the machine: no version check against PyPI, no analytics.
            .env("LATEST_VERSION_CHECK", "false")
            .env("COLLECT_ANALYTICS", "false")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("label-studio starts");
        let mut server = LabelStudio {
            port,
            token: String::new(),
            child,
        };
        // A first start creates its SQLite database: tens of seconds on 2 cores, more under a parallel test run.
        let deadline = Instant::now() + Duration::from_secs(300);
        while !http_get(port, "/api/version").contains("release") {
            let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
            assert!(
                server.child.try_wait().unwrap().is_none(),
                "label-studio exited; its log:\n{}",
                log()
            );
            assert!(
                Instant::now() < deadline,
                "label-studio did not answer in 300 s; its log:\n{}",
                log()
            );
            std::thread::sleep(Duration::from_millis(500));
        }
        let out = Command::new(venv.join("bin/python"))
            .args(["-c", CREATE_TOKEN, &server.url(), email, password])
            .output()
            .expect("the venv's python runs");
        assert!(
            out.status.success(),
            "creating a token: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        server.token = String::from_utf8(out.stdout).unwrap().trim().to_string();
        Some(server)
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for LabelStudio {
    fn drop(&mut self) {
        terminate(&mut self.child);
    }
}
