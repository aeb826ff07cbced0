-- Runbook scenario 1 detection. The schema's check constraint
-- tours_available_spots_non_negative refuses this; the check still looks,
-- because constraints can be dropped and restores can skip them.
with negative as (
    select id as tour_id, tour_name, status, available_spots, max_capacity
    from tours
    where available_spots < 0
)
select
    (select count(*) from negative) as violation_count,
    (select coalesce(min(available_spots), 0)::float8 from negative) as observed,
    '{}'::jsonb as facts,
    coalesce((select jsonb_agg(row_to_json(s)) from (
        select * from negative order by available_spots, tour_id limit $1
    ) s), '[]'::jsonb) as samples;
