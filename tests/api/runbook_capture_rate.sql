-- The runbook's 2. Schedule ID Population Check, with ONE change: the
-- runbook's bare COUNT(schedule_id) is ambiguous against this schema (tours
-- has a schedule_id too: SQLSTATE 42702), so it is qualified as
-- b.schedule_id, which is what the runbook means (the booking's capture).
-- (It divides by zero on an empty window; the helper runs it only when the
-- window has template bookings.)
SELECT
  COUNT(*) as total_template_bookings,
  COUNT(b.schedule_id) as bookings_with_schedule_id,
  ROUND(COUNT(b.schedule_id) * 100.0 / COUNT(*), 2) as capture_rate_percent
FROM bookings b
JOIN tours t ON b.tour_id = t.id
WHERE t.parent_template_id IS NOT NULL
AND b.created_at > NOW() - INTERVAL '24 hours';
