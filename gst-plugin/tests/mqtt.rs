//! `detectionjson location=mqtt://…` against a real broker: Debian's Mosquitto, started here on 127.0.0.1 with
//! persistence, restarted mid-stream. Every line arrives, new lines in order (QoS 1: a line whose
//! acknowledgement was lost in the restart may come twice); lines produced while no broker is reachable wait in
//! the on-disk outbox and go out with the next run.

mod common;
use common::*;
use gst::prelude::*;
use mobilenetdetect_testkit::servers::Broker;
use std::path::Path;
use std::time::{Duration, Instant};

/// A subscriber with a persistent session: the frame number of every message, in arrival order.
fn subscribe(port: u16, topic: &str) -> Messages {
    subscribe_json(port, topic, "test-subscriber")
}

fn wait_for(got: &Messages, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while distinct(&frame_numbers(got)) < count && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn distinct(v: &[u64]) -> usize {
    v.iter().collect::<std::collections::HashSet<_>>().len()
}

/// Frames first seen, in arrival order: must be 0, 1, 2, … (a repeat of an earlier frame is a QoS 1 duplicate).
fn first_seen(v: &[u64]) -> Vec<u64> {
    let mut seen = std::collections::HashSet::new();
    v.iter().copied().filter(|f| seen.insert(*f)).collect()
}

fn pipeline_to(port: u16, outbox: &Path, frames: u32) -> gst::Pipeline {
    pipeline_from(port, outbox, frames, true)
}

fn pipeline_from(port: u16, outbox: &Path, frames: u32, live: bool) -> gst::Pipeline {
    pipeline(&format!(
        "detecttestsrc is-live={live} num-buffers={frames} ! video/x-raw,width=160,height=120,framerate=30/1 ! \
         detectionjson name=json location=mqtt://127.0.0.1:{port}/fleet/cam1/detections device-id=cam1 \
         outbox={} source=ground-truth ! fakesink",
        outbox.display()
    ))
}

#[test]
fn every_line_arrives_in_order_across_a_broker_restart() {
    let d = temp_dir("mqtt-restart");
    let Some(mut broker) = Broker::new(&d) else { return };
    broker.start();
    let got = subscribe(broker.port, "fleet/+/detections");
    std::thread::sleep(Duration::from_millis(500));
    let outbox = d.join("outbox");
    let p = pipeline_to(broker.port, &outbox, 120);
    p.set_state(gst::State::Playing).unwrap();
    std::thread::sleep(Duration::from_millis(1200));
    broker.stop();
    std::thread::sleep(Duration::from_millis(1200));
    broker.start();
    let bus = p.bus().unwrap();
    let mut warned = false;
    for msg in bus.iter_timed(gst::ClockTime::from_seconds(30)) {
        match msg.view() {
            gst::MessageView::Eos(_) => break,
            gst::MessageView::Error(e) => panic!("{} {:?}", e.error(), e.debug()),
            gst::MessageView::Warning(w) => warned |= w.error().to_string().contains("outbox"),
            _ => {}
        }
    }
    p.set_state(gst::State::Null).unwrap();
    wait_for(&got, 120);
    let got = frame_numbers(&got);
    eprintln!(
        "{} messages for 120 lines ({} repeated)",
        got.len(),
        got.len() - distinct(&got)
    );
    assert!(warned, "the outage is a warning that names the outbox");
    assert_eq!(
        first_seen(&got),
        (0..120).collect::<Vec<_>>(),
        "every line, new lines in order"
    );
    assert_eq!(
        unacknowledged_lines(&outbox),
        Vec::<String>::new(),
        "everything acknowledged: nothing waits in the outbox"
    );
}

#[test]
fn lines_written_while_no_broker_runs_go_out_with_the_next_run() {
    let d = temp_dir("mqtt-outbox");
    let Some(mut broker) = Broker::new(&d) else { return };
    let outbox = d.join("outbox");
    // No broker: the run ends normally (after the grace period), its lines stay in the outbox. A source as
    // fast as it goes, so the backlog is large enough to time its replay.
    const BACKLOG: usize = 2000;
    let started = Instant::now();
    let p = pipeline_from(broker.port, &outbox, BACKLOG as u32, false);
    play_to_eos(&p);
    p.set_state(gst::State::Null).unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "a missing broker does not hold the pipeline"
    );
    let waiting = unacknowledged_lines(&outbox);
    assert_eq!(waiting.len(), BACKLOG, "the run's lines wait in the outbox");
    let waiting_bytes: usize = waiting.iter().map(|l| l.len() + 1).sum();

    broker.start();
    let got = subscribe(broker.port, "fleet/+/detections");
    std::thread::sleep(Duration::from_millis(500));
    let replay = Instant::now();
    let p = pipeline_to(broker.port, &outbox, 5);
    play_to_eos(&p);
    wait_for(&got, BACKLOG);
    let seconds = replay.elapsed().as_secs_f64();
    p.set_state(gst::State::Null).unwrap();
    let got = frame_numbers(&got);
    eprintln!(
        "outbox replay: {BACKLOG} lines ({} KB) in {seconds:.2} s from the start of the next run: {:.0} lines/s",
        waiting_bytes / 1024,
        BACKLOG as f64 / seconds
    );
    // The first run's frames, then the second's: BACKLOG + 5 messages (dedupe by run is the reader's).
    assert_eq!(got.len(), BACKLOG + 5, "every line once");
    assert_eq!(
        got[..BACKLOG],
        (0..BACKLOG as u64).collect::<Vec<_>>()[..],
        "the waiting lines first, in order"
    );
    assert_eq!(got[BACKLOG..], (0..5).collect::<Vec<_>>()[..], "then the new run's");
}
