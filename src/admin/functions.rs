//! DeployFunctions / RollbackFunctions: apply or drop the atomic path
//! (`create_booking_atomic`, `restore_tour_availability`,
//! `restore_availability_trigger`) through `db::functions`, which serialises
//! them and writes the audit row with the operator and reason, then read the
//! catalogs back with the runbook's post-deployment validation (checkpoint 2).

use sqlx::PgPool;
use tracing::Instrument;

use super::{AdminError, Reason, db_span, error::DbContext};
use crate::db::{
    error::DbError,
    functions::{self, DdlError, DdlPolicy, Deployed, FunctionsState},
};

/// A busy `bookings` table is the operator's "retry later", naming who holds it.
fn ddl_error(action: &'static str) -> impl FnOnce(DdlError) -> AdminError {
    move |error| match error {
        DdlError::Busy { ref holders, .. } => {
            let pids = holders.iter().map(|h| h.pid.to_string()).collect::<Vec<_>>().join(",");
            AdminError::TableLocked { message: error.to_string(), pids }
        }
        DdlError::Database(source) => AdminError::Database(DbError::new(action, source)),
    }
}

/// One line of the post-deployment validation, as the runbook words it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DeploymentCheck {
    pub name: &'static str,
    /// The object is present. After a rollback, absence is the expected
    /// outcome: every check then reads FAIL, as the runbook's query would.
    pub passed: bool,
    pub detail: &'static str,
}

#[tracing::instrument(name = "admin.deploy_functions", skip_all, fields(admin.actor = actor))]
pub async fn deploy_functions(pool: &PgPool, actor: &str, reason: &str) -> Result<Vec<DeploymentCheck>, AdminError> {
    let reason = Reason::parse(reason)?;
    let deployed = functions::deploy_with(pool, DdlPolicy::default(), actor, reason.as_str())
        .instrument(db_span("deploy database functions"))
        .await
        .map_err(ddl_error("deploying the database functions"))?;
    let checks = post_deployment_checks(pool).await?;
    tracing::info!(
        all_present = checks.iter().all(|c| c.passed),
        unchanged = deployed == Deployed::Unchanged,
        "database functions deployed"
    );
    Ok(checks)
}

#[tracing::instrument(name = "admin.rollback_functions", skip_all, fields(admin.actor = actor))]
pub async fn rollback_functions(pool: &PgPool, actor: &str, reason: &str) -> Result<Vec<DeploymentCheck>, AdminError> {
    let reason = Reason::parse(reason)?;
    functions::rollback_with(pool, DdlPolicy::default(), actor, reason.as_str())
        .instrument(db_span("rollback database functions"))
        .await
        .map_err(ddl_error("rolling back the database functions"))?;
    let checks = post_deployment_checks(pool).await?;
    tracing::warn!(any_present = checks.iter().any(|c| c.passed), "database functions rolled back");
    Ok(checks)
}

/// The runbook's checkpoint 2 (atomic function, trigger) plus the trigger's
/// function, read from `information_schema` as the runbook reads them.
pub async fn post_deployment_checks(pool: &PgPool) -> Result<Vec<DeploymentCheck>, AdminError> {
    let state = functions::state(pool)
        .instrument(db_span("select information_schema routines triggers"))
        .await
        .context("reading the function catalogs")?;
    Ok(checks_for(state))
}

fn checks_for(state: FunctionsState) -> Vec<DeploymentCheck> {
    let check = |name, passed, pass, fail| DeploymentCheck { name, passed, detail: if passed { pass } else { fail } };
    vec![
        check(
            "atomic_function_check",
            state.atomic_function,
            "PASS: atomic function deployed",
            "FAIL: atomic function missing",
        ),
        check(
            "restore_function_check",
            state.restore_function,
            "PASS: restoration function deployed",
            "FAIL: restoration function missing",
        ),
        check("trigger_check", state.trigger, "PASS: restoration trigger active", "FAIL: restoration trigger missing"),
    ]
}
