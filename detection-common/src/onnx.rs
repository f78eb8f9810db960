//! A minimal ONNX model writer: the protobuf messages of `onnx.proto` that a model needs (field numbers as in
//! the ONNX specification) and a [`GraphBuilder`] to assemble graphs. The trainer exports with it, and the tests
//! and benchmarks build their models with it, so nothing depends on Python or a download.

use prost::Message;

pub const IR_VERSION: i64 = 8;
pub const DEFAULT_OPSET: i64 = 13;

/// `TensorProto.DataType` values.
pub mod data_type {
    pub const FLOAT: i32 = 1;
    pub const UINT8: i32 = 2;
    pub const INT32: i32 = 6;
    pub const INT64: i32 = 7;
}

#[derive(Clone, PartialEq, Message)]
pub struct ModelProto {
    #[prost(int64, tag = "1")]
    pub ir_version: i64,
    #[prost(string, tag = "2")]
    pub producer_name: String,
    #[prost(string, tag = "3")]
    pub producer_version: String,
    #[prost(string, tag = "4")]
    pub domain: String,
    #[prost(int64, tag = "5")]
    pub model_version: i64,
    #[prost(string, tag = "6")]
    pub doc_string: String,
    #[prost(message, optional, tag = "7")]
    pub graph: Option<GraphProto>,
    #[prost(message, repeated, tag = "8")]
    pub opset_import: Vec<OperatorSetIdProto>,
    #[prost(message, repeated, tag = "14")]
    pub metadata_props: Vec<StringStringEntryProto>,
}

#[derive(Clone, PartialEq, Message)]
pub struct OperatorSetIdProto {
    #[prost(string, tag = "1")]
    pub domain: String,
    #[prost(int64, tag = "2")]
    pub version: i64,
}

#[derive(Clone, PartialEq, Message)]
pub struct StringStringEntryProto {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

#[derive(Clone, PartialEq, Message)]
pub struct GraphProto {
    #[prost(message, repeated, tag = "1")]
    pub node: Vec<NodeProto>,
    #[prost(string, tag = "2")]
    pub name: String,
    #[prost(message, repeated, tag = "5")]
    pub initializer: Vec<TensorProto>,
    #[prost(string, tag = "10")]
    pub doc_string: String,
    #[prost(message, repeated, tag = "11")]
    pub input: Vec<ValueInfoProto>,
    #[prost(message, repeated, tag = "12")]
    pub output: Vec<ValueInfoProto>,
    #[prost(message, repeated, tag = "13")]
    pub value_info: Vec<ValueInfoProto>,
}

#[derive(Clone, PartialEq, Message)]
pub struct NodeProto {
    #[prost(string, repeated, tag = "1")]
    pub input: Vec<String>,
    #[prost(string, repeated, tag = "2")]
    pub output: Vec<String>,
    #[prost(string, tag = "3")]
    pub name: String,
    #[prost(string, tag = "4")]
    pub op_type: String,
    #[prost(message, repeated, tag = "5")]
    pub attribute: Vec<AttributeProto>,
    #[prost(string, tag = "6")]
    pub doc_string: String,
    #[prost(string, tag = "7")]
    pub domain: String,
}

/// `AttributeProto.AttributeType` values.
pub mod attribute_type {
    pub const FLOAT: i32 = 1;
    pub const INT: i32 = 2;
    pub const STRING: i32 = 3;
    pub const TENSOR: i32 = 4;
    pub const FLOATS: i32 = 6;
    pub const INTS: i32 = 7;
}

#[derive(Clone, PartialEq, Message)]
pub struct AttributeProto {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(float, tag = "2")]
    pub f: f32,
    #[prost(int64, tag = "3")]
    pub i: i64,
    #[prost(bytes = "vec", tag = "4")]
    pub s: Vec<u8>,
    #[prost(message, optional, tag = "5")]
    pub t: Option<TensorProto>,
    #[prost(float, repeated, tag = "7")]
    pub floats: Vec<f32>,
    #[prost(int64, repeated, tag = "8")]
    pub ints: Vec<i64>,
    #[prost(int32, tag = "20")]
    pub r#type: i32,
}

#[derive(Clone, PartialEq, Message)]
pub struct TensorProto {
    #[prost(int64, repeated, tag = "1")]
    pub dims: Vec<i64>,
    #[prost(int32, tag = "2")]
    pub data_type: i32,
    #[prost(float, repeated, tag = "4")]
    pub float_data: Vec<f32>,
    #[prost(int64, repeated, tag = "7")]
    pub int64_data: Vec<i64>,
    #[prost(string, tag = "8")]
    pub name: String,
    #[prost(bytes = "vec", tag = "9")]
    pub raw_data: Vec<u8>,
}

#[derive(Clone, PartialEq, Message)]
pub struct ValueInfoProto {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(message, optional, tag = "2")]
    pub r#type: Option<TypeProto>,
}

#[derive(Clone, PartialEq, Message)]
pub struct TypeProto {
    #[prost(message, optional, tag = "1")]
    pub tensor_type: Option<TypeProtoTensor>,
}

#[derive(Clone, PartialEq, Message)]
pub struct TypeProtoTensor {
    #[prost(int32, tag = "1")]
    pub elem_type: i32,
    #[prost(message, optional, tag = "2")]
    pub shape: Option<TensorShapeProto>,
}

#[derive(Clone, PartialEq, Message)]
pub struct TensorShapeProto {
    #[prost(message, repeated, tag = "1")]
    pub dim: Vec<Dimension>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Dimension {
    #[prost(int64, optional, tag = "1")]
    pub dim_value: Option<i64>,
    #[prost(string, optional, tag = "2")]
    pub dim_param: Option<String>,
}

/// One dimension of a graph input/output: fixed or symbolic (dynamic).
#[derive(Debug, Clone, PartialEq)]
pub enum Dim {
    Fixed(i64),
    Dynamic(&'static str),
}

impl From<i64> for Dim {
    fn from(v: i64) -> Self {
        Dim::Fixed(v)
    }
}

/// A node attribute value.
#[derive(Debug, Clone)]
pub enum Attr {
    Int(i64),
    Ints(Vec<i64>),
    Float(f32),
    Floats(Vec<f32>),
    Str(String),
}

fn attribute(name: &str, value: Attr) -> AttributeProto {
    let mut a = AttributeProto {
        name: name.to_string(),
        ..Default::default()
    };
    match value {
        Attr::Int(i) => (a.i, a.r#type) = (i, attribute_type::INT),
        Attr::Ints(v) => (a.ints, a.r#type) = (v, attribute_type::INTS),
        Attr::Float(f) => (a.f, a.r#type) = (f, attribute_type::FLOAT),
        Attr::Floats(v) => (a.floats, a.r#type) = (v, attribute_type::FLOATS),
        Attr::Str(s) => (a.s, a.r#type) = (s.into_bytes(), attribute_type::STRING),
    }
    a
}

fn value_info(name: &str, elem_type: i32, dims: &[Dim]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| match d {
            Dim::Fixed(v) => Dimension {
                dim_value: Some(*v),
                dim_param: None,
            },
            Dim::Dynamic(p) => Dimension {
                dim_value: None,
                dim_param: Some(p.to_string()),
            },
        })
        .collect();
    ValueInfoProto {
        name: name.to_string(),
        r#type: Some(TypeProto {
            tensor_type: Some(TypeProtoTensor {
                elem_type,
                shape: Some(TensorShapeProto { dim }),
            }),
        }),
    }
}

/// Assembles an ONNX graph node by node. Intermediate names are generated (`name_N`) unless given.
#[derive(Debug, Clone)]
pub struct GraphBuilder {
    graph: GraphProto,
    metadata: Vec<(String, String)>,
    opset: i64,
    counter: usize,
}

impl Default for GraphBuilder {
    fn default() -> Self {
        Self::new("graph")
    }
}

impl GraphBuilder {
    pub fn new(name: &str) -> Self {
        Self {
            graph: GraphProto {
                name: name.to_string(),
                ..Default::default()
            },
            metadata: Vec::new(),
            opset: DEFAULT_OPSET,
            counter: 0,
        }
    }

    pub fn opset(mut self, version: i64) -> Self {
        self.opset = version;
        self
    }

    /// A fresh, unique value name.
    pub fn fresh(&mut self, prefix: &str) -> String {
        self.counter += 1;
        format!("{prefix}_{}", self.counter)
    }

    pub fn input(&mut self, name: &str, elem_type: i32, dims: &[Dim]) -> String {
        self.graph.input.push(value_info(name, elem_type, dims));
        name.to_string()
    }

    pub fn output(&mut self, name: &str, elem_type: i32, dims: &[Dim]) {
        self.graph.output.push(value_info(name, elem_type, dims));
    }

    /// A float initializer (weights or constants), stored as raw little-endian data.
    pub fn initializer_f32(&mut self, prefix: &str, dims: &[i64], data: &[f32]) -> String {
        assert_eq!(
            dims.iter().product::<i64>() as usize,
            data.len(),
            "initializer {prefix}: dims/data mismatch"
        );
        let name = self.fresh(prefix);
        let mut raw = Vec::with_capacity(data.len() * 4);
        for v in data {
            raw.extend_from_slice(&v.to_le_bytes());
        }
        self.graph.initializer.push(TensorProto {
            dims: dims.to_vec(),
            data_type: data_type::FLOAT,
            name: name.clone(),
            raw_data: raw,
            ..Default::default()
        });
        name
    }

    pub fn initializer_i64(&mut self, prefix: &str, dims: &[i64], data: &[i64]) -> String {
        assert_eq!(
            dims.iter().product::<i64>() as usize,
            data.len(),
            "initializer {prefix}: dims/data mismatch"
        );
        let name = self.fresh(prefix);
        self.graph.initializer.push(TensorProto {
            dims: dims.to_vec(),
            data_type: data_type::INT64,
            name: name.clone(),
            int64_data: data.to_vec(),
            ..Default::default()
        });
        name
    }

    /// Adds a node with one output named `output` (or a fresh name if empty) and returns that name.
    pub fn node(&mut self, op_type: &str, inputs: &[&str], output: &str, attrs: Vec<(&str, Attr)>) -> String {
        let out = if output.is_empty() {
            self.fresh(&op_type.to_ascii_lowercase())
        } else {
            output.to_string()
        };
        self.node_multi(op_type, inputs, &[&out], attrs);
        out
    }

    pub fn node_multi(&mut self, op_type: &str, inputs: &[&str], outputs: &[&str], attrs: Vec<(&str, Attr)>) {
        let name = self.fresh(op_type);
        self.graph.node.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outputs.iter().map(|s| s.to_string()).collect(),
            name,
            op_type: op_type.to_string(),
            attribute: attrs.into_iter().map(|(n, v)| attribute(n, v)).collect(),
            ..Default::default()
        });
    }

    pub fn metadata(&mut self, key: &str, value: &str) {
        self.metadata.retain(|(k, _)| k != key);
        self.metadata.push((key.to_string(), value.to_string()));
    }

    pub fn build(self) -> ModelProto {
        ModelProto {
            ir_version: IR_VERSION,
            producer_name: "mobilenetdetect".into(),
            producer_version: env!("CARGO_PKG_VERSION").into(),
            graph: Some(self.graph),
            opset_import: vec![OperatorSetIdProto {
                domain: String::new(),
                version: self.opset,
            }],
            metadata_props: self
                .metadata
                .into_iter()
                .map(|(key, value)| StringStringEntryProto { key, value })
                .collect(),
            ..Default::default()
        }
    }

    pub fn to_bytes(self) -> Vec<u8> {
        self.build().encode_to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_round_trips_through_protobuf() {
        let mut g = GraphBuilder::new("t");
        let x = g.input("x", data_type::FLOAT, &[Dim::Fixed(1), Dim::Dynamic("n")]);
        let c = g.initializer_f32("c", &[1], &[2.0]);
        g.node("Mul", &[&x, &c], "y", vec![]);
        g.output("y", data_type::FLOAT, &[Dim::Fixed(1), Dim::Dynamic("n")]);
        g.metadata("k", "v");
        let bytes = g.to_bytes();
        let m = ModelProto::decode(bytes.as_slice()).unwrap();
        let graph = m.graph.unwrap();
        assert_eq!(graph.node[0].op_type, "Mul");
        assert_eq!(graph.initializer[0].raw_data, 2.0f32.to_le_bytes());
        assert_eq!(m.metadata_props[0].key, "k");
        assert_eq!(m.opset_import[0].version, DEFAULT_OPSET);
    }
}
