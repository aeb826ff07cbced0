//! An [`EmbeddedPostgres`] hosted by a thread of its own.
//!
//! The server's parent-death signal fires when the *thread* that started it
//! exits, not the process. A server started from a tokio worker (or from a
//! test's thread) can therefore be killed when that thread goes; hosting it
//! in a dedicated thread that lives exactly as long as the server should
//! makes its lifetime explicit. Used by `backup verify`'s scratch server and
//! by the test harness's per-run server.

use std::{
    path::{Path, PathBuf},
    sync::mpsc,
    thread::JoinHandle,
};

use super::{EmbeddedPgError, EmbeddedPgOptions, EmbeddedPostgres, url_for};

pub struct PostgresThread {
    port: u16,
    password: String,
    data_dir: PathBuf,
    /// Dropping it tells the thread to stop the server and end.
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl PostgresThread {
    /// Starts the server on a new thread named `name` and waits (blocking)
    /// until it accepts connections.
    pub fn start(name: &str, options: EmbeddedPgOptions) -> Result<Self, EmbeddedPgError> {
        let (ready_tx, ready_rx) = mpsc::channel();
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || match EmbeddedPostgres::start(options) {
                Ok(mut server) => {
                    let _ = ready_tx.send(Ok((server.port(), server.password.clone(), server.data_dir().to_owned())));
                    // returns when the sender is dropped
                    let _ = stop_rx.recv();
                    server.stop();
                }
                Err(error) => {
                    let _ = ready_tx.send(Err(error));
                }
            })
            .map_err(|source| EmbeddedPgError::Io { action: "starting the postgres thread".to_owned(), source })?;
        let mut hosted = PostgresThread {
            port: 0,
            password: String::new(),
            data_dir: PathBuf::new(),
            stop: Some(stop_tx),
            thread: Some(thread),
        };
        match ready_rx.recv() {
            Ok(Ok((port, password, data_dir))) => {
                hosted.port = port;
                hosted.password = password;
                hosted.data_dir = data_dir;
                Ok(hosted)
            }
            Ok(Err(error)) => {
                hosted.stop();
                Err(error)
            }
            Err(_) => {
                hosted.stop();
                Err(EmbeddedPgError::Io {
                    action: "starting the postgres thread".to_owned(),
                    source: std::io::Error::other("the thread ended before the server was ready"),
                })
            }
        }
    }

    /// [`start`](Self::start) without blocking the async runtime.
    pub async fn start_async(name: &str, options: EmbeddedPgOptions) -> Result<Self, EmbeddedPgError> {
        let name = name.to_owned();
        tokio::task::spawn_blocking(move || Self::start(&name, options)).await.unwrap_or_else(|join| {
            Err(EmbeddedPgError::Io { action: "starting the postgres thread".to_owned(), source: join.into() })
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// URL of a database on this server.
    pub fn url(&self, database: &str) -> String {
        url_for(self.port, &self.password, database)
    }

    /// Stops the server and waits for its thread (blocking).
    pub fn stop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }

    /// [`stop`](Self::stop) without blocking the async runtime.
    pub async fn shutdown(mut self) {
        let _ = tokio::task::spawn_blocking(move || self.stop()).await;
    }
}

impl Drop for PostgresThread {
    fn drop(&mut self) {
        self.stop();
    }
}
