//! Importing pytorch-ssd's mb2-ssd-lite (tests/models/mb2-ssd-lite-pytorch.onnx, built and exported by PyTorch
//! with `tests/models/make_pytorch_ssd.py`): the imported network computes what the PyTorch export computes,
//! through a checkpoint and our export, and a graph that does not fit is refused naming the file and the layer.

mod common;

use burn::module::Module;
use burn::tensor::activation::softmax;
use burn::tensor::{Device, Tensor, TensorData};
use common::max_diff;
use detection_common::labels::Labels;
use detection_common::onnx::ModelProto;
use mobilenet_trainer::augment::{INPUT_MEAN, INPUT_STD};
use mobilenet_trainer::import::{ImportOptions, load_onnx};
use mobilenet_trainer::model::{SsdLite, Variant};
use prost::Message;
use std::path::{Path, PathBuf};

const SIDE: usize = 300;

fn original() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/models/mb2-ssd-lite-pytorch.onnx")
}

/// jetson-inference's labels.txt: the background first.
fn labels() -> Labels {
    Labels::parse("BACKGROUND\nsign\nperson\n")
}

fn temp_dir(name: &str) -> PathBuf {
    common::temp_dir("trainer-pytorch-ssd", name)
}

/// A 300x300 RGB image with gradients, flat rectangles and a fine checker pattern, deterministic.
fn image() -> Vec<u8> {
    common::import_test_image(SIDE, |x, y| (((x / 7 + y / 5) % 2) * 160 + 40) as u8)
}

/// `rgb` as NCHW floats `(pixel - mean) / std` per channel.
fn nchw(rgb: &[u8], mean: [f32; 3], std: [f32; 3]) -> Vec<f32> {
    let mut v = vec![0f32; 3 * SIDE * SIDE];
    for (i, px) in rgb.chunks(3).enumerate() {
        for c in 0..3 {
            v[c * SIDE * SIDE + i] = (px[c] as f32 - mean[c]) / std[c];
        }
    }
    v
}

/// (scores, boxes) of an ONNX model in the decoded format on one input tensor.
fn run(model: &[u8], input: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let mut session = common::onnx_session(model);
    let t = ort::value::TensorRef::from_array_view(([1usize, 3, SIDE, SIDE], input)).unwrap();
    let out = session.run(ort::inputs![t]).unwrap();
    let get = |name: &str| out[name].try_extract_tensor::<f32>().unwrap().1.to_vec();
    (get("scores"), get("boxes"))
}

/// The PyTorch export on `rgb`, fed as jetson-inference feeds it: `(x - 127) / 128`.
fn pytorch_outputs(rgb: &[u8]) -> (Vec<f32>, Vec<f32>) {
    run(&std::fs::read(original()).unwrap(), &nchw(rgb, [127.0; 3], [128.0; 3]))
}

/// Our export of `model` on `rgb`, fed as the element feeds it (ImageNet's mean and deviation).
fn exported_outputs(
    model: &SsdLite,
    info: &mobilenet_trainer::checkpoint::CheckpointInfo,
    rgb: &[u8],
) -> (Vec<f32>, Vec<f32>) {
    let bytes = mobilenet_trainer::export::export_onnx(model, &info.config, &info.labels);
    run(&bytes, &nchw(rgb, INPUT_MEAN, INPUT_STD))
}

fn options(labels: Option<&Labels>) -> ImportOptions<'_> {
    ImportOptions {
        labels,
        anchors: None,
        input_size: SIDE,
    }
}

#[test]
fn the_imported_mb2_ssd_lite_computes_what_pytorch_computes() {
    let cpu = Device::flex();
    let l = labels();
    let (model, info) = load_onnx(&original(), &options(Some(&l)), &cpu).unwrap();
    assert_eq!(info.labels, labels());
    assert_eq!((info.config.width, info.config.input_size), (1.0, SIDE));
    assert_eq!(info.config.variant, Variant::PytorchSsd);
    assert_eq!(info.config.anchors().len(), 3000);

    let rgb = image();
    let (py_scores, py_boxes) = pytorch_outputs(&rgb);
    let input = nchw(&rgb, INPUT_MEAN, INPUT_STD);
    let x = Tensor::<4>::from_data(TensorData::new(input, [1, 3, SIDE, SIDE]), &cpu);
    let scores: Vec<f32> = softmax(model.valid().forward(x).1, 2).into_data().try_to_vec().unwrap();
    let ds = max_diff(&scores, &py_scores);
    // The same function up to float rounding (measured 1.2e-4 over 3000 anchors x 3 classes; a wrong row order,
    // padding, input scale or folded BatchNorm moves scores by 0.1 and more): every layer is PyTorch's.
    eprintln!("burn vs PyTorch: scores max |diff| {ds}");
    assert!(ds < 1e-3, "burn's scores differ from PyTorch's by {ds}");

    // Exported, the boxes too: decoded from the box rows reordered into ours against pytorch-ssd's priors.
    let (scores, boxes) = exported_outputs(&model, &info, &rgb);
    let (ds, db) = (max_diff(&scores, &py_scores), max_diff(&boxes, &py_boxes));
    eprintln!("exported vs PyTorch: scores max |diff| {ds}, boxes max |diff| {db}");
    assert!(ds < 1e-3 && db < 1e-3, "scores {ds}, boxes {db}");
    // Not a vacuous comparison: what the network outputs depends on the image (the negative here).
    let negative: Vec<u8> = rgb.iter().map(|v| 255 - v).collect();
    let moved = max_diff(&pytorch_outputs(&negative).0, &py_scores);
    assert!(
        moved > 0.5,
        "the scores move by only {moved} between an image and its negative"
    );
}

#[test]
fn an_imported_mb2_ssd_lite_survives_a_checkpoint_and_an_export() {
    let cpu = Device::flex();
    let dir = temp_dir("roundtrip");
    let labels_path = dir.join("labels.txt");
    std::fs::write(&labels_path, "BACKGROUND\nsign\nperson\n").unwrap();
    let summary =
        mobilenet_trainer::import::import_to_checkpoint(&original(), Some(labels_path), None, SIDE, &dir).unwrap();
    assert!(
        summary.contains("pytorch-ssd") && summary.contains("sign, person"),
        "{summary}"
    );
    let (model, info) = mobilenet_trainer::checkpoint::load(&dir.join("checkpoint.bpk"), &cpu).unwrap();
    assert_eq!(info.config.variant, Variant::PytorchSsd);
    let rgb = image();
    let (py_scores, py_boxes) = pytorch_outputs(&rgb);
    let (scores, boxes) = exported_outputs(&model, &info, &rgb);
    assert!(max_diff(&scores, &py_scores) < 1e-3 && max_diff(&boxes, &py_boxes) < 1e-3);

    // Our export read back (what `train --init model.onnx` does with it) is the same network again.
    let path = dir.join("model.onnx");
    std::fs::write(
        &path,
        mobilenet_trainer::export::export_onnx(&model, &info.config, &info.labels),
    )
    .unwrap();
    let (back, back_info) = load_onnx(&path, &options(None), &cpu).unwrap();
    assert_eq!(back_info.config.variant, Variant::PytorchSsd);
    assert_eq!(back_info.config.anchors(), info.config.anchors());
    let (scores, boxes) = exported_outputs(&back, &back_info, &rgb);
    assert!(max_diff(&scores, &py_scores) < 1e-3 && max_diff(&boxes, &py_boxes) < 1e-3);
}

/// The fixture with `edit` applied, written to `dir/name`.
fn edited(dir: &Path, name: &str, edit: impl FnOnce(&mut ModelProto)) -> PathBuf {
    let mut model = ModelProto::decode(std::fs::read(original()).unwrap().as_slice()).unwrap();
    edit(&mut model);
    let path = dir.join(name);
    std::fs::write(&path, model.encode_to_vec()).unwrap();
    path
}

#[test]
fn imports_refuse_an_mb2_ssd_lite_that_does_not_fit_naming_the_file_and_the_layer() {
    let cpu = Device::flex();
    let l = labels();
    let name = original().display().to_string();
    let e = load_onnx(&original(), &options(None), &cpu).map(|_| ()).unwrap_err();
    assert!(e.contains(&name) && e.contains("--labels"), "{e}");
    let two = Labels::parse("person\n");
    let e = load_onnx(&original(), &options(Some(&two)), &cpu)
        .map(|_| ())
        .unwrap_err();
    assert!(e.contains("2 classes") && e.contains("person"), "{e}");
    let e = load_onnx(
        &original(),
        &ImportOptions {
            labels: Some(&l),
            anchors: None,
            input_size: 320,
        },
        &cpu,
    )
    .map(|_| ())
    .unwrap_err();
    assert!(e.contains("300x300"), "{e}");

    let dir = temp_dir("refuse");
    // An onnx_compatible export (ReLU where mb2-ssd-lite has ReLU6) computes another function.
    let relu = edited(&dir, "relu.onnx", |m| {
        let graph = m.graph.as_mut().unwrap();
        let clip = graph.node.iter_mut().filter(|n| n.op_type == "Clip").nth(3).unwrap();
        clip.op_type = "Relu".into();
        clip.input.truncate(1);
    });
    let e = load_onnx(&relu, &options(Some(&l)), &cpu).map(|_| ()).unwrap_err();
    assert!(
        e.contains("relu.onnx") && e.contains("ReLU where") && e.contains("block 2"),
        "{e}"
    );
    // A depthwise layer with another stride is another network: the layer and the difference are named.
    let stride = edited(&dir, "stride.onnx", |m| {
        let graph = m.graph.as_mut().unwrap();
        let conv = graph.node.iter_mut().filter(|n| n.op_type == "Conv").nth(4).unwrap();
        let strides = conv.attribute.iter_mut().find(|a| a.name == "strides").unwrap();
        strides.ints = vec![1, 1];
    });
    let e = load_onnx(&stride, &options(Some(&l)), &cpu).map(|_| ()).unwrap_err();
    assert!(
        e.contains("stride.onnx") && e.contains("block 2's depthwise layer") && e.contains("strides [1, 1]"),
        "{e}"
    );
}
