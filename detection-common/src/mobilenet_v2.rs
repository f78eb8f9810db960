//! The MobileNetV2 architecture as the trainer builds it and the test kit writes it as ONNX: one table, so the
//! two can never disagree.

/// Inverted-residual stages: (expansion t, output channels c, repeats n, stride of the first block s), as in
/// the MobileNetV2 paper and torchvision.
pub const BLOCKS: [(usize, usize, usize, usize); 7] = [
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
];

/// Index (over all 17 blocks) of the first stride-32 block: its expansion layer, still at stride 16, feeds
/// SSDLite's first head.
pub const STRIDE32_BLOCK: usize = 13;

/// Channels of the stem convolution and of the last 1x1 convolution at width 1.0.
pub const STEM_CHANNELS: usize = 32;
pub const LAST_CHANNELS: usize = 1280;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stride32_block_is_the_first_block_of_the_160_channel_stage() {
        let first_of_stage: usize = BLOCKS.iter().take_while(|b| b.1 != 160).map(|b| b.2).sum();
        assert_eq!(first_of_stage, STRIDE32_BLOCK);
        assert_eq!(BLOCKS.iter().map(|b| b.2).sum::<usize>(), 17);
    }
}
