//! Models the tests, benchmarks and demo build themselves with the project's ONNX writer: small graphs with
//! known outputs (so boxes can be checked exactly) and a full-size SSDLite-MobileNetV2 for benchmarking; and the
//! real servers (MQTT broker, S3) the fleet tests run against.

pub mod models;
pub mod servers;
pub mod ssdlite;
