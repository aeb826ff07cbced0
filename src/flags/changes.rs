//! Changing a flag (SetFlag) and reading its audit trail (ListFlagChanges).
//!
//! Setting a flag to the value it already has is accepted and audited like
//! any flip (old = new): during an incident "who confirmed the atomic path,
//! and why" belongs in the trail as much as a flip does. The row's
//! `updated_at`/`updated_by` move too, and a missing row is created, so the
//! database (not the registry default) decides from then on.

use std::time::Duration;

use super::{
    ChangesPage, FlagChange, FlagChanged, FlagError, FlagSource, FlagState, FlagValue, Flags, MAX_REASON_CHARS,
    cache::{Cached, Known},
    definition, known,
    store::{self, FlagChangeRow},
};

/// Changes per ListFlagChanges page when the caller does not say.
pub const DEFAULT_PAGE_SIZE: i32 = 50;
/// Most changes per page; larger requests are clamped.
pub const MAX_PAGE_SIZE: i32 = 500;

impl Flags {
    /// Sets `key` to `enabled` and records who did it and why, in one
    /// transaction; this process uses the new value as soon as this returns,
    /// others when their listener hears the database's notification.
    #[tracing::instrument(name = "feature_flag.set", skip_all, fields(feature_flag.key = key, feature_flag.value = enabled))]
    pub async fn set(
        &self,
        key: &str,
        enabled: bool,
        changed_by: &str,
        reason: &str,
    ) -> Result<FlagChanged, FlagError> {
        let flag = known(key)?;
        if let Some(value) = self.pin(flag) {
            return Err(FlagError::PinnedByEnvironment { key: flag.key, variable: flag.env_var, value });
        }
        let reason = checked_reason(reason)?;

        let written = store::write_flag(&self.inner.pool, flag.key, flag.default, enabled, changed_by, reason)
            .await
            .map_err(|source| FlagError::store("changing a feature flag", source))?;

        // effective here at once: entries from reads that began before this
        // point are outdated by the new generation
        let cache = &self.inner.cache;
        let generation = cache.bump(flag.key);
        let known = Known::read(flag, Some(written.row.clone()));
        cache.remember(flag.key, generation, &known);
        cache.entries.insert(flag.key, Cached { known, last_known: false, generation }).await;

        tracing::info!(
            feature_flag.key = flag.key,
            old_value = written.previous,
            new_value = enabled,
            changed_by,
            change_id = written.change.id,
            "feature flag changed"
        );
        Ok(FlagChanged {
            flag: FlagState {
                value: FlagValue {
                    key: flag.key,
                    enabled: written.row.enabled,
                    source: FlagSource::Database,
                    from_cache: false,
                    age: Duration::ZERO,
                },
                updated_at: Some(written.row.updated_at),
                updated_by: Some(written.row.updated_by),
            },
            previous: written.previous,
            change: change_from_row(written.change),
        })
    }

    /// The audit trail, newest first: of one flag, or of all when `key` is
    /// `None`. `page_size` 0 means [`DEFAULT_PAGE_SIZE`]; `page_token` is the
    /// `next_page_token` of the previous page ("" for the first).
    pub async fn changes(&self, key: Option<&str>, page_size: i32, page_token: &str) -> Result<ChangesPage, FlagError> {
        let key = key.map(known).transpose()?.map(|flag| flag.key);
        let page_size = checked_page_size(page_size)?;
        let before_id = parse_page_token(page_token)?;
        let mut rows = store::list_changes(&self.inner.pool, key, before_id, i64::from(page_size) + 1)
            .await
            .map_err(|source| FlagError::store("reading feature flag changes", source))?;
        let next_page_token = if rows.len() > page_size as usize {
            rows.truncate(page_size as usize);
            rows.last().map(|row| page_token_after(row.id))
        } else {
            None
        };
        Ok(ChangesPage { changes: rows.into_iter().map(change_from_row).collect(), next_page_token })
    }
}

fn change_from_row(row: FlagChangeRow) -> FlagChange {
    // rows written by bookingd always have old_value; a null one can only
    // come from outside, and then the flag's default was in force
    let old_value = row.old_value.unwrap_or_else(|| definition(&row.flag_key).is_some_and(|flag| flag.default));
    FlagChange {
        id: row.id,
        key: row.flag_key,
        old_value,
        new_value: row.new_value,
        changed_by: row.changed_by,
        reason: row.reason,
        changed_at: row.changed_at,
    }
}

fn checked_reason(reason: &str) -> Result<&str, FlagError> {
    let reason = reason.trim();
    if reason.is_empty() {
        return Err(FlagError::ReasonRequired);
    }
    if reason.chars().count() > MAX_REASON_CHARS {
        return Err(FlagError::ReasonTooLong);
    }
    if reason.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err(FlagError::ReasonNotPrintable);
    }
    Ok(reason)
}

fn checked_page_size(page_size: i32) -> Result<i32, FlagError> {
    match page_size {
        ..0 => Err(FlagError::InvalidPageSize),
        0 => Ok(DEFAULT_PAGE_SIZE),
        size => Ok(size.min(MAX_PAGE_SIZE)),
    }
}

// The token is the id of the last change on the page (keyset pagination: a
// page never shifts when new changes arrive). Callers treat it as opaque.
const PAGE_TOKEN_PREFIX: &str = "before:";

fn page_token_after(id: i64) -> String {
    format!("{PAGE_TOKEN_PREFIX}{id}")
}

fn parse_page_token(token: &str) -> Result<Option<i64>, FlagError> {
    if token.is_empty() {
        return Ok(None);
    }
    token
        .strip_prefix(PAGE_TOKEN_PREFIX)
        .and_then(|id| id.parse::<i64>().ok())
        .filter(|id| *id > 0)
        .map(Some)
        .ok_or(FlagError::InvalidPageToken)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reason_is_required_and_trimmed() {
        assert!(matches!(checked_reason(""), Err(FlagError::ReasonRequired)));
        assert!(matches!(checked_reason(" \n\t "), Err(FlagError::ReasonRequired)));
        assert_eq!(checked_reason("  atomic function missing  ").expect("valid"), "atomic function missing");
    }

    #[test]
    fn overlong_or_unprintable_reasons_are_refused() {
        assert!(matches!(checked_reason(&"x".repeat(MAX_REASON_CHARS + 1)), Err(FlagError::ReasonTooLong)));
        assert!(checked_reason(&"é".repeat(MAX_REASON_CHARS)).is_ok(), "the limit counts characters, not bytes");
        assert!(matches!(checked_reason("nul\0byte"), Err(FlagError::ReasonNotPrintable)));
    }

    #[test]
    fn page_sizes_default_to_fifty_and_are_clamped_to_five_hundred() {
        assert_eq!(checked_page_size(0).expect("valid"), 50);
        assert_eq!(checked_page_size(7).expect("valid"), 7);
        assert_eq!(checked_page_size(10_000).expect("valid"), 500);
        assert!(matches!(checked_page_size(-1), Err(FlagError::InvalidPageSize)));
    }

    #[test]
    fn page_tokens_round_trip_and_foreign_ones_are_refused() {
        assert_eq!(parse_page_token("").expect("first page"), None);
        assert_eq!(parse_page_token(&page_token_after(42)).expect("issued"), Some(42));
        for foreign in ["42", "before:", "before:x", "before:-1", "before:0", "after:42"] {
            assert!(matches!(parse_page_token(foreign), Err(FlagError::InvalidPageToken)), "{foreign}");
        }
    }
}
