//! Writes the models the demo and the benchmark use, built from code:
//!   mobilenetdetect-models blob OUT.onnx      bright-blob detector (finds videotestsrc pattern=ball)
//!   mobilenetdetect-models ssdlite OUT.onnx   SSDLite-MobileNetV2 300x300, seeded random weights

use detection_common::files::write_atomically;
use mobilenetdetect_testkit::{models, ssdlite};
use std::path::Path;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (kind, out) = match args.as_slice() {
        [k, o] => (k.as_str(), o.as_str()),
        _ => {
            eprintln!("usage: mobilenetdetect-models blob|ssdlite OUT.onnx");
            return ExitCode::from(2);
        }
    };
    let bytes = match kind {
        "blob" => models::blob_detector_model(320, 240, "ball"),
        "ssdlite" => ssdlite::build(&["stop", "yield", "speed-limit", "pedestrian"], 42),
        other => {
            eprintln!("unknown model kind '{other}' (blob, ssdlite)");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = write_atomically(Path::new(out), &bytes) {
        eprintln!("cannot write {out}: {e}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
