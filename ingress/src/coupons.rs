//! The user's coupons: the list (newest first, paginated); redemption by the order service
//! (once, for one order; the same order again is answered as before) and the refund that hands
//! a redeemed coupon back, both kept in a redemption history keyed by (coupon, order); and an
//! operator's cancellation.
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

use schema::ids::UserId;

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

/// The body of redeem and refund: the order, and the user the order service acts for.
#[derive(Deserialize)]
struct OrderBody {
    order_id: String,
    user_id: String,
}

/// The `{order_id, user_id}` body of redeem and refund.
fn order_of(body: &[u8]) -> Result<(String, UserId), Problem> {
    let body = serde_json::from_slice::<OrderBody>(body).map_err(|_| {
        Problem::BadRequest("body must be {\"order_id\": \"...\", \"user_id\": \"...\"}".to_owned())
    })?;
    let order = body.order_id;
    if order.is_empty() || order.chars().count() > 128 || order.chars().any(char::is_control) {
        return Err(Problem::BadRequest(
            "order_id must be 1 to 128 printable characters".to_owned(),
        ));
    }
    let user =
        UserId::parse(&body.user_id).map_err(|e| Problem::BadRequest(format!("user_id: {e}")))?;
    Ok((order, user))
}

/// A redemption change in one transaction: the user's coupon is locked (another user's coupon,
/// or none, is 404), and the order's redemption of it, if any, is read.
struct Locked<'a> {
    tx: deadpool_postgres::Transaction<'a>,
    coupon: Uuid,
    order: String,
    view: CouponView,
    /// `None`: this order never redeemed the coupon; `Some(refunded)` otherwise.
    redemption: Option<bool>,
}

impl<'a> Locked<'a> {
    async fn open(
        db: &'a mut deadpool_postgres::Object,
        coupon: Uuid,
        body: &[u8],
    ) -> Result<Locked<'a>, Problem> {
        let (order, user) = order_of(body)?;
        let tx = db.transaction().await?;
        let lock = tx
            .prepare_cached(include_str!("sql/coupons_lock_by_id_and_user.sql"))
            .await?;
        let row = tx
            .query_opt(&lock, &[&coupon, &user.as_str()])
            .await?
            .ok_or(Problem::NotFound("unknown coupon"))?;
        let select = tx
            .prepare_cached(include_str!(
                "sql/redemptions_select_by_coupon_and_order.sql"
            ))
            .await?;
        let redemption = match tx.query_opt(&select, &[&coupon, &order]).await? {
            Some(row) => Some(row.try_get::<_, bool>("refunded")?),
            None => None,
        };
        Ok(Locked {
            view: CouponView::of(&row)?,
            tx,
            coupon,
            order,
            redemption,
        })
    }

    /// Runs a change of the coupon (parameters: coupon, order), then of its redemption, and
    /// commits; `None` when the coupon update matched nothing (and nothing changed).
    async fn change(
        self,
        coupon_update: &'static str,
        redemption: Redemption,
    ) -> Result<Option<CouponView>, Problem> {
        let update = self.tx.prepare_cached(coupon_update).await?;
        let Some(row) = self
            .tx
            .query_opt(&update, &[&self.coupon, &self.order])
            .await?
        else {
            return Ok(None);
        };
        let view = CouponView::of(&row)?;
        match redemption {
            Redemption::Record => {
                let insert = self
                    .tx
                    .prepare_cached(include_str!("sql/redemptions_insert.sql"))
                    .await?;
                let at = view.redeemed_at.ok_or(Problem::Internal)?;
                self.tx
                    .execute(&insert, &[&self.coupon, &self.order, &at])
                    .await?;
            }
            Redemption::Refund => {
                let update = self
                    .tx
                    .prepare_cached(include_str!("sql/redemptions_update_refund.sql"))
                    .await?;
                self.tx
                    .execute(&update, &[&self.coupon, &self.order])
                    .await?;
            }
        }
        self.tx.commit().await?;
        Ok(Some(view))
    }
}

/// What a redemption change does to the history.
enum Redemption {
    /// A new redemption by the order.
    Record,
    /// The order's redemption was refunded.
    Refund,
}

/// `POST /v1/coupons/{id}/redeem {order_id, user_id}`, by the order service: redeems once. The
/// same order again is answered with the redeemed coupon (idempotent); another order is 409; an
/// order already refunded is 409 (a late or replayed redeem never redeems again); an expired
/// coupon is 410; a coupon that is not the user's is 404.
pub async fn redeem(app: &App, coupon: Uuid, body: &[u8]) -> Result<CouponView, Problem> {
    let mut db = app.db().await?;
    let locked = Locked::open(&mut db, coupon, body).await?;
    match (locked.redemption, locked.view.status) {
        (Some(false), CouponStatus::Redeemed) => return Ok(locked.view),
        (Some(true), _) => return Err(Problem::OrderRefunded),
        (_, CouponStatus::Redeemed) => return Err(Problem::CouponRedeemed),
        (_, CouponStatus::Expired) => return Err(Problem::CouponExpired),
        (_, CouponStatus::Cancelled) => return Err(Problem::CouponCancelled),
        _ => {}
    }
    locked
        .change(
            include_str!("sql/coupons_update_redeem_by_id.sql"),
            Redemption::Record,
        )
        .await?
        // Issued and unexpired a moment ago: it expired in between.
        .ok_or(Problem::CouponExpired)
}

/// `POST /v1/coupons/{id}/refund {order_id, user_id}`, by the order service: the order that
/// redeemed the coupon was refunded or cancelled, so the coupon is the user's to use again
/// (until it expires). The same refund again is answered as before; an order that never
/// redeemed the coupon, or no longer holds it, is 409.
pub async fn refund(app: &App, coupon: Uuid, body: &[u8]) -> Result<CouponView, Problem> {
    let mut db = app.db().await?;
    let locked = Locked::open(&mut db, coupon, body).await?;
    match locked.redemption {
        None if locked.view.status == CouponStatus::Cancelled => {
            return Err(Problem::CouponCancelled);
        }
        None => return Err(Problem::NotRedeemedByOrder),
        Some(true) => return Ok(locked.view),
        Some(false) => {}
    }
    locked
        .change(
            include_str!("sql/coupons_update_refund_by_id.sql"),
            Redemption::Refund,
        )
        .await?
        // An open redemption names the order the coupon row holds: the two never disagree.
        .ok_or(Problem::Internal)
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
