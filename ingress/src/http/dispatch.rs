//! (route, method) to handler. A route of the table with a method it does not serve
//! (`Route::methods`) is 405 before any handler runs.

use http::{HeaderValue, Method, Request, StatusCode, header};
use hyper::body::Incoming;
use schema::ids::{CampaignId, IssuanceId};

use super::Reply;
use super::auth::{Principal, Role};
use super::body::{json, read_body};
use super::problem::Problem;
use super::routes::{Matched, Route};
use crate::{App, campaigns, coupons, issue};

pub(super) async fn dispatch(
    app: &App,
    request: Request<Incoming>,
    matched: Matched,
) -> Result<Reply, Problem> {
    let method = request.method().clone();
    if !matched.route.methods().contains(&method) {
        return Err(Problem::MethodNotAllowed);
    }
    match matched.route {
        Route::Healthz | Route::Readyz => super::probes::answer(app, matched.route, &method).await,
        Route::Issuances | Route::Issuance => issuance(app, request, &method, &matched).await,
        Route::PublicCampaigns | Route::PublicCampaign => {
            public_campaigns(app, request, &method, &matched).await
        }
        Route::MyCoupons | Route::Redeem | Route::Refund => {
            user_coupons(app, request, &matched).await
        }
        Route::AdminCampaigns
        | Route::AdminCampaign
        | Route::AdminCampaignClose
        | Route::AdminCouponCancel => admin_routes(app, request, &method, &matched).await,
    }
}

/// `POST /v1/campaigns/{id}/issuances` (the hot path) and `GET /v1/issuances/{id}`.
async fn issuance(
    app: &App,
    request: Request<Incoming>,
    method: &Method,
    matched: &Matched,
) -> Result<Reply, Problem> {
    match (matched.route, method) {
        (Route::Issuances, &Method::POST) => {
            let caller = user(app, &request).await?;
            let campaign = parse_campaign(matched.id(request.uri().path()))?;
            read_body(app, request).await?;
            let accepted = issue::handler::request(app, &caller, campaign).await?;
            let location = format!("/v1/issuances/{}", accepted.issuance_id);
            Ok(with_location(
                json(StatusCode::ACCEPTED, &accepted),
                &location,
            ))
        }
        (Route::Issuance, &Method::GET) => {
            let caller = user(app, &request).await?;
            let issuance: IssuanceId = matched
                .id(request.uri().path())
                .parse()
                .map_err(|e: schema::ids::IdError| Problem::BadRequest(e.to_string()))?;
            let status = issue::handler::status(app, &caller, issuance).await?;
            Ok(json(StatusCode::OK, &status))
        }
        // The table admitted no other method for these routes.
        _ => Err(Problem::MethodNotAllowed),
    }
}

/// The public campaign reads, served from the per-process cache.
async fn public_campaigns(
    app: &App,
    request: Request<Incoming>,
    method: &Method,
    matched: &Matched,
) -> Result<Reply, Problem> {
    match (matched.route, method) {
        (Route::PublicCampaigns, &Method::GET) => {
            let list = campaigns::public::list(app).await?;
            Ok(json(
                StatusCode::OK,
                &serde_json::json!({ "items": list.as_slice() }),
            ))
        }
        (Route::PublicCampaign, &Method::GET) => {
            let campaign = parse_campaign(matched.id(request.uri().path()))?;
            let view = campaigns::public::campaign(app, &campaign).await?;
            Ok(json(StatusCode::OK, view.as_ref()))
        }
        // The table admitted no other method for these routes.
        _ => Err(Problem::MethodNotAllowed),
    }
}

/// The user's coupons (`GET /v1/me/coupons`), and the order service's redeem and refund.
async fn user_coupons(
    app: &App,
    request: Request<Incoming>,
    matched: &Matched,
) -> Result<Reply, Problem> {
    let route = matched.route;
    if route == Route::MyCoupons {
        let caller = user(app, &request).await?;
        let page = coupons::mine(app, &caller, request.uri().query()).await?;
        return Ok(json(StatusCode::OK, &page));
    }
    // Redeem and refund belong to the order service: a user's own token is 403.
    require(app, &request, Role::Service).await?;
    let coupon = parse_coupon(matched.id(request.uri().path()))?;
    let body = read_body(app, request).await?;
    let view = if route == Route::Redeem {
        coupons::redeem(app, coupon, &body).await?
    } else {
        coupons::refund(app, coupon, &body).await?
    };
    Ok(json(StatusCode::OK, &view))
}

/// The operator routes: every one needs an admin token. `dispatch` admitted only the methods
/// the table lists, so the second method of a route needs no check here.
async fn admin_routes(
    app: &App,
    request: Request<Incoming>,
    method: &Method,
    matched: &Matched,
) -> Result<Reply, Problem> {
    let route = matched.route;
    require(app, &request, Role::Admin).await?;
    let id = matched.id(request.uri().path());
    match (route, method) {
        (Route::AdminCampaigns, &Method::GET) => {
            let page = campaigns::admin::list(app, request.uri().query()).await?;
            Ok(json(StatusCode::OK, &page))
        }
        (Route::AdminCampaigns, _) => {
            let body = read_body(app, request).await?;
            let view = campaigns::admin::create(app, &body).await?;
            let location = format!("/v1/admin/campaigns/{}", view.id);
            Ok(with_location(json(StatusCode::CREATED, &view), &location))
        }
        (Route::AdminCampaign, &Method::GET) => {
            let campaign = parse_campaign(id)?;
            let view = campaigns::store::detail(app, &campaign)
                .await?
                .ok_or(Problem::NotFound("unknown campaign"))?;
            Ok(json(StatusCode::OK, &view))
        }
        (Route::AdminCampaign, _) => {
            let campaign = parse_campaign(id)?;
            let body = read_body(app, request).await?;
            let view = campaigns::admin::update(app, &campaign, &body).await?;
            Ok(json(StatusCode::OK, &view))
        }
        (Route::AdminCampaignClose, _) => {
            let campaign = parse_campaign(id)?;
            Ok(json(
                StatusCode::OK,
                &campaigns::admin::close(app, &campaign).await?,
            ))
        }
        (Route::AdminCouponCancel, _) => {
            let coupon = parse_coupon(id)?;
            Ok(json(StatusCode::OK, &coupons::cancel(app, coupon).await?))
        }
        // `dispatch` sends only the operator routes here.
        _ => Err(Problem::NotFound("no such route")),
    }
}

fn with_location(mut reply: Reply, location: &str) -> Reply {
    if let Ok(value) = HeaderValue::from_str(location) {
        reply.headers_mut().insert(header::LOCATION, value);
    }
    reply
}

async fn authenticate(app: &App, request: &Request<Incoming>) -> Result<Principal, Problem> {
    let header = request
        .headers()
        .get(header::AUTHORIZATION)
        .map(HeaderValue::as_bytes);
    Ok(app.keys.verify_header(header).await?)
}

/// A user route's caller, counted against the per-user rate.
pub(super) async fn user(app: &App, request: &Request<Incoming>) -> Result<Principal, Problem> {
    let caller = authenticate(app, request).await?;
    app.limits.user(caller.user.as_str())?;
    Ok(caller)
}

/// The caller of an operator or order-service route: any other role is 403. Not counted against
/// a per-user rate: one order service speaks for every user.
async fn require(app: &App, request: &Request<Incoming>, role: Role) -> Result<Principal, Problem> {
    let caller = authenticate(app, request).await?;
    if caller.role == role {
        Ok(caller)
    } else {
        Err(Problem::Forbidden)
    }
}

fn parse_campaign(id: &str) -> Result<CampaignId, Problem> {
    id.parse()
        .map_err(|e: schema::ids::IdError| Problem::BadRequest(e.to_string()))
}

fn parse_coupon(id: &str) -> Result<uuid::Uuid, Problem> {
    id.parse()
        .map_err(|_| Problem::BadRequest("coupon id must be a UUID".to_owned()))
}
