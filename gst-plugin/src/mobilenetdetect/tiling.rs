//! The tiled mode's properties: small objects in a large frame keep their pixels when the frame goes through the
//! model as a grid of overlapping tiles, each at the model's input size (the tiles' detections are joined by
//! `detection_inference::tiles`).

use detection_inference::tiles::TileGrid;
use gst::glib;
use gst::prelude::*;

pub(super) const DEFAULT_TILE_OVERLAP: u32 = 64;
const MAX_TILES_PER_SIDE: u32 = 8;

#[derive(Debug, Clone, Copy)]
pub(super) struct TileProperties {
    pub(super) columns: u32,
    pub(super) rows: u32,
    pub(super) overlap: u32,
}

impl Default for TileProperties {
    fn default() -> Self {
        Self {
            columns: 1,
            rows: 1,
            overlap: DEFAULT_TILE_OVERLAP,
        }
    }
}

impl TileProperties {
    pub(super) fn specs() -> Vec<glib::ParamSpec> {
        let side = |name: &'static str, nick: &'static str, blurb: &'static str| {
            glib::ParamSpecUInt::builder(name)
                .nick(nick)
                .blurb(blurb)
                .minimum(1)
                .maximum(MAX_TILES_PER_SIDE)
                .default_value(1)
                .mutable_playing()
                .build()
        };
        vec![
            side(
                "tile-columns",
                "Tile columns",
                "Tiled mode: the frame goes through the model as tile-columns x tile-rows overlapping tiles, each \
                 scaled to the model's input (small objects keep their pixels), their detections joined across tile \
                 borders; one inference per tile, all on the one session (inflight of them at once). 1 x 1: the \
                 whole frame",
            ),
            side("tile-rows", "Tile rows", "Tiled mode: rows of tiles (see tile-columns)"),
            glib::ParamSpecUInt::builder("tile-overlap")
                .nick("Tile overlap")
                .blurb("Tiled mode: pixels neighbouring tiles share; at least the largest object's size keeps every object whole in some tile")
                .maximum(4096)
                .default_value(DEFAULT_TILE_OVERLAP)
                .mutable_playing()
                .build(),
        ]
    }

    /// Sets the property `name` if it is one of these; false otherwise.
    pub(super) fn set(&mut self, name: &str, value: &glib::Value) -> bool {
        let field = match name {
            "tile-columns" => &mut self.columns,
            "tile-rows" => &mut self.rows,
            "tile-overlap" => &mut self.overlap,
            _ => return false,
        };
        *field = value.get().expect("type checked upstream");
        true
    }

    pub(super) fn get(&self, name: &str) -> Option<glib::Value> {
        match name {
            "tile-columns" => Some(self.columns.to_value()),
            "tile-rows" => Some(self.rows.to_value()),
            "tile-overlap" => Some(self.overlap.to_value()),
            _ => None,
        }
    }

    pub(super) fn grid(&self) -> TileGrid {
        TileGrid {
            columns: self.columns,
            rows: self.rows,
            overlap: self.overlap,
        }
    }
}
