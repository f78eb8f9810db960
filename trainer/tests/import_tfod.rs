//! Importing a real TF Object Detection API model (tests/models/person-ssdlite-mobilenetv2-tfod.onnx, see the
//! README there): the imported network computes what the TensorFlow graph computes, keeps doing so through a
//! checkpoint and an export, and files it cannot take are refused naming the file and the fault.

mod common;

use burn::module::Module;
use burn::tensor::activation::softmax;
use burn::tensor::{Device, Tensor, TensorData};
use common::max_diff;
use detection_common::labels::Labels;
use detection_common::onnx::{GraphProto, ModelProto, ValueInfoProto};
use mobilenet_trainer::augment::{INPUT_MEAN, INPUT_STD};
use mobilenet_trainer::import::{ImportOptions, load_onnx};
use mobilenet_trainer::import_tfod::tfod_default_shapes;
use mobilenet_trainer::model::{ANCHORS_PER_LOCATION, SsdLite, Variant};
use prost::Message;
use std::path::{Path, PathBuf};

const SIDE: usize = 300;

fn teacher() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/models/person-ssdlite-mobilenetv2-tfod.onnx")
}

fn person() -> Labels {
    Labels::parse("person\n")
}

fn temp_dir(name: &str) -> PathBuf {
    common::temp_dir("trainer-tfod", name)
}

/// A 300x300 RGB image with smooth gradients and a few flat rectangles (people-sized), deterministic.
fn image() -> Vec<u8> {
    common::import_test_image(SIDE, |x, y| ((x + y) * 127 / SIDE) as u8)
}

/// The image as our networks read it: NCHW, ImageNet's mean and deviation.
fn normalised(rgb: &[u8], device: &Device) -> Tensor<4> {
    let mut v = vec![0f32; 3 * SIDE * SIDE];
    for (i, px) in rgb.chunks(3).enumerate() {
        for c in 0..3 {
            v[c * SIDE * SIDE + i] = (px[c] as f32 - INPUT_MEAN[c]) / INPUT_STD[c];
        }
    }
    Tensor::from_data(TensorData::new(v, [1, 3, SIDE, SIDE]), device)
}

/// The TensorFlow graph's raw heads and anchors on `rgb`: (box encodings, class logits, anchors), each flat.
fn teacher_raw(rgb: &[u8]) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    // More graph outputs, appended as a second serialised graph: protobuf merges repeated occurrences of a
    // message field, so the original bytes (with the Loop subgraphs our ONNX structs do not model) stay as
    // they are.
    let extra = ModelProto {
        graph: Some(GraphProto {
            output: ["Squeeze:0", "concat_1:0", "Postprocessor/Tile:0"]
                .map(|name| ValueInfoProto {
                    name: name.into(),
                    ..Default::default()
                })
                .to_vec(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut bytes = std::fs::read(teacher()).unwrap();
    bytes.extend(extra.encode_to_vec());
    let mut session = common::onnx_session(&bytes);
    let t = ort::value::TensorRef::from_array_view(([1usize, SIDE, SIDE, 3], rgb)).unwrap();
    let out = session.run(ort::inputs!["image_tensor:0" => t]).unwrap();
    let get = |name: &str| out[name].try_extract_tensor::<f32>().unwrap().1.to_vec();
    (get("Squeeze:0"), get("concat_1:0"), get("Postprocessor/Tile:0"))
}

fn import(labels: Option<&Labels>) -> Result<(SsdLite, mobilenet_trainer::checkpoint::CheckpointInfo), String> {
    let opts = ImportOptions {
        labels,
        anchors: None,
        input_size: SIDE,
    };
    load_onnx(&teacher(), &opts, &Device::flex())
}

#[test]
fn the_imported_teacher_computes_what_tensorflow_computes() {
    let cpu = Device::flex();
    let (model, info) = import(Some(&person())).unwrap();
    assert_eq!(info.labels, person());
    assert_eq!((info.config.width, info.config.input_size), (1.0, SIDE));
    assert_eq!(info.config.variant, Variant::TfOd);

    let rgb = image();
    let (tf_enc, tf_logits, tf_anchors) = teacher_raw(&rgb);
    let (enc, logits) = model.valid().forward(normalised(&rgb, &cpu));
    let enc: Vec<f32> = enc.into_data().try_to_vec().unwrap();
    let person_score: Vec<f32> = softmax(logits, 2)
        .into_data()
        .try_to_vec::<f32>()
        .unwrap()
        .chunks(2)
        .map(|s| s[1])
        .collect();
    let tf_person_score: Vec<f32> = tf_logits.chunks(2).map(|l| 1.0 / (1.0 + (-l[1]).exp())).collect();
    let (de, ds) = (max_diff(&enc, &tf_enc), max_diff(&person_score, &tf_person_score));
    eprintln!("imported vs TensorFlow: box encodings max |diff| {de}, person score max |diff| {ds}");
    // Float rounding only (measured 1.3e-5 and 2e-8): padding, input scale and folded BatchNorms are TensorFlow's.
    assert!(de < 1e-4 && ds < 1e-6, "box encodings {de}, scores {ds}");

    // The anchors: TF-OD's generator, in its order, as the graph computes them (ours clip at the input's side).
    let sizes = info.config.feature_sizes();
    let mut ours = Vec::new();
    for (map, shapes) in tfod_default_shapes().iter().enumerate() {
        assert_eq!(shapes.len(), ANCHORS_PER_LOCATION[map]);
        let n = sizes[map] as f32;
        for y in 0..sizes[map] {
            for x in 0..sizes[map] {
                for &(w, h) in shapes {
                    let (cy, cx) = ((y as f32 + 0.5) / n, (x as f32 + 0.5) / n);
                    ours.extend([cy - h / 2.0, cx - w / 2.0, cy + h / 2.0, cx + w / 2.0]);
                }
            }
        }
    }
    let da = max_diff(&ours, &tf_anchors);
    // TensorFlow computes them in float32 from strides and offsets (measured 4e-5).
    assert!(da < 2e-4, "anchors differ by up to {da}");
}

#[test]
fn an_imported_teacher_survives_a_checkpoint_and_an_export() {
    let cpu = Device::flex();
    let dir = temp_dir("roundtrip");
    let labels = dir.join("labels.txt");
    std::fs::write(&labels, "person\n").unwrap();
    let summary = mobilenet_trainer::import::import_to_checkpoint(&teacher(), Some(labels), None, SIDE, &dir).unwrap();
    assert!(summary.contains("tf-od") && summary.contains("person"), "{summary}");
    let (model, info) = mobilenet_trainer::checkpoint::load(&dir.join("checkpoint.bpk"), &cpu).unwrap();
    assert_eq!(info.config.variant, Variant::TfOd);
    let (direct, _) = import(Some(&person())).unwrap();
    let x = normalised(&image(), &cpu);
    let a: Vec<f32> = model.valid().forward(x.clone()).0.into_data().try_to_vec().unwrap();
    let b: Vec<f32> = direct.valid().forward(x.clone()).0.into_data().try_to_vec().unwrap();
    assert!(max_diff(&a, &b) < 1e-5);

    // The export carries TensorFlow's padding into ONNX (asymmetric pads) and back.
    let bytes = mobilenet_trainer::export::export_onnx(&model, &info.config, &info.labels);
    let path = dir.join("model.onnx");
    std::fs::write(&path, &bytes).unwrap();
    let mut session = common::onnx_session(&bytes);
    let input: Vec<f32> = x.clone().into_data().try_to_vec().unwrap();
    let t = ort::value::TensorRef::from_array_view(([1usize, 3, SIDE, SIDE], &input[..])).unwrap();
    let out = session.run(ort::inputs![t]).unwrap();
    let (_, ort_scores) = out["scores"].try_extract_tensor::<f32>().unwrap();
    let scores: Vec<f32> = softmax(model.valid().forward(x).1, 2).into_data().try_to_vec().unwrap();
    let ds = max_diff(ort_scores, &scores);
    assert!(ds <= 1e-4, "exported scores differ from burn's by {ds}");
    let (back, back_info) = load_onnx(
        &path,
        &ImportOptions {
            labels: None,
            anchors: None,
            input_size: SIDE,
        },
        &cpu,
    )
    .unwrap();
    // The same network; the export writes the anchors clipped to the input, as they are used.
    assert_eq!(back_info.config.variant, info.config.variant);
    assert_eq!(back_info.config.anchors(), info.config.anchors());
    let c: Vec<f32> = back
        .valid()
        .forward(normalised(&image(), &cpu))
        .0
        .into_data()
        .try_to_vec()
        .unwrap();
    assert!(max_diff(&a, &c) < 1e-4);
}

#[test]
fn imports_refuse_what_they_cannot_take_naming_the_file() {
    let name = teacher().display().to_string();
    let e = import(None).unwrap_err();
    assert!(e.contains(&name) && e.contains("--labels"), "{e}");
    // More labels than the model has classes is what training data with new classes looks like: its classes
    // are the first ones.
    let (_, info) = import(Some(&Labels::parse("person\ncar\nbike\n"))).unwrap();
    assert_eq!(info.labels, person());

    let dir = temp_dir("refuse");
    let junk = dir.join("junk.onnx");
    std::fs::write(&junk, b"not a model at all").unwrap();
    let opts = ImportOptions {
        labels: Some(&person()),
        anchors: None,
        input_size: SIDE,
    };
    let e = load_onnx(&junk, &opts, &Device::flex()).map(|_| ()).unwrap_err();
    assert!(e.contains("junk.onnx") && e.contains("not an ONNX model"), "{e}");

    let anchors = dir.join("anchors.txt");
    std::fs::write(&anchors, "0.5 0.5 0.1 0.1\n").unwrap();
    let labels = dir.join("labels.txt");
    std::fs::write(&labels, "person\n").unwrap();
    let e = mobilenet_trainer::import::import_to_checkpoint(&teacher(), Some(labels), Some(anchors), SIDE, &dir)
        .unwrap_err();
    assert!(e.contains("1 anchors"), "{e}");
}
