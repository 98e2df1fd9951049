//! The HTTP API against its description, `docs/openapi.yaml`. Every (method, path, status)
//! the document lists is produced by a real request to the real ingress, and every answer is
//! checked against the document: the status is listed for the operation, the listed headers
//! are there, the body has a listed content type and fits its schema. A documented answer that
//! no scenario produces fails the test, and so does an answer the document does not list.
//!
//! A new route: document it, then add a scenario with one `expect` per documented status. Its
//! 429 and 503 (the limits in front of every API route) come from [`limits`], for every
//! operation not tagged `probes`.

mod client;
mod contract;

use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use crate::support::Stack;
use client::{Api, Conformance};
use contract::Document;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_answer_is_produced_and_matches_the_document() {
    let conformance = Conformance::new();
    let (pipeline, limited) = tokio::join!(
        Stack::pipeline(),
        // One request at a time, and one request per second from an address.
        Stack::ingress_with(&[
            "--max-in-flight=1",
            "--max-public-reads=1",
            "--rate-limit-ip-per-sec=1",
            "--rate-limit-ip-burst=1",
        ])
    );
    let api = conformance.api(&pipeline);
    tokio::join!(
        async {
            probes(api).await;
            let campaigns = issuance(api).await;
            public_campaigns(api, &campaigns).await;
            coupons(api, &campaigns).await;
            operators(api, &campaigns).await;
        },
        limits(conformance.api(&limited), &conformance.document),
    );
    conformance.assert_all_seen();
}

/// The campaigns the scenarios share.
struct Campaigns {
    /// Open, stock 1: taken by amy.
    single: String,
    /// Open, stock 5, two per user.
    spare: String,
    /// Starts in an hour.
    later: String,
}

async fn probes(api: Api<'_>) {
    api.get("/healthz").expect(200).await;
    api.get("/readyz").expect(200).await;
}

/// `POST /v1/campaigns/{id}/issuances` and `GET /v1/issuances/{id}`.
async fn issuance(api: Api<'_>) -> Campaigns {
    let hour = time::Duration::hours(1);
    let campaigns = Campaigns {
        single: create_campaign(api, 1, 1, -hour, hour).await,
        spare: create_campaign(api, 5, 2, -hour, hour).await,
        later: create_campaign(api, 5, 1, hour, 2 * hour).await,
    };
    let request = format!("/v1/campaigns/{}/issuances", campaigns.single);
    let accepted = api.post(&request).user("amy").expect(202).await;
    let issuance = accepted.text("issuance_id");
    assert_eq!(
        accepted.header("location"),
        format!("/v1/issuances/{issuance}")
    );
    let again = api.post(&request).user("amy").expect(409).await;
    assert_eq!(again.body["issuance_id"], issuance.as_str());
    api.post(&request).user("ben").expect(410).await;
    let not_yet = format!("/v1/campaigns/{}/issuances", campaigns.later);
    api.post(&not_yet).user("amy").expect(403).await;
    let unknown = format!("/v1/campaigns/{}/issuances", Uuid::now_v7());
    api.post(&unknown).user("amy").expect(404).await;
    let malformed = "/v1/campaigns/not-a-uuid/issuances";
    api.post(malformed).user("amy").expect(400).await;
    api.post(&request).expect(401).await;
    let oversized = "x".repeat(5_000);
    api.post(&request)
        .user("amy")
        .body("application/json", oversized)
        .expect(413)
        .await;
    api.post(&request)
        .user("amy")
        .body("text/plain", "{}")
        .expect(415)
        .await;

    let status = format!("/v1/issuances/{issuance}");
    api.get(&status).user("amy").expect(200).await;
    api.get(&status).user("mallory").expect(404).await;
    api.get("/v1/issuances/not-an-id")
        .user("amy")
        .expect(400)
        .await;
    api.get(&status).expect(401).await;
    api.stack
        .fixture
        .wait_for_coupons(&campaigns.single, 1)
        .await;
    let issued = api.get(&status).user("amy").expect(200).await;
    assert_eq!(issued.body["status"], "issued");
    // A long-poll on a settled issuance: at once, with the wait honoured (capped).
    let polled = (api.get(&status).user("amy"))
        .with(|r| r.header("prefer", "wait=45"))
        .expect(200)
        .await;
    assert_eq!(polled.body["status"], "issued");
    assert_eq!(polled.header("preference-applied"), "wait=30");

    // A reservation given back (Kafka refused its event) reads as released, with the reason.
    let released = api
        .stack
        .reserve_without_event(&campaigns.spare, "cleo")
        .await;
    let gate = &api.stack.app.gate;
    assert!(gate.release(&released, 1, "kafka-refused").await.unwrap());
    let reply = api
        .get(&format!("/v1/issuances/{released}"))
        .user("cleo")
        .expect(200)
        .await;
    assert_eq!(
        (&reply.body["status"], &reply.body["reason"]),
        (&json!("released"), &json!("kafka-refused"))
    );
    campaigns
}

/// `GET /v1/campaigns` and `GET /v1/campaigns/{id}`.
async fn public_campaigns(api: Api<'_>, campaigns: &Campaigns) {
    let list = api.get("/v1/campaigns").expect(200).await;
    let listed: Vec<&Value> = list.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| &c["id"])
        .collect();
    assert!(listed.contains(&&json!(campaigns.later)), "{}", list.body);
    // A copy the client holds is still current: 304, no body.
    let held = |tag: &str| {
        let tag = tag.to_owned();
        move |r: reqwest::RequestBuilder| r.header("if-none-match", tag)
    };
    let current = list.header("etag");
    api.get("/v1/campaigns")
        .with(held(current))
        .expect(304)
        .await;
    let single = format!("/v1/campaigns/{}", campaigns.single);
    let campaign = api.get(&single).expect(200).await;
    assert_eq!(campaign.body["remaining"], 0);
    let current = campaign.header("etag");
    api.get(&single).with(held(current)).expect(304).await;
    let unknown = format!("/v1/campaigns/{}", Uuid::now_v7());
    api.get(&unknown).expect(404).await;
    api.get("/v1/campaigns/not-a-uuid").expect(400).await;
}

/// `GET /v1/me/coupons`, `POST /v1/coupons/{id}/redeem` and `POST /v1/coupons/{id}/refund`.
async fn coupons(api: Api<'_>, campaigns: &Campaigns) {
    // Amy holds two coupons (so her list has a second page), Ben one.
    let spare = format!("/v1/campaigns/{}/issuances", campaigns.spare);
    api.post(&spare).user("amy").expect(202).await;
    api.post(&spare).user("ben").expect(202).await;
    api.stack
        .fixture
        .wait_for_coupons(&campaigns.spare, 2)
        .await;

    let first = api
        .get("/v1/me/coupons?limit=1")
        .user("amy")
        .expect(200)
        .await;
    let cursor = first.text("next_cursor");
    let next = format!("/v1/me/coupons?limit=1&cursor={cursor}");
    let second = api.get(&next).user("amy").expect(200).await;
    assert!(second.body.get("next_cursor").is_none(), "{}", second.body);
    api.get("/v1/me/coupons?limit=0")
        .user("amy")
        .expect(400)
        .await;
    api.get("/v1/me/coupons").expect(401).await;

    let coupon = first.body["items"][0]["coupon_id"].as_str().unwrap();
    let redeem = format!("/v1/coupons/{coupon}/redeem");
    let order = |id: &str| json!({"order_id": id, "user_id": "amy"});
    let redeemed = api
        .post(&redeem)
        .service()
        .json(&order("order-1"))
        .expect(200)
        .await;
    assert_eq!(redeemed.body["status"], "redeemed");
    let again = api
        .post(&redeem)
        .service()
        .json(&order("order-1"))
        .expect(200)
        .await;
    assert_eq!(again.body["redeemed_at"], redeemed.body["redeemed_at"]);
    api.post(&redeem)
        .service()
        .json(&order("order-2"))
        .expect(409)
        .await;
    api.post(&redeem)
        .service()
        .json(&json!({"order_id": "order-3", "user_id": "mallory"}))
        .expect(404)
        .await;
    api.post("/v1/coupons/not-a-uuid/redeem")
        .service()
        .json(&order("order-3"))
        .expect(400)
        .await;
    api.post(&redeem).json(&order("order-3")).expect(401).await;
    api.post(&redeem)
        .user("amy")
        .json(&order("order-3"))
        .expect(403)
        .await;
    api.post(&redeem)
        .service()
        .body("application/json", "x".repeat(5_000))
        .expect(413)
        .await;
    api.post(&redeem)
        .service()
        .body("text/plain", order("order-3").to_string())
        .expect(415)
        .await;

    // The order is refunded: the coupon is Amy's again, and another order redeems it.
    let refund = format!("/v1/coupons/{coupon}/refund");
    api.post(&refund)
        .service()
        .json(&order("order-2"))
        .expect(409)
        .await;
    let returned = api
        .post(&refund)
        .service()
        .json(&order("order-1"))
        .expect(200)
        .await;
    assert_eq!(returned.body["status"], "issued");
    api.post(&refund)
        .service()
        .json(&json!({"order_id": "order-1", "user_id": "mallory"}))
        .expect(404)
        .await;
    api.post("/v1/coupons/not-a-uuid/refund")
        .service()
        .json(&order("order-1"))
        .expect(400)
        .await;
    api.post(&refund).json(&order("order-1")).expect(401).await;
    api.post(&refund)
        .user("amy")
        .json(&order("order-1"))
        .expect(403)
        .await;
    // A late redeem for the refunded order does not redeem again.
    api.post(&redeem)
        .service()
        .json(&order("order-1"))
        .expect(409)
        .await;
    api.post(&refund)
        .service()
        .body("application/json", "x".repeat(5_000))
        .expect(413)
        .await;
    api.post(&refund)
        .service()
        .body("text/plain", order("order-1").to_string())
        .expect(415)
        .await;
    api.post(&redeem)
        .service()
        .json(&order("order-5"))
        .expect(200)
        .await;

    // Ben's coupon past its validity: listed as expired, and too late to redeem.
    let db = api.stack.fixture.db().await;
    db.execute(
        "UPDATE coupons SET expires_at = now() - interval '1 minute' WHERE user_id = 'ben'",
        &[],
    )
    .await
    .unwrap();
    let bens = api.get("/v1/me/coupons").user("ben").expect(200).await;
    let expired = &bens.body["items"][0];
    assert_eq!(expired["status"], "expired");
    let late = format!(
        "/v1/coupons/{}/redeem",
        expired["coupon_id"].as_str().unwrap()
    );
    api.post(&late)
        .service()
        .json(&json!({"order_id": "order-4", "user_id": "ben"}))
        .expect(410)
        .await;
}

/// The operator routes.
async fn operators(api: Api<'_>, campaigns: &Campaigns) {
    let body = new_campaign(5, 1, time::Duration::hours(1), time::Duration::hours(2));
    let create = "/v1/admin/campaigns";
    api.post(create).admin().json(&json!({})).expect(400).await;
    api.post(create).json(&body).expect(401).await;
    api.post(create).user("amy").json(&body).expect(403).await;
    api.post(create)
        .admin()
        .body("application/json", "x".repeat(5_000))
        .expect(413)
        .await;
    api.post(create)
        .admin()
        .body("text/plain", body.to_string())
        .expect(415)
        .await;

    let spare = format!("/v1/admin/campaigns/{}", campaigns.spare);
    let unknown = format!("/v1/admin/campaigns/{}", Uuid::now_v7());
    let malformed = "/v1/admin/campaigns/not-a-uuid";
    let view = api.get(&spare).admin().expect(200).await;
    assert_eq!(
        (&view.body["total_stock"], &view.body["issued"]),
        (&json!(5), &json!(2))
    );
    api.get(&spare).user("amy").expect(403).await;
    api.get(&spare).expect(401).await;
    api.get(malformed).admin().expect(400).await;
    api.get(&unknown).admin().expect(404).await;

    let grow = json!({"total_stock": 10});
    let grown = api.patch(&spare).admin().json(&grow).expect(200).await;
    assert_eq!(grown.body["total_stock"], 10);
    let shrink = json!({"total_stock": 2});
    api.patch(&spare).admin().json(&shrink).expect(409).await;
    let unknown_field = json!({"stock": 20});
    api.patch(&spare)
        .admin()
        .json(&unknown_field)
        .expect(400)
        .await;
    api.patch(&unknown).admin().json(&grow).expect(404).await;
    api.patch(&spare).json(&grow).expect(401).await;
    api.patch(&spare).user("amy").json(&grow).expect(403).await;
    api.patch(&spare)
        .admin()
        .body("application/json", "x".repeat(5_000))
        .expect(413)
        .await;
    api.patch(&spare)
        .admin()
        .body("text/plain", grow.to_string())
        .expect(415)
        .await;

    let first = api
        .get("/v1/admin/campaigns?limit=2")
        .admin()
        .expect(200)
        .await;
    let cursor = first.text("next_cursor");
    let rest = api
        .get(&format!("/v1/admin/campaigns?limit=2&cursor={cursor}"))
        .admin()
        .expect(200)
        .await;
    assert_eq!(rest.body["items"].as_array().unwrap().len(), 1);
    let open = api
        .get("/v1/admin/campaigns?status=open")
        .admin()
        .expect(200)
        .await;
    assert_eq!(open.body["items"].as_array().unwrap().len(), 2);
    api.get("/v1/admin/campaigns?status=done")
        .admin()
        .expect(400)
        .await;
    api.get("/v1/admin/campaigns").user("amy").expect(403).await;
    api.get("/v1/admin/campaigns").expect(401).await;

    // Amy's coupons: one redeemed, one not.
    let db = api.stack.fixture.db().await;
    let amys: Vec<(Uuid, String)> = db
        .query(
            "SELECT id, status FROM coupons WHERE user_id = 'amy' ORDER BY status",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    let of = |status: &str| amys.iter().find(|(_, s)| s == status).unwrap().0;
    let cancel = format!("/v1/admin/coupons/{}/cancel", of("issued"));
    let cancelled = api.post(&cancel).admin().expect(200).await;
    assert_eq!(cancelled.body["status"], "cancelled");
    api.post(&cancel).user("amy").expect(403).await;
    api.post(&cancel).expect(401).await;
    api.post(&format!("/v1/admin/coupons/{}/cancel", of("redeemed")))
        .admin()
        .expect(409)
        .await;
    api.post("/v1/admin/coupons/not-a-uuid/cancel")
        .admin()
        .expect(400)
        .await;
    api.post(&format!("/v1/admin/coupons/{}/cancel", Uuid::now_v7()))
        .admin()
        .expect(404)
        .await;

    let close = format!("/v1/admin/campaigns/{}/close", campaigns.later);
    let closed = api.post(&close).admin().expect(200).await;
    assert_eq!(closed.body["status"], "closed");
    api.post(&close).user("amy").expect(403).await;
    api.post(&close).expect(401).await;
    api.post(&format!("{malformed}/close"))
        .admin()
        .expect(400)
        .await;
    api.post(&format!("{unknown}/close"))
        .admin()
        .expect(404)
        .await;
}

/// The limits in front of every API route, on an ingress that handles one request at a time
/// and one request per second from an address: shed at once (503) while another request is in
/// flight, and over the address's rate (429) after it. Then shutdown begins and `/readyz`
/// fails (503).
async fn limits(api: Api<'_>, document: &Document) {
    let stack = api.stack;
    let limited: Vec<_> = document
        .operations()
        .into_iter()
        .filter(|operation| !operation.tags.iter().any(|t| t == "probes"))
        .collect();
    // The limits come before routing: any id in the path does.
    let id = Uuid::now_v7().to_string();

    let holder = hold_the_only_permit(stack).await;
    // Public campaign reads have a budget of their own: spend it too.
    let public = stack.app.public.admit().unwrap();
    for operation in &limited {
        let path = operation.path_with(&id);
        let shed = api
            .request(operation.method.clone(), &path)
            .expect(503)
            .await;
        assert_eq!(shed.body["detail"], "overloaded; retry");
    }
    drop((holder, public));
    testkit::eventually(Duration::from_secs(10), "the permit back", || async {
        (stack.app.in_flight.available_permits() == 1).then_some(())
    })
    .await;

    // The holder spent the address's one request. The allowance refills each second, so now
    // and then a request gets through (without a token, it changes nothing); the next is over
    // the rate again.
    for operation in &limited {
        let path = operation.path_with(&id);
        testkit::eventually(Duration::from_secs(10), "a request over the rate", || {
            let call = api.request(operation.method.clone(), &path);
            async move { (call.send().await.status == 429).then_some(()) }
        })
        .await;
    }

    stack.app.ready.store(false, Ordering::SeqCst);
    api.get("/readyz").expect(503).await;
}

/// Takes the ingress's only in-flight permit: an operator's request whose body never finishes
/// arriving. Dropping the connection gives the permit back.
async fn hold_the_only_permit(stack: &Stack) -> std::net::TcpStream {
    let address = stack.base.trim_start_matches("http://").to_owned();
    let head = format!(
        "POST /v1/admin/campaigns HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{",
        stack.admin_token()
    );
    let holder = tokio::task::spawn_blocking(move || {
        use std::io::Write as _;
        let mut holder = std::net::TcpStream::connect(address).unwrap();
        holder.write_all(head.as_bytes()).unwrap();
        holder
    })
    .await
    .unwrap();
    testkit::eventually(Duration::from_secs(10), "the permit taken", || async {
        (stack.app.in_flight.available_permits() == 0).then_some(())
    })
    .await;
    holder
}

/// Creates a campaign through the API; the window is relative to now.
async fn create_campaign(
    api: Api<'_>,
    stock: u32,
    per_user_limit: u32,
    starts_in: time::Duration,
    ends_in: time::Duration,
) -> String {
    let body = new_campaign(stock, per_user_limit, starts_in, ends_in);
    let created = api
        .post("/v1/admin/campaigns")
        .admin()
        .json(&body)
        .expect(201)
        .await;
    let id = created.text("id");
    assert_eq!(
        created.header("location"),
        format!("/v1/admin/campaigns/{id}")
    );
    id
}

fn new_campaign(
    stock: u32,
    per_user_limit: u32,
    starts_in: time::Duration,
    ends_in: time::Duration,
) -> Value {
    let now = OffsetDateTime::now_utc();
    json!({
        "name": "conformance",
        "total_stock": stock,
        "per_user_limit": per_user_limit,
        "starts_at": (now + starts_in).format(&Rfc3339).unwrap(),
        "ends_at": (now + ends_in).format(&Rfc3339).unwrap(),
        "discount": {"kind": "percent", "value": 10},
        "coupon_valid_days": 30,
    })
}

/// The document refers only to what exists, and its schemas say only what the checks enforce:
/// each compiles (its references resolve, its formats are known) and uses only JSON Schema
/// 2020-12 keywords (an unknown one, such as `nullable`, would constrain nothing).
#[test]
fn the_document_uses_only_what_the_tests_check() {
    let document = Document::load();
    let root = &document.root;
    assert!(
        root["openapi"].as_str().unwrap().starts_with("3.1."),
        "OpenAPI 3.1"
    );
    // The 2020-12 meta-schema, refusing keywords it does not know, in every subschema too.
    let strict = jsonschema::options()
        .build(&json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": "urn:coupon:strict-schema",
            "$dynamicAnchor": "meta",
            "$ref": "https://json-schema.org/draft/2020-12/schema",
            "unevaluatedProperties": false,
        }))
        .unwrap();
    let mut problems = Vec::new();
    let mut pending = vec![(String::new(), root)];
    while let Some((at, value)) = pending.pop() {
        if let Some(items) = value.as_array() {
            pending.extend(
                items
                    .iter()
                    .enumerate()
                    .map(|(n, v)| (format!("{at}/{n}"), v)),
            );
        }
        for (key, inner) in value.as_object().into_iter().flatten() {
            let here = format!("{at}/{}", contract::escape(key));
            if key == "schema" || at == "/components/schemas" {
                let errors = strict.iter_errors(inner);
                problems.extend(errors.map(|e| format!("{here}{}: {e}", e.instance_path())));
                problems.extend(document.validator(&here).err());
            } else if key == "$ref" && document.at(at.clone()).is_none() {
                problems.push(format!("{here}: {inner} leads nowhere"));
            } else {
                pending.push((here, inner));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // Every operation answers something, keyed by status code.
    let answers = document.answers();
    for operation in document.operations() {
        assert!(
            answers.iter().any(|a| a.template == operation.template),
            "{operation:?}"
        );
    }
}
