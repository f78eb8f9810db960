//! `detectionjson` when the other end misbehaves: a frame too large for one UDP datagram, a stdout that was
//! closed. The pipeline goes on; what cannot be written is counted and warned about.

mod common;
use common::*;
use detection_common::metadata as meta;
use gst::prelude::*;
use mobilenetdetect_testkit::models::{self, ImageInput};
use std::process::Stdio;

#[test]
fn a_frame_larger_than_a_datagram_is_split_into_complete_json_lines() {
    // 400 detections with a 200-character label: about 160 KB of JSON per frame.
    let n = 400;
    let boxes: Vec<[f32; 4]> = (0..n)
        .map(|i| {
            let (x, y) = ((i % 20) as f32 / 20.0, (i / 20) as f32 / 20.0);
            [x, y, x + 0.04, y + 0.04]
        })
        .collect();
    let scores: Vec<Vec<f32>> = (0..n).map(|_| vec![0.0, 0.9]).collect();
    let label = "a".repeat(200);
    let model = write_model(
        "json-split",
        &models::decoded_model(
            ImageInput::nchw(32, 32),
            &boxes,
            &scores,
            ("boxes", "scores"),
            &[(meta::KEY_LABELS, &format!("BACKGROUND\n{label}\n"))],
        ),
    );
    let receiver = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    receiver
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    // Room for every datagram of the run: nothing is read until the pipeline ends.
    enlarge_receive_buffer(&receiver);
    let frames = 3;
    let p = pipeline(&format!(
        "videotestsrc num-buffers={frames} ! video/x-raw,width=200,height=200 ! \
         mobilenetdetect model={model} max-detections=1000 iou-threshold=1.0 ! \
         detectionjson name=j location=udp://{} ! fakesink",
        receiver.local_addr().unwrap()
    ));
    play_to_eos(&p);
    let j = p.by_name("j").unwrap();
    assert_eq!(j.property::<u64>("split"), frames);
    assert_eq!(j.property::<u64>("lost"), 0);
    p.set_state(gst::State::Null).unwrap();

    let mut per_frame = std::collections::BTreeMap::<u64, (usize, u64)>::new();
    let mut buf = vec![0u8; 70_000];
    while let Ok(len) = receiver.recv(&mut buf) {
        assert!(len <= 65_507);
        let v: serde_json::Value = serde_json::from_slice(&buf[..len]).expect("each datagram is a JSON object");
        let entry = per_frame.entry(v["frame"].as_u64().unwrap()).or_default();
        entry.0 += v["detections"].as_array().unwrap().len();
        entry.1 = v["parts"].as_u64().unwrap();
        if per_frame.len() == frames as usize && per_frame.values().all(|(d, _)| *d == n) {
            break;
        }
    }
    assert_eq!(per_frame.len(), frames as usize, "{per_frame:?}");
    for (frame, (detections, parts)) in per_frame {
        assert_eq!(detections, n, "frame {frame}");
        assert!(parts >= 3, "frame {frame}: {parts} parts");
    }
}

/// Enlarges the receive buffer so that datagrams sent before anyone reads are kept.
fn enlarge_receive_buffer(socket: &std::net::UdpSocket) {
    use std::os::fd::AsRawFd;
    let size: libc::c_int = 4 << 20;
    // SAFETY: setsockopt on a valid socket with a pointer to a live c_int of the stated size.
    unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            &size as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

#[test]
fn a_closed_stdout_is_a_warning_not_a_dead_pipeline() {
    let mut child = gst_launch(
        "detecttestsrc num-buffers=200 ! video/x-raw,width=64,height=64 ! \
         detectionjson source=ground-truth location=- ! fakesink",
    )
    .stdout(Stdio::piped())
    .env("GST_DEBUG", "detectionjson:2")
    .spawn()
    .unwrap();
    // The reader goes away before the first line (like `| head -0`).
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "gst-launch-1.0 ended with {:?}: {stderr}",
        out.status
    );
    assert!(
        stderr.contains("Broken pipe") || stderr.contains("os error 32"),
        "{stderr}"
    );
}
