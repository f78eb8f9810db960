//! Runs a pipeline containing `mobilenetdetect post-messages=true` and prints what it detects, frame by frame.
//!
//!     cargo run --release -p gst-plugin-mobilenetdetect --example detect -- 'videotestsrc ... ! mobilenetdetect ... ! fakesink'

use gst::prelude::*;
use std::process::ExitCode;

fn main() -> ExitCode {
    let launch = std::env::args().skip(1).collect::<Vec<_>>().join(" ");
    if launch.is_empty() {
        eprintln!("usage: detect 'PIPELINE' (with mobilenetdetect post-messages=true in it)");
        return ExitCode::from(2);
    }
    gst::init().expect("GStreamer initialises");
    // Use this build of the plugin even when another one is installed.
    let _ = gstmobilenetdetect::plugin_register_static();
    let pipeline = match gst::parse::launch(&launch) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("bad pipeline: {e}");
            return ExitCode::from(2);
        }
    };
    if pipeline.set_state(gst::State::Playing).is_err() {
        // The error message on the bus says why.
    }
    let bus = pipeline.bus().expect("pipelines have a bus");
    let (mut frames, mut frames_with, mut total) = (0u64, 0u64, 0u64);
    let mut status = ExitCode::SUCCESS;
    for msg in bus.iter_timed(gst::ClockTime::NONE) {
        match msg.view() {
            gst::MessageView::Element(e) if e.structure().is_some_and(|s| s.name() == "mobilenetdetect") => {
                let s = e.structure().unwrap();
                let ts = s.get::<u64>("timestamp").unwrap_or(u64::MAX);
                let list = s
                    .get::<gst::List>("detections")
                    .unwrap_or_else(|_| gst::List::new::<i32>([]));
                frames += 1;
                total += list.len() as u64;
                frames_with += (!list.is_empty()) as u64;
                let mut line = format!("{:>8.3}s:", ts as f64 / 1e9);
                if list.is_empty() {
                    line.push_str(" nothing");
                }
                for d in list.iter() {
                    let d = d.get::<gst::Structure>().expect("detection structures");
                    line.push_str(&format!(
                        " {} {:.2} at x={} y={} {}x{};",
                        d.get::<String>("label").unwrap_or_default(),
                        d.get::<f64>("confidence").unwrap_or(0.0),
                        d.get::<u32>("x").unwrap_or(0),
                        d.get::<u32>("y").unwrap_or(0),
                        d.get::<u32>("width").unwrap_or(0),
                        d.get::<u32>("height").unwrap_or(0),
                    ));
                }
                println!("{line}");
            }
            gst::MessageView::Warning(w) => eprintln!("warning: {} ({:?})", w.error(), w.debug()),
            gst::MessageView::Error(e) => {
                eprintln!("error from {:?}: {}", e.src().map(|s| s.path_string()), e.error());
                if let Some(d) = e.debug() {
                    eprintln!("  {d}");
                }
                status = ExitCode::FAILURE;
                break;
            }
            gst::MessageView::Eos(_) => break,
            _ => {}
        }
    }
    let _ = pipeline.set_state(gst::State::Null);
    println!("{frames} frames inferred, {frames_with} with detections, {total} detections in all");
    status
}
