//! LookupJourney: a customer's bookings by email and/or WhatsApp number,
//! newest first, with tour, template and operator data.
//!
//! Reads the enhanced view `active_tours_with_operators`. When the view is
//! missing (or changed shape), or a template instance comes back without its
//! template name, the same page is read again with base-table joins and the
//! answer says so (the runbook's scenario 3). Unlike the runbook's fallback,
//! the filter is two bound parameters, never a string built from input.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use tracing::Instrument;
use uuid::Uuid;

use crate::db::error::DbErrorKind;
use crate::{
    booking::{
        error::BookingError,
        store::{BookingRow, booking_columns, db_span},
        types::{Booking, Contact, FieldProblem, JourneyEntry, JourneyPage},
    },
    page::{JOURNEY, PageKey, PageKeys},
};

#[derive(Debug, Clone, Default)]
pub struct JourneyQuery {
    pub customer_email: String,
    pub customer_whatsapp: String,
    pub page_size: i32,
    pub page_token: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct Cursor {
    /// created_at of the last entry, in microseconds since the epoch.
    c: i64,
    i: Uuid,
}

/// The customer's bookings, one page (plus one row to know whether more follow).
macro_rules! mine {
    () => {
        concat!(
            "with mine as (
                select ",
            booking_columns!(),
            " from bookings
                where (lower(customer_email) = lower($1) or customer_whatsapp = $2)
                  and ($3::timestamptz is null or (created_at, id) < ($3::timestamptz, $4::uuid))
                order by created_at desc, id desc
                limit $5
            ) "
        )
    };
}

const VIA_VIEW: &str = concat!(
    mine!(),
    "select mine.*, v.id as joined_tour_id, v.tour_name, v.template_name, v.tour_date, v.time_slot,
            v.company_name as operator_company, v.schedule_id as tour_schedule_id, v.parent_template_id
       from mine
       left join active_tours_with_operators v on v.id = mine.tour_id
      order by mine.created_at desc, mine.id desc"
);

const VIA_BASE_TABLES: &str = concat!(
    mine!(),
    "select mine.*, t.id as joined_tour_id, t.tour_name, tpl.tour_name as template_name, t.tour_date, t.time_slot,
            o.company_name as operator_company, t.origin_schedule_id as tour_schedule_id, t.parent_template_id
       from mine
       join tours t on t.id = mine.tour_id
       join operators o on o.id = t.operator_id
       left join tours tpl on tpl.id = t.parent_template_id
      order by mine.created_at desc, mine.id desc"
);

#[derive(Debug, sqlx::FromRow)]
struct JourneyRow {
    #[sqlx(flatten)]
    booking: BookingRow,
    joined_tour_id: Option<Uuid>,
    tour_name: Option<String>,
    template_name: Option<String>,
    tour_date: Option<NaiveDate>,
    time_slot: Option<String>,
    operator_company: Option<String>,
    tour_schedule_id: Option<Uuid>,
    parent_template_id: Option<Uuid>,
}

impl JourneyRow {
    /// The view left out the tour, or a template instance lost its template name.
    fn incomplete(&self) -> bool {
        self.joined_tour_id.is_none() || (self.parent_template_id.is_some() && self.template_name.is_none())
    }
}

struct Filter {
    email: Option<String>,
    whatsapp: Option<String>,
    after: Option<(DateTime<Utc>, Uuid)>,
    /// Rows fetched: the page size plus one.
    limit: i64,
}

fn parse(query: &JourneyQuery, key: &PageKey) -> Result<Filter, BookingError> {
    let mut problems: Vec<FieldProblem> = Vec::new();
    let contact =
        Contact::parse("customer_email", &query.customer_email, "customer_whatsapp", &query.customer_whatsapp)
            .map_err(|p| problems.extend(p))
            .ok();
    let size = JOURNEY.size(query.page_size).map_err(|p| problems.push(p.into())).ok();
    let cursor = JOURNEY.decode::<Cursor>(key, &query.page_token).map_err(|p| problems.push(p.into())).ok().flatten();
    let after = match cursor {
        Some(cursor) => match DateTime::from_timestamp_micros(cursor.c) {
            Some(at) => Some((at, cursor.i)),
            None => {
                problems.push(FieldProblem::new("page_token", "is not a token this list returned"));
                None
            }
        },
        None => None,
    };
    match (contact, size) {
        (Some(contact), Some(size)) if problems.is_empty() => Ok(Filter {
            email: contact.email().map(|e| e.as_str().to_owned()),
            whatsapp: contact.whatsapp().map(|w| w.as_str().to_owned()),
            after,
            limit: size + 1,
        }),
        _ => Err(BookingError::InvalidRequest(problems)),
    }
}

pub async fn lookup(pool: &PgPool, keys: &PageKeys, query: JourneyQuery) -> Result<JourneyPage, BookingError> {
    let key = keys.get().await.map_err(|e| BookingError::from_db("reading the page key", e))?;
    let filter = parse(&query, key)?;
    let (rows, used_fallback) =
        match fetch(pool, VIA_VIEW, "select journey via active_tours_with_operators", &filter).await {
            Ok(rows) if !rows.iter().any(JourneyRow::incomplete) => (rows, false),
            Ok(_) => {
                tracing::warn!("journey view returned incomplete template data, falling back to base tables");
                (fallback(pool, &filter).await?, true)
            }
            // undefined table / column: the view is gone or changed shape
            Err(error) if crate::db::error::classify(&error) == DbErrorKind::UndefinedObject => {
                tracing::warn!(%error, "journey view unusable, falling back to base tables");
                (fallback(pool, &filter).await?, true)
            }
            Err(error) => return Err(BookingError::from_db("looking up a journey", error)),
        };
    into_page(rows, filter.limit, used_fallback, key)
}

async fn fallback(pool: &PgPool, filter: &Filter) -> Result<Vec<JourneyRow>, BookingError> {
    fetch(pool, VIA_BASE_TABLES, "select journey via base tables", filter)
        .await
        .map_err(|e| BookingError::from_db("looking up a journey through base tables", e))
}

async fn fetch(
    pool: &PgPool,
    sql: &'static str,
    operation: &'static str,
    filter: &Filter,
) -> Result<Vec<JourneyRow>, sqlx::Error> {
    sqlx::query_as::<_, JourneyRow>(sql)
        .bind(filter.email.as_deref())
        .bind(filter.whatsapp.as_deref())
        .bind(filter.after.map(|(at, _)| at))
        .bind(filter.after.map(|(_, id)| id))
        .bind(filter.limit)
        .fetch_all(pool)
        .instrument(db_span(operation))
        .await
}

fn into_page(
    mut rows: Vec<JourneyRow>,
    limit: i64,
    used_fallback: bool,
    key: &PageKey,
) -> Result<JourneyPage, BookingError> {
    let more = rows.len() as i64 >= limit;
    if more {
        rows.truncate((limit - 1) as usize);
    }
    let mut entries = Vec::with_capacity(rows.len());
    for row in rows {
        let booking = Booking::try_from(row.booking)?;
        entries.push(JourneyEntry {
            tour_name: row.tour_name.unwrap_or_default(),
            template_name: row.template_name,
            tour_date: row.tour_date,
            time_slot: row.time_slot,
            operator_company: row.operator_company.unwrap_or_default(),
            schedule_id: row.tour_schedule_id,
            booking,
        });
    }
    let next_page_token = match entries.last() {
        Some(last) if more => {
            Some(JOURNEY.encode(key, &Cursor { c: last.booking.created_at.timestamp_micros(), i: last.booking.id.0 }))
        }
        _ => None,
    };
    Ok(JourneyPage { entries, next_page_token, used_fallback })
}
