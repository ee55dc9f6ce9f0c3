//! Decoding of Kubernetes protobuf request bodies (`application/vnd.kubernetes.protobuf`).
//!
//! Typed clients (kubectl's `create` generators, client-go components) send built-in
//! kinds as protobuf. Skiff keeps objects as JSON, so bodies are decoded into the same
//! `serde_json::Value` a JSON client would have sent; responses stay JSON (clients list
//! `application/json` as a fallback in `Accept`).
//!
//! CONTRACT (implemented by the protobuf work item):
//! - [`decode`] parses the envelope (`k8s\0` magic + `runtime.Unknown`), finds the
//!   definition from its apiVersion/kind, and decodes the raw message into JSON, with
//!   the field names and value forms of the JSON wire format (Time as RFC 3339,
//!   Quantity as string, IntOrString as int or string, bytes as base64,
//!   RawExtension/FieldsV1 as embedded JSON, maps as objects).

use serde_json::Value;

/// Why a protobuf body could not be decoded (the server answers 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ProtobufError(pub String);

/// Decodes an enveloped protobuf object into its JSON form.
pub fn decode(_raw: &[u8]) -> Result<Value, ProtobufError> {
    Err(ProtobufError("protobuf bodies are not supported yet; send application/json".into()))
}
