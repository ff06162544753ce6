//! Bearer tokens: the roles of contract-v1 §3, the claims a token carries, and
//! the key that issues and verifies them (JWT, HS256), plus reading the token out
//! of an `Authorization` header. `auth` builds the request's caller from these.
//!
//! Kept apart, with no dependency on the rest of this crate (only `jsonwebtoken`
//! and serde), because every request's header and every WebSocket `auth` message
//! reaches this code first: the fuzz target `auth_token` compiles this very file
//! (by `#[path]`) without building the API's heavy dependencies. Keep it so: no
//! `crate::` paths here.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use std::fmt;

/// The roles of contract-v1 §3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Public,
    Dispatcher,
    Police,
    Admin,
    Device,
}

impl Role {
    pub const ALL: [Role; 5] = [Role::Public, Role::Dispatcher, Role::Police, Role::Admin, Role::Device];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Public => "public",
            Role::Dispatcher => "dispatcher",
            Role::Police => "police",
            Role::Admin => "admin",
            Role::Device => "device",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a token says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Claims {
    /// Who holds it (an officer's or a device's id), written to the audit log.
    pub sub: String,
    pub role: Role,
    /// Issued and expires, in seconds since the epoch (the JWT convention).
    pub iat: i64,
    pub exp: i64,
}

/// Signs and checks tokens with one secret.
#[derive(Clone)]
pub struct TokenKey {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenKey(..)")
    }
}

impl TokenKey {
    pub fn from_secret(secret: &[u8]) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "sub"]);
        TokenKey { encoding: EncodingKey::from_secret(secret), decoding: DecodingKey::from_secret(secret), validation }
    }

    /// A token for `subject` in `role`, valid from `now_s` for `ttl_s` seconds.
    pub fn issue(&self, subject: &str, role: Role, now_s: i64, ttl_s: i64) -> String {
        let claims = Claims { sub: subject.to_owned(), role, iat: now_s, exp: now_s.saturating_add(ttl_s) };
        // HS256 over a serialisable struct cannot fail.
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding).unwrap_or_default()
    }

    /// The claims of a token that is signed with this key and not expired.
    pub fn verify(&self, token: &str) -> Result<Claims, String> {
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation).map(|d| d.claims).map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::ExpiredSignature => "the token has expired".to_owned(),
            jsonwebtoken::errors::ErrorKind::InvalidSignature => "the token's signature is not valid".to_owned(),
            _ => format!("the token is not valid: {e}"),
        })
    }
}

/// The token of an `Authorization: Bearer <token>` header value, trimmed; `None`
/// when the value is not of that form.
pub fn bearer_token(value: &str) -> Option<&str> {
    value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer ")).map(str::trim)
}
