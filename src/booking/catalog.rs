//! ListTours: the dated, bookable-looking tours a booking page shows, with
//! seats and prices. Reads base tables (not the journey view), so it keeps
//! working while the view is missing. Inactive tours are left out; tours in
//! maintenance are listed with their status so a page can say why.

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use tracing::Instrument;
use uuid::Uuid;

use crate::{
    booking::{
        error::BookingError,
        store::db_span,
        types::{FieldProblem, TourId, TourListing, TourPage},
    },
    page::{self, PageKeys},
};

#[derive(Debug, Clone, Default)]
pub struct TourQuery {
    /// Inclusive ISO dates; empty means unbounded.
    pub from_date: String,
    pub to_date: String,
    pub template_id: String,
    /// Only active tours with at least one seat left.
    pub only_available: bool,
    pub page_size: i32,
    pub page_token: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct Cursor {
    d: NaiveDate,
    s: String,
    i: Uuid,
}

const LIST: &str = "
    select t.id, t.tour_name, t.parent_template_id as template_id, tpl.tour_name as template_name,
           t.origin_schedule_id as schedule_id, t.tour_date, t.time_slot, t.max_capacity, t.available_spots,
           t.adult_price_cents, t.child_price_cents, t.currency_code, t.status, t.operator_id,
           o.company_name as operator_company, t.commission_rate
      from tours t
      join operators o on o.id = t.operator_id
      left join tours tpl on tpl.id = t.parent_template_id
     where not t.is_template
       and t.tour_date is not null
       and t.status <> 'inactive'
       and ($1::date is null or t.tour_date >= $1)
       and ($2::date is null or t.tour_date <= $2)
       and ($3::uuid is null or t.parent_template_id = $3)
       and (not $4 or (t.status = 'active' and t.available_spots > 0))
       and ($5::date is null or (t.tour_date, coalesce(t.time_slot, ''), t.id) > ($5::date, $6::text, $7::uuid))
     order by t.tour_date, coalesce(t.time_slot, ''), t.id
     limit $8";

#[derive(Debug, sqlx::FromRow)]
struct TourRow {
    id: Uuid,
    tour_name: String,
    template_id: Option<Uuid>,
    template_name: Option<String>,
    schedule_id: Option<Uuid>,
    tour_date: NaiveDate,
    time_slot: Option<String>,
    max_capacity: i32,
    available_spots: i32,
    adult_price_cents: i64,
    child_price_cents: i64,
    currency_code: String,
    status: String,
    operator_id: Uuid,
    operator_company: String,
    commission_rate: Decimal,
}

impl From<TourRow> for TourListing {
    fn from(row: TourRow) -> Self {
        TourListing {
            id: TourId(row.id),
            tour_name: row.tour_name,
            template_id: row.template_id,
            template_name: row.template_name,
            schedule_id: row.schedule_id,
            tour_date: row.tour_date,
            time_slot: row.time_slot,
            max_capacity: row.max_capacity,
            available_spots: row.available_spots,
            adult_price_cents: row.adult_price_cents,
            child_price_cents: row.child_price_cents,
            currency_code: row.currency_code,
            status: row.status,
            operator_id: row.operator_id,
            operator_company: row.operator_company,
            commission_rate: row.commission_rate,
        }
    }
}

fn parse_date(field: &'static str, raw: &str) -> Result<Option<NaiveDate>, FieldProblem> {
    if raw.is_empty() {
        return Ok(None);
    }
    if raw.len() != 10 {
        return Err(FieldProblem::new(field, "must be an ISO date like 2026-11-26"));
    }
    NaiveDate::parse_from_str(raw, "%Y-%m-%d")
        .map(Some)
        .map_err(|_| FieldProblem::new(field, "must be an ISO date like 2026-11-26"))
}

pub async fn list(pool: &PgPool, keys: &PageKeys, query: TourQuery) -> Result<TourPage, BookingError> {
    let key = keys.get().await.map_err(|e| BookingError::from_db("reading the page key", e))?;
    let mut problems = Vec::new();
    let from = parse_date("from_date", &query.from_date).map_err(|p| problems.push(p)).ok().flatten();
    let to = parse_date("to_date", &query.to_date).map_err(|p| problems.push(p)).ok().flatten();
    let template_id = match query.template_id.as_str() {
        "" => None,
        raw => TourId::parse("template_id", raw).map_err(|p| problems.push(p)).ok().map(|id| id.0),
    };
    let size =
        page::TOURS.size(query.page_size).map_err(|p| problems.push(p.into())).unwrap_or(page::TOURS.default_size);
    let cursor =
        page::TOURS.decode::<Cursor>(key, &query.page_token).map_err(|p| problems.push(p.into())).ok().flatten();
    if let (Some(from), Some(to)) = (from, to)
        && from > to
    {
        problems.push(FieldProblem::new("to_date", "must not be before from_date"));
    }
    if !problems.is_empty() {
        return Err(BookingError::InvalidRequest(problems));
    }

    let rows = sqlx::query_as::<_, TourRow>(LIST)
        .bind(from)
        .bind(to)
        .bind(template_id)
        .bind(query.only_available)
        .bind(cursor.as_ref().map(|c| c.d))
        .bind(cursor.as_ref().map(|c| c.s.as_str()))
        .bind(cursor.as_ref().map(|c| c.i))
        .bind(size + 1)
        .fetch_all(pool)
        .instrument(db_span("select tours list"))
        .await
        .map_err(|e| BookingError::from_db("listing tours", e))?;

    let more = rows.len() as i64 > size;
    let tours: Vec<TourListing> = rows.into_iter().take(size as usize).map(TourListing::from).collect();
    let next_page_token =
        match tours.last() {
            Some(last) if more => Some(page::TOURS.encode(
                key,
                &Cursor { d: last.tour_date, s: last.time_slot.clone().unwrap_or_default(), i: last.id.0 },
            )),
            _ => None,
        };
    Ok(TourPage { tours, next_page_token })
}
