//! Concurrent inference on one session: requests run at once on the worker pool give exactly the detections
//! the same tensors give one at a time, each result comes back under its own id, and a failing run is
//! reported, not lost.

use detection_common::Detection;
use detection_inference::pixels::{Colorimetry, Frame, PixelFormat};
use detection_inference::pool::{InferencePool, Request};
use detection_inference::preprocess::{Preprocessor, ResizeMode, TensorOut};
use detection_inference::{ClassGate, Model, ModelOptions, PostProcess, Provider};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

fn ssdlite(name: &str) -> Arc<Model> {
    let path = std::env::temp_dir().join(format!("mobilenetdetect-pool-{}-{name}.onnx", std::process::id()));
    std::fs::write(&path, mobilenetdetect_testkit::ssdlite::build(&["a", "b", "c"], 7)).unwrap();
    let model = Model::shared(&ModelOptions {
        path: path.clone(),
        providers: vec![Provider::Cpu],
        threads: 1,
        ..Default::default()
    })
    .unwrap();
    std::fs::remove_file(&path).unwrap();
    assert!(model.concurrent_runs(), "the CPU provider runs requests at once");
    model.allow_runs_at_once(3);
    model
}

/// Tensors of distinct RGB frames (a different gradient each).
fn tensors(model: &Model, n: usize) -> Vec<TensorOut> {
    let (w, h) = (96u32, 72u32);
    let spec = model.input.tensor_spec(w, h);
    let mut pre = Preprocessor::new(
        PixelFormat::Rgb,
        (w, h),
        Colorimetry::BT601_LIMITED,
        spec,
        ResizeMode::Stretch,
    )
    .unwrap();
    (0..n)
        .map(|k| {
            let pixels: Vec<u8> = (0..(w * h * 3) as usize)
                .map(|i| ((i * (k + 3) + k * 41) % 253) as u8)
                .collect();
            let frame = Frame {
                format: PixelFormat::Rgb,
                width: w,
                height: h,
                colorimetry: Colorimetry::BT601_LIMITED,
                planes: [(&pixels[..], (w * 3) as i32), (&[], 0), (&[], 0)],
            };
            pre.process(&frame).unwrap();
            pre.take_output(None)
        })
        .collect()
}

#[test]
fn concurrent_runs_give_the_detections_of_sequential_runs() {
    let model = ssdlite("concurrent");
    let post = Arc::new(PostProcess {
        gate: ClassGate::new(0.02, "", "", &model.labels).unwrap(),
        iou_threshold: 0.6,
        max_detections: 100,
    });
    let inputs = tensors(&model, 6);
    let expected: Vec<Vec<Detection>> = inputs
        .iter()
        .map(|t| {
            let mut out = Vec::new();
            model.detect(&t.spec, &t.f32s, &t.u8s, &post, &mut out).unwrap();
            out
        })
        .collect();
    assert!(
        expected.iter().any(|d| !d.is_empty()),
        "the check needs detections to compare"
    );

    let mut pool = InferencePool::new(3, "pool-test", Duration::ZERO).unwrap();
    assert_eq!(pool.capacity(), 3);
    let mut spare = inputs;
    for round in 0..5u64 {
        let mut results = HashMap::new();
        for (i, tensor) in spare.drain(..).enumerate() {
            pool.submit(Request {
                id: round * 100 + i as u64,
                model: model.clone(),
                post: post.clone(),
                tensor,
                detections: Vec::new(),
            });
        }
        assert_eq!(pool.in_flight(), 6);
        while let Some(f) = pool.wait_finished() {
            assert!(f.error.is_none(), "{:?}", f.error);
            results.insert(f.id, (f.tensor, f.detections));
        }
        assert_eq!(pool.in_flight(), 0);
        assert!(pool.try_finished().is_none());
        for i in 0..6u64 {
            let (tensor, detections) = results.remove(&(round * 100 + i)).expect("every id comes back once");
            assert_eq!(detections, expected[i as usize], "request {i} of round {round}");
            spare.push(tensor);
        }
    }
}

#[test]
fn a_failing_run_comes_back_with_its_error() {
    let model = ssdlite("failing");
    let post = Arc::new(PostProcess {
        gate: ClassGate::new(0.5, "", "", &model.labels).unwrap(),
        iou_threshold: 0.6,
        max_detections: 10,
    });
    let mut tensor = tensors(&model, 1).pop().unwrap();
    // A tensor shorter than its spec says: the run must fail cleanly.
    tensor.f32s.truncate(10);
    let mut pool = InferencePool::new(1, "pool-test", Duration::ZERO).unwrap();
    pool.submit(Request {
        id: 9,
        model,
        post,
        tensor,
        detections: Vec::new(),
    });
    let f = pool.wait_finished().expect("the request comes back");
    assert_eq!(f.id, 9);
    let error = f.error.expect("an error");
    assert!(error.contains("input tensor"), "{error}");
    assert!(pool.wait_finished().is_none());
}
