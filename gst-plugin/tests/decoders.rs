//! Property test: the three output decoders take any output tensors a model may return — wrong shapes,
//! shapes that lie about the data, NaN, infinities, huge values — without panicking, and every detection they
//! keep is usable: a finite score that passed its class threshold, a box inside the tensor with a positive area, a foreground class.
//! 10,000 generated cases per decoder.

use detection_common::Detection;
use detection_common::boxes::{Anchor, BoxEncoding};
use detection_common::labels::Labels;
use detection_common::metadata::{BoxOrder, ScoreActivation};
use gstmobilenetdetect::model::{ClassGate, Decoder};
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
        4 => Just(vec![1, anchors, last]),
        1 => Just(vec![1, anchors]),
        1 => prop::collection::vec(prop_oneof![Just(-1i64), Just(0), 1i64..8, Just(i64::MAX), Just(1 << 40)], 0..5),
    ]
}

type Tensor = (Vec<i64>, Vec<f32>);

fn tensors(count: usize) -> impl Strategy<Value = (Vec<Tensor>, usize)> {
    (1i64..12, 1i64..5).prop_flat_map(move |(anchors, classes)| {
        let one = move |last: i64| {
            (
                shape(anchors, last),
                prop::collection::vec(value(), 0..(anchors * last.max(1) + 3) as usize),
            )
        };
        (
            prop::collection::vec(prop_oneof![one(4), one(classes), one(1)], count),
            Just(anchors as usize),
        )
    })
}

fn gate() -> impl Strategy<Value = ClassGate> {
    (0.0f32..1.0, prop_oneof![Just(""), Just("1"), Just("stop"), Just("2,3")]).prop_map(|(t, classes)| {
        let labels = Labels::parse("stop\nyield\nparking\n");
        ClassGate::new(t, classes, "", &labels).expect("valid gate")
    })
}

fn check(decoder: &Decoder, outputs: &[Tensor], gate: &ClassGate) {
    let mut out: Vec<Detection> = Vec::new();
    let get = |i: usize| -> Result<(&[i64], &[f32]), String> {
        outputs
            .get(i)
            .map(|(s, d)| (s.as_slice(), d.as_slice()))
            .ok_or_else(|| format!("no output {i}"))
    };
    let _ = decoder.decode(get, gate, &mut out);
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
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn tf_od_decoder_takes_any_outputs((outputs, _) in tensors(4), gate in gate(), with_num in any::<bool>()) {
        let decoder = Decoder::TfOd { boxes: 0, scores: 1, classes: 2, num: with_num.then_some(3) };
        check(&decoder, &outputs, &gate);
    }

    #[test]
    fn decoded_decoder_takes_any_outputs((outputs, _) in tensors(2), gate in gate(), yxyx in any::<bool>()) {
        let order = if yxyx { BoxOrder::Yxyx } else { BoxOrder::Xyxy };
        check(&Decoder::Decoded { boxes: 0, scores: 1, order }, &outputs, &gate);
    }

    #[test]
    fn raw_decoder_takes_any_outputs(
        (outputs, anchors) in tensors(2),
        extra_anchors in 0usize..2,
        anchor_values in prop::collection::vec(value(), 4),
        gate in gate(),
        tf in any::<bool>(),
        activation in 0u8..3,
    ) {
        let anchor = Anchor { cy: anchor_values[0], cx: anchor_values[1], h: anchor_values[2], w: anchor_values[3] };
        let decoder = Decoder::Raw {
            encodings: 0,
            logits: 1,
            anchors: vec![anchor; anchors + extra_anchors],
            encoding: if tf { BoxEncoding::Tf } else { BoxEncoding::Xywh },
            activation: [ScoreActivation::Sigmoid, ScoreActivation::Softmax, ScoreActivation::None][activation as usize],
        };
        check(&decoder, &outputs, &gate);
    }
}
