-- The runbook's schedule-id capture monitor joins bookings to tours and
-- counts a bare `schedule_id`: with a column of that name on both tables it
-- fails as ambiguous (42702). The monitor is the contract, so the tour's link
-- to the schedule that produced it gets a name of its own. Views follow the
-- rename and keep exposing it as `schedule_id`.
alter table tours rename column schedule_id to origin_schedule_id;
