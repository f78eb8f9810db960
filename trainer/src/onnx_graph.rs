//! An ONNX graph as the importers read it: its convolutions, constants and who reads each tensor, and each
//! convolution's weights with the BatchNorm after it folded in.

use crate::export::BatchNormStats;
use crate::import::floats;
use detection_common::onnx::{ModelProto, NodeProto, TensorProto};
use std::collections::HashMap;
use std::path::Path;

/// A convolution with any BatchNorm after it folded in: weight [out, in/groups, k, k] and bias [out].
pub(crate) struct Folded {
    pub weight: Vec<f32>,
    pub dims: [usize; 4],
    pub bias: Vec<f32>,
}

/// An ONNX graph's convolutions, constants and who reads each tensor (a TensorFlow model converted by tf2onnx, or
/// a PyTorch export).
pub(crate) struct OnnxGraph<'a> {
    pub path: &'a Path,
    pub inits: HashMap<&'a str, &'a TensorProto>,
    pub convs: Vec<&'a NodeProto>,
    pub consumers: HashMap<&'a str, Vec<&'a NodeProto>>,
}

impl<'a> OnnxGraph<'a> {
    pub(crate) fn new(path: &'a Path, model: &'a ModelProto) -> Result<Self, String> {
        let graph = model
            .graph
            .as_ref()
            .ok_or_else(|| format!("{}: the model has no graph", path.display()))?;
        let mut consumers: HashMap<&str, Vec<&NodeProto>> = HashMap::new();
        for node in &graph.node {
            for input in &node.input {
                consumers.entry(input.as_str()).or_default().push(node);
            }
        }
        Ok(Self {
            path,
            inits: graph.initializer.iter().map(|t| (t.name.as_str(), t)).collect(),
            convs: graph.node.iter().filter(|n| n.op_type == "Conv").collect(),
            consumers,
        })
    }

    pub(crate) fn constant(&self, node: &NodeProto, i: usize) -> Option<Vec<f32>> {
        node.input
            .get(i)
            .and_then(|name| self.inits.get(name.as_str()))
            .map(|t| floats(t))
    }

    /// The BatchNorm reading `node`'s output, through layout-only nodes (tf2onnx puts a Reshape in between on
    /// 1x1 maps).
    pub(crate) fn batch_norm_after(&self, node: &'a NodeProto) -> Option<&'a NodeProto> {
        let mut at = node;
        loop {
            let next = match self.consumers.get(at.output.first()?.as_str())?.as_slice() {
                [one] => *one,
                _ => return None,
            };
            match next.op_type.as_str() {
                "BatchNormalization" => return Some(next),
                "Reshape" | "Transpose" | "Identity" | "Squeeze" | "Unsqueeze" => at = next,
                _ => return None,
            }
        }
    }

    /// Output channels of convolution `node` (its weights' first dimension); `what` names it in errors.
    pub(crate) fn out_channels(&self, node: &NodeProto, what: &str) -> Result<usize, String> {
        node.input
            .get(1)
            .and_then(|name| self.inits.get(name.as_str()))
            .and_then(|w| w.dims.first())
            .map(|&d| d as usize)
            .ok_or_else(|| {
                format!(
                    "{}: {} ({what}): weights are not a constant",
                    self.path.display(),
                    node.name
                )
            })
    }

    /// `node`'s weights and bias with the BatchNorm after it (if any) folded in; `what` names it in errors.
    pub(crate) fn folded(&self, node: &'a NodeProto, what: &str) -> Result<Folded, String> {
        let bad = |fault: &str| format!("{}: {} ({what}): {fault}", self.path.display(), node.name);
        let w = node
            .input
            .get(1)
            .and_then(|name| self.inits.get(name.as_str()))
            .ok_or_else(|| bad("weights are not a constant"))?;
        let dims: [usize; 4] = w
            .dims
            .iter()
            .map(|&d| d as usize)
            .collect::<Vec<_>>()
            .try_into()
            .map_err(|_| bad("weights are not 4-dimensional"))?;
        let mut weight = floats(w);
        if weight.len() != dims.iter().product::<usize>() {
            return Err(bad("weights do not fill their shape"));
        }
        let out = dims[0];
        let mut bias = self.constant(node, 2).unwrap_or_else(|| vec![0.0; out]);
        if bias.len() != out {
            return Err(bad("its bias does not match its output channels"));
        }
        if let Some(bn) = self.batch_norm_after(node) {
            let param = |i: usize| {
                self.constant(bn, i)
                    .filter(|v| v.len() == out)
                    .ok_or_else(|| bad("its BatchNorm's parameters are not constants of its width"))
            };
            let stats = BatchNormStats {
                gamma: param(1)?,
                beta: param(2)?,
                mean: param(3)?,
                var: param(4)?,
                eps: bn.attribute.iter().find(|a| a.name == "epsilon").map_or(1e-5, |a| a.f),
            };
            stats.fold_into(&mut weight, &mut bias);
        }
        Ok(Folded { weight, dims, bias })
    }
}
