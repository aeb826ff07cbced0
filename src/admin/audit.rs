//! The audit row every operator action writes, inside its own transaction.

use sqlx::PgConnection;
use uuid::Uuid;

use super::db_span;
use tracing::Instrument;

/// Writes one `audit_logs` row. `details` must hold no personal data.
pub(super) async fn record(
    conn: &mut PgConnection,
    table_name: &str,
    action: &str,
    actor: &str,
    record_id: Option<Uuid>,
    details: serde_json::Value,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "insert into audit_logs (table_name, record_id, action, actor, details)
         values ($1, $2, $3, $4, $5)",
    )
    .bind(table_name)
    .bind(record_id)
    .bind(action)
    .bind(actor)
    .bind(sqlx::types::Json(details))
    .execute(conn)
    .instrument(db_span("insert audit_logs"))
    .await?;
    Ok(())
}
