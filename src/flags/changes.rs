//! Changing a flag (SetFlag) and reading its audit trail (ListFlagChanges).
//!
//! Setting a flag to the value it already has is accepted and audited like
//! any flip (old = new): during an incident "who confirmed the atomic path,
//! and why" belongs in the trail as much as a flip does. The row's
//! `updated_at`/`updated_by` move too, and a missing row is created, so the
//! database (not the registry default) decides from then on.

use std::time::Duration;

use crate::{page::FLAG_CHANGES, reason::Reason};

use super::{
    ChangesPage, FlagChange, FlagChanged, FlagError, FlagSource, FlagState, FlagValue, Flags,
    cache::{Cached, Known},
    definition, known,
    store::{self, FlagChangeRow},
};

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
        let reason = Reason::parse(reason)?;

        let written = store::write_flag(&self.inner.pool, flag.key, flag.default, enabled, changed_by, reason.as_str())
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
    /// `None`. Page sizes as [`FLAG_CHANGES`] says; `page_token` is the
    /// `next_page_token` of the previous page ("" for the first).
    pub async fn changes(&self, key: Option<&str>, page_size: i32, page_token: &str) -> Result<ChangesPage, FlagError> {
        let key = key.map(known).transpose()?.map(|flag| flag.key);
        let page_size = FLAG_CHANGES.size(page_size)?;
        let page_key =
            self.inner.page_keys.get().await.map_err(|source| FlagError::store("reading the page key", source))?;
        // keyset pagination on the change id: a page never shifts when new changes arrive
        let before_id: Option<i64> = FLAG_CHANGES.decode(page_key, page_token)?;
        let mut rows = store::list_changes(&self.inner.pool, key, before_id, page_size + 1)
            .await
            .map_err(|source| FlagError::store("reading feature flag changes", source))?;
        let next_page_token = if rows.len() as i64 > page_size {
            rows.truncate(page_size as usize);
            rows.last().map(|row| FLAG_CHANGES.encode(page_key, &row.id))
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
