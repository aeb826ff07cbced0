-- bookingd schema. Table and column names are the runbook's contract: its
-- monitor queries (data_integrity_monitors.sql) must run unchanged against it.
-- Money columns hold integer cents; rates are numeric percents.

create table operators (
    id               uuid primary key default gen_random_uuid(),
    company_name     text not null check (length(company_name) between 1 and 200),
    contact_email    text,
    commission_rate  numeric(5, 2) not null default 10 check (commission_rate between 0 and 100),
    created_at       timestamptz not null default now()
);

create table schedules (
    id            uuid primary key default gen_random_uuid(),
    -- the template tour this schedule produces instances of
    template_id   uuid not null,
    operator_id   uuid not null references operators (id),
    -- 0 = sunday .. 6 = saturday, as extract(dow ...)
    day_of_week   smallint not null check (day_of_week between 0 and 6),
    time_slot     text not null check (time_slot ~ '^[0-2][0-9]:[0-5][0-9]$'),
    capacity      integer not null check (capacity > 0),
    valid_from    date not null,
    valid_until   date,
    created_at    timestamptz not null default now(),
    check (valid_until is null or valid_until >= valid_from)
);

create table tours (
    id                  uuid primary key default gen_random_uuid(),
    operator_id         uuid not null references operators (id),
    -- a template is the blueprint of dated instances; only instances are bookable
    is_template         boolean not null default false,
    parent_template_id  uuid references tours (id),
    schedule_id         uuid references schedules (id),
    tour_name           text not null check (length(tour_name) between 1 and 200),
    tour_date           date,
    time_slot           text check (time_slot ~ '^[0-2][0-9]:[0-5][0-9]$'),
    max_capacity        integer not null check (max_capacity > 0),
    available_spots     integer not null,
    adult_price_cents   bigint not null check (adult_price_cents >= 0),
    child_price_cents   bigint not null check (child_price_cents >= 0),
    currency_code       text not null default 'EUR' check (currency_code ~ '^[A-Z]{3}$'),
    commission_rate     numeric(5, 2) not null check (commission_rate between 0 and 100),
    status              text not null default 'active'
                        check (status in ('active', 'maintenance', 'inactive')),
    created_at          timestamptz not null default now(),
    updated_at          timestamptz not null default now(),
    -- the seat invariant's hard floor and ceiling: whatever a bug does, the
    -- database refuses to oversell or to hand back more seats than exist
    constraint tours_available_spots_non_negative check (available_spots >= 0),
    constraint tours_available_spots_within_capacity check (available_spots <= max_capacity),
    constraint tours_template_has_no_parent check (not (is_template and parent_template_id is not null))
);

alter table schedules
    add constraint schedules_template_id_fkey foreign key (template_id) references tours (id);

create index tours_parent_template_id_idx on tours (parent_template_id) where parent_template_id is not null;
create index tours_status_idx on tours (status);
create index tours_tour_date_idx on tours (tour_date);

create table bookings (
    id                       uuid primary key default gen_random_uuid(),
    booking_reference        text not null,
    -- idempotency key of the CreateBooking that produced this row, stored in
    -- the same transaction as the booking itself
    request_id               text not null,
    -- sha-256 of the request's canonical form: a reused key with a different
    -- request is refused rather than silently answered with the old booking
    request_fingerprint      text not null,
    tour_id                  uuid not null references tours (id),
    schedule_id              uuid references schedules (id),
    operator_id              uuid not null references operators (id),
    user_id                  uuid,
    customer_name            text not null check (length(customer_name) between 1 and 200),
    customer_email           text check (length(customer_email) <= 254),
    customer_whatsapp        text check (customer_whatsapp ~ '^\+[1-9][0-9]{6,14}$'),
    num_adults               integer not null check (num_adults >= 0),
    num_children             integer not null check (num_children >= 0),
    subtotal                 bigint not null check (subtotal >= 0),
    commission_amount        bigint not null check (commission_amount >= 0),
    total_amount             bigint not null check (total_amount >= 0),
    applied_commission_rate  numeric(5, 2) not null check (applied_commission_rate between 0 and 100),
    currency_code            text not null default 'EUR',
    booking_status           text not null default 'pending'
                             check (booking_status in ('pending', 'confirmed', 'cancelled', 'expired')),
    code_path                text not null check (code_path in ('atomic', 'legacy')),
    hold_expires_at          timestamptz,
    confirmed_at             timestamptz,
    cancelled_at             timestamptz,
    cancellation_reason      text,
    -- set exactly once when this booking's seats go back to the tour, by
    -- whichever mechanism ran first (trigger or application); the other one
    -- sees it and restores nothing
    seats_released_at        timestamptz,
    created_at               timestamptz not null default now(),
    updated_at               timestamptz not null default now(),
    constraint bookings_booking_reference_key unique (booking_reference),
    constraint bookings_request_id_key unique (request_id),
    constraint bookings_has_contact check (customer_email is not null or customer_whatsapp is not null),
    constraint bookings_seats_positive check (num_adults + num_children >= 1),
    constraint bookings_pending_has_hold check (booking_status <> 'pending' or hold_expires_at is not null)
);

-- availability consistency and repair sum seats of live bookings per tour
create index bookings_live_seats_idx on bookings (tour_id) include (num_adults, num_children)
    where booking_status in ('pending', 'confirmed');
create index bookings_created_at_idx on bookings (created_at);
create index bookings_customer_email_idx on bookings (lower(customer_email), created_at desc)
    where customer_email is not null;
create index bookings_customer_whatsapp_idx on bookings (customer_whatsapp, created_at desc)
    where customer_whatsapp is not null;
-- the hold sweeper's work list
create index bookings_pending_hold_idx on bookings (hold_expires_at) where booking_status = 'pending';

create table audit_logs (
    id          bigserial primary key,
    table_name  text not null,
    record_id   uuid,
    action      text not null,
    -- never personal data: ids, counts, reasons, code paths
    details     jsonb not null default '{}'::jsonb,
    actor       text not null default 'system',
    created_at  timestamptz not null default now()
);

create index audit_logs_table_action_created_idx on audit_logs (table_name, action, created_at);

create table incident_log (
    id         bigserial primary key,
    type       text not null,
    details    jsonb not null default '{}'::jsonb,
    timestamp  timestamptz not null default now()
);

create table feature_flags (
    key         text primary key check (key ~ '^[a-z][a-z0-9_]{0,63}$'),
    enabled     boolean not null,
    updated_at  timestamptz not null default now(),
    updated_by  text not null default 'system'
);

create table feature_flag_changes (
    id          bigserial primary key,
    flag_key    text not null,
    old_value   boolean,
    new_value   boolean not null,
    changed_by  text not null,
    reason      text not null,
    changed_at  timestamptz not null default now()
);

create index feature_flag_changes_key_idx on feature_flag_changes (flag_key, id desc);

-- every process sharing the database hears a flip at once; the flag cache's
-- TTL is only the backstop for a missed notification
create function notify_feature_flag_change() returns trigger
language plpgsql as $$
begin
    perform pg_notify('bookingd_feature_flags', new.key);
    return new;
end;
$$;

create trigger feature_flags_notify
    after insert or update on feature_flags
    for each row execute function notify_feature_flag_change();

-- tours taken out of service by PauseBookings, with the status each had, so
-- ResumeBookings puts back exactly what it took and nothing else
create table tour_pauses (
    pause_id      uuid not null,
    tour_id       uuid not null references tours (id),
    prior_status  text not null,
    paused_by     text not null,
    reason        text not null,
    paused_at     timestamptz not null default now(),
    resumed_at    timestamptz,
    primary key (pause_id, tour_id)
);

create unique index tour_pauses_one_open_per_tour on tour_pauses (tour_id) where resumed_at is null;

-- The journey's enhanced view. Despite its (runbook) name it covers every
-- dated tour, not only active ones: a customer's booking on a tour that went
-- into maintenance must still show its template data.
create view active_tours_with_operators as
select
    t.id,
    t.tour_name,
    t.tour_date,
    t.time_slot,
    t.status,
    t.max_capacity,
    t.available_spots,
    t.adult_price_cents,
    t.child_price_cents,
    t.currency_code,
    t.commission_rate,
    t.operator_id,
    o.company_name,
    t.parent_template_id,
    tpl.tour_name as template_name,
    t.schedule_id
from tours t
join operators o on o.id = t.operator_id
left join tours tpl on tpl.id = t.parent_template_id
where not t.is_template;
