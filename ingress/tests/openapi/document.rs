//! `docs/openapi.yaml` as the tests read it: which operation a concrete request is, which
//! answers it documents, and whether an answer is one of them.

use std::collections::BTreeSet;
use std::fmt;

use http::{HeaderMap, Method};
use serde_json::{Map, Value};
use yaml_rust2::{Yaml, YamlLoader};

use super::schema;

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
        self.template
            .split('/')
            .map(|segment| {
                if is_parameter(segment) {
                    value
                } else {
                    segment
                }
            })
            .collect::<Vec<_>>()
            .join("/")
    }
}

pub struct Document {
    pub root: Value,
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
        Document {
            root: to_json(documents.remove(0)),
        }
    }

    fn paths(&self) -> &Map<String, Value> {
        self.root["paths"].as_object().expect("paths")
    }

    pub fn operations(&self) -> Vec<Operation> {
        let mut operations = Vec::new();
        for (template, item) in self.paths() {
            for method in METHODS {
                if let Some(operation) = item.get(*method) {
                    operations.push(Operation {
                        template: template.clone(),
                        method: method.to_uppercase().parse().expect("method"),
                        tags: operation["tags"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(|t| t.as_str().map(str::to_owned))
                            .collect(),
                    });
                }
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
            for status in responses.as_object().into_iter().flatten().map(|r| r.0) {
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
        self.paths()
            .keys()
            .filter_map(|template| {
                let pattern: Vec<&str> = template.split('/').collect();
                let fits = pattern.len() == segments.len()
                    && pattern
                        .iter()
                        .zip(&segments)
                        .all(|(p, s)| *p == *s || (is_parameter(p) && !s.is_empty()));
                fits.then(|| {
                    let literal = pattern.iter().filter(|p| !is_parameter(p)).count();
                    (literal, template.as_str())
                })
            })
            .max_by_key(|(literal, _)| *literal)
            .map(|(_, template)| template)
    }

    /// Follows a `$ref` (to a response or header object) if `value` is one.
    fn follow<'a>(&'a self, value: &'a Value) -> &'a Value {
        match value.get("$ref") {
            Some(reference) => {
                schema::resolve(&self.root, reference).expect("the reference resolves")
            }
            None => value,
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
        let template = self
            .template_of(path)
            .ok_or_else(|| vec![format!("no path of the document matches {path}")])?;
        let lower = method.as_str().to_lowercase();
        let operation = self.paths()[template]
            .get(&lower)
            .ok_or_else(|| vec![format!("the document has no {method} {template}")])?;
        let response = operation["responses"]
            .get(status.to_string())
            .map(|r| self.follow(r))
            .ok_or_else(|| {
                vec![format!(
                    "{status} is not documented for {method} {template}"
                )]
            })?;
        let mut errors = Vec::new();

        for (name, header) in response["headers"].as_object().into_iter().flatten() {
            let header = self.follow(header);
            match headers.get(name.as_str()).map(|v| v.to_str()) {
                None if header["required"] == true => {
                    errors.push(format!("header {name} is missing"));
                }
                None => {}
                Some(Err(_)) => errors.push(format!("header {name} is not text")),
                Some(Ok(text)) => {
                    let value = match header["schema"]["type"].as_str() {
                        Some("integer") => {
                            text.parse::<i64>().map_or(Value::from(text), Value::from)
                        }
                        _ => Value::from(text),
                    };
                    errors.extend(
                        schema::validate(&self.root, &header["schema"], &value)
                            .into_iter()
                            .map(|e| format!("header {name}: {e}")),
                    );
                }
            }
        }

        let content_type = headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                v.split(';')
                    .next()
                    .unwrap_or_default()
                    .trim()
                    .to_lowercase()
            });
        let value = match (response.get("content"), content_type) {
            (None, _) if body.is_empty() => Value::Null,
            (None, _) => {
                errors.push("a body where the document has none".to_owned());
                Value::Null
            }
            (Some(_), None) => {
                errors.push("no content type".to_owned());
                Value::Null
            }
            (Some(content), Some(media)) => match content.get(&media) {
                None => {
                    let documented: Vec<&String> = content
                        .as_object()
                        .into_iter()
                        .flatten()
                        .map(|c| c.0)
                        .collect();
                    errors.push(format!("content type {media}, documented: {documented:?}"));
                    Value::Null
                }
                Some(documented) => {
                    let value = read_body(&media, body).unwrap_or_else(|e| {
                        errors.push(e);
                        Value::Null
                    });
                    errors.extend(schema::validate(&self.root, &documented["schema"], &value));
                    if media == "application/problem+json" && value["status"] != status {
                        errors.push(format!("the problem's status is not {status}"));
                    }
                    value
                }
            },
        };
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

/// YAML as JSON: mapping keys become strings (`200:` and `'200':` alike).
fn to_json(yaml: Yaml) -> Value {
    match yaml {
        Yaml::Null => Value::Null,
        Yaml::Boolean(b) => Value::Bool(b),
        Yaml::Integer(i) => Value::from(i),
        Yaml::Real(text) => {
            let real: f64 = text.parse().unwrap_or_else(|_| panic!("number {text}"));
            Value::from(real)
        }
        Yaml::String(s) => Value::String(s),
        Yaml::Array(items) => Value::Array(items.into_iter().map(to_json).collect()),
        Yaml::Hash(hash) => Value::Object(
            hash.into_iter()
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
              schema: {type: object, required: [id], properties: {id: {type: string}}}
        '429':
          description: too fast
          headers:
            Retry-After: {$ref: '#/components/headers/Retry-After'}
  /v1/campaigns/open:
    get:
      responses:
        '200': {description: listed}
components:
  headers:
    Retry-After:
      required: true
      schema: {type: integer, minimum: 1}
"#;

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
        assert_eq!(
            document.template_of("/v1/campaigns/abc"),
            Some("/v1/campaigns/{id}")
        );
        assert_eq!(
            document.template_of("/v1/campaigns/open"),
            Some("/v1/campaigns/open")
        );
        assert_eq!(document.template_of("/v1/campaigns/"), None);
        assert_eq!(document.template_of("/v1/campaigns/a/b"), None);
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
            document.check(
                &Method::GET,
                "/v1/campaigns/c1",
                status,
                headers,
                body.as_bytes(),
            )
        };
        let (answer, body) = get(200, &json, r#"{"id": "c1"}"#).unwrap();
        assert_eq!(answer.to_string(), "GET /v1/campaigns/{id} 200");
        assert_eq!(body["id"], "c1");
        assert_eq!(
            get(200, &json, r#"{"name": "c1"}"#).unwrap_err(),
            vec!["(root): id is required"]
        );
        assert_eq!(
            get(200, &headers(&[("content-type", "text/plain")]), "c1").unwrap_err(),
            vec![r#"content type text/plain, documented: ["application/json"]"#]
        );
        assert_eq!(
            get(404, &json, "{}").unwrap_err(),
            vec!["404 is not documented for GET /v1/campaigns/{id}"]
        );
        assert_eq!(
            get(429, &HeaderMap::new(), "").unwrap_err(),
            vec!["header Retry-After is missing"]
        );
        assert!(get(429, &headers(&[("retry-after", "1")]), "").is_ok());
        assert_eq!(
            get(429, &headers(&[("retry-after", "0")]), "").unwrap_err(),
            vec!["header Retry-After: (root): 0 is beyond the minimum 1"]
        );
        assert_eq!(
            document
                .check(&Method::POST, "/v1/campaigns/c1", 200, &json, b"{}")
                .unwrap_err(),
            vec!["the document has no POST /v1/campaigns/{id}"]
        );
    }
}
