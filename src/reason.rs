//! Why someone acted: the one rule for every reason bookingd stores (an
//! operator's reason in the audit trail, a flag change's, a cancellation's).
//! Trimmed, at most [`MAX_REASON_CHARS`] characters, printable (newline and
//! tab allowed, other control characters refused).

/// Longest reason kept, in characters (not bytes).
pub const MAX_REASON_CHARS: usize = 500;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReasonError {
    /// Actions that change something must say why: the reason goes into the
    /// audit trail, which is read during incidents.
    #[error("a reason is required for this action")]
    Required,
    #[error("the reason is too long ({length} characters, at most {max})")]
    TooLong { length: usize, max: usize },
    #[error("the reason must be printable text (no control characters other than newline and tab)")]
    NotPrintable,
}

impl ReasonError {
    /// The ErrorInfo reason a caller branches on.
    pub fn code(&self) -> &'static str {
        match self {
            ReasonError::Required => "REASON_REQUIRED",
            ReasonError::TooLong { .. } => "REASON_TOO_LONG",
            ReasonError::NotPrintable => "REASON_NOT_PRINTABLE",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reason(String);

impl Reason {
    /// A required reason.
    pub fn parse(raw: &str) -> Result<Self, ReasonError> {
        Self::parse_optional(raw)?.ok_or(ReasonError::Required)
    }

    /// A reason that may be left out (blank means none).
    pub fn parse_optional(raw: &str) -> Result<Option<Self>, ReasonError> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Ok(None);
        }
        let length = trimmed.chars().count();
        if length > MAX_REASON_CHARS {
            return Err(ReasonError::TooLong { length, max: MAX_REASON_CHARS });
        }
        if trimmed.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
            return Err(ReasonError::NotPrintable);
        }
        Ok(Some(Reason(trimmed.to_owned())))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reason_is_trimmed_and_required() {
        assert_eq!(Reason::parse("  nightly repair ").expect("valid").as_str(), "nightly repair");
        assert_eq!(Reason::parse(" \n\t "), Err(ReasonError::Required));
        assert_eq!(Reason::parse_optional("   "), Ok(None));
    }

    #[test]
    fn overlong_or_unprintable_reasons_are_refused() {
        assert_eq!(Reason::parse(&"x".repeat(501)), Err(ReasonError::TooLong { length: 501, max: 500 }));
        assert!(Reason::parse(&"é".repeat(MAX_REASON_CHARS)).is_ok(), "the limit counts characters, not bytes");
        assert!(matches!(Reason::parse(&"x".repeat(1 << 20)), Err(ReasonError::TooLong { .. })));
        assert_eq!(Reason::parse("nul\0byte"), Err(ReasonError::NotPrintable));
        assert!(Reason::parse("line one\nline two\tend").is_ok());
    }
}
