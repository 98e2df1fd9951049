//! A validator for the part of JSON Schema (2020-12) that `docs/openapi.yaml` uses: local
//! `$ref`, `type` (also a list of types, which is how the document says nullable), `const`,
//! `enum`, `required`, `properties`, `additionalProperties`, `items`, `allOf`, `minimum`,
//! `maximum`, `minLength`, `maxLength`, `pattern` and the formats `uuid` and `date-time`.
//!
//! A keyword or format outside that set is an error, not ignored: the document must never
//! claim a constraint that no test checks. Annotations (`description`, `default`, ...) are
//! skipped.

use serde_json::{Map, Value};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Keywords that only describe; they constrain nothing.
const ANNOTATIONS: &[&str] = &["description", "title", "default", "examples", "example"];

const KEYWORDS: &[&str] = &[
    "$ref",
    "type",
    "const",
    "enum",
    "required",
    "properties",
    "additionalProperties",
    "items",
    "allOf",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "pattern",
    "format",
];

/// Every way `value` breaks `schema`, each as `<JSON pointer>: <what>`. `root` is the document
/// that `$ref`s point into.
pub fn validate(root: &Value, schema: &Value, value: &Value) -> Vec<String> {
    let mut errors = Vec::new();
    check(root, schema, value, "", &mut errors);
    errors
}

/// Keywords and formats in `schema` (and the schemas inside it) that [`validate`] does not
/// check, and `$ref`s that lead nowhere.
pub fn unsupported(root: &Value, schema: &Value, at: &str) -> Vec<String> {
    let mut problems = Vec::new();
    walk_unsupported(root, schema, at, &mut problems);
    problems
}

fn walk_unsupported(root: &Value, schema: &Value, at: &str, problems: &mut Vec<String>) {
    let Some(object) = schema.as_object() else {
        if !schema.is_boolean() {
            problems.push(format!("{at}: a schema must be an object or a boolean"));
        }
        return;
    };
    for (keyword, inner) in object {
        let here = format!("{at}/{keyword}");
        match keyword.as_str() {
            "$ref" => {
                if resolve(root, inner).is_none() {
                    problems.push(format!("{here}: {inner} leads nowhere"));
                }
            }
            "format" if !matches!(inner.as_str(), Some("uuid" | "date-time")) => {
                problems.push(format!("{here}: format {inner} is not checked"));
            }
            "properties" => {
                for (name, property) in inner.as_object().into_iter().flatten() {
                    walk_unsupported(root, property, &format!("{here}/{name}"), problems);
                }
            }
            "items" | "additionalProperties" => walk_unsupported(root, inner, &here, problems),
            "allOf" => {
                for (n, part) in inner.as_array().into_iter().flatten().enumerate() {
                    walk_unsupported(root, part, &format!("{here}/{n}"), problems);
                }
            }
            "pattern" => {
                if inner
                    .as_str()
                    .and_then(|p| regex::Regex::new(p).ok())
                    .is_none()
                {
                    problems.push(format!("{here}: {inner} is not a regular expression"));
                }
            }
            known if KEYWORDS.contains(&known) || ANNOTATIONS.contains(&known) => {}
            other => problems.push(format!("{at}: keyword {other} is not checked")),
        }
    }
}

/// The schema a `{"$ref": "#/..."}` points at.
pub fn resolve<'a>(root: &'a Value, reference: &Value) -> Option<&'a Value> {
    root.pointer(reference.as_str()?.strip_prefix('#')?)
}

fn check(root: &Value, schema: &Value, value: &Value, at: &str, errors: &mut Vec<String>) {
    let schema = match schema {
        Value::Bool(true) => return,
        Value::Bool(false) => return fail(errors, at, "no value is allowed here".to_owned()),
        Value::Object(schema) => schema,
        other => return fail(errors, at, format!("{other} is not a schema")),
    };
    for (keyword, rule) in schema {
        match keyword.as_str() {
            "$ref" => match resolve(root, rule) {
                Some(target) => check(root, target, value, at, errors),
                None => fail(errors, at, format!("$ref {rule} leads nowhere")),
            },
            "type" => {
                let names: Vec<&str> = match rule {
                    Value::String(name) => vec![name.as_str()],
                    Value::Array(names) => names.iter().filter_map(Value::as_str).collect(),
                    _ => vec![],
                };
                if !names.iter().any(|name| is_type(value, name)) {
                    let expected = names.join(" or ");
                    fail(errors, at, format!("expected {expected}, got {value}"));
                }
            }
            "const" if value != rule => fail(errors, at, format!("expected {rule}, got {value}")),
            "enum"
                if !rule
                    .as_array()
                    .is_some_and(|allowed| allowed.contains(value)) =>
            {
                fail(errors, at, format!("{value} is not one of {rule}"));
            }
            "allOf" => {
                for part in rule.as_array().into_iter().flatten() {
                    check(root, part, value, at, errors);
                }
            }
            "required" | "properties" | "additionalProperties" => {
                if let Value::Object(object) = value {
                    check_object(root, schema, keyword, object, at, errors);
                }
            }
            "items" => {
                for (n, item) in value.as_array().into_iter().flatten().enumerate() {
                    check(root, rule, item, &format!("{at}/{n}"), errors);
                }
            }
            "minimum" | "maximum" => {
                if let (Some(number), Some(bound)) = (value.as_f64(), rule.as_f64()) {
                    let below = keyword == "minimum" && number < bound;
                    let above = keyword == "maximum" && number > bound;
                    if below || above {
                        fail(
                            errors,
                            at,
                            format!("{value} is beyond the {keyword} {rule}"),
                        );
                    }
                }
            }
            "minLength" | "maxLength" => {
                if let (Some(text), Some(bound)) = (value.as_str(), rule.as_u64()) {
                    let length = text.chars().count() as u64;
                    let short = keyword == "minLength" && length < bound;
                    let long = keyword == "maxLength" && length > bound;
                    if short || long {
                        let what = format!("{length} characters is beyond the {keyword} {bound}");
                        fail(errors, at, what);
                    }
                }
            }
            "pattern" => {
                if let Some(text) = value.as_str() {
                    match rule.as_str().map(regex::Regex::new) {
                        Some(Ok(pattern)) if pattern.is_match(text) => {}
                        Some(Ok(_)) => fail(errors, at, format!("{value} does not match {rule}")),
                        _ => fail(errors, at, format!("{rule} is not a regular expression")),
                    }
                }
            }
            "format" => {
                if let Some(text) = value.as_str() {
                    let valid = match rule.as_str() {
                        Some("uuid") => is_uuid(text),
                        Some("date-time") => OffsetDateTime::parse(text, &Rfc3339).is_ok(),
                        _ => {
                            fail(errors, at, format!("format {rule} is not checked"));
                            continue;
                        }
                    };
                    if !valid {
                        fail(
                            errors,
                            at,
                            format!("{value} is not a {}", rule.as_str().unwrap_or_default()),
                        );
                    }
                }
            }
            known if KEYWORDS.contains(&known) || ANNOTATIONS.contains(&known) => {}
            other => fail(errors, at, format!("keyword {other} is not checked")),
        }
    }
}

fn fail(errors: &mut Vec<String>, at: &str, what: String) {
    let at = if at.is_empty() { "(root)" } else { at };
    errors.push(format!("{at}: {what}"));
}

/// `required`, `properties` and `additionalProperties` of one object. `additionalProperties`
/// needs `properties` (beside it, as JSON Schema says), so each is handled once, on its own key.
fn check_object(
    root: &Value,
    schema: &Map<String, Value>,
    keyword: &str,
    object: &Map<String, Value>,
    at: &str,
    errors: &mut Vec<String>,
) {
    let declared = schema.get("properties").and_then(Value::as_object);
    match keyword {
        "required" => {
            for name in schema[keyword].as_array().into_iter().flatten() {
                let name = name.as_str().unwrap_or_default();
                if !object.contains_key(name) {
                    fail(errors, at, format!("{name} is required"));
                }
            }
        }
        "properties" => {
            for (name, property) in declared.into_iter().flatten() {
                if let Some(value) = object.get(name) {
                    check(root, property, value, &format!("{at}/{name}"), errors);
                }
            }
        }
        _ => {
            let undeclared = object
                .iter()
                .filter(|(name, _)| !declared.is_some_and(|d| d.contains_key(*name)));
            for (name, value) in undeclared {
                if schema[keyword] == false {
                    fail(errors, at, format!("{name} is not a declared property"));
                } else {
                    check(
                        root,
                        &schema[keyword],
                        value,
                        &format!("{at}/{name}"),
                        errors,
                    );
                }
            }
        }
    }
}

fn is_type(value: &Value, name: &str) -> bool {
    match name {
        "null" => value.is_null(),
        "boolean" => value.is_boolean(),
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "number" => value.is_number(),
        "integer" => {
            value.is_i64() || value.is_u64() || value.as_f64().is_some_and(|f| f.fract() == 0.0)
        }
        _ => false,
    }
}

/// The hyphenated form only, as the API writes ids.
fn is_uuid(text: &str) -> bool {
    text.len() == 36 && uuid::Uuid::try_parse(text).is_ok()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// The errors in a stable order (object keys may be kept in any order).
    fn errors(schema: Value, value: Value) -> Vec<String> {
        let mut errors = validate(&json!({}), &schema, &value);
        errors.sort();
        errors
    }

    #[test]
    fn types_include_lists_for_nullable_values() {
        let nullable = json!({"type": ["integer", "null"], "minimum": 0});
        assert!(errors(nullable.clone(), json!(3)).is_empty());
        assert!(errors(nullable.clone(), json!(null)).is_empty());
        assert_eq!(
            errors(nullable.clone(), json!("3")),
            vec![r#"(root): expected integer or null, got "3""#]
        );
        assert_eq!(
            errors(nullable, json!(-1)),
            vec!["(root): -1 is beyond the minimum 0"]
        );
        assert_eq!(errors(json!({"type": "integer"}), json!(1.5)).len(), 1);
        assert!(errors(json!({"type": "number"}), json!(1.5)).is_empty());
    }

    #[test]
    fn closed_objects_refuse_what_they_do_not_declare_and_miss_nothing_required() {
        let schema = json!({
            "type": "object",
            "additionalProperties": false,
            "required": ["id", "name"],
            "properties": {"id": {"type": "string", "format": "uuid"}, "name": {"type": "string"}}
        });
        let id = "0190c1c4-5b5e-7c3a-9d1e-2f3a4b5c6d7e";
        assert!(errors(schema.clone(), json!({"id": id, "name": "x"})).is_empty());
        assert_eq!(
            errors(schema.clone(), json!({"id": id, "name": "x", "extra": 1})),
            vec!["(root): extra is not a declared property"]
        );
        assert_eq!(
            errors(schema.clone(), json!({"id": "not-a-uuid"})),
            vec![
                "(root): name is required",
                r#"/id: "not-a-uuid" is not a uuid"#
            ]
        );
        // Open objects take anything beside what they declare.
        assert!(
            errors(
                json!({"properties": {"a": {"type": "string"}}}),
                json!({"b": 1})
            )
            .is_empty()
        );
    }

    #[test]
    fn formats_enums_consts_patterns_and_lengths() {
        let when = json!({"type": "string", "format": "date-time"});
        assert!(errors(when.clone(), json!("2030-01-01T00:00:00Z")).is_empty());
        assert!(errors(when.clone(), json!("2030-01-01T00:00:00.5+09:00")).is_empty());
        assert_eq!(errors(when.clone(), json!("2030-01-01")).len(), 1);
        assert_eq!(errors(when, json!("yesterday")).len(), 1);
        // Only the hyphenated form of a UUID.
        let uuid = json!({"format": "uuid"});
        assert_eq!(
            errors(uuid, json!("0190c1c45b5e7c3a9d1e2f3a4b5c6d7e")).len(),
            1
        );
        assert_eq!(
            errors(json!({"enum": ["open", "closed"]}), json!("ended")),
            vec![r#"(root): "ended" is not one of ["open","closed"]"#]
        );
        assert_eq!(errors(json!({"const": 409}), json!(410)).len(), 1);
        let hex = json!({"pattern": "^[0-9a-f]{4}$", "minLength": 4, "maxLength": 4});
        assert!(errors(hex.clone(), json!("00ff")).is_empty());
        assert_eq!(errors(hex.clone(), json!("00FF")).len(), 1);
        assert_eq!(errors(hex, json!("00ff0")).len(), 2);
    }

    #[test]
    fn refs_all_of_and_items_reach_nested_values() {
        let root = json!({"components": {"schemas": {
            "Problem": {
                "type": "object",
                "additionalProperties": false,
                "required": ["type", "status"],
                "properties": {"type": {"type": "string"}, "status": {"type": "integer"}}
            },
            "Problems": {"type": "array", "items": {"$ref": "#/components/schemas/Problem"}}
        }}});
        let sold_out = json!({"allOf": [
            {"$ref": "#/components/schemas/Problem"},
            {"properties": {"type": {"const": "/problems/sold-out"}}}
        ]});
        let problem = json!({"type": "/problems/sold-out", "status": 410});
        assert!(validate(&root, &sold_out, &problem).is_empty());
        assert_eq!(
            validate(
                &root,
                &sold_out,
                &json!({"type": "/problems/internal", "status": 410})
            ),
            vec![r#"/type: expected "/problems/sold-out", got "/problems/internal""#]
        );
        let list = json!({"$ref": "#/components/schemas/Problems"});
        assert_eq!(
            validate(&root, &list, &json!([problem, {"type": "x"}])),
            vec!["/1: status is required"]
        );
        assert_eq!(
            validate(
                &root,
                &json!({"$ref": "#/components/schemas/Nothing"}),
                &json!(1)
            )
            .len(),
            1
        );
    }

    #[test]
    fn keywords_it_does_not_check_are_reported_not_ignored() {
        let root = json!({});
        let schema = json!({
            "type": "object",
            "description": "annotations are fine",
            "properties": {
                "a": {"oneOf": [{"type": "string"}]},
                "b": {"type": "string", "format": "email"},
                "c": {"$ref": "#/nowhere"}
            }
        });
        let mut problems = unsupported(&root, &schema, "#");
        problems.sort();
        assert_eq!(
            problems,
            vec![
                "#/properties/a: keyword oneOf is not checked",
                r#"#/properties/b/format: format "email" is not checked"#,
                r##"#/properties/c/$ref: "#/nowhere" leads nowhere"##,
            ]
        );
        assert_eq!(
            errors(json!({"oneOf": []}), json!(1)),
            vec!["(root): keyword oneOf is not checked"]
        );
    }
}
