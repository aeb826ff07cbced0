//! Booking references: `BK-` and 8 characters that are easy to read aloud.
//! The alphabet leaves out 0/O, 1/I/L and U; 30⁸ ≈ 6.6 × 10¹¹ references.
//! Both code paths use this generator; a collision (unique violation on
//! `bookings_booking_reference_key`) is retried with a fresh reference.

use rand::Rng;

pub const PREFIX: &str = "BK-";
pub const ALPHABET: &[u8; 30] = b"ABCDEFGHJKMNPQRSTVWXYZ23456789";
pub const LENGTH: usize = 8;

/// How many fresh references one creation tries before giving up.
pub const ATTEMPTS: usize = 5;

pub fn generate() -> String {
    let mut rng = rand::rng();
    let mut reference = String::with_capacity(PREFIX.len() + LENGTH);
    reference.push_str(PREFIX);
    for _ in 0..LENGTH {
        reference.push(char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]));
    }
    reference
}

/// Whether `text` has the generated shape (older references, like the demo
/// seed's, may not).
pub fn is_generated_shape(text: &str) -> bool {
    text.strip_prefix(PREFIX).is_some_and(|rest| rest.len() == LENGTH && rest.bytes().all(|b| ALPHABET.contains(&b)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_avoid_ambiguous_characters() {
        for _ in 0..1000 {
            let reference = generate();
            assert!(is_generated_shape(&reference), "{reference}");
            assert!(!reference[PREFIX.len()..].contains(['0', 'O', '1', 'I', 'L', 'U']), "{reference}");
        }
    }

    #[test]
    fn the_shape_check_refuses_other_text() {
        assert!(!is_generated_shape("BK-DEMO1"));
        assert!(!is_generated_shape("BK-ABCDEFGH1"));
        assert!(!is_generated_shape("XX-ABCDEFGH"));
        assert!(is_generated_shape("BK-ABCDEFGH"));
    }
}
