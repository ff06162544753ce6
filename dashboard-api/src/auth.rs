//! Who is calling. Bearer tokens are JWTs signed with HS256 under the deployment's
//! token key and carry one of contract-v1's roles; `egret token --role R` issues
//! them. No token means the `public` role. A bad or expired token is remembered as
//! such: public endpoints still answer (the caller could have sent nothing), every
//! endpoint that needs a role answers 401, and a valid token of the wrong role 403.
//!
//! JWT rather than opaque tokens because any client library can read the role and
//! expiry it was given, and the API checks a token without a session store, so API
//! instances scale out with nothing shared but the key.

use crate::ApiError;
use axum::http::StatusCode;
use axum::http::request::Parts;

pub use crate::token::{Claims, Role, TokenKey, bearer_token};

/// The caller of one request, as the auth middleware found it.
#[derive(Debug, Clone, PartialEq)]
pub enum Caller {
    /// No Authorization header.
    Anonymous,
    Authenticated(Claims),
    /// A token that was given but did not verify, and why.
    Rejected(String),
}

impl Caller {
    /// Reads the `Authorization: Bearer` header of a request.
    pub fn from_header(value: Option<&axum::http::HeaderValue>, key: &TokenKey) -> Caller {
        let Some(value) = value else { return Caller::Anonymous };
        let Some(token) = value.to_str().ok().and_then(bearer_token) else {
            return Caller::Rejected("the Authorization header is not `Bearer <token>`".into());
        };
        match key.verify(token) {
            Ok(claims) => Caller::Authenticated(claims),
            Err(why) => Caller::Rejected(why),
        }
    }

    /// The role the caller acts in: public unless a valid token says otherwise.
    pub fn role(&self) -> Role {
        match self {
            Caller::Authenticated(c) => c.role,
            _ => Role::Public,
        }
    }

    /// Who, for the audit log and rate limiting.
    pub fn subject(&self) -> Option<&str> {
        match self {
            Caller::Authenticated(c) => Some(&c.sub),
            _ => None,
        }
    }

    /// Ok when the caller holds one of `roles`; 401 without a valid token, 403 with
    /// a valid token of another role.
    pub fn require(&self, roles: &[Role]) -> Result<&Claims, ApiError> {
        let needed = || roles.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(" or ");
        match self {
            Caller::Authenticated(c) if roles.contains(&c.role) => Ok(c),
            Caller::Authenticated(c) => Err(ApiError {
                status: StatusCode::FORBIDDEN,
                code: "forbidden",
                message: format!("this needs the {} role; the token is for {}", needed(), c.role),
            }),
            Caller::Anonymous => Err(ApiError::unauthorized(format!("this needs a bearer token for the {} role", needed()))),
            Caller::Rejected(why) => Err(ApiError::unauthorized(why.clone())),
        }
    }
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        // Set by the auth middleware on every request of the router.
        Ok(parts.extensions.get::<Caller>().cloned().unwrap_or(Caller::Anonymous))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_verifies_under_its_key_only_and_until_it_expires() {
        let key = TokenKey::from_secret(b"0123456789abcdef0123456789abcdef");
        let now = 1_800_000_000;
        let token = key.issue("officer-7", Role::Police, now - 10, 3600);
        let claims = key.verify(&token).expect("valid");
        assert_eq!((claims.sub.as_str(), claims.role), ("officer-7", Role::Police));
        let other = TokenKey::from_secret(b"another key, another deployment!");
        assert!(other.verify(&token).unwrap_err().contains("signature"));
        let expired = key.issue("officer-7", Role::Police, 1_000_000_000, 60);
        assert!(key.verify(&expired).unwrap_err().contains("expired"));
    }

    #[test]
    fn require_answers_401_without_a_valid_token_and_403_for_another_role() {
        let key = TokenKey::from_secret(b"0123456789abcdef0123456789abcdef");
        let now = 4_000_000_000;
        let bearer = |t: &str| axum::http::HeaderValue::from_str(&format!("Bearer {t}")).expect("header");
        let police = Caller::from_header(Some(&bearer(&key.issue("p", Role::Police, now, 60))), &key);
        assert!(police.require(&[Role::Police]).is_ok());
        assert_eq!(police.require(&[Role::Admin]).unwrap_err().status, StatusCode::FORBIDDEN);
        assert_eq!(Caller::Anonymous.require(&[Role::Police]).unwrap_err().status, StatusCode::UNAUTHORIZED);
        let forged = Caller::from_header(Some(&bearer("eyJhbGciOiJIUzI1NiJ9.e30.c2ln")), &key);
        assert_eq!(forged.role(), Role::Public);
        assert_eq!(forged.require(&[Role::Police]).unwrap_err().status, StatusCode::UNAUTHORIZED);
    }
}
