//! What a token says beyond its signature: the user, the audiences, and the caller's role from
//! a configurable claim (a string, or an array of roles as some providers send groups).

use std::collections::HashMap;

use schema::ids::UserId;

use super::{AuthError, Principal, Role};

#[derive(serde::Deserialize)]
pub(super) struct Claims {
    sub: String,
    #[serde(default)]
    pub(super) iat: Option<u64>,
    #[serde(default)]
    aud: Option<OneOrMany>,
    /// Every other claim; the role claim's name is configurable.
    #[serde(flatten)]
    others: HashMap<String, serde_json::Value>,
}

/// `aud` (and a role claim) may be one string or an array of them (RFC 7519, 4.1.3).
#[derive(serde::Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn contains(&self, wanted: &str) -> bool {
        match self {
            OneOrMany::One(one) => one == wanted,
            OneOrMany::Many(many) => many.iter().any(|v| v == wanted),
        }
    }
}

/// Whether a claim value is `wanted`, or an array holding it (groups, as some providers send).
fn claim_names(value: Option<&serde_json::Value>, wanted: &str) -> bool {
    match value {
        Some(serde_json::Value::String(one)) => one == wanted,
        Some(serde_json::Value::Array(many)) => many.iter().any(|v| v.as_str() == Some(wanted)),
        _ => false,
    }
}

/// Which tokens count as the order service's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ServiceTokens {
    /// None (production without `JWT_SERVICE_AUDIENCE`): redeem and refund answer 403.
    #[default]
    Refused,
    /// Any token with the service role (development).
    ByRole,
    /// Tokens with the service role and this audience: a user's token never carries it.
    ByRoleAndAudience(String),
}

/// The claim that names a caller's role, and its values for operators and the order service.
#[derive(Debug, Clone)]
pub struct Roles {
    pub claim: String,
    pub admin: String,
    pub service: String,
    pub service_tokens: ServiceTokens,
}

impl Default for Roles {
    fn default() -> Self {
        Roles {
            claim: "role".to_owned(),
            admin: "admin".to_owned(),
            service: "service".to_owned(),
            service_tokens: ServiceTokens::ByRole,
        }
    }
}

/// What every token must carry beyond a valid signature, `exp` and `sub`.
#[derive(Debug, Clone, Default)]
pub struct Expectations {
    /// Clock skew tolerated on `exp`, `nbf` and `iat`, in seconds (at most 30).
    pub leeway_secs: u64,
    /// When set, `iss` is required and must equal it.
    pub issuer: Option<String>,
    /// When set, `aud` is required and must contain it (for the order service: it or the
    /// service audience).
    pub audience: Option<String>,
    pub roles: Roles,
}

impl Expectations {
    /// The caller a validated token names.
    pub(super) fn principal(&self, claims: Claims) -> Result<Principal, AuthError> {
        let user = UserId::parse(&claims.sub).map_err(|_| AuthError::Claims)?;
        let role = claims.others.get(&self.roles.claim);
        let has_audience = |wanted: &str| claims.aud.as_ref().is_some_and(|a| a.contains(wanted));
        if claim_names(role, &self.roles.service) {
            let service = match &self.roles.service_tokens {
                ServiceTokens::Refused => false,
                ServiceTokens::ByRole => true,
                ServiceTokens::ByRoleAndAudience(audience) => has_audience(audience),
            };
            if service {
                return Ok(Principal {
                    user,
                    role: Role::Service,
                });
            }
        }
        // Validation admitted the service audience too: users and operators need the main one.
        if let Some(audience) = &self.audience
            && !has_audience(audience)
        {
            return Err(AuthError::Audience);
        }
        let role = if claim_names(role, &self.roles.admin) {
            Role::Admin
        } else {
            Role::User
        };
        Ok(Principal { user, role })
    }

    /// The audiences validation admits: the main one and the order service's.
    pub(super) fn audiences(&self) -> Vec<&str> {
        let mut audiences: Vec<&str> = self.audience.iter().map(String::as_str).collect();
        if let ServiceTokens::ByRoleAndAudience(service) = &self.roles.service_tokens {
            audiences.push(service);
        }
        audiences
    }
}
