//! A database URL split for the client tools: the password goes into
//! `PGPASSWORD` so it never shows in a process list.

use super::BackupError;
use crate::db::url::split_password;

#[derive(Clone)]
pub(super) struct DbTarget {
    /// As given, for our own connections.
    pub url: String,
    /// Without the password, for `--dbname`.
    pub tool_url: String,
    pub password: Option<String>,
    pub database: String,
}

impl DbTarget {
    pub fn parse(url: &str) -> Result<Self, BackupError> {
        let options: sqlx::postgres::PgConnectOptions =
            url.parse().map_err(|e: sqlx::Error| BackupError::BadUrl(e.to_string()))?;
        let database = options.get_database().unwrap_or("postgres").to_owned();
        let (tool_url, password) = split_password(url);
        Ok(DbTarget { url: url.to_owned(), tool_url, password, database })
    }
}
