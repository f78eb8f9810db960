//! The trainer for mobilenetdetect's detector: datasets (`check`), augmentation, the MobileNetV2-SSDLite model
//! in burn with ImageNet initialisation, SSD matching and the MultiBox loss, the training driver, evaluation
//! (`eval`, VOC and COCO mAP), ONNX export, and the fleet's side (datasets pooled in object storage, models
//! published to it).

pub mod anchors;
pub mod augment;
pub mod checkpoint;
pub mod compare;
pub mod data;
pub mod device;
pub mod evaluate;
pub mod export;
pub mod feature_cache;
pub mod fit;
pub mod import;
pub mod import_pytorch_ssd;
pub mod import_tfod;
pub mod loss;
pub mod metrics;
pub mod model;
pub mod onnx_graph;
pub mod plot;
pub mod pretrained;
pub mod progress;
pub mod relabel;
pub mod remote;
pub mod review;
pub mod rollout;
pub mod score;
pub mod snapshot;
pub mod step;
