//! The tile grid properties (`tile-columns`, `tile-rows`, `tile-overlap`) of the elements that cut frames into
//! tiles: `mobilenetdetect` infers each tile at the model's input size (small objects keep their pixels; the
//! tiles' detections are joined by `detection_inference::tiles`), `detectioncapture` saves each tile as a sample
//! of its own (training sees objects at the scale the tiled element will).

use detection_inference::tiles::TileGrid;
use gst::glib;
use gst::prelude::*;

pub const DEFAULT_TILE_OVERLAP: u32 = 64;
const MAX_TILES_PER_SIDE: u32 = 8;

#[derive(Debug, Clone, Copy)]
pub struct TileProperties {
    pub columns: u32,
    pub rows: u32,
    pub overlap: u32,
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
    /// The properties, `what` saying what the element does with the tiles.
    pub fn specs(what: &str) -> Vec<glib::ParamSpec> {
        let side = |name: &str, nick: &str, blurb: &str| {
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
                &format!("Tiled mode: the frame is cut into tile-columns x tile-rows overlapping tiles; {what}. 1 x 1: the whole frame"),
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
    pub fn set(&mut self, name: &str, value: &glib::Value) -> bool {
        let field = match name {
            "tile-columns" => &mut self.columns,
            "tile-rows" => &mut self.rows,
            "tile-overlap" => &mut self.overlap,
            _ => return false,
        };
        *field = value.get().expect("type checked upstream");
        true
    }

    pub fn get(&self, name: &str) -> Option<glib::Value> {
        match name {
            "tile-columns" => Some(self.columns.to_value()),
            "tile-rows" => Some(self.rows.to_value()),
            "tile-overlap" => Some(self.overlap.to_value()),
            _ => None,
        }
    }

    pub fn grid(&self) -> TileGrid {
        TileGrid {
            columns: self.columns,
            rows: self.rows,
            overlap: self.overlap,
        }
    }
}
