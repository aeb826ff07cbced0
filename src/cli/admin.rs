//! `bookingctl repair | clamp | pause | resume | functions`: the operators'
//! repair and maintenance tools, each one AdminService call.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use tonic_types::StatusExt;

use super::Cli;
use crate::proto::v1::{
    ClampNegativeAvailabilityRequest, DeployFunctionsRequest, DeploymentCheck, PauseBookingsRequest,
    RepairAvailabilityRequest, ResumeBookingsRequest, RollbackFunctionsRequest, TourAvailabilityChange,
};

type CliResult = Result<ExitCode, Box<dyn std::error::Error>>;

/// Recompute each tour's available spots from its bookings (dry run unless --apply).
#[derive(Debug, Args)]
#[command(
    long_about = "Recompute each tour's available spots from its bookings: available_spots = max_capacity - \
                  seats of pending and confirmed bookings.\n\n\
                  Without --apply this is a dry run: it prints what would change and writes nothing but an \
                  audit entry. With --apply the tours are locked (in id order) and corrected in one \
                  transaction; bookings keep flowing and wait at most a moment for the lock, and no booking's \
                  seat change is lost.\n\n\
                  A tour whose live bookings exceed its capacity (overbooked) cannot be made consistent, \
                  because availability cannot go below 0: it is set to 0 so nothing more is sold, and an \
                  'overbooked_tours' incident lists it for a human to resolve.\n\n\
                  Replaces the runbook's 'Run data repair' UPDATE, which ran without locks and could lose \
                  concurrent bookings' changes.",
    after_help = "Examples:\n  bookingctl repair\n  bookingctl repair --apply --reason \"drift found by check\"\n  \
                  bookingctl repair --apply --tour 6f1c...e2 --reason \"ticket 4711\""
)]
pub struct RepairArgs {
    /// Write the corrections (default: dry run).
    #[arg(long)]
    pub apply: bool,
    /// Only this tour (repeatable); default: every tour.
    #[arg(long = "tour", value_name = "TOUR_ID")]
    pub tours: Vec<String>,
    /// Why (kept in the audit trail); required with --apply.
    #[arg(long, required_if_eq("apply", "true"), default_value = "", hide_default_value = true)]
    pub reason: String,
}

/// Log tours with negative available spots as an incident, then set them to 0.
#[derive(Debug, Args)]
#[command(
    long_about = "Emergency fix for negative available spots (the runbook's scenario 1), in the right order: \
                  in one transaction the negative tours are locked, an incident_log row of type \
                  'negative_availability' records each of them with its values, and only then are they \
                  clamped to 0. (The runbook clamps first and logs afterwards, so its incident lists nothing.)\n\n\
                  Clamping stops further sales; it does not make a tour agree with its bookings. Run \
                  'bookingctl repair' next.",
    after_help = "Example:\n  bookingctl clamp --reason \"monitor: negative availability\""
)]
pub struct ClampArgs {
    /// Why (kept in the incident and the audit trail).
    #[arg(long)]
    pub reason: String,
}

/// Take active tours out of service (status maintenance), remembering their status.
#[derive(Debug, Args)]
#[command(
    long_about = "Pause bookings: every active tour (or the listed ones) goes to status 'maintenance', and the \
                  status each had is recorded under a pause id. New bookings on those tours are refused until \
                  'bookingctl resume'.\n\n\
                  Unlike the runbook's UPDATE, the pause remembers exactly which tours it took, so resuming \
                  does not reactivate tours that were in maintenance for reasons of their own.",
    after_help = "Examples:\n  bookingctl pause --reason \"data repair\"\n  \
                  bookingctl pause --tour 6f1c...e2 --tour 0a9b...71 --reason \"boat inspection\""
)]
pub struct PauseArgs {
    /// Only this tour (repeatable); default: every active tour.
    #[arg(long = "tour", value_name = "TOUR_ID")]
    pub tours: Vec<String>,
    /// Why (kept in the audit trail).
    #[arg(long)]
    pub reason: String,
}

/// Put paused tours back in the status they had before the pause.
#[derive(Debug, Args)]
#[command(
    long_about = "Resume bookings: the tours of one pause (--pause-id) or of every open pause go back to the \
                  status they had when paused. Tours that were already in maintenance before the pause, or \
                  whose status someone changed by hand since, stay as they are.",
    after_help = "Examples:\n  bookingctl resume --reason \"repair done\"\n  \
                  bookingctl resume --pause-id 1b7e...c4 --tour 6f1c...e2 --reason \"inspection passed\""
)]
pub struct ResumeArgs {
    /// The pause to resume (printed by 'bookingctl pause'); default: every open pause.
    #[arg(long)]
    pub pause_id: Option<String>,
    /// Only this tour of the pause(s) (repeatable).
    #[arg(long = "tour", value_name = "TOUR_ID")]
    pub tours: Vec<String>,
    /// Why (kept in the audit trail).
    #[arg(long)]
    pub reason: String,
}

/// Deploy or roll back the atomic booking path's database functions.
#[derive(Debug, Args)]
#[command(long_about = "Deploy or roll back the atomic booking path: the function create_booking_atomic, the \
                        trigger function restore_tour_availability and the trigger restore_availability_trigger \
                        (the runbook's database_enhancements.sql and emergency_database_rollback.sql). \
                        bookingd keeps taking bookings through its legacy path while they are gone.\n\n\
                        After either action the runbook's post-deployment validation (checkpoint 2) runs and is \
                        printed.")]
pub struct FunctionsArgs {
    #[command(subcommand)]
    pub action: FunctionsAction,
}

#[derive(Debug, Subcommand)]
pub enum FunctionsAction {
    /// Create (or replace) the functions and the trigger; exits non-zero unless every check passes.
    Deploy {
        /// Why (kept in the audit trail).
        #[arg(long)]
        reason: String,
    },
    /// Drop them (emergency rollback); exits non-zero if any of them is still present.
    Rollback {
        /// Why (kept in the audit trail).
        #[arg(long)]
        reason: String,
    },
}

pub async fn repair(cli: &Cli, args: &RepairArgs) -> CliResult {
    let request =
        RepairAvailabilityRequest { apply: args.apply, tour_ids: args.tours.clone(), reason: args.reason.clone() };
    let response = cli.admin_client().await?.repair_availability(request).await.map_err(describe)?.into_inner();
    let verb = if response.applied { "changed" } else { "would change" };
    println!("{} of {} tours {verb}", response.changes.len(), response.tours_examined);
    print_changes(&response.changes);
    if !response.overbooked_tour_ids.is_empty() {
        println!(
            "\n{} tour(s) are OVERBOOKED (live seats above capacity); their availability {} 0:",
            response.overbooked_tour_ids.len(),
            if response.applied { "was set to" } else { "would be set to" }
        );
        for id in &response.overbooked_tour_ids {
            println!("  {id}");
        }
        if response.incident_id != 0 {
            println!("recorded as incident {}", response.incident_id);
        }
    }
    if !response.applied && !response.changes.is_empty() {
        println!("\ndry run: nothing written; rerun with --apply --reason \"...\" to write");
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn clamp(cli: &Cli, args: &ClampArgs) -> CliResult {
    let request = ClampNegativeAvailabilityRequest { reason: args.reason.clone() };
    let response = cli.admin_client().await?.clamp_negative_availability(request).await.map_err(describe)?.into_inner();
    if response.incident_id == 0 {
        println!("no tour has negative availability; nothing done");
        return Ok(ExitCode::SUCCESS);
    }
    println!("incident {} recorded, then {} tour(s) clamped to 0:", response.incident_id, response.changes.len());
    print_changes(&response.changes);
    println!("\nnext: bookingctl repair (clamping does not reconcile tours with their bookings)");
    Ok(ExitCode::SUCCESS)
}

pub async fn pause(cli: &Cli, args: &PauseArgs) -> CliResult {
    let request = PauseBookingsRequest { tour_ids: args.tours.clone(), reason: args.reason.clone() };
    let response = cli.admin_client().await?.pause_bookings(request).await.map_err(describe)?.into_inner();
    println!("pause {}: {} tour(s) now in maintenance", response.pause_id, response.paused_tour_ids.len());
    print_ids(&response.paused_tour_ids);
    println!("\nresume with: bookingctl resume --pause-id {} --reason \"...\"", response.pause_id);
    Ok(ExitCode::SUCCESS)
}

pub async fn resume(cli: &Cli, args: &ResumeArgs) -> CliResult {
    let request = ResumeBookingsRequest {
        pause_id: args.pause_id.clone().unwrap_or_default(),
        tour_ids: args.tours.clone(),
        reason: args.reason.clone(),
    };
    let response = cli.admin_client().await?.resume_bookings(request).await.map_err(describe)?.into_inner();
    println!("{} tour(s) back in their prior status", response.resumed_tour_ids.len());
    print_ids(&response.resumed_tour_ids);
    if !response.left_alone_tour_ids.is_empty() {
        println!(
            "{} tour(s) left alone (no longer in maintenance; changed by hand since the pause):",
            response.left_alone_tour_ids.len()
        );
        for id in &response.left_alone_tour_ids {
            println!("  {id}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn functions(cli: &Cli, args: &FunctionsArgs) -> CliResult {
    let mut client = cli.admin_client().await?;
    let (checks, want_present) = match &args.action {
        FunctionsAction::Deploy { reason } => {
            let request = DeployFunctionsRequest { reason: reason.clone() };
            (client.deploy_functions(request).await.map_err(describe)?.into_inner().checks, true)
        }
        FunctionsAction::Rollback { reason } => {
            let request = RollbackFunctionsRequest { reason: reason.clone() };
            (client.rollback_functions(request).await.map_err(describe)?.into_inner().checks, false)
        }
    };
    print_checks(&checks);
    let as_wanted = checks.iter().all(|check| check.passed == want_present);
    if !as_wanted {
        eprintln!("bookingctl: the catalogs do not show the expected state");
    }
    Ok(if as_wanted { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// Tour ids, one a line, the first [`LISTED_IDS`] of them (the audit trail
/// has them all).
fn print_ids(ids: &[String]) {
    for id in ids.iter().take(LISTED_IDS) {
        println!("  {id}");
    }
    if ids.len() > LISTED_IDS {
        println!("  ... and {} more (all of them are in the audit log)", ids.len() - LISTED_IDS);
    }
}

const LISTED_IDS: usize = 20;

fn print_changes(changes: &[TourAvailabilityChange]) {
    if changes.is_empty() {
        return;
    }
    println!("\n{:<36}  {:<28}  {:>8}  {:>6}  {:>6}  {:>6}", "TOUR", "NAME", "CAPACITY", "BOOKED", "BEFORE", "AFTER");
    for c in changes {
        let name: String = c.tour_name.chars().take(28).collect();
        println!(
            "{:<36}  {:<28}  {:>8}  {:>6}  {:>6}  {:>6}",
            c.tour_id, name, c.max_capacity, c.live_seats, c.available_spots_before, c.available_spots_after
        );
    }
}

fn print_checks(checks: &[DeploymentCheck]) {
    for check in checks {
        println!("{:<24} {}", check.name, check.detail);
    }
}

/// A refusal as an operator wants to read it: code, message, stable reason.
pub(super) fn describe(status: tonic::Status) -> Box<dyn std::error::Error> {
    let reason = status.get_error_details().error_info().map(|info| info.reason.clone());
    let mut text = format!("{:?}: {}", status.code(), status.message());
    if let Some(reason) = reason {
        text.push_str(&format!(" [{reason}]"));
    }
    text.into()
}
