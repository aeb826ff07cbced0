//! `bookingctl flag get | set | history`: the booking-path kill switch.

use std::process::ExitCode;

use clap::{ArgAction, Subcommand};
use serde_json::json;
use tonic_types::StatusExt;

use super::Cli;
use crate::{
    flags::USE_LEGACY_BOOKING_SERVICE,
    proto::v1::{FlagChange, FlagSource, GetFlagRequest, GetFlagResponse, ListFlagChangesRequest, SetFlagRequest},
};

#[derive(Debug, clap::Args)]
#[command(long_about = "The booking-path flag decides how bookings are written: false (the default) uses the \
                  database function create_booking_atomic; true uses the application-side legacy path.\n\n\
                  A flip takes effect at once on the server that receives it and within a second on every \
                  other bookingd sharing the database. When bookingd was started with \
                  USE_LEGACY_BOOKING_SERVICE set, the environment pins the flag and `set` is refused.")]
pub struct FlagArgs {
    #[command(subcommand)]
    pub command: FlagCommand,
}

#[derive(Debug, Subcommand)]
pub enum FlagCommand {
    /// Show the value, where it comes from, how old it is, and whether the atomic path is available.
    Get {
        /// Flag key.
        #[arg(long, default_value = USE_LEGACY_BOOKING_SERVICE)]
        key: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Set the flag (true = legacy path, false = atomic path); the change is recorded with your reason.
    Set {
        /// The new value: true or false.
        #[arg(action = ArgAction::Set, value_parser = clap::value_parser!(bool))]
        enabled: bool,
        /// Why (kept in the audit trail; required).
        #[arg(long)]
        reason: String,
        /// Flag key.
        #[arg(long, default_value = USE_LEGACY_BOOKING_SERVICE)]
        key: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Show who changed the flag, when, why, and old → new, newest first.
    History {
        /// Flag key; empty for every flag.
        #[arg(long, default_value = USE_LEGACY_BOOKING_SERVICE)]
        key: String,
        /// Changes per page (the server caps it at 500).
        #[arg(long, default_value_t = 50)]
        page_size: i32,
        /// Start after this token (printed under a page that has more).
        #[arg(long, default_value = "")]
        page_token: String,
        /// Follow every page to the oldest change.
        #[arg(long)]
        all: bool,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(cli: &Cli, args: &FlagArgs) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let mut client = cli.admin_client().await?;
    match &args.command {
        FlagCommand::Get { key, json } => {
            let flag = client.get_flag(GetFlagRequest { key: key.clone() }).await.map_err(refused)?.into_inner();
            if *json {
                println!("{}", serde_json::to_string_pretty(&flag_json(&flag))?);
            } else {
                print_flag(&flag);
            }
        }
        FlagCommand::Set { enabled, reason, key, json } => {
            let request = SetFlagRequest { key: key.clone(), enabled: *enabled, reason: reason.clone() };
            let response = client.set_flag(request).await.map_err(refused)?.into_inner();
            let flag = response.flag.unwrap_or_default();
            if *json {
                let mut out = flag_json(&flag);
                out["previous"] = json!(response.previous);
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                println!("{}: {} -> {} (recorded)", flag.key, response.previous, flag.enabled);
                print_flag(&flag);
            }
        }
        FlagCommand::History { key, page_size, page_token, all, json } => {
            let mut changes = Vec::new();
            let mut token = page_token.clone();
            loop {
                let request = ListFlagChangesRequest { key: key.clone(), page_size: *page_size, page_token: token };
                let page = client.list_flag_changes(request).await.map_err(refused)?.into_inner();
                changes.extend(page.changes);
                token = page.next_page_token;
                if !*all || token.is_empty() {
                    break;
                }
            }
            if *json {
                let rows: Vec<_> = changes.iter().map(change_json).collect();
                println!("{}", serde_json::to_string_pretty(&json!({ "changes": rows, "next_page_token": token }))?);
            } else {
                print_changes(&changes);
                if !token.is_empty() {
                    println!("more: --page-token {token}  (or --all)");
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn source_name(flag: &GetFlagResponse) -> &'static str {
    match flag.source() {
        FlagSource::Environment => "environment",
        FlagSource::Database => "database",
        FlagSource::Default => "default",
        FlagSource::LastKnown => "last_known",
        FlagSource::Unspecified => "unspecified",
    }
}

fn age_seconds(flag: &GetFlagResponse) -> f64 {
    flag.cache_age.map(|d| d.seconds as f64 + f64::from(d.nanos) / 1e9).unwrap_or(0.0)
}

pub(super) fn when(at: Option<prost_types::Timestamp>) -> String {
    at.and_then(|t| chrono::DateTime::from_timestamp(t.seconds, t.nanos.max(0) as u32))
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_default()
}

fn print_flag(flag: &GetFlagResponse) {
    let path = if flag.enabled { "legacy path" } else { "atomic path" };
    println!("{}: {} ({path})", flag.key, flag.enabled);
    println!("  source:      {}", source_name(flag));
    println!("  cache age:   {:.1}s", age_seconds(flag));
    if !flag.updated_by.is_empty() {
        println!("  updated:     {} by {}", when(flag.updated_at), flag.updated_by);
    }
    let atomic = if flag.atomic_path_available { "available" } else { "UNAVAILABLE" };
    println!("  atomic path: {atomic} ({})", flag.atomic_path_detail);
}

fn flag_json(flag: &GetFlagResponse) -> serde_json::Value {
    json!({
        "key": flag.key,
        "enabled": flag.enabled,
        "source": source_name(flag),
        "cache_age_seconds": age_seconds(flag),
        "updated_at": when(flag.updated_at),
        "updated_by": flag.updated_by,
        "atomic_path_available": flag.atomic_path_available,
        "atomic_path_detail": flag.atomic_path_detail,
    })
}

fn change_json(change: &FlagChange) -> serde_json::Value {
    json!({
        "id": change.id,
        "key": change.key,
        "old_value": change.old_value,
        "new_value": change.new_value,
        "changed_by": change.changed_by,
        "reason": change.reason,
        "changed_at": when(change.changed_at),
    })
}

fn print_changes(changes: &[FlagChange]) {
    if changes.is_empty() {
        println!("no changes recorded");
        return;
    }
    let rows: Vec<[String; 6]> = changes
        .iter()
        .map(|c| {
            [
                c.id.to_string(),
                when(c.changed_at),
                c.key.clone(),
                format!("{} -> {}", c.old_value, c.new_value),
                c.changed_by.clone(),
                one_line(&c.reason, 60),
            ]
        })
        .collect();
    let header = ["ID", "CHANGED AT", "KEY", "CHANGE", "BY", "REASON"].map(String::from);
    let mut widths = header.clone().map(|h| h.chars().count());
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    for row in std::iter::once(&header).chain(&rows) {
        let cells: Vec<String> = row.iter().zip(widths).map(|(cell, width)| format!("{cell:<width$}")).collect();
        println!("{}", cells.join("  ").trim_end());
    }
}

/// The reason on one table line: newlines folded, long ones cut.
fn one_line(text: &str, max: usize) -> String {
    let folded = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if folded.chars().count() <= max {
        folded
    } else {
        format!("{}…", folded.chars().take(max - 1).collect::<String>())
    }
}

/// A refusal as an operator should read it: code, message, stable reason,
/// and the fields at fault.
pub(super) fn refused(status: tonic::Status) -> Box<dyn std::error::Error> {
    let details = status.get_error_details();
    let mut text = format!("{:?}: {}", status.code(), status.message());
    if let Some(info) = details.error_info() {
        text.push_str(&format!(" [{}]", info.reason));
    }
    if let Some(bad) = details.bad_request() {
        for violation in &bad.field_violations {
            text.push_str(&format!("\n  {}: {}", violation.field, violation.description));
        }
    }
    text.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_or_multiline_reasons_fit_one_table_line() {
        assert_eq!(one_line("atomic\nfunction  missing", 60), "atomic function missing");
        let cut = one_line(&"x".repeat(100), 10);
        assert_eq!(cut.chars().count(), 10);
        assert!(cut.ends_with('…'));
    }

    #[test]
    fn set_takes_an_explicit_boolean_and_requires_a_reason() {
        use clap::Parser;
        let cli = Cli::try_parse_from(["bookingctl", "flag", "set", "true", "--reason", "drill"]).expect("parses");
        let super::super::Command::Flag(FlagArgs { command: FlagCommand::Set { enabled, reason, key, .. } }) =
            cli.command
        else {
            panic!("not a flag set");
        };
        assert!(enabled);
        assert_eq!(reason, "drill");
        assert_eq!(key, USE_LEGACY_BOOKING_SERVICE);

        assert!(Cli::try_parse_from(["bookingctl", "flag", "set", "true"]).is_err(), "reason is required");
        assert!(Cli::try_parse_from(["bookingctl", "flag", "set", "yes", "--reason", "x"]).is_err());
    }
}
