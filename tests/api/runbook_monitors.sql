-- Copied unchanged from ../shared/spec/runbook.md (data_integrity_monitors.sql).
-- Statements are separated by marker lines (two dashes, a space, two at-signs).
-- 1. Availability Consistency Check
WITH booking_spots AS (
  SELECT
    tour_id,
    SUM(num_adults + num_children) as booked_spots
  FROM bookings
  WHERE booking_status IN ('pending', 'confirmed')
  GROUP BY tour_id
),
availability_check AS (
  SELECT
    t.id,
    t.tour_name,
    t.max_capacity,
    t.available_spots,
    COALESCE(bs.booked_spots, 0) as actual_booked,
    t.max_capacity - t.available_spots as recorded_booked,
    COALESCE(bs.booked_spots, 0) - (t.max_capacity - t.available_spots) as discrepancy
  FROM tours t
  LEFT JOIN booking_spots bs ON t.id = bs.tour_id
  WHERE t.status = 'active'
)
SELECT * FROM availability_check
WHERE discrepancy != 0
ORDER BY ABS(discrepancy) DESC;
-- @@
-- 3. Booking Reference Uniqueness
SELECT booking_reference, COUNT(*)
FROM bookings
GROUP BY booking_reference
HAVING COUNT(*) > 1;
-- @@
-- 4. Commission Calculation Accuracy
SELECT
  id,
  subtotal,
  commission_amount,
  total_amount,
  applied_commission_rate,
  ROUND(subtotal * applied_commission_rate / 100) as calculated_commission,
  ABS(commission_amount - ROUND(subtotal * applied_commission_rate / 100)) as commission_error
FROM bookings
WHERE created_at > NOW() - INTERVAL '1 hour'
AND ABS(commission_amount - ROUND(subtotal * applied_commission_rate / 100)) > 1;
-- @@
-- Scenario 1: Negative Available Spots (detection)
SELECT id, tour_name, available_spots, max_capacity
FROM tours
WHERE available_spots < 0;
