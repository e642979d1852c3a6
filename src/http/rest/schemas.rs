//! OpenAPI schemas that state the limits the domains check, built from the same constants the
//! checks use, so that a request valid by the document is accepted and one invalid by it is
//! refused (400). Body fields name them with `#[schema(schema_with = …)]`.

use utoipa::openapi::schema::{AdditionalProperties, ArrayBuilder, ObjectBuilder, OneOfBuilder, Schema, SchemaType, Type};
use utoipa::Number;

use crate::model::{ID_MAX_LEN, ID_PATTERN, MAX_NAME_CHARS, MAX_OPS, MAX_VALUE_BYTES};

/// A string of one of `types`, or null when `nullable`.
fn of_type(types: Type, nullable: bool) -> SchemaType {
    if nullable {
        SchemaType::Array(vec![types, Type::Null])
    } else {
        SchemaType::Type(types)
    }
}

fn id(nullable: bool) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(of_type(Type::String, nullable))
        .min_length(Some(1))
        .max_length(Some(ID_MAX_LEN))
        .pattern(Some(ID_PATTERN))
        .description(Some(format!("1 to {ID_MAX_LEN} characters of [A-Za-z0-9._-]")))
}

/// An id the caller chooses (`node-4`, `replica-001`, a slot's name): [`crate::model::validate_id`].
pub fn caller_id() -> Schema {
    id(false).build().into()
}

/// Sites in order of priority, each an id, none twice, at least one (or null, if `nullable`).
pub fn site_list(nullable: bool) -> ArrayBuilder {
    ArrayBuilder::new()
        .schema_type(of_type(Type::Array, nullable))
        .items(id(false))
        .min_items(Some(1))
        .unique_items(true)
        .description(Some("Sites, highest priority first"))
}

/// A table name or a row key as a batch takes them.
fn row_name() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(MAX_NAME_CHARS))
        .pattern(Some("^[^\\u0000]*$"))
}

/// One operation: insert and update carry a value (any JSON but null), delete none.
fn op(kinds: &[&str], value: Option<ObjectBuilder>) -> ObjectBuilder {
    let mut op = ObjectBuilder::new()
        .property("op", ObjectBuilder::new().schema_type(Type::String).enum_values(Some(kinds.iter().copied())))
        .required("op")
        .property("table", row_name())
        .required("table")
        .property("key", row_name())
        .required("key")
        .additional_properties(Some(AdditionalProperties::FreeForm(false)));
    match value {
        Some(v) => op = op.property("value", v).required("value"),
        // A delete's value may only be absent or null (serde reads null as absent).
        None => op = op.property("value", ObjectBuilder::new().schema_type(Type::Null)),
    }
    op
}

/// The `ops` of a batch: 1 to [`MAX_OPS`] operations.
pub fn ops() -> Schema {
    let any_but_null = ObjectBuilder::new()
        .schema_type(SchemaType::Array(vec![Type::Object, Type::Array, Type::String, Type::Number, Type::Boolean]))
        .description(Some(format!("The row's new value, any JSON but null, at most {MAX_VALUE_BYTES} bytes serialized")));
    ArrayBuilder::new()
        .items(
            OneOfBuilder::new()
                .item(op(&["insert", "update", "upsert"], Some(any_but_null)))
                .item(op(&["delete"], None)),
        )
        .min_items(Some(1))
        .max_items(Some(MAX_OPS))
        .build()
        .into()
}

/// An integer in `min..=max`.
pub fn integer(min: usize, max: usize) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .minimum(Some(Number::UInt(min)))
        .maximum(Some(Number::UInt(max)))
}

/// As [`integer`], or null.
pub fn optional_integer(min: usize, max: usize) -> ObjectBuilder {
    integer(min, max).schema_type(of_type(Type::Integer, true))
}
