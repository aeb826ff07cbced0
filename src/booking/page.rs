//! AIP-158 pagination: page sizes and opaque keyset page tokens.

use serde::{Serialize, de::DeserializeOwned};

use crate::booking::types::FieldProblem;

pub const DEFAULT_PAGE_SIZE: i64 = 20;
pub const MAX_PAGE_SIZE: i64 = 100;
const MAX_TOKEN_LEN: usize = 1024;

/// 0 means the default; above the maximum is coerced down (AIP-158);
/// negative is an error.
pub fn page_size(requested: i32) -> Result<i64, FieldProblem> {
    match i64::from(requested) {
        n if n < 0 => Err(FieldProblem::new("page_size", "must not be negative")),
        0 => Ok(DEFAULT_PAGE_SIZE),
        n => Ok(n.min(MAX_PAGE_SIZE)),
    }
}

/// Opaque to callers: hex of the cursor's JSON.
pub fn encode<T: Serialize>(cursor: &T) -> String {
    hex::encode(serde_json::to_vec(cursor).unwrap_or_default())
}

/// `None` for the first page.
pub fn decode<T: DeserializeOwned>(token: &str) -> Result<Option<T>, FieldProblem> {
    if token.is_empty() {
        return Ok(None);
    }
    let invalid = || FieldProblem::new("page_token", "is not a token this list returned");
    if token.len() > MAX_TOKEN_LEN {
        return Err(invalid());
    }
    let bytes = hex::decode(token).map_err(|_| invalid())?;
    serde_json::from_slice(&bytes).map(Some).map_err(|_| invalid())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Cursor {
        at: i64,
    }

    #[test]
    fn tokens_round_trip_and_garbage_is_refused() {
        let token = encode(&Cursor { at: 42 });
        assert_eq!(decode::<Cursor>(&token).expect("valid"), Some(Cursor { at: 42 }));
        assert_eq!(decode::<Cursor>("").expect("empty"), None);
        assert!(decode::<Cursor>("zz").is_err());
        assert!(decode::<Cursor>(&hex::encode(b"{\"other\":1}")).is_err());
    }

    #[test]
    fn page_sizes_default_and_cap() {
        assert_eq!(page_size(0), Ok(DEFAULT_PAGE_SIZE));
        assert_eq!(page_size(5), Ok(5));
        assert_eq!(page_size(i32::MAX), Ok(MAX_PAGE_SIZE));
        assert!(page_size(-1).is_err());
    }
}
