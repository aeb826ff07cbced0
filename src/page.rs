//! AIP-158 pagination, one helper for every list: page sizes with a default
//! and a cap per list, and opaque keyset page tokens.
//!
//! A token is the cursor's JSON and an HMAC-SHA256 tag over the list's name
//! and that JSON, keyed by a secret kept in the database (`service_keys`), so
//! every replica on the database accepts every other's tokens and nothing
//! else: a token edited by hand, cut short, or taken from another list is
//! INVALID_ARGUMENT before any of it reaches a query.

use std::sync::Arc;

use hmac::{Hmac, Mac};
use serde::{Serialize, de::DeserializeOwned};
use sha2::Sha256;
use sqlx::PgPool;
use tokio::sync::OnceCell;

/// One paginated list: its name (bound into its tokens) and page sizes.
#[derive(Debug, Clone, Copy)]
pub struct List {
    pub name: &'static str,
    pub default_size: i64,
    pub max_size: i64,
}

/// ListTours.
pub const TOURS: List = List { name: "tours", default_size: 20, max_size: 100 };
/// LookupJourney.
pub const JOURNEY: List = List { name: "journey", default_size: 20, max_size: 100 };
/// ListFlagChanges: audit rows are small and read in bulk during incidents.
pub const FLAG_CHANGES: List = List { name: "flag_changes", default_size: 50, max_size: 500 };

const MAX_TOKEN_LEN: usize = 1024;
/// Bytes of the tag kept in a token (128 bits).
const TAG_LEN: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PageError {
    #[error("must not be negative")]
    NegativeSize,
    #[error("is not a token this list returned")]
    ForeignToken,
}

impl PageError {
    /// The request field the problem is in.
    pub fn field(&self) -> &'static str {
        match self {
            PageError::NegativeSize => "page_size",
            PageError::ForeignToken => "page_token",
        }
    }
}

impl List {
    /// 0 means the default; above the maximum is coerced down (AIP-158);
    /// negative is an error.
    pub fn size(&self, requested: i32) -> Result<i64, PageError> {
        match i64::from(requested) {
            n if n < 0 => Err(PageError::NegativeSize),
            0 => Ok(self.default_size),
            n => Ok(n.min(self.max_size)),
        }
    }

    pub fn encode<T: Serialize>(&self, key: &PageKey, cursor: &T) -> String {
        let json = serde_json::to_vec(cursor).expect("a cursor always serialises");
        let tag = key.tag(self.name, &json);
        format!("{}.{}", hex::encode(&json), hex::encode(&tag[..TAG_LEN]))
    }

    /// `None` for the first page ("").
    pub fn decode<T: DeserializeOwned>(&self, key: &PageKey, token: &str) -> Result<Option<T>, PageError> {
        if token.is_empty() {
            return Ok(None);
        }
        if token.len() > MAX_TOKEN_LEN {
            return Err(PageError::ForeignToken);
        }
        let (json, tag) = token.split_once('.').ok_or(PageError::ForeignToken)?;
        let json = hex::decode(json).map_err(|_| PageError::ForeignToken)?;
        let tag = hex::decode(tag).map_err(|_| PageError::ForeignToken)?;
        if tag.len() != TAG_LEN {
            return Err(PageError::ForeignToken);
        }
        key.mac(self.name, &json).verify_truncated_left(&tag).map_err(|_| PageError::ForeignToken)?;
        serde_json::from_slice(&json).map(Some).map_err(|_| PageError::ForeignToken)
    }
}

/// The secret page tokens are signed with.
#[derive(Clone)]
pub struct PageKey([u8; 32]);

impl std::fmt::Debug for PageKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PageKey(..)")
    }
}

impl PageKey {
    fn mac(&self, list: &str, json: &[u8]) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes a key of any length");
        mac.update(list.as_bytes());
        mac.update(&[0]);
        mac.update(json);
        mac
    }

    fn tag(&self, list: &str, json: &[u8]) -> Vec<u8> {
        self.mac(list, json).finalize().into_bytes().to_vec()
    }
}

/// The database's page key, read (or created, by the first process that
/// needs one) once per holder. Cheap to clone.
#[derive(Debug, Clone)]
pub struct PageKeys {
    pool: PgPool,
    key: Arc<OnceCell<PageKey>>,
}

impl PageKeys {
    pub fn new(pool: PgPool) -> Self {
        PageKeys { pool, key: Arc::new(OnceCell::new()) }
    }

    pub async fn get(&self) -> Result<&PageKey, sqlx::Error> {
        self.key
            .get_or_try_init(|| async {
                let candidate: [u8; 32] = rand::random();
                let key = crate::db::service_key(&self.pool, "page_token", &candidate).await?;
                let key: [u8; 32] = key
                    .try_into()
                    .map_err(|_| sqlx::Error::Protocol("service_keys.page_token is not 32 bytes".into()))?;
                Ok(PageKey(key))
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Cursor {
        at: i64,
        slot: String,
    }

    fn key(byte: u8) -> PageKey {
        PageKey([byte; 32])
    }

    #[test]
    fn tokens_round_trip_and_the_first_page_has_none() {
        let cursor = Cursor { at: 42, slot: "09:00".into() };
        let token = TOURS.encode(&key(1), &cursor);
        assert_eq!(TOURS.decode::<Cursor>(&key(1), &token), Ok(Some(cursor)));
        assert_eq!(TOURS.decode::<Cursor>(&key(1), ""), Ok(None));
    }

    #[test]
    fn edited_cut_foreign_or_garbage_tokens_are_refused() {
        let token = TOURS.encode(&key(1), &Cursor { at: 42, slot: "09:00".into() });
        let (json, tag) = token.split_once('.').expect("two parts");
        // the same cursor with a NUL in it, tag kept
        let edited = format!("{}.{tag}", hex::encode(br#"{"at":42,"slot":"09\u0000"}"#));
        for bad in [edited.as_str(), &token[..token.len() - 2], json, "zz", "before:42", &"a".repeat(MAX_TOKEN_LEN + 1)]
        {
            assert_eq!(TOURS.decode::<Cursor>(&key(1), bad), Err(PageError::ForeignToken), "{bad}");
        }
        assert_eq!(JOURNEY.decode::<Cursor>(&key(1), &token), Err(PageError::ForeignToken), "another list's");
        assert_eq!(TOURS.decode::<Cursor>(&key(2), &token), Err(PageError::ForeignToken), "another key's");
    }

    #[test]
    fn page_sizes_default_and_cap_per_list() {
        assert_eq!(TOURS.size(0), Ok(20));
        assert_eq!(TOURS.size(5), Ok(5));
        assert_eq!(TOURS.size(i32::MAX), Ok(100));
        assert_eq!(FLAG_CHANGES.size(0), Ok(50));
        assert_eq!(FLAG_CHANGES.size(10_000), Ok(500));
        assert_eq!(TOURS.size(-1), Err(PageError::NegativeSize));
    }
}
