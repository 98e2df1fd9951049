//! Request bodies in, JSON replies out.

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use serde::Serialize;

use super::Reply;
use super::problem::Problem;
use crate::App;

/// Reads the whole body within the size limit. A non-empty body must be a JSON object; fields
/// the route does not use are ignored (the token, not the body, names the user).
pub(super) async fn read_body(app: &App, request: Request<Incoming>) -> Result<Bytes, Problem> {
    let limit = app.config.max_body_bytes;
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(Problem::PayloadTooLarge);
    }
    let json_content = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|v| v.starts_with("application/json"));
    let body = Limited::new(request.into_body(), limit)
        .collect()
        .await
        .map_err(|_| Problem::PayloadTooLarge)?
        .to_bytes();
    if body.is_empty() {
        return Ok(body);
    }
    if !json_content {
        return Err(Problem::UnsupportedMediaType);
    }
    match serde_json::from_slice::<serde_json::Value>(&body) {
        Ok(serde_json::Value::Object(_)) => Ok(body),
        Ok(_) => Err(Problem::BadRequest("body must be a JSON object".to_owned())),
        Err(e) => Err(Problem::BadRequest(format!("body is not valid JSON: {e}"))),
    }
}

/// `body` as `application/json` with `status`.
pub(super) fn json(status: StatusCode, body: &impl Serialize) -> Reply {
    match serde_json::to_vec(body) {
        Ok(bytes) => {
            let mut reply = Response::new(Full::new(Bytes::from(bytes)));
            *reply.status_mut() = status;
            reply.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            reply
        }
        Err(e) => {
            tracing::error!(error = %e, "response serialisation failed");
            Problem::Internal.into_response()
        }
    }
}
