//! The gateway described as an OpenAPI 2.0 (Swagger) document, in the form
//! `protoc-gen-swagger` gives etcd's own `rpc.swagger.json`, built from the routes the gateway
//! serves and the descriptors of the protos it decodes with: one POST operation per route,
//! its request as the body, its answer (or, for a streaming RPC, each `{"result": …}` line)
//! as the 200 response, grpc-gateway's error body otherwise, and a definition per message
//! and enum reachable from them, with the JSON types the gateway reads and writes (64-bit
//! integers as strings, bytes as base64, enums by name).

use std::collections::{BTreeMap, HashMap};

use prost_reflect::{
    EnumDescriptor, FieldDescriptor, FileDescriptor, Kind, MessageDescriptor, MethodDescriptor,
};
use serde_json::{json, Map, Value};

use crate::descriptors::pool;

/// A route of the gateway: its path under the API prefix and the RPC it calls
/// (`etcdserverpb.KV.Range`).
pub(super) struct Operation {
    pub(super) path: &'static str,
    pub(super) rpc: &'static str,
}

/// The document for these operations.
pub(super) fn document(operations: &[Operation]) -> Value {
    let mut doc = Doc::default();
    let mut paths = Map::new();
    let mut operation_ids: HashMap<String, usize> = HashMap::new();
    for op in operations {
        let Some(method) = method(op.rpc) else {
            continue;
        };
        // Two paths to one RPC (etcd's `/v3/kv/lease/*` aliases) get `Name2`, as etcd's do.
        let seen = operation_ids.entry(method.name().to_string()).or_default();
        *seen += 1;
        let operation_id = match *seen {
            1 => method.name().to_string(),
            n => format!("{}{n}", method.name()),
        };
        let operation = doc.operation(&method, operation_id);
        paths.insert(format!("/v3/{}", op.path), json!({ "post": operation }));
    }
    json!({
        "swagger": "2.0",
        "info": {
            "title": "etcd v3 API over HTTP+JSON (oxetcd gateway)",
            "description": "etcd's grpc-gateway: POST the request message as JSON to its path, under /v3/ (and /v3beta/, the same API). Field names are the protos'; int64 and uint64 are strings, bytes base64, enums names. Send an auth token in the Authorization header. Streaming RPCs take a sequence of JSON requests and answer one JSON object per line.",
            "version": oxetcd_common::version::ETCD_SERVER_VERSION,
        },
        "schemes": ["http", "https"],
        "consumes": ["application/json"],
        "produces": ["application/json"],
        "paths": paths,
        "definitions": doc.definitions,
        "x-stream-definitions": doc.streams,
    })
}

fn method(rpc: &str) -> Option<MethodDescriptor> {
    let (service, name) = rpc.rsplit_once('.')?;
    pool()
        .get_service_by_name(service)?
        .methods()
        .find(|m| m.name() == name)
}

/// The definitions collected while describing operations.
#[derive(Default)]
struct Doc {
    definitions: BTreeMap<String, Value>,
    streams: BTreeMap<String, Value>,
}

impl Doc {
    fn operation(&mut self, method: &MethodDescriptor, operation_id: String) -> Value {
        let mut body = json!({
            "name": "body",
            "in": "body",
            "required": true,
            "schema": self.message_ref(&method.input()),
        });
        let output = self.message_ref(&method.output());
        let ok = if method.is_server_streaming() {
            let name = definition_name(method.output().full_name());
            self.streams.insert(
                name.clone(),
                json!({
                    "type": "object",
                    "title": format!("Stream result of {name}"),
                    "properties": {
                        "result": output,
                        "error": { "$ref": "#/definitions/runtimeStreamError" },
                    },
                }),
            );
            self.stream_error();
            json!({
                "description": "A successful response.(streaming responses)",
                "schema": { "$ref": format!("#/x-stream-definitions/{name}") },
            })
        } else {
            json!({ "description": "A successful response.", "schema": output })
        };
        if method.is_client_streaming() {
            body["description"] = json!(" (streaming inputs)");
        }
        self.error();
        let mut op = json!({
            "tags": [method.parent_service().name()],
            "operationId": operation_id,
            "parameters": [body],
            "responses": {
                "200": ok,
                "default": {
                    "description": "An unexpected error response.",
                    "schema": { "$ref": "#/definitions/runtimeError" },
                },
            },
        });
        if let Some(summary) = comment(&method.parent_file(), method.path()) {
            op["summary"] = json!(summary);
        }
        op
    }

    fn message_ref(&mut self, desc: &MessageDescriptor) -> Value {
        let name = definition_name(desc.full_name());
        if !self.definitions.contains_key(&name) {
            // Placeholder first: messages may refer to themselves (TxnRequest in RequestOp).
            self.definitions.insert(name.clone(), Value::Null);
            let mut properties = Map::new();
            for field in desc.fields() {
                properties.insert(field.name().to_string(), self.field(&field));
            }
            let mut def = json!({ "type": "object", "properties": properties });
            if let Some(text) = comment(&desc.parent_file(), desc.path()) {
                def["description"] = json!(text);
            }
            self.definitions.insert(name.clone(), def);
        }
        json!({ "$ref": format!("#/definitions/{name}") })
    }

    fn enum_ref(&mut self, desc: &EnumDescriptor) -> Value {
        let name = definition_name(desc.full_name());
        if !self.definitions.contains_key(&name) {
            let names: Vec<String> = desc.values().map(|v| v.name().to_string()).collect();
            let default = names.first().cloned().unwrap_or_default();
            let def = json!({ "type": "string", "enum": names, "default": default });
            self.definitions.insert(name.clone(), def);
        }
        json!({ "$ref": format!("#/definitions/{name}") })
    }

    fn field(&mut self, field: &FieldDescriptor) -> Value {
        let mut schema = if field.is_map() {
            let value = match field.kind() {
                Kind::Message(entry) => self.kind(&entry.map_entry_value_field().kind()),
                other => self.kind(&other),
            };
            json!({ "type": "object", "additionalProperties": value })
        } else if field.is_list() {
            json!({ "type": "array", "items": self.kind(&field.kind()) })
        } else {
            self.kind(&field.kind())
        };
        if let Some(text) = comment(&field.parent_file(), field.path()) {
            // A `$ref` takes no siblings in Swagger 2.0: describe only inline schemas.
            if let Some(obj) = schema.as_object_mut().filter(|o| !o.contains_key("$ref")) {
                obj.insert("description".into(), json!(text));
            }
        }
        schema
    }

    /// The JSON form of one value of a proto type, as grpc-gateway writes it.
    fn kind(&mut self, kind: &Kind) -> Value {
        let (ty, format) = match kind {
            Kind::Message(m) => return self.message_ref(m),
            Kind::Enum(e) => return self.enum_ref(e),
            Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => ("string", "int64"),
            Kind::Uint64 | Kind::Fixed64 => ("string", "uint64"),
            Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => ("integer", "int32"),
            Kind::Uint32 | Kind::Fixed32 => ("integer", "int64"),
            Kind::Bool => ("boolean", "boolean"),
            Kind::String => return json!({ "type": "string" }),
            Kind::Bytes => ("string", "byte"),
            Kind::Double => ("number", "double"),
            Kind::Float => ("number", "float"),
        };
        json!({ "type": ty, "format": format })
    }

    /// grpc-gateway's error body, as the gateway writes it.
    fn error(&mut self) {
        self.definitions
            .entry("runtimeError".into())
            .or_insert_with(|| {
                json!({
                    "type": "object",
                    "properties": {
                        "error": { "type": "string" },
                        "code": { "type": "integer", "format": "int32" },
                        "message": { "type": "string" },
                    },
                })
            });
    }

    /// The `error` member of a streaming answer's line, which ends the stream.
    fn stream_error(&mut self) {
        self.definitions
            .entry("runtimeStreamError".into())
            .or_insert_with(|| {
                json!({
                    "type": "object",
                    "properties": {
                        "grpc_code": { "type": "integer", "format": "int32" },
                        "http_code": { "type": "integer", "format": "int32" },
                        "message": { "type": "string" },
                        "http_status": { "type": "string" },
                    },
                })
            });
    }
}

/// protoc-gen-swagger's definition names: the full name without its dots
/// (`etcdserverpbRangeRequest`, `etcdserverpbRangeRequestSortOrder`).
fn definition_name(full_name: &str) -> String {
    full_name.replace('.', "")
}

/// The leading comment of the element at `path` in its file, trimmed.
fn comment(file: &FileDescriptor, path: &[i32]) -> Option<String> {
    let info = file.file_descriptor_proto().source_code_info.as_ref()?;
    let location = info.location.iter().find(|l| l.path == path)?;
    let text = location.leading_comments.as_deref()?;
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    let joined = lines.join("\n").trim().to_string();
    (!joined.is_empty()).then_some(joined)
}
