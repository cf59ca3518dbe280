//! HMAC-SHA256-signed tokens: `base64url(postcard(claims)).base64url(tag)`.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::protocol::ClientId;

/// What a token says: who, with which client, until when.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Claims {
    /// The user's ID.
    pub user: String,
    /// The user's role.
    pub role: String,
    /// The clients whose events the stream carries.
    pub clients: Vec<ClientId>,
    /// Expiry, in seconds since the Unix epoch.
    pub exp: u64,
}

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a token at all.
    #[error("the token is malformed")]
    Malformed,
    /// The signature does not match: forged, or signed with another key.
    #[error("the token's signature is invalid")]
    Forged,
    /// The token has expired; get a new one from `POST /token`.
    #[error("the token has expired")]
    Expired,
}

/// The server's key for signing and checking tokens, and the key it replaced, if it is being
/// rotated: tokens signed with either verify; new ones are signed with the current key.
#[derive(Clone)]
pub struct TokenKey {
    mac: Hmac<Sha256>,
    previous: Option<Hmac<Sha256>>,
}

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey(..)")
    }
}

/// Claims longer than this are not decoded.
const MAX_TOKEN_LEN: usize = 4096;

impl TokenKey {
    /// A key from a secret; servers behind one load balancer share it.
    pub fn new(secret: &[u8]) -> Self {
        Self {
            mac: Hmac::new_from_slice(secret).expect("HMAC accepts keys of any length"),
            previous: None,
        }
    }

    /// Also accepts tokens signed with `secret`, the key this one replaces, for as long as
    /// tokens signed with it may live.
    #[must_use]
    pub fn with_previous(mut self, secret: &[u8]) -> Self {
        self.previous =
            Some(Hmac::new_from_slice(secret).expect("HMAC accepts keys of any length"));
        self
    }

    /// A random key, for a single server process.
    pub fn random() -> Self {
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).expect("the operating system's random source is available");
        Self::new(&secret)
    }

    /// Signs `claims`.
    pub fn sign(&self, claims: &Claims) -> String {
        let body = postcard::to_stdvec(claims).expect("claims always encode");
        let mut mac = self.mac.clone();
        mac.update(&body);
        let tag = mac.finalize().into_bytes();
        let mut token = URL_SAFE_NO_PAD.encode(&body);
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(tag, &mut token);
        token
    }

    /// The claims of a token this key signed that has not expired at `now` (Unix seconds).
    pub fn verify(&self, token: &str, now: u64) -> Result<Claims, TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::Malformed);
        }
        let (body, tag) = token.split_once('.').ok_or(TokenError::Malformed)?;
        let body = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| TokenError::Malformed)?;
        let tag = URL_SAFE_NO_PAD
            .decode(tag)
            .map_err(|_| TokenError::Malformed)?;
        let signed_by = |key: &Hmac<Sha256>| {
            let mut mac = key.clone();
            mac.update(&body);
            mac.verify_slice(&tag).is_ok()
        };
        if !signed_by(&self.mac) && !self.previous.as_ref().is_some_and(signed_by) {
            return Err(TokenError::Forged);
        }
        let claims: Claims = postcard::from_bytes(&body).map_err(|_| TokenError::Malformed)?;
        if claims.exp <= now {
            return Err(TokenError::Expired);
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: u64) -> Claims {
        Claims {
            user: "ann".into(),
            role: "admin".into(),
            clients: vec![ClientId(7)],
            exp,
        }
    }

    #[test]
    fn during_a_rotation_tokens_of_the_previous_key_still_verify() {
        let old = TokenKey::new(b"old");
        let token = old.sign(&claims(100));
        let rotated = TokenKey::new(b"new").with_previous(b"old");
        assert_eq!(rotated.verify(&token, 99), Ok(claims(100)));
        assert_eq!(
            TokenKey::new(b"new").verify(&token, 99),
            Err(TokenError::Forged)
        );
        let fresh = rotated.sign(&claims(100));
        assert_eq!(TokenKey::new(b"new").verify(&fresh, 99), Ok(claims(100)));
        assert_eq!(old.verify(&fresh, 99), Err(TokenError::Forged));
    }

    #[test]
    fn a_signed_token_verifies_until_it_expires() {
        let key = TokenKey::new(b"secret");
        let token = key.sign(&claims(100));
        assert_eq!(key.verify(&token, 99), Ok(claims(100)));
        assert_eq!(key.verify(&token, 100), Err(TokenError::Expired));
    }

    #[test]
    fn forged_and_malformed_tokens_are_refused() {
        let key = TokenKey::new(b"secret");
        let other = TokenKey::new(b"other").sign(&claims(100));
        assert_eq!(key.verify(&other, 0), Err(TokenError::Forged));

        let token = key.sign(&claims(100));
        let (_, tag) = token.split_once('.').unwrap();
        let richer = Claims {
            role: "root".into(),
            ..claims(100)
        };
        let tampered = format!(
            "{}.{tag}",
            URL_SAFE_NO_PAD.encode(postcard::to_stdvec(&richer).unwrap())
        );
        assert_eq!(key.verify(&tampered, 0), Err(TokenError::Forged));
        for bad in ["", ".", "abc", "a.b", "!!.!!"] {
            assert!(key.verify(bad, 0).is_err(), "{bad:?}");
        }
    }
}
