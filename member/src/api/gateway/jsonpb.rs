//! Request bodies decoded as etcd 3.4's gateway decodes them: golang/protobuf 1.3's `jsonpb`
//! (with unknown fields allowed) over Go's `encoding/json`, so a body etcd takes is taken
//! here with the same meaning, and a body etcd refuses is refused with etcd's words.
//!
//! The rules clients meet: a field is found by its proto name or its JSON (camelCase) name,
//! the camelCase one winning; fields are read in declaration order, oneof members after the
//! rest, so the first bad field in that order is the one named; `null` is absent; 64-bit
//! integers come as numbers or strings ("5", " 5", not "5.0"); enums by name or by any
//! number; bytes as padded standard base64 or as an array of byte values.
//!
//! The JSON becomes a [`DynamicMessage`] of the request's descriptor, then the generated
//! message by its protobuf encoding.

use prost_reflect::{DynamicMessage, FieldDescriptor, Kind, MapKey, MessageDescriptor, Value};

use super::gojson::{self, Kind as Json};
use crate::descriptors::pool;

/// One JSON value (the first of a body, already checked by Go's decoder rules) as message `M`.
pub(super) fn decode<M: prost::Message + prost::Name + Default>(raw: &[u8]) -> Result<M, String> {
    let desc = pool()
        .get_message_by_name(&M::full_name())
        .ok_or_else(|| format!("no descriptor for {}", M::full_name()))?;
    let msg = message(&desc, raw)?;
    M::decode(prost::Message::encode_to_vec(&msg).as_slice()).map_err(|e| e.to_string())
}

/// Go's "json: cannot unmarshal X into Go value of type T".
fn type_error(raw: &[u8], go_type: &str) -> String {
    let kind = Json::of(raw);
    let what = match kind {
        // Only numbers bound for numeric types are quoted with their literal.
        Json::Number if is_numeric(go_type) => {
            format!("number {}", String::from_utf8_lossy(raw))
        }
        _ => kind.go_word().to_string(),
    };
    format!("json: cannot unmarshal {what} into Go value of type {go_type}")
}

/// Go's numeric types here: the built-in ones and generated enums (`pkg.Name`, unlike the
/// composite `map[string]json.RawMessage`).
fn is_numeric(go_type: &str) -> bool {
    matches!(
        go_type,
        "int32" | "int64" | "uint32" | "uint64" | "uint8" | "float32" | "float64"
    ) || (go_type.contains('.') && !go_type.contains('['))
}

fn message(desc: &MessageDescriptor, raw: &[u8]) -> Result<DynamicMessage, String> {
    let mut msg = DynamicMessage::new(desc.clone());
    match Json::of(raw) {
        Json::Null => return Ok(msg),
        Json::Object => {}
        _ => return Err(type_error(raw, "map[string]json.RawMessage")),
    }
    let mut fields = gojson::members(raw);
    // Regular fields first, in declaration order, then the members of oneofs.
    let (plain, oneof): (Vec<_>, Vec<_>) =
        desc.fields().partition(|f| f.containing_oneof().is_none());
    for field in plain.iter().chain(oneof.iter()) {
        let Some(value) = take(&mut fields, field) else {
            continue;
        };
        if Json::of(value) == Json::Null {
            continue;
        }
        if let Some(v) = field_value(field, value)? {
            msg.set_field(field, v);
        }
    }
    Ok(msg)
}

/// The raw value of `field` (under its JSON name if given, else its proto name), removed
/// from the object with every other member of either name.
fn take<'a>(fields: &mut Vec<(String, &'a [u8])>, field: &FieldDescriptor) -> Option<&'a [u8]> {
    let find = |fields: &[(String, &'a [u8])], name: &str| {
        fields
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| *v)
    };
    let value = find(fields, field.json_name()).or_else(|| find(fields, field.name()));
    if value.is_some() {
        fields.retain(|(k, _)| k != field.json_name() && k != field.name());
    }
    value
}

fn field_value(field: &FieldDescriptor, raw: &[u8]) -> Result<Option<Value>, String> {
    if let Kind::Enum(e) = field.kind() {
        // jsonpb looks for an enum name before it looks at the field's shape.
        if field.is_list() && Json::of(raw) == Json::String {
            return Err(format!(
                "invalid target \"slice\" for enum {}",
                go_enum_name(e.full_name())
            ));
        }
    }
    if field.is_map() {
        return map_value(field, raw).map(Some);
    }
    if field.is_list() {
        return match Json::of(raw) {
            Json::Null => Ok(None),
            Json::Array => {
                let mut items = Vec::new();
                for item in gojson::elements(raw) {
                    items.push(singular(&field.kind(), item)?);
                }
                Ok(Some(Value::List(items)))
            }
            _ => Err(type_error(raw, "[]json.RawMessage")),
        };
    }
    singular(&field.kind(), raw).map(Some)
}

fn map_value(field: &FieldDescriptor, raw: &[u8]) -> Result<Value, String> {
    let Kind::Message(entry) = field.kind() else {
        return Err(format!("map field {} has no entry type", field.name()));
    };
    let (key_field, value_field) = (entry.map_entry_key_field(), entry.map_entry_value_field());
    match Json::of(raw) {
        Json::Object | Json::Null => {}
        _ => return Err(type_error(raw, "map[string]json.RawMessage")),
    }
    let mut map = std::collections::HashMap::new();
    for (key, value) in gojson::members(raw) {
        let key = match key_field.kind() {
            Kind::String => MapKey::String(key),
            kind => match singular(&kind, key.as_bytes())? {
                Value::Bool(b) => MapKey::Bool(b),
                Value::I32(n) => MapKey::I32(n),
                Value::I64(n) => MapKey::I64(n),
                Value::U32(n) => MapKey::U32(n),
                Value::U64(n) => MapKey::U64(n),
                _ => return Err(format!("bad map key {key}")),
            },
        };
        map.insert(key, singular(&value_field.kind(), value)?);
    }
    Ok(Value::Map(map))
}

/// One value of a field's type (an element, for a repeated field).
fn singular(kind: &Kind, raw: &[u8]) -> Result<Value, String> {
    Ok(match kind {
        Kind::Message(desc) => Value::Message(message(desc, raw)?),
        Kind::Enum(e) => {
            let go_name = go_enum_name(e.full_name());
            if Json::of(raw) == Json::String {
                // The name between the quotes, not unescaped (jsonpb looks it up raw).
                let name = &raw[1..raw.len() - 1];
                let value = std::str::from_utf8(name)
                    .ok()
                    .and_then(|n| e.get_value_by_name(n));
                return match value {
                    Some(v) => Ok(Value::EnumNumber(v.number())),
                    None => Err(format!(
                        "unknown value {} for enum {go_name}",
                        gojson::quote(&String::from_utf8_lossy(name))
                    )),
                };
            }
            Value::EnumNumber(integer(raw, &go_name, |s| s.parse::<i32>().ok())?)
        }
        Kind::Bool => match Json::of(raw) {
            Json::Bool => Value::Bool(raw == b"true"),
            Json::Null => Value::Bool(false),
            _ => return Err(type_error(raw, "bool")),
        },
        Kind::String => match Json::of(raw) {
            Json::String => Value::String(gojson::unquote(raw)),
            Json::Null => Value::String(String::new()),
            _ => return Err(type_error(raw, "string")),
        },
        Kind::Bytes => Value::Bytes(bytes(raw)?.into()),
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => {
            Value::I64(quoted_integer(raw, "int64", |s| s.parse().ok())?)
        }
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => {
            Value::I32(quoted_integer(raw, "int32", |s| s.parse().ok())?)
        }
        Kind::Uint64 | Kind::Fixed64 => {
            Value::U64(quoted_integer(raw, "uint64", |s| s.parse().ok())?)
        }
        Kind::Uint32 | Kind::Fixed32 => {
            Value::U32(quoted_integer(raw, "uint32", |s| s.parse().ok())?)
        }
        Kind::Double => Value::F64(quoted_integer(raw, "float64", |s| s.parse().ok())?),
        Kind::Float => Value::F32(quoted_integer(raw, "float32", |s| s.parse().ok())?),
    })
}

/// A number field: jsonpb strips one pair of quotes (escapes and all) and has Go's
/// `json.Unmarshal` read what is inside.
fn quoted_integer<T: Default>(
    raw: &[u8],
    go_type: &str,
    parse: impl Fn(&str) -> Option<T>,
) -> Result<T, String> {
    let inner = match raw {
        [b'"', inner @ .., b'"'] => {
            gojson::check_valid(inner)?;
            inner.trim_ascii()
        }
        _ => raw,
    };
    integer(inner, go_type, parse)
}

/// Go's `json.Unmarshal` of a valid value into a number of `go_type`.
fn integer<T: Default>(
    raw: &[u8],
    go_type: &str,
    parse: impl Fn(&str) -> Option<T>,
) -> Result<T, String> {
    match Json::of(raw) {
        Json::Null => Ok(T::default()),
        Json::Number => std::str::from_utf8(raw)
            .ok()
            .and_then(parse)
            .ok_or_else(|| type_error(raw, go_type)),
        _ => Err(type_error(raw, go_type)),
    }
}

/// A bytes field: a base64 string, or (Go's `[]byte` takes one) an array of byte values.
fn bytes(raw: &[u8]) -> Result<Vec<u8>, String> {
    match Json::of(raw) {
        Json::Null => Ok(Vec::new()),
        Json::String => gojson::decode_base64(gojson::unquote(raw).as_bytes()),
        Json::Array => gojson::elements(raw)
            .into_iter()
            .map(|item| integer(item, "uint8", |s| s.parse::<u8>().ok()))
            .collect(),
        _ => Err(type_error(raw, "[]uint8")),
    }
}

/// The Go type (and jsonpb's enum name) of a generated enum: its package, then its path
/// within the package joined by `_` (`etcdserverpb.RangeRequest.SortOrder` is
/// `etcdserverpb.RangeRequest_SortOrder`).
fn go_enum_name(full_name: &str) -> String {
    match full_name.split_once('.') {
        Some((package, path)) => format!("{package}.{}", path.replace('.', "_")),
        None => full_name.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use oxetcd_common::etcdserverpb::{
        compare, range_request, request_op, Compare, PutRequest, RangeRequest, TxnRequest,
    };

    use super::*;

    fn err<M: prost::Message + prost::Name + Default + std::fmt::Debug>(json: &str) -> String {
        decode::<M>(json.as_bytes()).expect_err(json)
    }

    #[test]
    fn fields_read_as_jsonpb_reads_them() {
        let r: RangeRequest = decode(
            br#"{"key":"YWI=","rangeEnd":"YWM=","range_end":"!!","limit":" 7","revision":"-0",
                "sort_order":"DESCEND","sort_target":3,"keys_only":null,"countOnly":true,"x":{}}"#,
        )
        .unwrap();
        assert_eq!(r.key, b"ab");
        assert_eq!(r.range_end, b"ac");
        assert_eq!(r.limit, 7);
        assert_eq!(r.sort_order, range_request::SortOrder::Descend as i32);
        assert_eq!(r.sort_target, 3);
        assert!(r.count_only && !r.keys_only);
        let p: PutRequest = decode(br#"{"key":[97,98],"value":"\u0041Q==","lease":"5"}"#).unwrap();
        assert_eq!(
            (p.key.as_slice(), p.value.as_slice(), p.lease),
            (&b"ab"[..], &[1u8][..], 5)
        );
        let t: TxnRequest =
            decode(br#"{"compare":[{"key":"YQ==","version":"2","result":"GREATER"}],"success":[{"requestPut":{"key":"YQ=="}}]}"#)
                .unwrap();
        assert_eq!(
            t.compare[0].target_union,
            Some(compare::TargetUnion::Version(2))
        );
        assert!(matches!(
            t.success[0].request,
            Some(request_op::Request::RequestPut(_))
        ));
        assert_eq!(
            decode::<PutRequest>(b"null").unwrap(),
            PutRequest::default()
        );
    }

    #[test]
    fn errors_read_as_etcds() {
        for (json, want) in [
            (
                r#"{"key":7}"#,
                "json: cannot unmarshal number into Go value of type []uint8",
            ),
            (
                r#"{"key":{}}"#,
                "json: cannot unmarshal object into Go value of type []uint8",
            ),
            (
                r#"{"key":["a"]}"#,
                "json: cannot unmarshal string into Go value of type uint8",
            ),
            (
                r#"{"key":[256]}"#,
                "json: cannot unmarshal number 256 into Go value of type uint8",
            ),
            (r#"{"key":"Z3c"}"#, "illegal base64 data at input byte 0"),
            (
                r#"{"lease":"x"}"#,
                "invalid character 'x' looking for beginning of value",
            ),
            (
                r#"{"lease":1.5}"#,
                "json: cannot unmarshal number 1.5 into Go value of type int64",
            ),
            (
                r#"{"lease":"1e3"}"#,
                "json: cannot unmarshal number 1e3 into Go value of type int64",
            ),
            (r#"{"lease":""}"#, "unexpected end of JSON input"),
            (
                r#"{"lease":"1."}"#,
                "invalid character ' ' after decimal point in numeric literal",
            ),
            (
                r#"{"lease":"[1]"}"#,
                "json: cannot unmarshal array into Go value of type int64",
            ),
            (
                r#"{"lease":true}"#,
                "json: cannot unmarshal bool into Go value of type int64",
            ),
            (
                r#"{"prev_kv":"yes"}"#,
                "json: cannot unmarshal string into Go value of type bool",
            ),
            (
                r#"{"prev_kv":1}"#,
                "json: cannot unmarshal number into Go value of type bool",
            ),
            (
                "[]",
                "json: cannot unmarshal array into Go value of type map[string]json.RawMessage",
            ),
            (
                r#"{"lease":"x","key":"!"}"#,
                "illegal base64 data at input byte 0",
            ),
        ] {
            assert_eq!(err::<PutRequest>(json), want, "{json}");
        }
        for (json, want) in [
            (r#"{"sort_order":"FOO"}"#, r#"unknown value "FOO" for enum etcdserverpb.RangeRequest_SortOrder"#),
            (r#"{"sort_order":"\u0041SCEND"}"#, r#"unknown value "\\u0041SCEND" for enum etcdserverpb.RangeRequest_SortOrder"#),
            (r#"{"sort_order":true}"#, "json: cannot unmarshal bool into Go value of type etcdserverpb.RangeRequest_SortOrder"),
            (r#"{"sort_order":1.5}"#, "json: cannot unmarshal number 1.5 into Go value of type etcdserverpb.RangeRequest_SortOrder"),
        ] {
            assert_eq!(err::<RangeRequest>(json), want, "{json}");
        }
        assert_eq!(
            err::<TxnRequest>(r#"{"compare":{"key":"YQ=="}}"#),
            "json: cannot unmarshal object into Go value of type []json.RawMessage"
        );
        assert_eq!(
            err::<Compare>(r#"{"result":"FOO"}"#),
            r#"unknown value "FOO" for enum etcdserverpb.Compare_CompareResult"#
        );
    }
}
