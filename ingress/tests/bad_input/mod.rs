//! Bad input is a 4xx, never a 5xx, and changes nothing: arbitrary JSON (mostly the shape the
//! route expects, with fields out of range, of the wrong type, with control characters or
//! oversized) and arbitrary bytes, sent to every operator body (create, change) and to the
//! order service's bodies (redeem, refund). After each request with a 4xx answer, the ledger's
//! every row and the test's Redis keys are as before; the requested topic never grows.

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::support::Stack;

/// Cases per body kind: enough to cross every validation, few enough to run in seconds.
const CASES: u32 = 64;

/// The coupon holder of the order-service cases.
const HOLDER: &str = "holder-1";

type Field = (
    &'static str,
    BoxedStrategy<Value>,
    BoxedStrategy<Option<Value>>,
);

/// Any JSON value, a few levels deep.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("finite", |f| {
            serde_json::Number::from_f64(f).map(Value::Number)
        }),
        hostile_text().prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 5, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..5).prop_map(Value::from),
            proptest::collection::btree_map("(?s).{0,8}", inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Hostile text: NUL, other control characters, anything at all, too long, blank.
fn hostile_text() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => "[a-z]{0,4}\\x00[a-z]{0,4}",
        2 => "[a-z]{0,4}[\\x01-\\x1f\\x7f\\u{80}-\\u{9f}][a-z]{0,4}",
        1 => "(?s).{0,24}",
        1 => "\\PC{201,210}",
        1 => "[ \\t]{0,3}",
    ]
}

/// In place of a field: something hostile of its kind, any JSON, or nothing.
fn hostile<H: Strategy<Value = Value> + 'static>(of_its_kind: H) -> BoxedStrategy<Option<Value>> {
    prop_oneof![
        3 => of_its_kind.prop_map(Some),
        1 => any_json().prop_map(Some),
        1 => Just(None),
    ]
    .boxed()
}

fn hostile_number() -> BoxedStrategy<Option<Value>> {
    hostile(prop_oneof![
        proptest::sample::select(vec![
            json!(-1),
            json!(0),
            json!(101),
            json!(3651),
            json!(100_000_001),
            json!(i64::MAX),
            json!(u64::MAX),
            json!(1.5),
            json!(1e300),
            json!("7"),
        ]),
        any::<i64>().prop_map(Value::from),
    ])
}

fn number(name: &'static str, valid: std::ops::RangeInclusive<i64>) -> Field {
    (name, valid.prop_map(Value::from).boxed(), hostile_number())
}

fn text(name: &'static str, valid: impl Strategy<Value = String> + 'static) -> Field {
    let hostile = hostile(hostile_text().prop_map(Value::from));
    (name, valid.prop_map(Value::from).boxed(), hostile)
}

fn moment(name: &'static str, from_now: std::ops::RangeInclusive<i64>) -> Field {
    let now = OffsetDateTime::now_utc();
    let valid = from_now
        .prop_map(move |s| json!((now + time::Duration::seconds(s)).format(&Rfc3339).unwrap()));
    let strange = prop_oneof![
        proptest::sample::select(vec![
            "0000-01-01T00:00:00Z",
            "0000-01-01T00:00:00+00:01",
            "9999-12-31T23:59:59Z",
            "9999-12-31T23:59:59.999999999-23:59",
            "1970-01-01T00:00:00+23:59",
            "2024-02-30T00:00:00Z",
            "2030-01-01T00:00:00",
            "+10000-01-01T00:00:00Z",
        ])
        .prop_map(Value::from),
        hostile_text().prop_map(Value::from),
    ];
    (name, valid.boxed(), hostile(strange))
}

fn discount() -> Field {
    let kind = prop_oneof![Just("fixed"), Just("percent")].prop_map(|k| k.to_owned());
    let fields = vec![text("kind", kind), number("value", 1..=100)];
    (
        "discount",
        mutated(fields.clone(), 0..=0).boxed(),
        hostile(mutated(fields, 1..=2)),
    )
}

/// An object of every field's valid value, then `hostile` of them (chosen at random) replaced
/// by one of their hostile values, and sometimes a field the route does not know: so that a
/// hostile value meets every check behind the ones its neighbours pass, the ledger's too.
fn mutated(
    fields: Vec<Field>,
    hostile: std::ops::RangeInclusive<usize>,
) -> impl Strategy<Value = Value> {
    let names: Vec<&'static str> = fields.iter().map(|(name, _, _)| *name).collect();
    let (valid, bad): (Vec<_>, Vec<_>) = fields.into_iter().map(|(_, v, h)| (v, h)).unzip();
    let chosen = proptest::sample::subsequence((0..names.len()).collect::<Vec<_>>(), hostile);
    let unknown = proptest::option::weighted(0.05, ("(?s).{1,8}", any_json()));
    (valid, bad, chosen, unknown).prop_map(move |(valid, bad, chosen, unknown)| {
        let mut object = Map::new();
        for (n, (name, value)) in names.iter().zip(valid).enumerate() {
            let value = if chosen.contains(&n) {
                bad[n].clone()
            } else {
                Some(value)
            };
            if let Some(value) = value {
                object.insert((*name).to_owned(), value);
            }
        }
        if let Some((name, value)) = unknown {
            object.insert(name, value);
        }
        Value::Object(object)
    })
}

/// A valid campaign with none, one or two hostile fields.
fn new_campaign() -> impl Strategy<Value = Value> {
    let day = 86_400;
    let name = prop_oneof!["[a-zA-Z0-9][a-zA-Z0-9 -]{0,23}", "\\PC{1,200}"];
    mutated(
        vec![
            text("name", name),
            number("total_stock", 0..=100_000_000),
            number("per_user_limit", 1..=100),
            moment("starts_at", -day..=0),
            moment("ends_at", 60..=400 * day),
            discount(),
            number("coupon_valid_days", 1..=3650),
        ],
        0..=2,
    )
}

/// A change of a few fields, valid or hostile.
fn campaign_change() -> impl Strategy<Value = Value> {
    let fields = vec![
        number("total_stock", 10..=100_000_000),
        number("per_user_limit", 1..=100),
        moment("ends_at", 3 * 3_600..=400 * 86_400),
        discount(),
        number("coupon_valid_days", 1..=3650),
    ];
    let closed = prop_oneof![
        8 => Just(None),
        4 => Just(Some(json!(false))),
        1 => Just(Some(json!(true))),
        1 => any_json().prop_map(Some),
    ];
    let some = fields
        .into_iter()
        .map(|(name, valid, bad)| {
            let value = prop_oneof![4 => Just(None), 2 => valid.prop_map(Some), 1 => bad];
            value.prop_map(move |v| v.map(|v| (name, v)))
        })
        .collect::<Vec<_>>();
    (some, closed).prop_map(|(some, closed)| {
        let mut object: Map<String, Value> = some
            .into_iter()
            .flatten()
            .map(|(name, v)| (name.to_owned(), v))
            .collect();
        if let Some(closed) = closed {
            object.insert("closed".to_owned(), closed);
        }
        Value::Object(object)
    })
}

/// `{order_id, user_id}`: a plausible order for the holder, with none or one hostile field.
fn order_body() -> impl Strategy<Value = Value> {
    // A few orders, so that refunds find the order a redemption named.
    let order = prop_oneof![
        3 => proptest::sample::select(vec!["order-1", "order-2", "order-3"]).prop_map(|o| o.to_owned()),
        1 => "[a-zA-Z0-9-]{1,24}",
    ];
    mutated(
        vec![
            text("order_id", order),
            text("user_id", Just(HOLDER.to_owned())),
        ],
        0..=1,
    )
}

/// Every row of every table of the ledger (by table), and the test's Redis keys.
type State = (Vec<(String, String)>, Vec<(String, Vec<(String, String)>)>);

async fn state(stack: &Stack) -> State {
    let db = stack.fixture.db().await;
    let tables: Vec<String> = db
        .query(
            "SELECT table_name::text FROM information_schema.tables
             WHERE table_schema = 'public' AND table_type = 'BASE TABLE' ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    let mut ledger = Vec::new();
    for table in tables {
        let rows: String = db
            .query_one(
                &format!(
                    "SELECT coalesce(string_agg(t::text, E'\\n' ORDER BY t::text), '') FROM \"{table}\" t"
                ),
                &[],
            )
            .await
            .unwrap()
            .get(0);
        ledger.push((table, rows));
    }
    (ledger, stack.fixture.redis_snapshot().await)
}

/// Sends one request; fails the case on a 5xx, or on a 4xx that changed anything.
async fn check(
    stack: &Stack,
    request: reqwest::RequestBuilder,
    what: &str,
) -> Result<(), TestCaseError> {
    let before = state(stack).await;
    let response = request.send().await.unwrap();
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    prop_assert!(
        !status.is_server_error(),
        "{what}: answered {status}: {body}"
    );
    if status.is_client_error() {
        prop_assert!(
            state(stack).await == before,
            "{what}: a {status} changed something: {body}"
        );
    }
    Ok(())
}

/// Runs `CASES` cases of `strategy` through `case`, on this (multi-threaded) runtime.
fn run<S: Strategy>(strategy: S, case: impl Fn(S::Value) -> Result<(), TestCaseError>) {
    let mut runner = TestRunner::new(Config {
        cases: CASES,
        failure_persistence: None,
        ..Config::default()
    });
    if let Err(e) = runner.run(&strategy, case) {
        panic!("{e}");
    }
}

fn block_on<F: Future>(future: F) -> F::Output {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(future))
}

/// Operator bodies: create, and change a scheduled and an open campaign.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arbitrary_operator_bodies_get_no_5xx_and_a_4xx_changes_nothing() {
    let stack = Stack::ingress_only().await;
    let topic = stack.fixture.topic_len(&stack.fixture.topic).await;
    let now = OffsetDateTime::now_utc();
    let scheduled = stack
        .campaign_with_window(
            10,
            2,
            now + std::time::Duration::from_secs(3600),
            now + std::time::Duration::from_secs(7200),
        )
        .await;
    let open = stack.open_campaign(10, 1).await;
    let admin = stack.admin_token();
    let create_url = format!("{}/v1/admin/campaigns", stack.base);

    run(new_campaign(), |body| {
        let request = stack.http.post(&create_url).bearer_auth(&admin).json(&body);
        block_on(check(&stack, request, &format!("create {body}")))
    });
    run((campaign_change(), any::<bool>()), |(body, on_open)| {
        let id = if on_open { &open } else { &scheduled };
        let url = format!("{}/v1/admin/campaigns/{id}", stack.base);
        let request = stack.http.patch(url).bearer_auth(&admin).json(&body);
        block_on(check(&stack, request, &format!("change {body}")))
    });
    let bytes = proptest::collection::vec(any::<u8>(), 0..160);
    run((bytes, any::<bool>()), |(bytes, create)| {
        let request = if create {
            stack.http.post(&create_url)
        } else {
            stack
                .http
                .patch(format!("{}/v1/admin/campaigns/{scheduled}", stack.base))
        };
        let request = request
            .bearer_auth(&admin)
            .header("content-type", "application/json")
            .body(bytes.clone());
        block_on(check(&stack, request, &format!("operator bytes {bytes:?}")))
    });
    assert_eq!(stack.fixture.topic_len(&stack.fixture.topic).await, topic);
}

/// The order service's bodies: redeem and refund of a coupon the ledger holds (and of one it
/// does not), with the order service's token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arbitrary_order_service_bodies_get_no_5xx_and_a_4xx_changes_nothing() {
    let stack = Stack::ingress_only().await;
    let campaign = uuid::Uuid::parse_str(&stack.open_campaign(10, 1).await).unwrap();
    let coupon = uuid::Uuid::now_v7();
    let db = stack.fixture.db().await;
    db.execute(
        "INSERT INTO coupons (id, campaign_id, user_id, seq, requested_at, expires_at)
         VALUES ($1, $2, $3, 1, now(), now() + interval '7 days')",
        &[&coupon, &campaign, &HOLDER],
    )
    .await
    .unwrap();
    db.execute(
        "UPDATE campaigns SET issued_count = issued_count + 1 WHERE id = $1",
        &[&campaign],
    )
    .await
    .unwrap();
    let topic = stack.fixture.topic_len(&stack.fixture.topic).await;
    let service = testkit::token("order-service", Some("service"), 3600);
    let url = |known: bool, redeem: bool| {
        let id = if known { coupon } else { uuid::Uuid::now_v7() };
        let action = if redeem { "redeem" } else { "refund" };
        format!("{}/v1/coupons/{id}/{action}", stack.base)
    };

    run(
        (order_body(), any::<bool>(), proptest::bool::weighted(0.9)),
        |(body, redeem, known)| {
            let request = stack
                .http
                .post(url(known, redeem))
                .bearer_auth(&service)
                .json(&body);
            let action = if redeem { "redeem" } else { "refund" };
            block_on(check(&stack, request, &format!("{action} {body}")))
        },
    );
    let bytes = proptest::collection::vec(any::<u8>(), 0..160);
    run((bytes, any::<bool>()), |(bytes, redeem)| {
        let request = stack
            .http
            .post(url(true, redeem))
            .bearer_auth(&service)
            .header("content-type", "application/json")
            .body(bytes.clone());
        block_on(check(&stack, request, &format!("order bytes {bytes:?}")))
    });
    assert_eq!(stack.fixture.topic_len(&stack.fixture.topic).await, topic);
}
