//! Whole databases: create, drop, and whether one is empty. Names are quoted
//! by the server (`format('%I')`), never by us.

use sqlx::{Connection, PgConnection};

use super::BackupError;

/// `create database`, on its own connection to `server_url`'s server.
pub async fn create_database(server_url: &str, name: &str) -> Result<(), BackupError> {
    database_ddl(server_url, "select format('create database %I', $1::text)", name, "creating a database").await
}

/// `drop database if exists ... with (force)`.
pub async fn drop_database(server_url: &str, name: &str) -> Result<(), BackupError> {
    database_ddl(
        server_url,
        "select format('drop database if exists %I with (force)', $1::text)",
        name,
        "dropping a database",
    )
    .await
}

/// Runs a database-level statement built by `template` (a `format` call
/// quoting the name server-side) on its own connection to the server.
async fn database_ddl(
    server_url: &str,
    template: &'static str,
    name: &str,
    action: &'static str,
) -> Result<(), BackupError> {
    let mut conn = PgConnection::connect(server_url).await.map_err(BackupError::db("connecting to the server"))?;
    let statement: String = sqlx::query_scalar(template)
        .bind(name)
        .fetch_one(&mut conn)
        .await
        .map_err(BackupError::db("quoting the database name"))?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(statement)).execute(&mut conn).await.map_err(BackupError::db(action))?;
    let _ = conn.close().await;
    Ok(())
}

/// Tables, views, sequences and foreign tables outside the system schemas.
pub(super) async fn count_relations(conn: &mut PgConnection) -> Result<i64, BackupError> {
    sqlx::query_scalar(
        "select count(*) from pg_class c join pg_namespace n on n.oid = c.relnamespace
          where c.relkind in ('r', 'p', 'v', 'm', 'S', 'f')
            and n.nspname not in ('pg_catalog', 'information_schema')
            and n.nspname not like 'pg\\_toast%' and n.nspname not like 'pg\\_temp%'",
    )
    .fetch_one(conn)
    .await
    .map_err(BackupError::db("inspecting the target database"))
}
