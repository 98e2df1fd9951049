//! The Redis keys of one campaign. They share the hash tag `{c:<campaign id>}`, so every script
//! touches one Redis Cluster slot.

use schema::ids::CampaignId;

/// The keys of one campaign.
pub(crate) struct Keys {
    pub meta: String,
    pub holders: String,
    pub slots: String,
    pub admissions: String,
    pub journal: String,
    pub rolling: String,
    pub released: String,
}

impl Keys {
    pub fn new(prefix: &str, campaign: &CampaignId) -> Self {
        let tag = format!("{prefix}{{c:{campaign}}}");
        Keys {
            meta: format!("{tag}:meta"),
            holders: format!("{tag}:holders"),
            slots: format!("{tag}:slots"),
            admissions: format!("{tag}:admissions"),
            journal: format!("{tag}:journal"),
            rolling: format!("{tag}:rolling"),
            released: format!("{tag}:released"),
        }
    }
}
