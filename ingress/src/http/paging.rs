//! Keyset pagination shared by the lists: newest first by (time, id), `limit` 1..=100 (default
//! 20) and an opaque `cursor` naming the previous page's last item.

use serde::Serialize;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::http::problem::Problem;

/// One page of a list.
#[derive(Debug, Serialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// Where a page starts: after the item at (time, id).
pub type After = Option<(OffsetDateTime, Uuid)>;

/// `limit` and `cursor` from a query string; any other parameter goes to `other`, which
/// refuses what it does not know by returning an error.
pub fn query(
    query: Option<&str>,
    mut other: impl FnMut(&str, &str) -> Result<(), Problem>,
) -> Result<(i64, After), Problem> {
    let mut limit = 20;
    let mut after = None;
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
            "cursor" => after = Some(parse_cursor(value)?),
            _ => other(name, value)?,
        }
    }
    Ok((limit, after))
}

/// Query parameters a list does not use are ignored, as HTTP caches and proxies may add some.
pub fn ignore_others(_: &str, _: &str) -> Result<(), Problem> {
    Ok(())
}

/// A cursor is `<time in Unix microseconds>_<id>` of the previous page's last item.
fn parse_cursor(value: &str) -> Result<(OffsetDateTime, Uuid), Problem> {
    let bad = || Problem::BadRequest("cursor is not one this API gave".to_owned());
    let (micros, id) = value.split_once('_').ok_or_else(bad)?;
    let micros: i128 = micros.parse().map_err(|_| bad())?;
    let nanos = micros.checked_mul(1_000).ok_or_else(bad)?;
    let at = OffsetDateTime::from_unix_timestamp_nanos(nanos).map_err(|_| bad())?;
    Ok((at, id.parse().map_err(|_| bad())?))
}

fn cursor(at: OffsetDateTime, id: Uuid) -> String {
    format!("{}_{}", at.unix_timestamp_nanos() / 1_000, id)
}

/// The page of `rows`, fetched with `limit + 1` so one row more tells that another page follows.
pub fn page<T>(
    mut items: Vec<T>,
    limit: i64,
    key: impl Fn(&T) -> (OffsetDateTime, Uuid),
) -> Page<T> {
    let more = items.len() as i64 > limit;
    items.truncate(limit as usize);
    let next_cursor = if more {
        items.last().map(|item| {
            let (at, id) = key(item);
            cursor(at, id)
        })
    } else {
        None
    };
    Page { items, next_cursor }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_bad_ones_are_refused() {
        let at = OffsetDateTime::from_unix_timestamp_nanos(1_700_000_000_123_456_000).unwrap();
        let id = Uuid::now_v7();
        assert_eq!(parse_cursor(&cursor(at, id)).ok(), Some((at, id)));
        for bad in [
            "",
            "x",
            "1_",
            "_",
            "1_notauuid",
            "99999999999999999999999999_x",
            // Found by fuzzing (fuzz/corpus/route/cursor-overflow): overflowed the i128.
            "170141183460469231731687303715884105727_x",
        ] {
            assert!(parse_cursor(bad).is_err(), "{bad}");
        }
        assert!(query(Some("limit=0"), ignore_others).is_err());
        assert!(query(Some("limit=101"), ignore_others).is_err());
        assert_eq!(
            query(Some("limit=5&x=1"), ignore_others).ok().map(|p| p.0),
            Some(5)
        );
        let refuse = |_: &str, _: &str| Err(Problem::BadRequest("no".to_owned()));
        assert!(query(Some("x=1"), refuse).is_err());
    }

    #[test]
    fn a_page_names_its_last_item_only_when_more_follow() {
        let at = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        let ids: Vec<Uuid> = (0..3).map(|_| Uuid::now_v7()).collect();
        let full = page(ids.clone(), 2, |id| (at, *id));
        assert_eq!(full.items, ids[..2]);
        assert_eq!(full.next_cursor, Some(cursor(at, ids[1])));
        let last = page(ids[..2].to_vec(), 2, |id| (at, *id));
        assert_eq!(last.next_cursor, None);
    }
}
