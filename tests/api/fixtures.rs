//! Arrangements shared by the test modules: operators, tours and bookings
//! made with direct SQL, request builders, counters for "nothing written",
//! error-detail readers, the audit trail, and the storm (many concurrent
//! CreateBooking calls from many connections, with optional interludes run
//! mid-storm).

use std::{
    future::Future,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use bookingd::proto::v1::{
    self, CancelBookingRequest, CreateBookingRequest, GetBookingRequest, booking_service_client::BookingServiceClient,
    get_booking_request::Key,
};
use sqlx::PgPool;
use tokio::sync::RwLock;
use tonic::{Code, Status, transport::Endpoint};
use tonic_types::StatusExt;
use uuid::Uuid;

use crate::helpers::{BearerToken, TEST_BOOKING_TOKEN, TestApp, wait_until};

/// A tour to create; `Default` is a plain dated, active, stand-alone tour.
#[derive(Debug, Clone)]
pub struct TourSpec {
    pub capacity: i32,
    pub adult_price_cents: i64,
    pub child_price_cents: i64,
    pub commission_rate: &'static str,
    pub status: &'static str,
    /// An instance of a template, produced by a schedule.
    pub from_template: bool,
    /// A template itself (not bookable).
    pub is_template: bool,
    pub days_ahead: i32,
    pub time_slot: &'static str,
}

impl Default for TourSpec {
    fn default() -> Self {
        TourSpec {
            capacity: 50,
            adult_price_cents: 4500,
            child_price_cents: 2250,
            commission_rate: "12.50",
            status: "active",
            from_template: false,
            is_template: false,
            days_ahead: 7,
            time_slot: "10:00",
        }
    }
}

/// What `create_tour` made.
#[derive(Debug, Clone, Copy)]
pub struct TourIds {
    pub tour_id: Uuid,
    pub template_id: Option<Uuid>,
    pub schedule_id: Option<Uuid>,
}

pub async fn create_operator(pool: &PgPool, company: &str) -> Uuid {
    sqlx::query_scalar("insert into operators (company_name, commission_rate) values ($1, 10) returning id")
        .bind(company)
        .fetch_one(pool)
        .await
        .expect("insert operator")
}

pub async fn create_tour(pool: &PgPool, spec: TourSpec) -> TourIds {
    let operator_id = create_operator(pool, &format!("Operator {}", Uuid::new_v4().simple())).await;
    create_tour_for(pool, operator_id, spec).await
}

pub async fn create_tour_for(pool: &PgPool, operator_id: Uuid, spec: TourSpec) -> TourIds {
    let insert_tour = "insert into tours (operator_id, is_template, parent_template_id, origin_schedule_id, tour_name,
                                          tour_date, time_slot, max_capacity, available_spots, adult_price_cents,
                                          child_price_cents, commission_rate, status)
                       values ($1, $2, $3, $4, $5, $6, $7, $8, $8, $9, $10, $11::numeric, $12)
                       returning id";
    let date = |days: i32| chrono::Utc::now().date_naive() + chrono::Duration::days(days.into());
    let (template_id, schedule_id) = if spec.from_template {
        let template_id: Uuid = sqlx::query_scalar(insert_tour)
            .bind(operator_id)
            .bind(true)
            .bind(None::<Uuid>)
            .bind(None::<Uuid>)
            .bind("Harbour Cruise (template)")
            .bind(None::<chrono::NaiveDate>)
            .bind(None::<&str>)
            .bind(spec.capacity)
            .bind(spec.adult_price_cents)
            .bind(spec.child_price_cents)
            .bind(spec.commission_rate)
            .bind("active")
            .fetch_one(pool)
            .await
            .expect("insert template");
        let schedule_id: Uuid = sqlx::query_scalar(
            "insert into schedules (template_id, operator_id, day_of_week, time_slot, capacity, valid_from)
             values ($1, $2, extract(dow from $3::date)::smallint, $4, $5, current_date) returning id",
        )
        .bind(template_id)
        .bind(operator_id)
        .bind(date(spec.days_ahead))
        .bind(spec.time_slot)
        .bind(spec.capacity)
        .fetch_one(pool)
        .await
        .expect("insert schedule");
        (Some(template_id), Some(schedule_id))
    } else {
        (None, None)
    };
    let tour_id: Uuid = sqlx::query_scalar(insert_tour)
        .bind(operator_id)
        .bind(spec.is_template)
        .bind(template_id)
        .bind(schedule_id)
        .bind(if spec.from_template { "Harbour Cruise" } else { "Lighthouse Walk" })
        .bind((!spec.is_template).then(|| date(spec.days_ahead)))
        .bind((!spec.is_template).then_some(spec.time_slot))
        .bind(spec.capacity)
        .bind(spec.adult_price_cents)
        .bind(spec.child_price_cents)
        .bind(spec.commission_rate)
        .bind(spec.status)
        .fetch_one(pool)
        .await
        .expect("insert tour");
    TourIds { tour_id, template_id, schedule_id }
}

/// An operator with a 10% commission, for tests that need one tour or few.
pub async fn insert_operator(pool: &PgPool) -> Uuid {
    create_operator(pool, "Test Tours").await
}

/// A dated tour with every seat free (2550/1275 cents, 12.5% commission).
pub async fn insert_tour(pool: &PgPool, operator_id: Uuid, capacity: i32, status: &'static str) -> Uuid {
    let spec = TourSpec { capacity, status, adult_price_cents: 2550, child_price_cents: 1275, ..TourSpec::default() };
    create_tour_for(pool, operator_id, spec).await.tour_id
}

/// A booking row written with SQL (not through the API), priced from its
/// tour with the atomic path's rounding, without touching availability (the
/// caller decides whether seats are taken).
pub async fn insert_booking_row(
    conn: &mut sqlx::PgConnection,
    tour_id: Uuid,
    status: &str,
    adults: i32,
    children: i32,
) -> Uuid {
    let key = Uuid::new_v4().simple().to_string();
    sqlx::query_scalar(
        "insert into bookings (booking_reference, request_id, request_fingerprint, tour_id, schedule_id,
                               operator_id, customer_name, customer_email, num_adults, num_children,
                               subtotal, commission_amount, total_amount, applied_commission_rate,
                               currency_code, booking_status, code_path, hold_expires_at, confirmed_at)
         select 'BK-' || upper(substr($2, 1, 12)), $2, 'test', t.id, t.origin_schedule_id, t.operator_id,
                'Test Guest', 'guest@example.com', $3, $4,
                p.subtotal, round(p.subtotal * t.commission_rate / 100)::bigint, p.subtotal, t.commission_rate,
                t.currency_code, $5, 'legacy',
                case when $5 = 'pending' then now() + interval '30 minutes' end,
                case when $5 = 'confirmed' then now() end
         from tours t
         cross join lateral (select $3 * t.adult_price_cents + $4 * t.child_price_cents as subtotal) p
         where t.id = $1
         returning id",
    )
    .bind(tour_id)
    .bind(key)
    .bind(adults)
    .bind(children)
    .bind(status)
    .fetch_one(conn)
    .await
    .expect("insert booking")
}

/// [`insert_booking_row`] for `seats` adults.
pub async fn insert_booking(conn: &mut sqlx::PgConnection, tour_id: Uuid, seats: i32, status: &str) -> Uuid {
    insert_booking_row(conn, tour_id, status, seats, 0).await
}

/// A live booking written with SQL, its seats taken from the tour in the
/// same transaction (no lock, no check: the caller arranges a consistent
/// state, or an inconsistent one on purpose).
pub async fn insert_booking_taking_seats(
    pool: &PgPool,
    tour_id: Uuid,
    status: &str,
    adults: i32,
    children: i32,
) -> Uuid {
    let mut tx = pool.begin().await.expect("begin");
    let id = insert_booking_row(&mut tx, tour_id, status, adults, children).await;
    take_seats(&mut tx, tour_id, adults + children).await;
    tx.commit().await.expect("commit");
    id
}

/// Books `seats` adults the way the legacy path does: one transaction that
/// locks the tour row, checks the seats, inserts the booking and decrements.
/// `None` when the tour has too few seats left.
pub async fn book_like_legacy(pool: &PgPool, tour_id: Uuid, seats: i32) -> Option<Uuid> {
    let mut tx = pool.begin().await.expect("begin");
    let available: i32 = sqlx::query_scalar("select available_spots from tours where id = $1 for update")
        .bind(tour_id)
        .fetch_one(&mut *tx)
        .await
        .expect("lock tour");
    if available < seats {
        return None;
    }
    let id = insert_booking(&mut tx, tour_id, seats, "confirmed").await;
    take_seats(&mut tx, tour_id, seats).await;
    tx.commit().await.expect("commit");
    Some(id)
}

async fn take_seats(conn: &mut sqlx::PgConnection, tour_id: Uuid, seats: i32) {
    sqlx::query("update tours set available_spots = available_spots - $2, updated_at = now() where id = $1")
        .bind(tour_id)
        .bind(seats)
        .execute(conn)
        .await
        .expect("take seats");
}

pub async fn status_of(pool: &PgPool, tour_id: Uuid) -> String {
    sqlx::query_scalar("select status from tours where id = $1").bind(tour_id).fetch_one(pool).await.expect("status")
}

/// The newest audit row of an action: (actor, details).
pub async fn last_audit(pool: &PgPool, action: &str) -> (String, serde_json::Value) {
    sqlx::query_as::<_, (String, sqlx::types::Json<serde_json::Value>)>(
        "select actor, details from audit_logs where action = $1 order by id desc limit 1",
    )
    .bind(action)
    .fetch_one(pool)
    .await
    .map(|(actor, details)| (actor, details.0))
    .unwrap_or_else(|e| panic!("no audit row for {action}: {e}"))
}

pub fn id_strings(values: &[Uuid]) -> Vec<String> {
    values.iter().map(Uuid::to_string).collect()
}

/// A valid one-adult request with a fresh idempotency key.
pub fn booking_request(tour_id: Uuid) -> CreateBookingRequest {
    CreateBookingRequest {
        request_id: format!("req-{}", Uuid::new_v4()),
        tour_id: tour_id.to_string(),
        num_adults: 1,
        num_children: 0,
        customer_name: "Ada Lovelace".into(),
        customer_email: "ada@example.com".into(),
        customer_whatsapp: String::new(),
        hold_seconds: None,
        user_id: None,
    }
}

pub async fn available_spots(pool: &PgPool, tour_id: Uuid) -> i32 {
    sqlx::query_scalar("select available_spots from tours where id = $1")
        .bind(tour_id)
        .fetch_one(pool)
        .await
        .expect("available spots")
}

/// Rows that any write would change: bookings, audit rows, seats of all tours.
#[derive(Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct WriteCounts {
    pub bookings: i64,
    pub audit_logs: i64,
    pub available_spots: i64,
    pub tours_updated: Option<chrono::DateTime<chrono::Utc>>,
}

pub async fn write_counts(pool: &PgPool) -> WriteCounts {
    sqlx::query_as(
        "select (select count(*) from bookings) as bookings,
                (select count(*) from audit_logs) as audit_logs,
                (select coalesce(sum(available_spots), 0)::bigint from tours) as available_spots,
                (select max(updated_at) from tours) as tours_updated",
    )
    .fetch_one(pool)
    .await
    .expect("write counts")
}

/// ErrorInfo reason of a refusal.
pub fn reason(status: &Status) -> String {
    status.get_error_details().error_info().map(|info| info.reason.clone()).unwrap_or_default()
}

pub fn error_metadata(status: &Status, key: &str) -> Option<String> {
    status.get_error_details().error_info().and_then(|info| info.metadata.get(key).cloned())
}

/// Fields named by BadRequest violations.
pub fn violated_fields(status: &Status) -> Vec<String> {
    status
        .get_error_details()
        .bad_request()
        .map(|bad| bad.field_violations.iter().map(|v| v.field.clone()).collect())
        .unwrap_or_default()
}

pub async fn create_ok(app: &TestApp, request: CreateBookingRequest) -> v1::Booking {
    app.booking().create_booking(request).await.expect("create booking").into_inner().booking.expect("booking")
}

pub async fn get_booking(app: &TestApp, id: &str) -> v1::Booking {
    app.booking()
        .get_booking(GetBookingRequest { key: Some(Key::BookingId(id.to_owned())) })
        .await
        .expect("get booking")
        .into_inner()
        .booking
        .expect("booking")
}

pub async fn cancel(app: &TestApp, id: &str) -> v1::CancelBookingResponse {
    app.booking()
        .cancel_booking(CancelBookingRequest { booking_id: id.to_owned(), reason: "test".into() })
        .await
        .expect("cancel booking")
        .into_inner()
}

/// `spots_restored` audit rows of one booking, by who released.
pub async fn releases_of(pool: &PgPool, booking_id: &str) -> Vec<String> {
    sqlx::query_scalar(
        "select details ->> 'released_by' from audit_logs
          where table_name = 'bookings' and action = 'spots_restored' and record_id = $1::uuid order by id",
    )
    .bind(booking_id)
    .fetch_all(pool)
    .await
    .expect("spots_restored rows")
}

pub async fn audit_count(pool: &PgPool, action: &str) -> i64 {
    sqlx::query_scalar("select count(*) from audit_logs where action = $1")
        .bind(action)
        .fetch_one(pool)
        .await
        .expect("audit count")
}

/// Waits until at least one `action` row is in audit_logs. The atomic path's
/// transitions are published (health) before their audit row is written, so
/// a test that saw the health change waits for the row before counting.
pub async fn wait_for_audit(pool: &PgPool, action: &str) {
    wait_until(&format!("an audit_logs row for {action}"), Duration::from_secs(10), || async {
        audit_count(pool, action).await >= 1
    })
    .await;
}

/// Something to do once `after_completed` storm requests have answered.
/// New requests wait while it runs; those in flight keep going, so the
/// action overlaps live traffic and the storm still has requests after it.
pub struct Interlude<'a> {
    pub after_completed: usize,
    pub action: Pin<Box<dyn Future<Output = ()> + Send + 'a>>,
}

impl<'a> Interlude<'a> {
    pub fn new(after_completed: usize, action: impl Future<Output = ()> + Send + 'a) -> Self {
        Interlude { after_completed, action: Box::pin(action) }
    }
}

#[derive(Debug, Default)]
pub struct StormOutcome {
    pub bookings: Vec<v1::Booking>,
    pub sold_out: Vec<Status>,
    pub other_errors: Vec<Status>,
}

impl StormOutcome {
    pub fn seats_sold(&self) -> i32 {
        self.bookings.iter().map(|b| b.num_adults + b.num_children).sum()
    }

    pub fn on_path(&self, path: v1::CodePath) -> usize {
        self.bookings.iter().filter(|b| b.code_path() == path).count()
    }
}

/// `requests` one-seat CreateBooking calls on `tour_id` from `connections`
/// separate HTTP/2 connections, all at once, with `interludes` run mid-storm.
pub async fn storm(
    app: &TestApp,
    tour_id: Uuid,
    requests: usize,
    connections: usize,
    interludes: Vec<Interlude<'_>>,
) -> StormOutcome {
    let next = AtomicUsize::new(0);
    let completed = Arc::new(AtomicUsize::new(0));
    let gate = RwLock::new(());
    let mut clients = Vec::with_capacity(connections);
    for _ in 0..connections {
        let channel = Endpoint::from_shared(app.addr.clone()).expect("endpoint").connect().await.expect("connect");
        clients.push(BookingServiceClient::with_interceptor(channel, BearerToken::new(TEST_BOOKING_TOKEN)));
    }

    let workers = clients.into_iter().map(|mut client| {
        let (next, completed, gate) = (&next, completed.clone(), &gate);
        async move {
            let mut answers = Vec::new();
            loop {
                let index = {
                    let _open = gate.read().await;
                    next.fetch_add(1, Ordering::SeqCst)
                };
                if index >= requests {
                    return answers;
                }
                let mut request = booking_request(tour_id);
                // alternate adults and children so both prices are exercised
                if index % 2 == 1 {
                    request.num_adults = 0;
                    request.num_children = 1;
                }
                request.customer_name = format!("Storm Guest {index}");
                answers.push(client.create_booking(request).await);
                completed.fetch_add(1, Ordering::SeqCst);
            }
        }
    });
    let issued = &next;
    let controller = async {
        for interlude in interludes {
            let target = interlude.after_completed;
            let seen = completed.clone();
            wait_until("storm progress before an interlude", Duration::from_secs(60), || {
                let seen = seen.clone();
                async move { seen.load(Ordering::SeqCst) >= target || issued.load(Ordering::SeqCst) >= requests }
            })
            .await;
            let _closed = gate.write().await;
            interlude.action.await;
        }
    };
    let (answers, ()) = tokio::join!(futures::future::join_all(workers), controller);

    let mut outcome = StormOutcome::default();
    for answer in answers.into_iter().flatten() {
        match answer {
            Ok(response) => outcome.bookings.push(response.into_inner().booking.expect("booking")),
            Err(status) if status.code() == Code::FailedPrecondition && reason(&status) == "SOLD_OUT" => {
                outcome.sold_out.push(status)
            }
            Err(status) => outcome.other_errors.push(status),
        }
    }
    outcome
}

/// Asserts the storm sold exactly `capacity` seats and refused the rest as
/// sold out, saying that no seat was left.
pub async fn assert_sold_exactly(app: &TestApp, tour_id: Uuid, capacity: i32, requests: usize, outcome: &StormOutcome) {
    assert!(outcome.other_errors.is_empty(), "unexpected errors: {:?}", outcome.other_errors);
    assert_eq!(outcome.seats_sold(), capacity, "seats sold");
    assert_eq!(outcome.sold_out.len(), requests - outcome.bookings.len(), "every other request is sold out");
    for refusal in &outcome.sold_out {
        assert_eq!(error_metadata(refusal, "seats_left").as_deref(), Some("0"), "{refusal:?}");
        assert!(refusal.message().contains("0 left"), "{}", refusal.message());
    }
    assert_eq!(available_spots(&app.pool, tour_id).await, 0);
    let stored: i64 = sqlx::query_scalar("select count(*) from bookings where tour_id = $1")
        .bind(tour_id)
        .fetch_one(&app.pool)
        .await
        .expect("count");
    assert_eq!(stored, outcome.bookings.len() as i64);
}

/// A transaction of the test's own holding `tour_id`'s row lock, as a
/// long-running writer would: every booking of the tour waits for it until
/// the transaction ends (commit, rollback or drop).
pub async fn lock_tour(pool: &PgPool, tour_id: Uuid) -> sqlx::Transaction<'static, sqlx::Postgres> {
    let mut tx = pool.begin().await.expect("begin the blocker");
    sqlx::query("select 1 from tours where id = $1 for update")
        .bind(tour_id)
        .execute(&mut *tx)
        .await
        .expect("lock the tour row");
    tx
}

/// Sessions of the test's database waiting for a lock (`pg_stat_activity`).
pub async fn sessions_waiting_on_locks(pool: &PgPool) -> i64 {
    sqlx::query_scalar(
        "select count(*) from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock'",
    )
    .fetch_one(pool)
    .await
    .expect("read pg_stat_activity")
}

/// Bookings stored under the idempotency key `request_id` (any principal).
pub async fn bookings_with_request_id(pool: &PgPool, request_id: &str) -> i64 {
    sqlx::query_scalar("select count(*) from bookings where request_id = $1")
        .bind(request_id)
        .fetch_one(pool)
        .await
        .expect("count bookings")
}
