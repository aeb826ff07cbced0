//! The flags bookingd knows. Only these can be evaluated and set: a typo in
//! `bookingctl flag set` must fail loudly, not create a flag nobody reads.

use super::USE_LEGACY_BOOKING_SERVICE;

/// One known flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlagDefinition {
    pub key: &'static str,
    /// Value when neither the environment nor the database says otherwise.
    pub default: bool,
    /// Environment variable that pins the flag, if any.
    pub env_var: &'static str,
    pub description: &'static str,
}

pub const KNOWN_FLAGS: &[FlagDefinition] = &[FlagDefinition {
    key: USE_LEGACY_BOOKING_SERVICE,
    // false: the atomic path (create_booking_atomic) books
    default: false,
    env_var: "USE_LEGACY_BOOKING_SERVICE",
    description: "book through the application-side legacy path instead of create_booking_atomic",
}];

/// The definition of `key`, if bookingd knows it.
pub fn definition(key: &str) -> Option<&'static FlagDefinition> {
    KNOWN_FLAGS.iter().find(|flag| flag.key == key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_booking_path_flag_is_known_and_defaults_to_the_atomic_path() {
        let flag = definition(USE_LEGACY_BOOKING_SERVICE).expect("known");
        assert!(!flag.default);
        assert_eq!(flag.env_var, "USE_LEGACY_BOOKING_SERVICE");
    }

    #[test]
    fn unknown_keys_have_no_definition() {
        assert!(definition("use_legacy_booking_servic").is_none());
        assert!(definition("").is_none());
    }

    #[test]
    fn registry_keys_match_the_schema_check() {
        // feature_flags.key check: '^[a-z][a-z0-9_]{0,63}$'
        for flag in KNOWN_FLAGS {
            let mut chars = flag.key.chars();
            assert!(chars.next().is_some_and(|c| c.is_ascii_lowercase()), "{}", flag.key);
            assert!(chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'), "{}", flag.key);
            assert!(flag.key.len() <= 64, "{}", flag.key);
        }
    }
}
