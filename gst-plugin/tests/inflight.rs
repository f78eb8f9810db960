//! `inflight=N`: several frames inferred at once on one session leave in order, each with exactly the
//! detections it gets when frames are inferred one at a time, also with `interval` and across EOS.

mod common;
use common::*;
use gst::prelude::*;
use std::sync::{Arc, Mutex};

/// (PTS, detections, inference-pts of the first detection) per buffer reaching the sink.
type Seen = Vec<(u64, Vec<Roi>, Option<u64>)>;

fn run(model: &str, inflight: u32, interval: u32) -> Seen {
    let p = pipeline(&format!(
        "detecttestsrc num-buffers=36 seed=5 ! video/x-raw,format=I420,width=320,height=240,framerate=30/1 ! \
         mobilenetdetect name=d model={model} score-threshold=0.05 threads=1 inflight={inflight} interval={interval} ! \
         fakesink name=sink"
    ));
    let seen = Arc::new(Mutex::new(Seen::new()));
    let s = seen.clone();
    p.by_name("sink")
        .unwrap()
        .static_pad("sink")
        .unwrap()
        .add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            let buf = info.buffer().unwrap();
            let inference_pts = inference_pts(buf);
            s.lock()
                .unwrap()
                .push((buf.pts().unwrap().nseconds(), rois(buf), inference_pts));
            gst::PadProbeReturn::Ok
        });
    play_to_eos(&p);
    p.set_state(gst::State::Null).unwrap();
    seen.lock().unwrap().clone()
}

#[test]
fn frames_in_flight_leave_in_order_with_their_own_detections() {
    let model = write_model(
        "inflight",
        &mobilenetdetect_testkit::ssdlite::build(&["stop", "yield", "speed-limit", "pedestrian"], 42),
    );
    for interval in [1, 2] {
        let one = run(&model, 1, interval);
        assert_eq!(one.len(), 36, "every frame comes out");
        let with_detections = one.iter().filter(|(_, r, _)| !r.is_empty()).count();
        assert!(
            with_detections > 10,
            "the check needs detections: {with_detections} frames have some"
        );
        let distinct: std::collections::HashSet<String> = one.iter().map(|(_, r, _)| format!("{r:?}")).collect();
        assert!(
            distinct.len() > 5,
            "detections must differ from frame to frame for the check to mean anything"
        );
        for (i, (pts, rois, inference_pts)) in one.iter().enumerate() {
            if !rois.is_empty() {
                // Each inferred frame carries its own detections, the ones in between those of the last inferred.
                let expected = one[i - i % interval as usize].0;
                assert_eq!(*inference_pts, Some(expected), "frame at {pts}");
            }
        }
        for inflight in [2, 3] {
            let many = run(&model, inflight, interval);
            assert_eq!(
                many.len(),
                one.len(),
                "inflight={inflight} interval={interval}: every frame comes out"
            );
            assert!(many.windows(2).all(|w| w[0].0 < w[1].0), "frames leave in order");
            assert_eq!(
                many, one,
                "inflight={inflight} interval={interval}: same detections per frame"
            );
        }
    }
}
