//! The user's coupons: the list (newest first, paginated) and redemption (once, for one order;
//! the same order again is answered as before).

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio_postgres::Row;
use uuid::Uuid;

use crate::App;
use crate::auth::Principal;
use crate::campaigns::db_problem;
use crate::problem::Problem;

/// A coupon as its owner sees it.
#[derive(Debug, Serialize)]
pub struct CouponView {
    pub coupon_id: Uuid,
    pub campaign_id: Uuid,
    pub code: String,
    /// `issued`, `redeemed`, `expired` (issued and past `expires_at`) or `cancelled`.
    pub status: String,
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
}

impl CouponView {
    fn of(row: &Row) -> Result<CouponView, tokio_postgres::Error> {
        let expires_at: OffsetDateTime = row.try_get("expires_at")?;
        let mut status: String = row.try_get("status")?;
        if status == "issued" && expires_at <= OffsetDateTime::now_utc() {
            status = "expired".to_owned();
        }
        Ok(CouponView {
            coupon_id: row.try_get("id")?,
            campaign_id: row.try_get("campaign_id")?,
            code: row.try_get("code")?,
            status,
            order_id: row.try_get("order_id")?,
            issued_at: row.try_get("issued_at")?,
            expires_at,
            redeemed_at: row.try_get("redeemed_at")?,
        })
    }
}

/// One page of `GET /v1/me/coupons`.
#[derive(Debug, Serialize)]
pub struct Page {
    pub items: Vec<CouponView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// `limit` (1..=100, default 20) and `cursor` from the query string.
fn page_query(query: Option<&str>) -> Result<(i64, Option<(OffsetDateTime, Uuid)>), Problem> {
    let mut limit = 20;
    let mut cursor = None;
    for pair in query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        match name {
            "limit" => {
                limit = value
                    .parse::<i64>()
                    .ok()
                    .filter(|l| (1..=100).contains(l))
                    .ok_or_else(|| Problem::BadRequest("limit must be 1 to 100".to_owned()))?;
            }
            "cursor" => cursor = Some(parse_cursor(value)?),
            _ => {}
        }
    }
    Ok((limit, cursor))
}

/// A cursor is `<issued_at in Unix microseconds>_<coupon id>` of the previous page's last item.
fn parse_cursor(value: &str) -> Result<(OffsetDateTime, Uuid), Problem> {
    let bad = || Problem::BadRequest("cursor is not one this API gave".to_owned());
    let (micros, id) = value.split_once('_').ok_or_else(bad)?;
    let micros: i128 = micros.parse().map_err(|_| bad())?;
    let at = OffsetDateTime::from_unix_timestamp_nanos(micros * 1_000).map_err(|_| bad())?;
    Ok((at, id.parse().map_err(|_| bad())?))
}

fn cursor_of(view: &CouponView) -> String {
    format!(
        "{}_{}",
        view.issued_at.unix_timestamp_nanos() / 1_000,
        view.coupon_id
    )
}

/// `GET /v1/me/coupons`: the caller's coupons, newest first.
pub async fn mine(app: &App, caller: &Principal, query: Option<&str>) -> Result<Page, Problem> {
    let (limit, cursor) = page_query(query)?;
    let db = app.db().await?;
    let statement = db
        .prepare_cached(include_str!("sql/coupons_select_by_user.sql"))
        .await
        .map_err(db_problem)?;
    let (after_at, after_id) = match cursor {
        Some((at, id)) => (Some(at), Some(id)),
        None => (None, None),
    };
    // One row more than the page tells whether another page follows.
    let rows = db
        .query(
            &statement,
            &[&caller.user.as_str(), &after_at, &after_id, &(limit + 1)],
        )
        .await
        .map_err(db_problem)?;
    let more = rows.len() as i64 > limit;
    let items = rows
        .iter()
        .take(limit as usize)
        .map(CouponView::of)
        .collect::<Result<Vec<_>, _>>()
        .map_err(db_problem)?;
    let next_cursor = if more {
        items.last().map(cursor_of)
    } else {
        None
    };
    Ok(Page { items, next_cursor })
}

#[derive(Deserialize)]
struct RedeemBody {
    order_id: String,
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
    let order = serde_json::from_slice::<RedeemBody>(body)
        .map_err(|_| Problem::BadRequest("body must be {\"order_id\": \"...\"}".to_owned()))?
        .order_id;
    if order.is_empty() || order.len() > 128 || order.chars().any(char::is_control) {
        return Err(Problem::BadRequest(
            "order_id must be 1 to 128 printable characters".to_owned(),
        ));
    }
    let db = app.db().await?;
    let update = db
        .prepare_cached(include_str!("sql/coupon_update_redeem.sql"))
        .await
        .map_err(db_problem)?;
    let user = caller.user.as_str();
    if let Some(row) = db
        .query_opt(&update, &[&coupon, &user, &order])
        .await
        .map_err(db_problem)?
    {
        return CouponView::of(&row).map_err(db_problem);
    }
    let select = db
        .prepare_cached(include_str!("sql/coupon_select_for_owner.sql"))
        .await
        .map_err(db_problem)?;
    let row = db
        .query_opt(&select, &[&coupon, &user])
        .await
        .map_err(db_problem)?
        .ok_or(Problem::NotFound("unknown coupon"))?;
    let view = CouponView::of(&row).map_err(db_problem)?;
    match view.status.as_str() {
        "redeemed" if view.order_id.as_deref() == Some(order.as_str()) => Ok(view),
        "redeemed" => Err(Problem::CouponRedeemed),
        "expired" => Err(Problem::CouponExpired),
        "cancelled" => Err(Problem::CouponCancelled),
        // Issued and unexpired, yet the update missed it: it expired in between. Say so.
        _ => Err(Problem::CouponExpired),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_bad_ones_are_refused() {
        let at = OffsetDateTime::from_unix_timestamp_nanos(1_700_000_000_123_456_000).unwrap();
        let id = Uuid::now_v7();
        let view = CouponView {
            coupon_id: id,
            campaign_id: id,
            code: String::new(),
            status: "issued".into(),
            order_id: None,
            issued_at: at,
            expires_at: at,
            redeemed_at: None,
        };
        assert_eq!(parse_cursor(&cursor_of(&view)).ok(), Some((at, id)));
        for bad in [
            "",
            "x",
            "1_",
            "_",
            "1_notauuid",
            "99999999999999999999999999_x",
        ] {
            assert!(parse_cursor(bad).is_err(), "{bad}");
        }
        assert!(page_query(Some("limit=0")).is_err());
        assert!(page_query(Some("limit=101")).is_err());
        assert_eq!(page_query(Some("limit=5&x=1")).ok().map(|p| p.0), Some(5));
    }
}
