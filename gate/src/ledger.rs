//! What the gate reads from the ledger (PostgreSQL): the settings of each campaign it must
//! enforce, with their version. The ledger is the record of operator decisions; the gate holds
//! a copy, re-applied whenever it may have missed one.

use schema::ids::CampaignId;
use time::OffsetDateTime;

/// A campaign's settings as the ledger holds them (`sql/campaigns_select_live.sql`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    pub id: CampaignId,
    pub total_stock: u32,
    pub per_user_limit: u32,
    pub starts_ms: i64,
    pub ends_ms: i64,
    /// Closed by an operator: admits nobody any more, whatever the window says.
    pub closed: bool,
    /// Bumped by every change (`campaigns.settings_version`); the gate ignores older ones.
    pub version: i64,
}

impl Settings {
    /// Reads a row of `sql/campaigns_select_live.sql` (or any query with its columns).
    pub fn from_row(row: &tokio_postgres::Row) -> Result<Settings, tokio_postgres::Error> {
        let closed_at: Option<OffsetDateTime> = row.try_get("closed_at")?;
        Ok(Settings {
            id: CampaignId(row.try_get("id")?),
            total_stock: row.try_get::<_, i32>("total_stock")?.max(0) as u32,
            per_user_limit: row.try_get::<_, i32>("per_user_limit")?.max(0) as u32,
            starts_ms: schema::time::unix_ms(row.try_get("starts_at")?),
            ends_ms: schema::time::unix_ms(row.try_get("ends_at")?),
            closed: closed_at.is_some(),
            version: row.try_get("settings_version")?,
        })
    }
}

/// Campaigns the gate may still hold state for, with their settings, in id order.
pub async fn live(db: &tokio_postgres::Client) -> Result<Vec<Settings>, tokio_postgres::Error> {
    db.query(include_str!("sql/campaigns_select_live.sql"), &[])
        .await?
        .iter()
        .map(Settings::from_row)
        .collect()
}

/// One campaign's settings, if the ledger has it.
pub async fn settings(
    db: &tokio_postgres::Client,
    id: &CampaignId,
) -> Result<Option<Settings>, tokio_postgres::Error> {
    db.query_opt(
        include_str!("sql/campaigns_select_settings_by_id.sql"),
        &[&id.0],
    )
    .await?
    .as_ref()
    .map(Settings::from_row)
    .transpose()
}
