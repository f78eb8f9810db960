//! Models the tests, benchmarks and demo build themselves with the project's ONNX writer: small graphs with
//! known outputs (so boxes can be checked exactly) and a full-size SSDLite-MobileNetV2 for benchmarking; and the
//! real servers (MQTT broker, S3) the fleet tests run against.

pub mod models;
pub mod servers;
pub mod ssdlite;

use std::path::PathBuf;

/// The `mobilenet-trainer` tests run: `$MOBILENETDETECT_TRAINER` (scripts/test sets it), or the one built beside
/// the test binary.
pub fn trainer_binary() -> PathBuf {
    let exe = std::env::var_os("MOBILENETDETECT_TRAINER")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let deps = std::env::current_exe().unwrap();
            deps.parent().unwrap().parent().unwrap().join("mobilenet-trainer")
        });
    assert!(
        exe.is_file(),
        "build the trainer first (cargo build --release --workspace): {}",
        exe.display()
    );
    exe
}

/// A command's exit status (-1 when killed by a signal) and its stdout followed by its stderr.
pub fn output(command: &mut std::process::Command) -> (i32, String) {
    let out = command.output().expect("the command starts");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}
