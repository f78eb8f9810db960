//! Export parity: ONNX Runtime on the exported model against burn's forward pass (decoded on the host), and
//! the exported model loads in mobilenetdetect with nothing else set, and imports back into burn unchanged.

mod common;
use burn::module::Module;
use burn::optim::AdamWConfig;
use burn::tensor::activation::softmax;
use burn::tensor::{Device, Distribution, Tensor, TensorData};
use detection_common::boxes::{BoxEncoding, decode_box};
use detection_common::labels::Labels;
use detection_common::metadata::ModelFormat;
use mobilenet_trainer::export::export_onnx;
use mobilenet_trainer::loss::{anchor_corners, batch_targets};
use mobilenet_trainer::model::SsdLiteConfig;
use mobilenet_trainer::step::train_step;

#[test]
fn onnx_export_matches_burn_and_loads_in_the_element() {
    let device = Device::flex().autodiff();
    let cfg = SsdLiteConfig {
        num_classes: 3,
        width: 0.35,
        input_size: 96,
        anchor_shapes: None,
        variant: Default::default(),
    };
    let mut model = cfg.init(&device);
    // A few steps so BatchNorm statistics and weights are not at their initial values.
    let anchors = cfg.anchors();
    let corners = anchor_corners(&anchors);
    let (images, targets) = common::sample_batch(4, 96, &device);
    let bt = batch_targets(&anchors, &corners, &targets, &device);
    let mut optimizer = AdamWConfig::new().init();
    for _ in 0..3 {
        model = train_step(model, &mut optimizer, common::full_step(1e-3), images.clone(), &bt).0;
    }
    let model = model.valid();

    let cpu = Device::flex();
    let x = Tensor::<4>::random([1, 3, 96, 96], Distribution::Uniform(-1.0, 1.0), &cpu);
    let input: Vec<f32> = x.clone().into_data().try_to_vec::<f32>().unwrap();
    let (enc, logits) = model.forward(x);
    let enc: Vec<f32> = enc.into_data().try_to_vec::<f32>().unwrap();
    let scores: Vec<f32> = softmax(logits, 2).into_data().try_to_vec::<f32>().unwrap();
    let mut boxes = Vec::with_capacity(anchors.len() * 4);
    for (i, a) in anchors.iter().enumerate() {
        let b = decode_box(&enc[i * 4..i * 4 + 4], a, BoxEncoding::Tf);
        boxes.extend([b.x0, b.y0, b.x1, b.y1]);
    }

    let labels = Labels::parse("BACKGROUND\nred\nblue\n");
    let bytes = export_onnx(&model, &cfg, &labels);
    let dir = std::env::temp_dir().join(format!("trainer-export-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("model.onnx");
    detection_common::files::write_atomically(&path, &bytes).unwrap();

    let mut session = common::onnx_session(&bytes);
    let t = ort::value::TensorRef::from_array_view(([1usize, 3, 96, 96], &input[..])).unwrap();
    let out = session.run(ort::inputs![t]).unwrap();
    let (_, ort_boxes) = out["boxes"].try_extract_tensor::<f32>().unwrap();
    let (_, ort_scores) = out["scores"].try_extract_tensor::<f32>().unwrap();
    let max_diff = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
    assert_eq!(ort_boxes.len(), boxes.len());
    assert_eq!(ort_scores.len(), scores.len());
    let (db, ds) = (max_diff(ort_boxes, &boxes), max_diff(ort_scores, &scores));
    assert!(db <= 1e-4 && ds <= 1e-4, "max abs difference: boxes {db}, scores {ds}");

    // mobilenetdetect reads everything from the model's metadata.
    let m = detection_inference::Model::load(&detection_inference::ModelOptions {
        path: path.clone(),
        providers: vec![detection_inference::Provider::Cpu],
        ..Default::default()
    })
    .unwrap();
    assert_eq!(m.format, ModelFormat::SsdDecoded);
    assert_eq!(m.input.size, Some((96, 96)));
    assert_eq!(m.input.mean, mobilenet_trainer::export::INPUT_MEAN);
    assert_eq!(m.labels.name(2), Some("blue"));

    // Read back for fine-tuning (`train --init model.onnx`): the same function, labels and sizes.
    let (imported, info) = mobilenet_trainer::import::load_exported(&path, &cpu).unwrap();
    assert_eq!(info.config, cfg);
    assert_eq!(info.labels, labels);
    let x = Tensor::<4>::from_data(TensorData::new(input.clone(), [1, 3, 96, 96]), &cpu);
    let (enc2, logits2) = imported.valid().forward(x);
    let enc2: Vec<f32> = enc2.into_data().try_to_vec::<f32>().unwrap();
    let scores2: Vec<f32> = softmax(logits2, 2).into_data().try_to_vec::<f32>().unwrap();
    let (de, ds) = (max_diff(&enc2, &enc), max_diff(&scores2, &scores));
    assert!(
        de <= 1e-4 && ds <= 1e-4,
        "imported model differs: encodings {de}, scores {ds}"
    );
    let junk = dir.join("junk.onnx");
    std::fs::write(&junk, b"not onnx").unwrap();
    let err = mobilenet_trainer::import::load_exported(&junk, &cpu).unwrap_err();
    assert!(err.contains("junk.onnx"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
