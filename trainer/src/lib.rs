//! The trainer for mobilenetdetect's detector. This first part reads and validates datasets (`check`); the
//! model, training, evaluation and export follow in the trainer issue.

pub mod data;
