//! The route table: every path the public listener serves and the methods it serves them
//! with, written once. The metrics label, the dispatch and the 405 answer all derive from it.
//! `/metrics` is not among them: it is on the operations listener (`crate::ops`).

use http::Method;

/// One route of the API; the handler for each (route, method) is in `http::dispatch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Healthz,
    Readyz,
    PublicCampaigns,
    PublicCampaign,
    Issuances,
    Issuance,
    MyCoupons,
    Redeem,
    Refund,
    AdminCampaigns,
    AdminCampaign,
    AdminCampaignClose,
    AdminCouponCancel,
}

/// Path patterns, also the routes' templates in traces (`http.route`); a `{…}` parameter matches
/// one segment, even an empty one, which its parser then refuses (400). First match wins.
const ROUTES: [(&str, Route); 13] = [
    ("/healthz", Route::Healthz),
    ("/readyz", Route::Readyz),
    ("/v1/campaigns", Route::PublicCampaigns),
    ("/v1/campaigns/{campaign_id}", Route::PublicCampaign),
    ("/v1/campaigns/{campaign_id}/issuances", Route::Issuances),
    ("/v1/issuances/{issuance_id}", Route::Issuance),
    ("/v1/me/coupons", Route::MyCoupons),
    ("/v1/coupons/{coupon_id}/redeem", Route::Redeem),
    ("/v1/coupons/{coupon_id}/refund", Route::Refund),
    ("/v1/admin/campaigns", Route::AdminCampaigns),
    ("/v1/admin/campaigns/{campaign_id}", Route::AdminCampaign),
    (
        "/v1/admin/campaigns/{campaign_id}/close",
        Route::AdminCampaignClose,
    ),
    (
        "/v1/admin/coupons/{coupon_id}/cancel",
        Route::AdminCouponCancel,
    ),
];

impl Route {
    /// The route's name in metrics and traces: one of a fixed set, whatever the path holds.
    pub fn label(self) -> &'static str {
        match self {
            Route::Healthz => "healthz",
            Route::Readyz => "readyz",
            Route::PublicCampaigns => "public_campaigns",
            Route::PublicCampaign => "public_campaign",
            Route::Issuances => "issuances",
            Route::Issuance => "issuance",
            Route::MyCoupons => "my_coupons",
            Route::Redeem => "redeem",
            Route::Refund => "refund",
            Route::AdminCampaigns => "admin_campaigns",
            Route::AdminCampaign => "admin_campaign",
            Route::AdminCampaignClose => "admin_campaign_close",
            Route::AdminCouponCancel => "admin_coupon_cancel",
        }
    }

    /// The route's path template (`/v1/campaigns/{campaign_id}/issuances`): `http.route` in
    /// traces, and the path in `docs/openapi.yaml`.
    pub fn template(self) -> &'static str {
        ROUTES
            .iter()
            .find_map(|(pattern, route)| (*route == self).then_some(*pattern))
            .unwrap_or_default()
    }

    /// The methods the route serves; any other is 405.
    pub fn methods(self) -> &'static [Method] {
        match self {
            Route::Issuances
            | Route::Redeem
            | Route::Refund
            | Route::AdminCampaignClose
            | Route::AdminCouponCancel => &[Method::POST],
            Route::AdminCampaigns => &[Method::GET, Method::POST],
            Route::AdminCampaign => &[Method::GET, Method::PATCH],
            Route::Healthz
            | Route::Readyz
            | Route::PublicCampaigns
            | Route::PublicCampaign
            | Route::Issuance
            | Route::MyCoupons => &[Method::GET],
        }
    }

    /// Probes answer outside the API's limits (load shedding, rates, deadline).
    pub fn is_probe(self) -> bool {
        matches!(self, Route::Healthz | Route::Readyz)
    }
}

/// A path matched against the table: the route, and where in the path its parameter is
/// (empty when the pattern has none), so the request can move on without a copy of its path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matched {
    pub route: Route,
    id: std::ops::Range<usize>,
}

impl Matched {
    /// The parameter segment (`{…}`) of the path this was matched on.
    pub fn id<'p>(&self, path: &'p str) -> &'p str {
        path.get(self.id.clone()).unwrap_or_default()
    }
}

/// The route serving `path`, or `None` (404). Allocates nothing.
pub fn find(path: &str) -> Option<Matched> {
    ROUTES.iter().find_map(|(pattern, route)| {
        let mut id = 0..0;
        let mut offset = 0;
        let mut given = path.split('/');
        for expected in pattern.split('/') {
            let segment = given.next()?;
            if expected.starts_with('{') {
                id = offset..offset + segment.len();
            } else if expected != segment {
                return None;
            }
            offset += segment.len() + 1;
        }
        given
            .next()
            .is_none()
            .then_some(Matched { route: *route, id })
    })
}

/// The metrics label of a path, `other` when no route serves it.
pub fn label(path: &str) -> &'static str {
    find(path).map_or("other", |m| m.route.label())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_pattern_matches_itself_and_only_its_route() {
        for (pattern, route) in ROUTES {
            let path = match pattern.split_once('{') {
                Some((head, tail)) => format!("{head}abc{}", &tail[tail.find('}').unwrap() + 1..]),
                None => pattern.to_owned(),
            };
            let matched = find(&path).expect("matches");
            assert_eq!(matched.route, route, "{path}");
            let want = if pattern.contains('{') { "abc" } else { "" };
            assert_eq!(matched.id(&path), want);
            assert_eq!(route.template(), pattern);
        }
    }

    #[test]
    fn near_misses_are_not_routes() {
        for path in [
            "/",
            "",
            "/v1",
            "/v1/campaigns/x/issuances/",
            "/v1/issuances",
            "/healthz/x",
            // Metrics are served on the operations listener only.
            "/metrics",
            "/v1/admin/coupons/x",
            "v1/campaigns",
        ] {
            assert_eq!(find(path), None, "{path}");
            assert_eq!(label(path), "other");
        }
        assert_eq!(label("/v1/campaigns/x/issuances"), "issuances");
        // An empty id is the route's, and its parser's 400.
        let matched = find("/v1/campaigns/").expect("matches");
        assert_eq!(
            (matched.route, matched.id("/v1/campaigns/")),
            (Route::PublicCampaign, "")
        );
    }
}
