//! Hears flips made by other processes: LISTEN on the channel the schema's
//! `feature_flags_notify` trigger notifies (payload: the flag's key) and
//! reread that flag at once. Notifications sent while the connection was
//! down are lost, so every (re)connection rereads every flag; the cache TTL
//! is the backstop for anything else.

use std::time::Duration;

use sqlx::postgres::{PgListener, PgPoolOptions};
use tokio_util::sync::CancellationToken;

use super::{Flags, KNOWN_FLAGS, definition};

/// Channel of the schema's `notify_feature_flag_change()` trigger.
pub const NOTIFY_CHANNEL: &str = "bookingd_feature_flags";

const RETRY_MIN: Duration = Duration::from_millis(200);
const RETRY_MAX: Duration = Duration::from_secs(5);

impl Flags {
    /// Listens until `stop` is cancelled, reconnecting with backoff whenever
    /// the connection drops. Spawn it once per process.
    pub async fn listen(self, stop: CancellationToken) {
        // its own connection: a LISTEN session is held for good, and must not
        // take a slot from (or wait behind) the request pool
        let options = (*self.inner.pool.connect_options()).clone().application_name("bookingd-flag-listener");
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(5))
            .max_lifetime(None)
            .idle_timeout(None)
            .connect_lazy_with(options);

        let mut retry = RETRY_MIN;
        // set after a failure so that an outage is logged once, not per retry
        let mut lost = false;
        loop {
            let subscribed = tokio::select! {
                _ = stop.cancelled() => break,
                subscribed = subscribe(&pool) => subscribed,
            };
            match subscribed {
                Ok(mut listener) => {
                    if lost {
                        tracing::info!(channel = NOTIFY_CHANNEL, "feature flag listener reconnected");
                    }
                    retry = RETRY_MIN;
                    self.refresh_all().await;
                    let error = tokio::select! {
                        _ = stop.cancelled() => break,
                        error = self.follow(&mut listener) => error,
                    };
                    lost = true;
                    tracing::warn!(
                        channel = NOTIFY_CHANNEL,
                        error = %error,
                        "feature flag listener lost its connection; reconnecting (the cache ttl bounds staleness meanwhile)"
                    );
                }
                Err(error) => {
                    if !lost {
                        tracing::warn!(channel = NOTIFY_CHANNEL, error = %error, "feature flag listener cannot connect; retrying");
                        lost = true;
                    }
                }
            }
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep(retry) => {}
            }
            retry = (retry * 2).min(RETRY_MAX);
        }
        pool.close().await;
    }

    /// Applies notifications until the connection fails for good.
    async fn follow(&self, listener: &mut PgListener) -> sqlx::Error {
        loop {
            match listener.try_recv().await {
                Ok(Some(notification)) => match definition(notification.payload()) {
                    Some(flag) => {
                        tracing::debug!(feature_flag.key = flag.key, "feature flag change notified");
                        self.refresh(flag).await;
                    }
                    None => {
                        tracing::debug!(payload = notification.payload(), "notification for an unknown flag ignored")
                    }
                },
                // the connection dropped and sqlx reconnected (and re-listened):
                // whatever was notified in between is lost, so reread
                Ok(None) => {
                    tracing::info!(channel = NOTIFY_CHANNEL, "feature flag listener reconnected after a drop");
                    self.refresh_all().await;
                }
                Err(error) => return error,
            }
        }
    }

    async fn refresh_all(&self) {
        for flag in KNOWN_FLAGS {
            self.refresh(flag).await;
        }
    }
}

async fn subscribe(pool: &sqlx::PgPool) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(NOTIFY_CHANNEL).await?;
    Ok(listener)
}
