//! `docs/openapi.yaml` as the tests read it: its operations and documented answers, which
//! operation a concrete request is, and whether an answer is one the document lists.
//!
//! Schemas are checked by the `jsonschema` crate: OpenAPI 3.1 schemas are JSON Schema 2020-12.
//! The whole document is registered as one resource, so a schema is checked through a `$ref`
//! to where it sits in the document, and its own `#/components/...` references resolve.

use std::collections::BTreeSet;
use std::fmt;

use http::{HeaderMap, Method};
use jsonschema::{Draft, Registry, Validator};
use serde_json::{Map, Value, json};
use yaml_rust2::{Yaml, YamlLoader};

/// Where the document is registered for `$ref`s.
const BASE: &str = "urn:coupon:openapi";

const METHODS: &[&str] = &[
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// One documented answer: an operation and a status.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Answer {
    pub template: String,
    pub method: String,
    pub status: u16,
}

impl fmt::Display for Answer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let method = self.method.to_uppercase();
        write!(f, "{method} {} {}", self.template, self.status)
    }
}

/// An operation of the document.
#[derive(Debug, Clone)]
pub struct Operation {
    pub template: String,
    pub method: Method,
    pub tags: Vec<String>,
}

impl Operation {
    /// A path of this operation, each path parameter replaced by `value`.
    pub fn path_with(&self, value: &str) -> String {
        let segments: Vec<&str> = self.template.split('/').collect();
        let replaced: Vec<&str> = segments
            .into_iter()
            .map(|s| if is_parameter(s) { value } else { s })
            .collect();
        replaced.join("/")
    }
}

pub struct Document {
    pub root: Value,
    registry: Registry<'static>,
}

impl Document {
    pub fn load() -> Document {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/openapi.yaml");
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
        Document::parse(&text)
    }

    pub fn parse(text: &str) -> Document {
        let mut documents = YamlLoader::load_from_str(text).expect("valid YAML");
        assert_eq!(documents.len(), 1, "one YAML document");
        let root = to_json(documents.remove(0));
        let registry = Registry::new()
            .draft(Draft::Draft202012)
            .add(BASE, root.clone())
            .and_then(|builder| builder.prepare())
            .expect("the document as a schema resource");
        Document { root, registry }
    }

    fn paths(&self) -> &Map<String, Value> {
        self.root["paths"].as_object().expect("paths")
    }

    pub fn operations(&self) -> Vec<Operation> {
        let mut operations = Vec::new();
        for (template, item) in self.paths() {
            for method in METHODS {
                let Some(operation) = item.get(*method) else {
                    continue;
                };
                let tags = operation["tags"].as_array().into_iter().flatten();
                operations.push(Operation {
                    template: template.clone(),
                    method: method.to_uppercase().parse().expect("method"),
                    tags: tags.filter_map(|t| t.as_str().map(str::to_owned)).collect(),
                });
            }
        }
        operations
    }

    /// Every (operation, status) the document lists.
    pub fn answers(&self) -> BTreeSet<Answer> {
        let mut answers = BTreeSet::new();
        for operation in self.operations() {
            let method = operation.method.as_str().to_lowercase();
            let responses = &self.paths()[&operation.template][&method]["responses"];
            for status in keys(responses) {
                answers.insert(Answer {
                    template: operation.template.clone(),
                    method: method.clone(),
                    status: status.parse().expect("responses are keyed by status code"),
                });
            }
        }
        answers
    }

    /// The path template a concrete path falls under; a template with more literal segments
    /// wins, as OpenAPI says.
    pub fn template_of(&self, path: &str) -> Option<&str> {
        let segments: Vec<&str> = path.split('/').collect();
        let fitting = self.paths().keys().filter_map(|template| {
            let pattern: Vec<&str> = template.split('/').collect();
            let fits = pattern.len() == segments.len()
                && (pattern.iter().zip(&segments))
                    .all(|(p, s)| p == s || (is_parameter(p) && !s.is_empty()));
            let literal = pattern.iter().filter(|p| !is_parameter(p)).count();
            fits.then_some((literal, template.as_str()))
        });
        fitting.max_by_key(|(literal, _)| *literal).map(|(_, t)| t)
    }

    /// The object at `pointer` (a JSON pointer into the document), following a `$ref` if it is
    /// one; with the pointer of where the object really is.
    pub fn at(&self, pointer: String) -> Option<(String, &Value)> {
        let value = self.root.pointer(&pointer)?;
        match value.get("$ref").and_then(Value::as_str) {
            Some(reference) => {
                let target = reference.strip_prefix('#')?;
                Some((target.to_owned(), self.root.pointer(target)?))
            }
            None => Some((pointer, value)),
        }
    }

    /// A validator for the schema at `pointer`.
    pub fn validator(&self, pointer: &str) -> Result<Validator, String> {
        let reference = json!({"$ref": format!("{BASE}#{}", uri_escape(pointer))});
        jsonschema::options()
            .with_draft(Draft::Draft202012)
            .with_registry(&self.registry)
            .should_validate_formats(true)
            .should_ignore_unknown_formats(false)
            .build(&reference)
            .map_err(|e| format!("the schema at {pointer}: {e}"))
    }

    /// Every way `value` breaks the schema at `pointer`.
    fn errors(&self, pointer: &str, value: &Value) -> Vec<String> {
        match self.validator(pointer) {
            Ok(validator) => (validator.iter_errors(value))
                .map(|e| format!("{}: {e}", e.instance_path()))
                .collect(),
            Err(e) => vec![e],
        }
    }

    /// Checks an answer against the document: the status is documented for the operation, the
    /// documented headers are there and valid, and the body has a documented content type and
    /// fits its schema. Returns which answer it was and the body (a JSON value, or the text).
    pub fn check(
        &self,
        method: &Method,
        path: &str,
        status: u16,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<(Answer, Value), Vec<String>> {
        let template = (self.template_of(path))
            .ok_or_else(|| vec![format!("no path of the document matches {path}")])?;
        let lower = method.as_str().to_lowercase();
        if self.paths()[template].get(&lower).is_none() {
            return Err(vec![format!("the document has no {method} {template}")]);
        }
        let at = format!("/paths/{}/{lower}/responses/{status}", escape(template));
        let (at, response) = self.at(at).ok_or_else(|| {
            vec![format!(
                "{status} is not documented for {method} {template}"
            )]
        })?;
        let mut errors = self.check_headers(&at, response, headers);
        let value = self.check_body(&at, response, headers, body, &mut errors);
        if value["status"] != status && response_media(headers).ends_with("problem+json") {
            errors.push(format!("the problem's status is not {status}"));
        }
        let answer = Answer {
            template: template.to_owned(),
            method: lower,
            status,
        };
        if errors.is_empty() {
            Ok((answer, value))
        } else {
            Err(errors)
        }
    }

    fn check_headers(&self, at: &str, response: &Value, headers: &HeaderMap) -> Vec<String> {
        let mut errors = Vec::new();
        for name in keys(&response["headers"]) {
            let (at, header) = self
                .at(format!("{at}/headers/{}", escape(name)))
                .expect("the header resolves");
            match headers.get(name.as_str()).map(|v| v.to_str()) {
                None if header["required"] == true => {
                    errors.push(format!("header {name} is missing"));
                }
                None => {}
                Some(Err(_)) => errors.push(format!("header {name} is not text")),
                Some(Ok(text)) => {
                    let value = match header["schema"]["type"].as_str() {
                        Some("integer") => text.parse::<i64>().map_or(json!(text), Value::from),
                        _ => json!(text),
                    };
                    let found = self.errors(&format!("{at}/schema"), &value);
                    errors.extend(found.into_iter().map(|e| format!("header {name}: {e}")));
                }
            }
        }
        errors
    }

    fn check_body(
        &self,
        at: &str,
        response: &Value,
        headers: &HeaderMap,
        body: &[u8],
        errors: &mut Vec<String>,
    ) -> Value {
        let media = response_media(headers);
        let Some(content) = response.get("content") else {
            if !body.is_empty() {
                errors.push("a body where the document has none".to_owned());
            }
            return Value::Null;
        };
        if content.get(&media).is_none() {
            let documented: Vec<&String> = keys(content).collect();
            errors.push(format!(
                "content type {media:?}, documented: {documented:?}"
            ));
            return Value::Null;
        }
        let value = read_body(&media, body).unwrap_or_else(|e| {
            errors.push(e);
            Value::Null
        });
        let schema = format!("{at}/content/{}/schema", escape(&media));
        errors.extend(self.errors(&schema, &value));
        value
    }
}

/// The content type of an answer without its parameters, lower case; empty if there is none.
fn response_media(headers: &HeaderMap) -> String {
    let value = headers.get(http::header::CONTENT_TYPE);
    let text = value.and_then(|v| v.to_str().ok()).unwrap_or_default();
    let media = text.split(';').next().unwrap_or_default();
    media.trim().to_lowercase()
}

/// The keys of an object; none for anything else.
fn keys(value: &Value) -> impl Iterator<Item = &String> {
    value.as_object().into_iter().flat_map(|o| o.keys())
}

fn read_body(media: &str, body: &[u8]) -> Result<Value, String> {
    if media == "application/json" || media.ends_with("+json") {
        serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))
    } else {
        String::from_utf8(body.to_vec())
            .map(Value::String)
            .map_err(|_| "the body is not UTF-8 text".to_owned())
    }
}

fn is_parameter(segment: &str) -> bool {
    segment.starts_with('{') && segment.ends_with('}')
}

/// A key as one JSON pointer token.
pub fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// A JSON pointer as a URI fragment.
fn uri_escape(pointer: &str) -> String {
    let keep = |b: u8| b.is_ascii_alphanumeric() || b"-._~/+".contains(&b);
    (pointer.bytes())
        .map(|b| match b {
            b if keep(b) => char::from(b).to_string(),
            b => format!("%{b:02X}"),
        })
        .collect()
}

/// YAML as JSON: mapping keys become strings (`200:` and `'200':` alike).
fn to_json(yaml: Yaml) -> Value {
    match yaml {
        Yaml::Null => Value::Null,
        Yaml::Boolean(b) => Value::Bool(b),
        Yaml::Integer(i) => Value::from(i),
        Yaml::Real(text) => Value::from(text.parse::<f64>().expect("a number")),
        Yaml::String(s) => Value::String(s),
        Yaml::Array(items) => Value::Array(items.into_iter().map(to_json).collect()),
        Yaml::Hash(hash) => Value::Object(
            (hash.into_iter())
                .map(|(key, value)| {
                    let key = match key {
                        Yaml::String(s) => s,
                        Yaml::Integer(i) => i.to_string(),
                        Yaml::Boolean(b) => b.to_string(),
                        other => panic!("unsupported mapping key {other:?}"),
                    };
                    (key, to_json(value))
                })
                .collect(),
        ),
        other => panic!("unsupported YAML node {other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    const DOCUMENT: &str = r#"
openapi: 3.1.0
paths:
  /v1/campaigns/{id}:
    get:
      responses:
        200:
          description: found
          content:
            application/json:
              schema: {$ref: '#/components/schemas/Campaign'}
        '429':
          description: too fast
          headers:
            Retry-After: {$ref: '#/components/headers/Retry-After'}
  /v1/campaigns/open:
    get:
      responses:
        '200': {description: listed}
components:
  schemas:
    Campaign:
      type: object
      required: [id]
      properties: {id: {type: string, format: uuid}}
  headers:
    Retry-After:
      required: true
      schema: {type: integer, minimum: 1}
"#;

    const ID: &str = "0190b7a4-5c1e-7c3a-9b1d-3f2e1a0b9c8d";

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn concrete_paths_find_their_template_literal_segments_first() {
        let document = Document::parse(DOCUMENT);
        let template = |path| document.template_of(path);
        assert_eq!(template("/v1/campaigns/abc"), Some("/v1/campaigns/{id}"));
        assert_eq!(template("/v1/campaigns/open"), Some("/v1/campaigns/open"));
        assert_eq!(template("/v1/campaigns/"), None);
        assert_eq!(template("/v1/campaigns/a/b"), None);
        let answers: Vec<String> = document.answers().iter().map(|a| a.to_string()).collect();
        assert_eq!(
            answers,
            [
                "GET /v1/campaigns/open 200",
                "GET /v1/campaigns/{id} 200",
                "GET /v1/campaigns/{id} 429"
            ]
        );
    }

    #[test]
    fn answers_must_have_a_documented_status_headers_and_body() {
        let document = Document::parse(DOCUMENT);
        let json = headers(&[("content-type", "application/json")]);
        let get = |status, headers: &HeaderMap, body: &str| {
            let path = "/v1/campaigns/c1";
            document.check(&Method::GET, path, status, headers, body.as_bytes())
        };
        let (answer, body) = get(200, &json, &format!(r#"{{"id": "{ID}"}}"#)).unwrap();
        assert_eq!(answer.to_string(), "GET /v1/campaigns/{id} 200");
        assert_eq!(body["id"], ID);
        assert_eq!(
            get(200, &json, r#"{"name": "c1"}"#).unwrap_err(),
            [r#": "id" is a required property"#]
        );
        assert_eq!(
            get(200, &json, r#"{"id": "c1"}"#).unwrap_err(),
            [r#"/id: "c1" is not a "uuid""#]
        );
        assert_eq!(
            get(200, &headers(&[("content-type", "text/plain")]), "c1").unwrap_err(),
            [r#"content type "text/plain", documented: ["application/json"]"#]
        );
        assert_eq!(
            get(404, &json, "{}").unwrap_err(),
            ["404 is not documented for GET /v1/campaigns/{id}"]
        );
        assert_eq!(
            get(429, &HeaderMap::new(), "").unwrap_err(),
            ["header Retry-After is missing"]
        );
        assert!(get(429, &headers(&[("retry-after", "1")]), "").is_ok());
        assert_eq!(
            get(429, &headers(&[("retry-after", "0")]), "").unwrap_err(),
            ["header Retry-After: : 0 is less than the minimum of 1"]
        );
        let post = document.check(&Method::POST, "/v1/campaigns/c1", 200, &json, b"{}");
        assert_eq!(
            post.unwrap_err(),
            ["the document has no POST /v1/campaigns/{id}"]
        );
    }
}
