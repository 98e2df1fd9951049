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
    /// Set while the server may have lost the campaign's admissions (`lua/fence.lua`).
    pub fence: String,
    /// The recovery lock: the one pod re-seeding the campaign (`lua/reseed.lua`).
    pub recover: String,
    tag: String,
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
            fence: format!("{tag}:fence"),
            recover: format!("{tag}:recover"),
            tag,
        }
    }

    /// The keys a campaign's state lives in, which expire after the campaign (not the fence
    /// and the lock, which end with the recovery).
    pub fn state(&self) -> [&str; 7] {
        [
            &self.meta,
            &self.holders,
            &self.slots,
            &self.admissions,
            &self.journal,
            &self.rolling,
            &self.released,
        ]
    }

    /// Holders and slots staged by a recovery (`token`) before `reseed.lua` swaps them in.
    pub fn staged(&self, token: &str) -> (String, String) {
        (
            format!("{}:staged:{token}:holders", self.tag),
            format!("{}:staged:{token}:slots", self.tag),
        )
    }
}
