//! The trainer for mobilenetdetect's detector: datasets (`check`), the MobileNetV2-SSDLite model in burn, SSD
//! matching and the MultiBox loss, and the optimisation step. Training from the CLI, evaluation and export
//! follow in the trainer issue.

pub mod data;
pub mod loss;
pub mod model;
pub mod train;
