//! The user's coupons: the list (newest first, paginated), redemption (once, for one order; the
//! same order again is answered as before), the refund that hands a redeemed coupon back, and
//! an operator's cancellation.
//!
//! Stock never returns to a campaign: a cancelled coupon stays counted as issued, and a refunded
//! coupon goes back to the same user. A first-come-first-served drop is over when it sold out;
//! re-opening single units after it would reward whoever keeps polling, and the user's slot in
//! the gate stays taken either way.

use schema::campaign::CouponStatus;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio_postgres::Row;
use uuid::Uuid;

use crate::App;
use crate::http::auth::Principal;
use crate::http::paging::{self, Page};
use crate::http::problem::Problem;

/// A coupon as its owner sees it.
#[derive(Debug, Serialize)]
pub struct CouponView {
    pub coupon_id: Uuid,
    pub campaign_id: Uuid,
    pub code: String,
    /// `issued`, `redeemed`, `expired` (issued and past `expires_at`) or `cancelled`.
    pub status: CouponStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_id: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub issued_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    #[serde(
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub redeemed_at: Option<OffsetDateTime>,
    #[serde(
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub cancelled_at: Option<OffsetDateTime>,
}

impl CouponView {
    fn of(row: &Row) -> Result<CouponView, Problem> {
        let expires_at: OffsetDateTime = row.try_get("expires_at")?;
        let status = CouponStatus::at(
            row.try_get("status")?,
            expires_at,
            OffsetDateTime::now_utc(),
        )
        .ok_or(Problem::Internal)?;
        Ok(CouponView {
            coupon_id: row.try_get("id")?,
            campaign_id: row.try_get("campaign_id")?,
            code: row.try_get("code")?,
            status,
            order_id: row.try_get("order_id")?,
            issued_at: row.try_get("issued_at")?,
            expires_at,
            redeemed_at: row.try_get("redeemed_at")?,
            cancelled_at: row.try_get("cancelled_at")?,
        })
    }
}

/// `GET /v1/me/coupons`: the caller's coupons, newest first.
pub async fn mine(
    app: &App,
    caller: &Principal,
    query: Option<&str>,
) -> Result<Page<CouponView>, Problem> {
    let (limit, after) = paging::query(query, paging::ignore_others)?;
    let db = app.db().await?;
    let statement = db
        .prepare_cached(include_str!("sql/coupons_select_by_user.sql"))
        .await?;
    let (after_at, after_id) = after.unzip();
    let rows = db
        .query(
            &statement,
            &[&caller.user.as_str(), &after_at, &after_id, &(limit + 1)],
        )
        .await?;
    let items = rows
        .iter()
        .map(CouponView::of)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(paging::page(items, limit, |c| (c.issued_at, c.coupon_id)))
}

#[derive(Deserialize)]
struct OrderBody {
    order_id: String,
}

/// The `{order_id}` body of redeem and refund.
fn order_of(body: &[u8]) -> Result<String, Problem> {
    let order = serde_json::from_slice::<OrderBody>(body)
        .map_err(|_| Problem::BadRequest("body must be {\"order_id\": \"...\"}".to_owned()))?
        .order_id;
    if order.is_empty() || order.len() > 128 || order.chars().any(char::is_control) {
        return Err(Problem::BadRequest(
            "order_id must be 1 to 128 printable characters".to_owned(),
        ));
    }
    Ok(order)
}

/// The outcome of a guarded update of the caller's coupon for an order.
enum ForOrder {
    /// The update applied: the coupon as it is now.
    Changed(CouponView),
    /// It did not: the coupon as it is, with the last order refunded from it, says why.
    Unchanged {
        view: CouponView,
        refunded: Option<String>,
    },
}

/// Runs `update` (parameters: coupon, user, order) on the caller's coupon; when it changes
/// nothing, reads the coupon instead. Another user's coupon, or none, is 404.
async fn update_for_order(
    app: &App,
    caller: &Principal,
    coupon: Uuid,
    order: &str,
    update: &'static str,
) -> Result<ForOrder, Problem> {
    let db = app.db().await?;
    let statement = db.prepare_cached(update).await?;
    let user = caller.user.as_str();
    if let Some(row) = db.query_opt(&statement, &[&coupon, &user, &order]).await? {
        return CouponView::of(&row).map(ForOrder::Changed);
    }
    let select = db
        .prepare_cached(include_str!("sql/coupons_select_by_id_and_user.sql"))
        .await?;
    let row = db
        .query_opt(&select, &[&coupon, &user])
        .await?
        .ok_or(Problem::NotFound("unknown coupon"))?;
    Ok(ForOrder::Unchanged {
        view: CouponView::of(&row)?,
        refunded: row.try_get("refunded_order_id")?,
    })
}

/// `POST /v1/coupons/{id}/redeem {order_id}`: redeems once. The same order again is answered
/// with the redeemed coupon (idempotent); another order is 409; an expired coupon is 410; a
/// coupon of another user is 404.
pub async fn redeem(
    app: &App,
    caller: &Principal,
    coupon: Uuid,
    body: &[u8],
) -> Result<CouponView, Problem> {
    let order = order_of(body)?;
    let update = include_str!("sql/coupons_update_redeem_by_id.sql");
    let view = match update_for_order(app, caller, coupon, &order, update).await? {
        ForOrder::Changed(view) => return Ok(view),
        ForOrder::Unchanged { view, .. } => view,
    };
    match view.status {
        CouponStatus::Redeemed if view.order_id.as_deref() == Some(order.as_str()) => Ok(view),
        CouponStatus::Redeemed => Err(Problem::CouponRedeemed),
        CouponStatus::Expired => Err(Problem::CouponExpired),
        CouponStatus::Cancelled => Err(Problem::CouponCancelled),
        // Issued and unexpired, yet the update missed it: it expired in between. Say so.
        CouponStatus::Issued => Err(Problem::CouponExpired),
    }
}

/// `POST /v1/coupons/{id}/refund {order_id}`: the order that redeemed the coupon was refunded or
/// cancelled, so the coupon is the user's to use again (until it expires). The same refund
/// again is answered as before; a coupon this order does not hold is 409.
pub async fn refund(
    app: &App,
    caller: &Principal,
    coupon: Uuid,
    body: &[u8],
) -> Result<CouponView, Problem> {
    let order = order_of(body)?;
    let update = include_str!("sql/coupons_update_refund_by_id.sql");
    let (view, refunded) = match update_for_order(app, caller, coupon, &order, update).await? {
        ForOrder::Changed(view) => return Ok(view),
        ForOrder::Unchanged { view, refunded } => (view, refunded),
    };
    match view.status {
        CouponStatus::Cancelled => Err(Problem::CouponCancelled),
        CouponStatus::Issued | CouponStatus::Expired
            if refunded.as_deref() == Some(order.as_str()) =>
        {
            Ok(view)
        }
        _ => Err(Problem::NotRedeemedByOrder),
    }
}

/// `POST /v1/admin/coupons/{id}/cancel`: an operator voids a coupon that is not redeemed (fraud,
/// a support case). Final and idempotent; a redeemed coupon is 409 (refund its order first).
pub async fn cancel(app: &App, coupon: Uuid) -> Result<CouponView, Problem> {
    let db = app.db().await?;
    let update = db
        .prepare_cached(include_str!("sql/coupons_update_cancel_by_id.sql"))
        .await?;
    if let Some(row) = db.query_opt(&update, &[&coupon]).await? {
        return CouponView::of(&row);
    }
    let select = db
        .prepare_cached(include_str!("sql/coupons_select_by_id.sql"))
        .await?;
    let row = db
        .query_opt(&select, &[&coupon])
        .await?
        .ok_or(Problem::NotFound("unknown coupon"))?;
    let view = CouponView::of(&row)?;
    match view.status {
        CouponStatus::Cancelled => Ok(view),
        CouponStatus::Redeemed => Err(Problem::CouponRedeemed),
        // Issued a moment ago and redeemed or cancelled in between: ask again.
        _ => Err(Problem::unavailable(
            "the coupon changed while cancelling it; send the request again",
        )),
    }
}
