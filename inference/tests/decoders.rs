//! Property test: the three output decoders take any output tensors a model may return — wrong shapes,
//! shapes that lie about the data, NaN, infinities, huge values — without panicking, and every detection they
//! keep is usable: a finite score that passed its class threshold, a box inside the tensor with a positive area, a foreground class.
//! 10,000 generated cases per decoder.

use detection_common::Detection;
use detection_common::boxes::{Anchor, BoxEncoding};
use detection_common::labels::Labels;
use detection_common::metadata::{BoxOrder, ScoreActivation};
use detection_inference::ClassGate;
use detection_inference::decode::Decoder;
use proptest::prelude::*;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 10_000,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Values a broken or hostile model can produce.
fn value() -> impl Strategy<Value = f32> {
    prop_oneof![
        4 => -2.0f32..2.0,
        1 => Just(f32::NAN),
        1 => Just(f32::INFINITY),
        1 => Just(f32::NEG_INFINITY),
        1 => any::<f32>(),
        1 => Just(0.0),
    ]
}

/// A shape near the consistent one, or not.
fn shape(anchors: i64, last: i64) -> impl Strategy<Value = Vec<i64>> {
    prop_oneof![
        8 => Just(vec![1, anchors, last]),
        1 => Just(vec![1, anchors]),
        1 => prop::collection::vec(prop_oneof![Just(-1i64), Just(0), 1i64..8, Just(i64::MAX), Just(1 << 40)], 0..5),
    ]
}

type Tensor = (Vec<i64>, Vec<f32>);

/// A tensor: mostly with as much data as its shape says (so decoding runs), sometimes with any amount.
fn tensor(anchors: i64, last: i64) -> impl Strategy<Value = Tensor> {
    shape(anchors, last).prop_flat_map(|shape| {
        let declared = shape
            .iter()
            .try_fold(1usize, |n, &d| usize::try_from(d).ok().and_then(|d| n.checked_mul(d)))
            .filter(|&n| n <= 4096);
        let len = match declared {
            Some(n) => prop_oneof![7 => Just(n), 1 => 0..n + 8].boxed(),
            None => (0usize..64).boxed(),
        };
        (Just(shape), len.prop_flat_map(|n| prop::collection::vec(value(), n)))
    })
}

/// `count` outputs: a box tensor first (usually [1,A,4]), then score-like ones — each may lie about its shape.
fn tensors(count: usize) -> impl Strategy<Value = (Vec<Tensor>, usize)> {
    (1i64..12, 1i64..5).prop_flat_map(move |(anchors, classes)| {
        let rest = prop::collection::vec(prop_oneof![tensor(anchors, classes), tensor(anchors, 1)], count - 1);
        (tensor(anchors, 4), rest).prop_map(move |(boxes, mut rest)| {
            rest.insert(0, boxes);
            (rest, anchors as usize)
        })
    })
}

fn gate() -> impl Strategy<Value = ClassGate> {
    (0.0f32..1.0, prop_oneof![Just(""), Just("1"), Just("stop"), Just("2,3")]).prop_map(|(t, classes)| {
        let labels = Labels::parse("stop\nyield\nparking\n");
        ClassGate::new(t, classes, "", &labels).expect("valid gate")
    })
}

/// Decodes; checks every detection kept; says whether the outputs got past the shape checks.
fn check(decoder: &Decoder, outputs: &[Tensor], gate: &ClassGate) -> bool {
    let mut out: Vec<Detection> = Vec::new();
    let get = |i: usize| -> Result<(&[i64], &[f32]), String> {
        outputs
            .get(i)
            .map(|(s, d)| (s.as_slice(), d.as_slice()))
            .ok_or_else(|| format!("no output {i}"))
    };
    let decoded = decoder.decode(get, gate, &mut out).is_ok();
    for d in &out {
        assert!(
            d.score.is_finite() && d.score >= gate.threshold(d.class_id as usize),
            "{d:?}"
        );
        let b = d.bbox;
        assert!(
            [b.x0, b.y0, b.x1, b.y1]
                .iter()
                .all(|v| v.is_finite() && (0.0..=1.0).contains(v)),
            "{d:?}"
        );
        assert!(b.x1 > b.x0 && b.y1 > b.y0, "{d:?}");
        assert!(d.class_id > 0, "{d:?}");
    }
    decoded
}

/// Runs `cases()` generated cases through `decode_case`; at least a third must decode (not just be refused
/// by the shape checks), or the test would prove little about decoding.
fn run<S: Strategy>(strategy: S, decode_case: impl Fn(S::Value) -> bool) {
    let decoded = std::sync::atomic::AtomicUsize::new(0);
    let mut runner = proptest::test_runner::TestRunner::new(config());
    runner
        .run(&strategy, |value| {
            if decode_case(value) {
                decoded.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            Ok(())
        })
        .unwrap();
    let decoded = decoded.into_inner();
    assert!(decoded * 3 >= config().cases as usize, "only {decoded} cases decoded");
}

#[test]
fn tf_od_decoder_takes_any_outputs() {
    run((tensors(4), gate(), any::<bool>()), |((outputs, _), gate, with_num)| {
        let decoder = Decoder::TfOd {
            boxes: 0,
            scores: 1,
            classes: 2,
            num: with_num.then_some(3),
        };
        check(&decoder, &outputs, &gate)
    });
}

#[test]
fn decoded_decoder_takes_any_outputs() {
    run((tensors(2), gate(), any::<bool>()), |((outputs, _), gate, yxyx)| {
        let order = if yxyx { BoxOrder::Yxyx } else { BoxOrder::Xyxy };
        check(
            &Decoder::Decoded {
                boxes: 0,
                scores: 1,
                order,
            },
            &outputs,
            &gate,
        )
    });
}

#[test]
fn raw_decoder_takes_any_outputs() {
    let strategy = (
        tensors(2),
        prop_oneof![3 => Just(0usize), 1 => Just(1)],
        prop::collection::vec(value(), 4),
        gate(),
        any::<bool>(),
        0u8..3,
    );
    run(strategy, |((outputs, anchors), extra, a, gate, tf, activation)| {
        let anchor = Anchor {
            cy: a[0],
            cx: a[1],
            h: a[2],
            w: a[3],
        };
        let decoder = Decoder::Raw {
            encodings: 0,
            logits: 1,
            // Sometimes more anchors than the model's outputs: refused, never indexed past.
            anchors: vec![anchor; anchors + extra],
            encoding: if tf { BoxEncoding::Tf } else { BoxEncoding::Xywh },
            activation: [
                ScoreActivation::Sigmoid,
                ScoreActivation::Softmax,
                ScoreActivation::None,
            ][activation as usize],
        };
        check(&decoder, &outputs, &gate)
    });
}
