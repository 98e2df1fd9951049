//! `/healthz` (the process runs) and `/readyz` (it can take traffic: not shutting down, and the
//! last background check reached Redis and Kafka), outside the API's limits. `/readyz` reads
//! the cached check (`crate::ops`) and calls no dependency. Metrics are on the operations
//! listener only.

use http::{Method, StatusCode};

use super::Reply;
use super::body::json;
use super::problem::Problem;
use super::routes::Route;
use crate::App;

pub(super) async fn answer(app: &App, route: Route, method: &Method) -> Result<Reply, Problem> {
    if !route.methods().contains(method) {
        return Err(Problem::MethodNotAllowed);
    }
    match route {
        Route::Readyz => {
            crate::ops::ready(app).map_err(Problem::unavailable)?;
            Ok(json(
                StatusCode::OK,
                &serde_json::json!({"status": "ready"}),
            ))
        }
        _ => Ok(json(StatusCode::OK, &serde_json::json!({"status": "ok"}))),
    }
}
