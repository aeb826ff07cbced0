//! `bookingctl bookings get|find|confirm|cancel`, `bookingctl tours list` and
//! `bookingctl book`: the support desk's tools, each a BookingService call
//! (a reference is resolved to its booking with GetBooking first).

use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::{Cli, flag::refused};
use crate::proto::v1::{
    Booking, BookingStatus, CancelBookingRequest, ConfirmBookingRequest, CreateBookingRequest, GetBookingRequest,
    JourneyEntry, ListToursRequest, LookupJourneyRequest, Tour, get_booking_request::Key,
};

type CliResult = Result<ExitCode, Box<dyn std::error::Error>>;

#[derive(Debug, Args)]
#[command(long_about = "Look bookings up and act on them on a customer's behalf. A booking is named by its id (a \
                  UUID) or its reference (BK-XXXXXXXX, as the customer sees it). Cancellations are recorded with \
                  your reason.")]
pub struct BookingsArgs {
    #[command(subcommand)]
    pub command: BookingsCommand,
}

#[derive(Debug, Subcommand)]
pub enum BookingsCommand {
    /// Show one booking.
    Get {
        /// Booking id or reference.
        booking: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// A customer's bookings by e-mail and/or WhatsApp number, newest first.
    Find {
        #[arg(long, required_unless_present = "whatsapp")]
        email: Option<String>,
        #[arg(long)]
        whatsapp: Option<String>,
        /// Follow every page (default: the first page only).
        #[arg(long)]
        all: bool,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Confirm a pending booking (refused once its hold has expired).
    Confirm {
        /// Booking id or reference.
        booking: String,
        #[arg(long)]
        json: bool,
    },
    /// Cancel a booking; its seats go back to the tour (exactly once).
    Cancel {
        /// Booking id or reference.
        booking: String,
        /// Why (recorded with the booking; required).
        #[arg(long)]
        reason: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub struct ToursArgs {
    #[command(subcommand)]
    pub command: ToursCommand,
}

#[derive(Debug, Subcommand)]
pub enum ToursCommand {
    /// List bookable tours by date (templates are not bookable and not listed).
    List {
        /// First date, inclusive (YYYY-MM-DD).
        #[arg(long)]
        from: Option<String>,
        /// Last date, inclusive (YYYY-MM-DD).
        #[arg(long)]
        to: Option<String>,
        /// Only tours with seats left.
        #[arg(long)]
        available: bool,
        /// Tours per page (the server caps it).
        #[arg(long, default_value_t = 20)]
        page_size: i32,
        /// Follow every page.
        #[arg(long)]
        all: bool,
        #[arg(long)]
        json: bool,
    },
}

/// Make a booking: a hold on seats, pending until confirmed (or --confirm).
#[derive(Debug, Args)]
#[command(long_about = "Make a booking, as the booking site would: CreateBooking with a fresh idempotency key \
                  (or --request-id to retry one safely: the same key returns the same booking). The booking is \
                  pending and holds its seats until confirmed; --confirm confirms it at once.")]
pub struct BookArgs {
    /// Tour id (see `bookingctl tours list`).
    #[arg(long)]
    pub tour: String,
    #[arg(long, default_value_t = 1)]
    pub adults: i32,
    #[arg(long, default_value_t = 0)]
    pub children: i32,
    /// Customer's name.
    #[arg(long)]
    pub name: String,
    #[arg(long, required_unless_present = "whatsapp")]
    pub email: Option<String>,
    #[arg(long)]
    pub whatsapp: Option<String>,
    /// Idempotency key [default: a new UUID].
    #[arg(long)]
    pub request_id: Option<String>,
    /// Hold for this many seconds instead of the server's default (a longer one is capped).
    #[arg(long)]
    pub hold_seconds: Option<i32>,
    /// Confirm the booking right after creating it.
    #[arg(long)]
    pub confirm: bool,
    #[arg(long)]
    pub json: bool,
}

pub async fn bookings(cli: &Cli, args: &BookingsArgs) -> CliResult {
    let mut client = cli.booking_client().await?;
    match &args.command {
        BookingsCommand::Get { booking, json } => {
            let found = client.get_booking(get_request(booking)).await.map_err(refused)?.into_inner();
            show(&found.booking.unwrap_or_default(), *json)?;
        }
        BookingsCommand::Find { email, whatsapp, all, json } => {
            let mut entries = Vec::new();
            let mut token = String::new();
            let mut used_fallback = false;
            loop {
                let request = LookupJourneyRequest {
                    customer_email: email.clone().unwrap_or_default(),
                    customer_whatsapp: whatsapp.clone().unwrap_or_default(),
                    page_size: 0,
                    page_token: token,
                };
                let page = client.lookup_journey(request).await.map_err(refused)?.into_inner();
                used_fallback |= page.used_fallback;
                entries.extend(page.entries);
                token = page.next_page_token;
                if !*all || token.is_empty() {
                    break;
                }
            }
            if *json {
                let rows: Vec<Value> = entries.iter().map(journey_json).collect();
                let out = json!({ "entries": rows, "next_page_token": token, "used_fallback": used_fallback });
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                print_journey(&entries);
                if !token.is_empty() {
                    println!("more bookings: --all");
                }
            }
        }
        BookingsCommand::Confirm { booking, json } => {
            let booking_id = resolve(&mut client, booking).await?;
            let confirmed =
                client.confirm_booking(ConfirmBookingRequest { booking_id }).await.map_err(refused)?.into_inner();
            show(&confirmed.booking.unwrap_or_default(), *json)?;
        }
        BookingsCommand::Cancel { booking, reason, json } => {
            let booking_id = resolve(&mut client, booking).await?;
            let request = CancelBookingRequest { booking_id, reason: reason.clone() };
            let cancelled = client.cancel_booking(request).await.map_err(refused)?.into_inner();
            let booking = cancelled.booking.unwrap_or_default();
            if *json {
                let mut out = booking_json(&booking);
                out["seats_released"] = json!(cancelled.seats_released);
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                if cancelled.seats_released {
                    println!("cancelled {}: {} seat(s) back on the tour", booking.booking_reference, seats(&booking));
                } else {
                    println!("{} was already {}: nothing released", booking.booking_reference, status(&booking));
                }
                print_booking(&booking);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn tours(cli: &Cli, args: &ToursArgs) -> CliResult {
    let mut client = cli.booking_client().await?;
    let ToursCommand::List { from, to, available, page_size, all, json } = &args.command;
    let mut tours = Vec::new();
    let mut token = String::new();
    loop {
        let request = ListToursRequest {
            from_date: from.clone().unwrap_or_default(),
            to_date: to.clone().unwrap_or_default(),
            template_id: String::new(),
            only_available: *available,
            page_size: *page_size,
            page_token: token,
        };
        let page = client.list_tours(request).await.map_err(refused)?.into_inner();
        tours.extend(page.tours);
        token = page.next_page_token;
        if !*all || token.is_empty() {
            break;
        }
    }
    if *json {
        let rows: Vec<Value> = tours.iter().map(tour_json).collect();
        println!("{}", serde_json::to_string_pretty(&json!({ "tours": rows, "next_page_token": token }))?);
    } else {
        print_tours(&tours);
        if !token.is_empty() {
            println!("more tours: --all");
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn book(cli: &Cli, args: &BookArgs) -> CliResult {
    let mut client = cli.booking_client().await?;
    let request = CreateBookingRequest {
        request_id: args.request_id.clone().unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
        tour_id: args.tour.clone(),
        num_adults: args.adults,
        num_children: args.children,
        customer_name: args.name.clone(),
        customer_email: args.email.clone().unwrap_or_default(),
        customer_whatsapp: args.whatsapp.clone().unwrap_or_default(),
        hold_seconds: args.hold_seconds,
        user_id: None,
    };
    let created = client.create_booking(request).await.map_err(refused)?.into_inner();
    let mut booking = created.booking.unwrap_or_default();
    if args.confirm {
        let confirmed = client
            .confirm_booking(ConfirmBookingRequest { booking_id: booking.id.clone() })
            .await
            .map_err(refused)?
            .into_inner();
        booking = confirmed.booking.unwrap_or_default();
    }
    if args.json {
        let mut out = booking_json(&booking);
        out["replayed"] = json!(created.replayed);
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        let what = if created.replayed { "replayed (same request_id)" } else { "booked" };
        println!("{what} {}", booking.booking_reference);
        print_booking(&booking);
    }
    Ok(ExitCode::SUCCESS)
}

/// A UUID is an id; anything else is taken for a reference.
fn get_request(booking: &str) -> GetBookingRequest {
    let key = if uuid::Uuid::parse_str(booking.trim()).is_ok() {
        Key::BookingId(booking.trim().to_owned())
    } else {
        Key::BookingReference(booking.trim().to_owned())
    };
    GetBookingRequest { key: Some(key) }
}

/// The booking id for an id or a reference.
async fn resolve(client: &mut super::BookingClient, booking: &str) -> Result<String, Box<dyn std::error::Error>> {
    if uuid::Uuid::parse_str(booking.trim()).is_ok() {
        return Ok(booking.trim().to_owned());
    }
    let found = client.get_booking(get_request(booking)).await.map_err(refused)?.into_inner();
    Ok(found.booking.unwrap_or_default().id)
}

fn show(booking: &Booking, as_json: bool) -> Result<(), Box<dyn std::error::Error>> {
    if as_json {
        println!("{}", serde_json::to_string_pretty(&booking_json(booking))?);
    } else {
        print_booking(booking);
    }
    Ok(())
}

fn status(booking: &Booking) -> &'static str {
    match booking.status() {
        BookingStatus::Pending => "pending",
        BookingStatus::Confirmed => "confirmed",
        BookingStatus::Cancelled => "cancelled",
        BookingStatus::Expired => "expired",
        BookingStatus::Unspecified => "unspecified",
    }
}

fn seats(booking: &Booking) -> i32 {
    booking.num_adults + booking.num_children
}

/// Integer cents as `49.99 EUR` (every currency the schema allows has 2 decimals).
fn money(cents: i64, currency: &str) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    format!("{sign}{}.{:02} {currency}", cents.unsigned_abs() / 100, cents.unsigned_abs() % 100)
}

fn when(at: Option<prost_types::Timestamp>) -> String {
    super::flag::when(at)
}

fn print_booking(b: &Booking) {
    let contact = [b.customer_email.as_deref(), b.customer_whatsapp.as_deref()]
        .into_iter()
        .flatten()
        .filter(|c| !c.is_empty())
        .collect::<Vec<_>>()
        .join(", ");
    println!("  reference  {}", b.booking_reference);
    println!("  id         {}", b.id);
    println!("  status     {}", status(b));
    println!("  tour       {}", b.tour_id);
    println!("  customer   {} ({contact})", b.customer_name);
    println!("  seats      {} adult(s), {} child(ren)", b.num_adults, b.num_children);
    println!(
        "  total      {} (commission {} at {}%)",
        money(b.total_amount_cents, &b.currency_code),
        money(b.commission_amount_cents, &b.currency_code),
        b.applied_commission_rate
    );
    println!("  created    {}", when(b.created_at));
    match b.status() {
        BookingStatus::Pending => println!("  hold until {}", when(b.hold_expires_at)),
        BookingStatus::Confirmed => println!("  confirmed  {}", when(b.confirmed_at)),
        BookingStatus::Cancelled => println!("  cancelled  {}", when(b.cancelled_at)),
        _ => {}
    }
}

fn print_journey(entries: &[JourneyEntry]) {
    if entries.is_empty() {
        println!("no bookings");
        return;
    }
    println!(
        "{:<12} {:<10} {:<10} {:<6} {:>5} {:>14}  {:<30} id",
        "reference", "status", "date", "slot", "seats", "total", "tour"
    );
    for entry in entries {
        let b = entry.booking.clone().unwrap_or_default();
        println!(
            "{:<12} {:<10} {:<10} {:<6} {:>5} {:>14}  {:<30} {}",
            b.booking_reference,
            status(&b),
            entry.tour_date,
            entry.time_slot,
            seats(&b),
            money(b.total_amount_cents, &b.currency_code),
            truncate(&entry.tour_name, 30),
            b.id
        );
    }
}

fn print_tours(tours: &[Tour]) {
    if tours.is_empty() {
        println!("no tours");
        return;
    }
    println!("{:<36} {:<10} {:<6} {:>9} {:>12}  {:<10} name", "id", "date", "slot", "left/cap", "adult", "status");
    for t in tours {
        println!(
            "{:<36} {:<10} {:<6} {:>9} {:>12}  {:<10} {}",
            t.id,
            t.tour_date,
            t.time_slot,
            format!("{}/{}", t.available_spots, t.max_capacity),
            money(t.adult_price_cents, &t.currency_code),
            t.status,
            t.tour_name
        );
    }
}

fn truncate(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(width - 1).collect();
    cut.push('…');
    cut
}

fn booking_json(b: &Booking) -> Value {
    json!({
        "id": b.id,
        "booking_reference": b.booking_reference,
        "status": status(b),
        "tour_id": b.tour_id,
        "schedule_id": b.schedule_id,
        "operator_id": b.operator_id,
        "customer_name": b.customer_name,
        "customer_email": b.customer_email,
        "customer_whatsapp": b.customer_whatsapp,
        "num_adults": b.num_adults,
        "num_children": b.num_children,
        "subtotal_cents": b.subtotal_cents,
        "commission_amount_cents": b.commission_amount_cents,
        "total_amount_cents": b.total_amount_cents,
        "applied_commission_rate": b.applied_commission_rate,
        "currency_code": b.currency_code,
        "request_id": b.request_id,
        "hold_expires_at": when(b.hold_expires_at),
        "created_at": when(b.created_at),
        "confirmed_at": when(b.confirmed_at),
        "cancelled_at": when(b.cancelled_at),
    })
}

fn journey_json(entry: &JourneyEntry) -> Value {
    json!({
        "booking": booking_json(&entry.booking.clone().unwrap_or_default()),
        "tour_name": entry.tour_name,
        "template_name": entry.template_name,
        "tour_date": entry.tour_date,
        "time_slot": entry.time_slot,
        "operator_company": entry.operator_company,
    })
}

fn tour_json(t: &Tour) -> Value {
    json!({
        "id": t.id,
        "tour_name": t.tour_name,
        "tour_date": t.tour_date,
        "time_slot": t.time_slot,
        "available_spots": t.available_spots,
        "max_capacity": t.max_capacity,
        "adult_price_cents": t.adult_price_cents,
        "child_price_cents": t.child_price_cents,
        "currency_code": t.currency_code,
        "status": t.status,
        "operator_company": t.operator_company,
        "template_name": t.template_name,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cents_print_with_two_decimals_and_the_currency() {
        assert_eq!(money(4999, "EUR"), "49.99 EUR");
        assert_eq!(money(5, "USD"), "0.05 USD");
        assert_eq!(money(-120, "EUR"), "-1.20 EUR");
    }

    #[test]
    fn a_uuid_is_an_id_and_anything_else_a_reference() {
        let id = "7f0c1f8e-7a3c-4a8e-9a51-5d0f0f4b2a11";
        assert!(matches!(get_request(id).key, Some(Key::BookingId(k)) if k == id));
        assert!(matches!(get_request(" BK-7KQ2M9XP ").key, Some(Key::BookingReference(k)) if k == "BK-7KQ2M9XP"));
    }
}
