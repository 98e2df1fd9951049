//! RFC 9457 problem details: every error the API returns, with a stable `type` per cause.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::Full;

/// One way a request can fail, as the caller must read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    Unauthorized(String),
    Forbidden,
    NotFound(&'static str),
    BadRequest(String),
    MethodNotAllowed,
    PayloadTooLarge,
    UnsupportedMediaType,
    CampaignNotOpen,
    /// The user is at the limit; the id of their newest issuance, when the gate still has it.
    AlreadyIssued {
        issuance_id: Option<String>,
    },
    SoldOut,
    /// An operator's change the campaign's state does not allow.
    ChangeRefused(String),
    /// The coupon is redeemed (for another order, or when an operator tries to cancel it).
    CouponRedeemed,
    /// The coupon is past its validity.
    CouponExpired,
    CouponCancelled,
    /// A refund names an order that does not hold the coupon.
    NotRedeemedByOrder,
    /// The order already redeemed the coupon and was refunded: it cannot redeem it again.
    OrderRefunded,
    /// The caller (user or client address) is over its rate; retry after the given seconds.
    TooManyRequests {
        retry_after_secs: u32,
    },
    /// A dependency is unavailable or did not answer in time; retry after the given seconds.
    Unavailable {
        detail: &'static str,
        retry_after_secs: u32,
    },
    Internal,
}

impl Problem {
    /// 503: a dependency is unavailable; retry in a second.
    pub fn unavailable(detail: &'static str) -> Problem {
        Problem::Unavailable {
            detail,
            retry_after_secs: 1,
        }
    }

    fn parts(&self) -> (StatusCode, &'static str, &'static str) {
        match self {
            Problem::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized", "Unauthorized"),
            Problem::Forbidden => (StatusCode::FORBIDDEN, "forbidden", "Forbidden"),
            Problem::NotFound(_) => (StatusCode::NOT_FOUND, "not-found", "Not found"),
            Problem::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad-request", "Bad request"),
            Problem::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "Method not allowed",
            ),
            Problem::PayloadTooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload-too-large",
                "Request body too large",
            ),
            Problem::UnsupportedMediaType => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "Request body must be application/json",
            ),
            Problem::CampaignNotOpen => (
                StatusCode::FORBIDDEN,
                "campaign-not-open",
                "The campaign is not open for issuance",
            ),
            Problem::AlreadyIssued { .. } => (
                StatusCode::CONFLICT,
                "already-issued",
                "A coupon of this campaign is already issued to you",
            ),
            Problem::SoldOut => (StatusCode::GONE, "sold-out", "The campaign is sold out"),
            Problem::ChangeRefused(_) => (
                StatusCode::CONFLICT,
                "change-refused",
                "The campaign does not allow this change now",
            ),
            Problem::CouponRedeemed => (
                StatusCode::CONFLICT,
                "coupon-redeemed",
                "The coupon is already redeemed",
            ),
            Problem::CouponExpired => (StatusCode::GONE, "coupon-expired", "The coupon expired"),
            Problem::CouponCancelled => (
                StatusCode::CONFLICT,
                "coupon-cancelled",
                "The coupon was cancelled",
            ),
            Problem::NotRedeemedByOrder => (
                StatusCode::CONFLICT,
                "not-redeemed-by-order",
                "The coupon is not redeemed by this order",
            ),
            Problem::OrderRefunded => (
                StatusCode::CONFLICT,
                "order-refunded",
                "This order was refunded; it cannot redeem the coupon again",
            ),
            Problem::TooManyRequests { .. } => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate-limited",
                "Too many requests",
            ),
            Problem::Unavailable { .. } => (
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "Temporarily unavailable",
            ),
            Problem::Internal => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "Internal error",
            ),
        }
    }

    pub fn into_response(self) -> Response<Full<Bytes>> {
        let (status, slug, title) = self.parts();
        let mut body = serde_json::json!({
            "type": format!("/problems/{slug}"),
            "title": title,
            "status": status.as_u16(),
        });
        let detail = match &self {
            Problem::Unauthorized(d) | Problem::BadRequest(d) | Problem::ChangeRefused(d) => {
                Some(d.as_str())
            }
            Problem::NotFound(d) => Some(*d),
            Problem::Unavailable { detail, .. } => Some(*detail),
            _ => None,
        };
        if let Some(detail) = detail {
            body["detail"] = detail.into();
        }
        if let Problem::AlreadyIssued {
            issuance_id: Some(id),
        } = &self
        {
            body["issuance_id"] = id.as_str().into();
        }
        let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        match &self {
            Problem::Unavailable {
                retry_after_secs, ..
            }
            | Problem::TooManyRequests { retry_after_secs } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
            }
            Problem::Unauthorized(_) => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            _ => {}
        }
        response
    }
}

impl From<super::auth::AuthError> for Problem {
    fn from(e: super::auth::AuthError) -> Self {
        Problem::Unauthorized(e.to_string())
    }
}

/// The ledger refused a value (SQLSTATE class 22, data exception: a NUL in a text, a number out
/// of range, an invalid date...): the request is bad, 400, whatever let it through validation.
/// Anything else means the ledger failed or did not answer: 503. Logged here, where it becomes
/// an answer.
impl From<tokio_postgres::Error> for Problem {
    fn from(e: tokio_postgres::Error) -> Self {
        match e.code() {
            Some(code) if is_data_exception(code) => {
                tracing::info!(error = %e, "postgres refused a value");
                Problem::BadRequest(format!(
                    "the ledger refused a value of the request (SQLSTATE {})",
                    code.code()
                ))
            }
            _ => {
                tracing::warn!(error = %e, "postgres request failed");
                Problem::unavailable("the database is unavailable")
            }
        }
    }
}

/// SQLSTATE class 22: the value, not the database, is at fault.
fn is_data_exception(code: &tokio_postgres::error::SqlState) -> bool {
    code.code().starts_with("22")
}

/// No pooled connection to the ledger within `DATABASE_POOL_WAIT_MS` (or it failed): 503 with
/// `Retry-After`.
impl From<deadpool_postgres::PoolError> for Problem {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        tracing::warn!(error = %e, "no postgres connection");
        match e {
            deadpool_postgres::PoolError::Timeout(_) => {
                Problem::unavailable("every database connection is busy; retry")
            }
            _ => Problem::unavailable("the database is unavailable"),
        }
    }
}

/// The gate failed or did not answer: 503, never an admission without its checks.
impl From<gate::GateError> for Problem {
    fn from(e: gate::GateError) -> Self {
        tracing::warn!(error = %e, "redis request failed");
        Problem::unavailable("the reservation store is unavailable; retry")
    }
}
