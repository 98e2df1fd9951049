//! The request target as the ingress reads it: the route table on the path, the id parsers on
//! the route's `{id}` segment, the paging query (and the problem it answers with) on the query.
//! No input may panic; every parsed value must survive its own round trip.
#![no_main]

use ingress::http::paging::{self, After};
use ingress::http::problem::Problem;
use ingress::http::routes;
use libfuzzer_sys::fuzz_target;
use schema::ids::{CampaignId, IssuanceId, UserId};

fuzz_target!(|data: &[u8]| {
    // Hyper hands the ingress a path and query of visible ASCII; any UTF-8 is a wider net.
    let Ok(target) = std::str::from_utf8(data) else {
        return;
    };
    let (path, query) = match target.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (target, None),
    };
    route(path);
    page(query);
});

fn route(path: &str) {
    let Some(matched) = routes::find(path) else {
        assert_eq!(routes::label(path), "other");
        return;
    };
    assert_eq!(routes::label(path), matched.route.label());
    assert!(!matched.route.methods().is_empty());
    let id = matched.id(path);
    assert!(!id.contains('/'), "id {id:?} of {path:?}");
    if let Ok(campaign) = id.parse::<CampaignId>() {
        assert_eq!(campaign.to_string().parse::<CampaignId>(), Ok(campaign));
    }
    if let Ok(issuance) = id.parse::<IssuanceId>() {
        assert_eq!(issuance.to_string(), id, "one spelling per issuance");
    }
    if let Ok(user) = UserId::parse(id) {
        assert_eq!(user.as_str(), id);
    }
}

fn page(query: Option<&str>) {
    match paging::query(query, paging::ignore_others) {
        Ok((limit, after)) => {
            assert!((1..=100).contains(&limit), "limit {limit}");
            cursor_round_trip(after);
        }
        Err(problem) => {
            let reply = problem.into_response();
            assert_eq!(reply.status(), 400);
        }
    }
    let refuse = |_: &str, _: &str| Err(Problem::BadRequest("unknown parameter".to_owned()));
    if let Err(problem) = paging::query(query, refuse) {
        assert_eq!(problem.into_response().status(), 400);
    }
}

/// A cursor the API accepted names the same item when the API writes it again.
fn cursor_round_trip(after: After) {
    let Some(item) = after else { return };
    let page = paging::page(vec![item, item], 1, |item| *item);
    let cursor = page
        .next_cursor
        .expect("a page with more items names its last");
    let again = paging::query(Some(&format!("cursor={cursor}")), paging::ignore_others);
    assert_eq!(again.ok(), Some((20, Some(item))), "cursor {cursor}");
}
