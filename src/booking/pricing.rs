//! Prices come from the tour: `subtotal = adults × adult price + children ×
//! child price` (cents), `commission = ROUND(subtotal × rate / 100)` rounded
//! half away from zero exactly like PostgreSQL's numeric `round`, and
//! `total = subtotal`: the customer pays the subtotal, the commission is the
//! marketplace's share of it (not a surcharge).
//!
//! Both paths price in SQL from the locked tour row (`create_booking_atomic`,
//! and the legacy path's one statement, `sql/legacy_create.sql`); this is the
//! rule in Rust, with its rounding cases tested, and the differential test
//! holds the two paths equal.

use rust_decimal::{Decimal, RoundingStrategy, prelude::ToPrimitive};

use crate::booking::types::Seats;

/// What a tour charges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tariff {
    pub adult_price_cents: i64,
    pub child_price_cents: i64,
    /// Percent, e.g. 12.50.
    pub commission_rate: Decimal,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Price {
    pub subtotal_cents: i64,
    pub commission_amount_cents: i64,
    pub total_amount_cents: i64,
    pub applied_commission_rate: Decimal,
}

/// The amounts do not fit in cents of an i64 (absurd tour prices).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("price out of range")]
pub struct PriceOutOfRange;

pub fn price(seats: Seats, tariff: &Tariff) -> Result<Price, PriceOutOfRange> {
    let adults = i64::from(seats.adults()).checked_mul(tariff.adult_price_cents).ok_or(PriceOutOfRange)?;
    let children = i64::from(seats.children()).checked_mul(tariff.child_price_cents).ok_or(PriceOutOfRange)?;
    let subtotal_cents = adults.checked_add(children).ok_or(PriceOutOfRange)?;
    let commission_amount_cents = commission(subtotal_cents, tariff.commission_rate)?;
    Ok(Price {
        subtotal_cents,
        commission_amount_cents,
        total_amount_cents: subtotal_cents,
        applied_commission_rate: tariff.commission_rate,
    })
}

/// `ROUND(subtotal × rate / 100)`, half away from zero.
pub fn commission(subtotal_cents: i64, rate_percent: Decimal) -> Result<i64, PriceOutOfRange> {
    Decimal::from(subtotal_cents)
        .checked_mul(rate_percent)
        .and_then(|product| product.checked_div(Decimal::ONE_HUNDRED))
        .map(|exact| exact.round_dp_with_strategy(0, RoundingStrategy::MidpointAwayFromZero))
        .and_then(|rounded| rounded.to_i64())
        .ok_or(PriceOutOfRange)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(text: &str) -> Decimal {
        text.parse().expect("decimal literal")
    }

    #[test]
    fn commission_rounds_half_away_from_zero() {
        // 1236 × 12.5 % = 154.5 → 155, not banker's 154
        assert_eq!(commission(1236, rate("12.50")), Ok(155));
        assert_eq!(commission(1234, rate("12.50")), Ok(154));
        assert_eq!(commission(12345, rate("12.50")), Ok(1543));
        assert_eq!(commission(50, rate("1.00")), Ok(1)); // 0.5 → 1
        assert_eq!(commission(49, rate("1.00")), Ok(0));
        assert_eq!(commission(0, rate("15.00")), Ok(0));
        assert_eq!(commission(10_000, rate("100.00")), Ok(10_000));
    }

    #[test]
    fn the_total_is_the_subtotal_and_commission_is_a_share_of_it() {
        let seats = Seats::parse(2, 1, 20).expect("valid seats");
        let tariff = Tariff { adult_price_cents: 4500, child_price_cents: 2250, commission_rate: rate("12.50") };
        let price = price(seats, &tariff).expect("in range");
        assert_eq!(price.subtotal_cents, 11_250);
        assert_eq!(price.total_amount_cents, 11_250);
        assert_eq!(price.commission_amount_cents, 1406); // 1406.25
    }

    #[test]
    fn absurd_prices_are_refused_rather_than_wrapped() {
        let seats = Seats::parse(20, 0, 20).expect("valid seats");
        let tariff = Tariff { adult_price_cents: i64::MAX / 2, child_price_cents: 0, commission_rate: rate("10") };
        assert_eq!(price(seats, &tariff), Err(PriceOutOfRange));
    }
}
