//! The HTTP API as a test speaks it: campaigns created through the operator API, issuance
//! requests and status reads as a user. Both harnesses (the ingress's in-process `Stack` and
//! the process-based [`World`](crate::World)) reach their ingress through one of these.

use std::time::Duration;

use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::token;

/// A client of one ingress.
#[derive(Clone)]
pub struct Api {
    /// `http://host:port` of the ingress.
    pub base: String,
    pub http: reqwest::Client,
    /// The operator token of `admin_*` calls when the ingress expects other tokens.
    pub admin_token: Option<String>,
    /// Signs this client's tokens when the ingress expects more than [`token`] gives (in
    /// production: a secret of 32 bytes or more, `iss` and `aud`).
    pub signer: Option<service::dev_token::DevSecret>,
}

impl Api {
    pub fn new(base: String, http: reqwest::Client) -> Api {
        Api {
            base,
            http,
            admin_token: None,
            signer: None,
        }
    }

    /// A token for `user` (with `role`), valid for an hour: [`Api::signer`]'s when set.
    pub fn token_for(&self, user: &str, role: Option<&str>) -> String {
        match &self.signer {
            Some(signer) => {
                let now = OffsetDateTime::now_utc().unix_timestamp();
                signer.mint(user, role, now).unwrap()
            }
            None => token(user, role, 3600),
        }
    }

    /// The operator's token: a development one, unless a test set its own.
    pub fn admin_token(&self) -> String {
        self.admin_token
            .clone()
            .unwrap_or_else(|| self.token_for("operator", Some("admin")))
    }

    /// Creates an open campaign (window from a minute ago to an hour ahead) and returns its id.
    pub async fn open_campaign(&self, stock: u32, per_user_limit: u32) -> String {
        let now = OffsetDateTime::now_utc();
        self.campaign_with_window(
            stock,
            per_user_limit,
            now - Duration::from_secs(60),
            now + Duration::from_secs(3600),
        )
        .await
    }

    pub async fn campaign_with_window(
        &self,
        stock: u32,
        per_user_limit: u32,
        starts_at: OffsetDateTime,
        ends_at: OffsetDateTime,
    ) -> String {
        let body = json!({
            "name": "test campaign",
            "total_stock": stock,
            "per_user_limit": per_user_limit,
            "starts_at": starts_at.format(&Rfc3339).unwrap(),
            "ends_at": ends_at.format(&Rfc3339).unwrap(),
            "discount": {"kind": "fixed", "value": 1000},
            "coupon_valid_days": 7,
        });
        let response = self.admin_post("/v1/admin/campaigns", &body).await;
        assert_eq!(response.status(), 201, "campaign created");
        let created: Value = response.json().await.unwrap();
        created["id"].as_str().unwrap().to_owned()
    }

    pub async fn admin_post(&self, path: &str, body: &Value) -> reqwest::Response {
        self.http
            .post(format!("{}{path}", self.base))
            .bearer_auth(self.admin_token())
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// `PATCH /v1/admin/campaigns/{campaign}` with `body`, as an operator.
    pub async fn patch_campaign(&self, campaign: &str, body: &Value) -> reqwest::Response {
        self.http
            .patch(format!("{}/v1/admin/campaigns/{campaign}", self.base))
            .bearer_auth(self.admin_token())
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// The operator view of a campaign (it must answer 200).
    pub async fn admin_campaign(&self, id: &str) -> Value {
        let response = self
            .http
            .get(format!("{}/v1/admin/campaigns/{id}", self.base))
            .bearer_auth(self.admin_token())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }

    /// `POST /v1/admin/campaigns/{id}/close`.
    pub async fn close_campaign(&self, id: &str) -> reqwest::Response {
        self.http
            .post(format!("{}/v1/admin/campaigns/{id}/close", self.base))
            .bearer_auth(self.admin_token())
            .send()
            .await
            .unwrap()
    }

    /// `POST /v1/campaigns/{id}/issuances` as `user`.
    pub async fn request(&self, campaign: &str, user: &str) -> reqwest::Response {
        self.http
            .post(format!("{}/v1/campaigns/{campaign}/issuances", self.base))
            .bearer_auth(self.token_for(user, None))
            .send()
            .await
            .unwrap()
    }

    /// `GET /v1/issuances/{id}` as `user` with `Prefer: {prefer}` (`wait=N`: a long-poll).
    pub async fn status_preferring(
        &self,
        issuance: &str,
        user: &str,
        prefer: &str,
    ) -> reqwest::Response {
        self.http
            .get(format!("{}/v1/issuances/{issuance}", self.base))
            .bearer_auth(self.token_for(user, None))
            .header("prefer", prefer)
            .send()
            .await
            .unwrap()
    }

    /// `GET /v1/issuances/{id}` as `user`.
    pub async fn status(&self, issuance: &str, user: &str) -> reqwest::Response {
        self.http
            .get(format!("{}/v1/issuances/{issuance}", self.base))
            .bearer_auth(self.token_for(user, None))
            .send()
            .await
            .unwrap()
    }
}
