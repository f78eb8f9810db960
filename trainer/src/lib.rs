//! The trainer for mobilenetdetect's detector: datasets (`check`), the MobileNetV2-SSDLite model in burn, SSD
//! matching and the MultiBox loss, the optimisation step, and ONNX export. Training from the CLI and evaluation
//! follow in the trainer issue.

pub mod data;
pub mod export;
pub mod fit;
pub mod loss;
pub mod model;
pub mod score;
pub mod train;
