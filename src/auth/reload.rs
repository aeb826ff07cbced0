//! The live principal set, swapped whole on reload. The sources are reread
//! every [`Authenticator::run_reloader`] tick and on SIGHUP; a set that fails
//! to load is logged and the previous one stays in force (a half-written file
//! must not lock every client out).

use std::{
    sync::{Arc, RwLock},
    time::Duration,
};

use tokio_util::sync::CancellationToken;

use super::{
    Principal,
    principals::{PrincipalConfigError, PrincipalSet, Sources},
};

#[derive(Debug, Clone)]
pub struct Authenticator {
    sources: Arc<Sources>,
    current: Arc<RwLock<Arc<PrincipalSet>>>,
}

impl Authenticator {
    /// Loads the sources once; an error here refuses the start.
    pub fn new(sources: Sources) -> Result<Self, PrincipalConfigError> {
        let set = PrincipalSet::load(&sources)?;
        Ok(Authenticator { sources: Arc::new(sources), current: Arc::new(RwLock::new(Arc::new(set))) })
    }

    pub fn current(&self) -> Arc<PrincipalSet> {
        // a poisoned lock still holds a whole set: swaps replace the Arc in one step
        self.current.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    pub fn by_token(&self, token: &str) -> Option<Principal> {
        self.current().by_token(token).cloned()
    }

    pub fn by_certificate_name(&self, name: &str) -> Option<Principal> {
        self.current().by_certificate_name(name).cloned()
    }

    /// Rereads the sources; `Ok(true)` when the set changed.
    pub fn reload(&self) -> Result<bool, PrincipalConfigError> {
        let fresh = PrincipalSet::load(&self.sources)?;
        let mut current = self.current.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        if **current == fresh {
            return Ok(false);
        }
        *current = Arc::new(fresh);
        Ok(true)
    }

    /// Reloads every `interval` and on SIGHUP until `stop`. Rereading a few
    /// small files is cheaper and surer than file-change notifications
    /// (editors and Kubernetes replace files by rename or symlink swap).
    pub async fn run_reloader(self, interval: Duration, stop: CancellationToken) {
        let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(signal) => Some(signal),
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGHUP; principals are still reloaded when their files change");
                None
            }
        };
        let mut last_error: Option<PrincipalConfigError> = None;
        loop {
            let by_signal = tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(interval) => false,
                Some(()) = async { match hangup.as_mut() { Some(signal) => signal.recv().await, None => None } } => true,
            };
            match self.reload() {
                Ok(changed) => {
                    last_error = None;
                    if changed || by_signal {
                        tracing::info!(
                            principals = self.current().principal_count(),
                            changed,
                            by_signal,
                            "principals reloaded"
                        );
                    }
                }
                Err(error) => {
                    // once per distinct problem, not every tick
                    if last_error.as_ref() != Some(&error) || by_signal {
                        tracing::error!(%error, "principals not reloaded; the previous set stays in force");
                    }
                    last_error = Some(error);
                }
            }
        }
    }
}
