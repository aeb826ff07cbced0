//! Evaluation: environment pin > cache > `feature_flags` row > default, and
//! the last known value while the database cannot be read.

use std::{
    sync::{Arc, atomic::Ordering},
    time::{Duration, Instant},
};

use tracing::field::Empty;

use super::{
    FlagDefinition, FlagSource, FlagState, FlagValue, Flags,
    cache::{Cached, Known, StoredSource},
    store::{self, FlagRow},
};

/// How long one database read may take before the last known value answers
/// instead. Concurrent evaluations wait on the same read (moka coalesces
/// them), so this is also the longest a request can wait on a flag.
const READ_TIMEOUT: Duration = Duration::from_secs(2);

impl Known {
    pub(super) fn read(flag: &FlagDefinition, row: Option<FlagRow>) -> Self {
        match row {
            Some(row) => Known {
                enabled: row.enabled,
                source: StoredSource::Row,
                read_at: Instant::now(),
                updated_at: Some(row.updated_at),
                updated_by: Some(Arc::from(row.updated_by)),
            },
            None => Known {
                enabled: flag.default,
                source: StoredSource::Default,
                read_at: Instant::now(),
                updated_at: None,
                updated_by: None,
            },
        }
    }
}

impl Flags {
    #[tracing::instrument(
        name = "feature_flag.evaluate",
        skip_all,
        fields(
            feature_flag.key = flag.key,
            feature_flag.provider_name = "bookingd",
            feature_flag.result.value = Empty,
            feature_flag.source = Empty,
            feature_flag.cached = Empty,
        )
    )]
    pub(super) async fn resolve(&self, flag: &'static FlagDefinition) -> FlagState {
        let state = match self.pin(flag) {
            Some(enabled) => FlagState {
                value: FlagValue {
                    key: flag.key,
                    enabled,
                    source: FlagSource::Environment,
                    from_cache: true,
                    age: Duration::ZERO,
                },
                updated_at: None,
                updated_by: None,
            },
            None => self.resolve_stored(flag).await,
        };
        let span = tracing::Span::current();
        span.record("feature_flag.result.value", state.value.enabled);
        span.record("feature_flag.source", state.value.source.as_str());
        span.record("feature_flag.cached", state.value.from_cache);
        state
    }

    async fn resolve_stored(&self, flag: &'static FlagDefinition) -> FlagState {
        let cache = &self.inner.cache;
        let generation = cache.generation(flag.key);
        // an entry made by a read that began before the last flip or
        // notification is outdated: read again (still coalesced by moka)
        let entry = cache
            .entries
            .entry(flag.key)
            .or_insert_with_if(self.read(flag, generation), move |cached| cached.generation < generation);
        let entry = entry.await;
        let from_cache = !entry.is_fresh();
        let Cached { known, last_known, .. } = entry.into_value();
        let source = match (last_known, known.source) {
            (true, _) => FlagSource::LastKnown,
            (false, StoredSource::Row) => FlagSource::Database,
            (false, StoredSource::Default) => FlagSource::Default,
        };
        FlagState {
            value: FlagValue {
                key: flag.key,
                enabled: known.enabled,
                source,
                from_cache,
                age: known.read_at.elapsed(),
            },
            updated_at: known.updated_at,
            updated_by: known.updated_by.map(|by| by.to_string()),
        }
    }

    /// One database read, or the last known value when it fails.
    async fn read(&self, flag: &'static FlagDefinition, generation: u64) -> Cached {
        self.inner.reads.fetch_add(1, Ordering::Relaxed);
        let read = tokio::time::timeout(READ_TIMEOUT, store::read_flag(&self.inner.pool, flag.key)).await;
        let error = match read {
            Ok(Ok(row)) => {
                if self.inner.store_unreachable.swap(false, Ordering::AcqRel) {
                    tracing::info!(feature_flag.key = flag.key, "feature flags readable again");
                }
                let known = Known::read(flag, row);
                self.inner.cache.remember(flag.key, generation, &known);
                return Cached { known, last_known: false, generation };
            }
            Ok(Err(error)) => error.to_string(),
            Err(_) => format!("no answer within {READ_TIMEOUT:?}"),
        };
        let fallback = self.inner.cache.last_known(flag.key);
        if !self.inner.store_unreachable.swap(true, Ordering::AcqRel) {
            // once per outage: every request of the outage would repeat it
            tracing::error!(
                feature_flag.key = flag.key,
                error,
                serving = fallback.as_ref().map(|known| known.enabled).unwrap_or(flag.default),
                source = if fallback.is_some() { "last_known" } else { "default" },
                "cannot read feature flags, serving the last known values until the database answers"
            );
        }
        match fallback {
            Some(known) => Cached { known, last_known: true, generation },
            // nothing was ever read: the registry's default is all there is
            None => Cached { known: Known::read(flag, None), last_known: false, generation },
        }
    }

    /// Rereads `flag` now (a notification said it changed, or notifications
    /// may have been missed); entries cached before this call are outdated.
    pub(super) async fn refresh(&self, flag: &'static FlagDefinition) {
        if self.pin(flag).is_some() {
            return;
        }
        self.inner.cache.bump(flag.key);
        self.resolve(flag).await;
    }
}
