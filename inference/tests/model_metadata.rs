//! Property test: a model file's metadata (`metadata_props`) is read by the element's loader whatever it holds —
//! absurd sizes, malformed numbers, control characters, anchors that do not match — and either loads a usable
//! model or ends in an error; never a panic. Each case builds a small ONNX model and loads it in ONNX Runtime.
//! `MOBILENETDETECT_METADATA_CASES` sets the number of cases (default 10,000).

use detection_common::metadata as meta;
use detection_inference::{Model, ModelOptions, Provider};
use mobilenetdetect_testkit::models::{self, ImageInput};
use proptest::prelude::*;

fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("ssd-decoded".to_string()),
        Just("ssd-raw".to_string()),
        Just("tf-od".to_string()),
        Just("300x300".to_string()),
        Just("0x0".to_string()),
        Just("4294967295x4294967295".to_string()),
        Just("16385x2".to_string()),
        Just("127.5,127.5,127.5".to_string()),
        Just("0,0,0".to_string()),
        Just("nan,1,1".to_string()),
        Just("1e39".to_string()),
        Just("nchw".to_string()),
        Just("nhwc".to_string()),
        Just("BACKGROUND\nsign\n".to_string()),
        Just("0.5 0.5 0.1 0.1\n0.2 0.2 0.3 0.3".to_string()),
        Just("0.5 0.5 -1 0.1".to_string()),
        "[ -~\\n\\t\\x00-\\x1f]{0,40}",
        any::<String>(),
    ]
}

fn key() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        meta::KEY_FORMAT,
        meta::KEY_LABELS,
        meta::KEY_INPUT_LAYOUT,
        meta::KEY_CHANNEL_ORDER,
        meta::KEY_INPUT_MEAN,
        meta::KEY_INPUT_STD,
        meta::KEY_INPUT_SIZE,
        meta::KEY_BOX_ORDER,
        meta::KEY_BOX_ENCODING,
        meta::KEY_SCORE_ACTIVATION,
        meta::KEY_ANCHORS,
    ])
}

fn cases() -> u32 {
    std::env::var("MOBILENETDETECT_METADATA_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn any_model_metadata_loads_or_is_an_error(
        entries in prop::collection::vec((key(), value()), 0..6),
        dynamic in any::<bool>(),
        anchors in 1usize..4,
    ) {
        let input = if dynamic {
            ImageInput { size: None, nhwc: false, uint8: false }
        } else {
            ImageInput::nchw(16, 16)
        };
        let metadata: Vec<(&str, &str)> = entries.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let bytes = models::decoded_model(
            input,
            &vec![[0.1, 0.1, 0.5, 0.5]; anchors],
            &vec![vec![0.0, 0.9]; anchors],
            ("boxes", "scores"),
            &metadata,
        );
        let path = std::env::temp_dir().join(format!("mobilenetdetect-metadata-fuzz-{}.onnx", std::process::id()));
        std::fs::write(&path, bytes).unwrap();
        let loaded = Model::load(&ModelOptions { path, providers: vec![Provider::Cpu], ..Default::default() });
        if let Ok(model) = loaded {
            if let Some((w, h)) = model.input.size {
                prop_assert!(meta::input_size_ok(w, h));
            }
            prop_assert!(model.input.std.iter().all(|s| s.is_finite() && *s != 0.0));
            prop_assert!(model.input.mean.iter().all(|m| m.is_finite()));
            for l in model.labels.foreground() {
                prop_assert!(!l.chars().any(char::is_control), "{:?}", l);
            }
        }
    }
}
