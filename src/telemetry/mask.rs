//! Masking of personal data in telemetry output: email addresses and
//! international phone numbers (`+` and 7–15 digits, the E.164 form WhatsApp
//! numbers take).
//!
//! A safety net, not the policy: code must not log or record personal fields
//! at all. Hand-rolled instead of `regex` because the patterns are simple, it
//! runs on every log line, and a byte scan without a match allocates nothing.
//! Numbers without a leading `+` are not masked: they cannot be told apart
//! from ids, counts and timestamps.

use std::borrow::Cow;

pub const EMAIL_MASK: &str = "[email]";
pub const PHONE_MASK: &str = "[phone]";

/// `text` with every email address and `+`-prefixed phone number replaced.
/// Borrows when there is nothing to mask.
pub fn mask_personal_data(text: &str) -> Cow<'_, str> {
    let bytes = text.as_bytes();
    // fast path: both patterns need one of these bytes
    if !bytes.iter().any(|&b| b == b'@' || b == b'+') {
        return Cow::Borrowed(text);
    }
    let mut out: Option<String> = None;
    // `copied` = how far `text` has been copied (or skipped) into `out`
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        let found = match bytes[i] {
            b'@' => email_around(bytes, i).filter(|(start, _)| *start >= copied).map(|(s, e)| (s, e, EMAIL_MASK)),
            b'+' => phone_from(bytes, i).map(|end| (i, end, PHONE_MASK)),
            _ => None,
        };
        match found {
            Some((start, end, mask)) => {
                let out = out.get_or_insert_with(|| String::with_capacity(text.len()));
                out.push_str(&text[copied..start]);
                out.push_str(mask);
                copied = end;
                i = end;
            }
            None => i += 1,
        }
    }
    match out {
        None => Cow::Borrowed(text),
        Some(mut out) => {
            out.push_str(&text[copied..]);
            Cow::Owned(out)
        }
    }
}

fn is_local_part(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'%' | b'+' | b'-' | b'\'')
}

fn is_domain(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-')
}

/// The byte range of an email address whose `@` is at `at`.
fn email_around(bytes: &[u8], at: usize) -> Option<(usize, usize)> {
    let mut start = at;
    while start > 0 && is_local_part(bytes[start - 1]) {
        start -= 1;
    }
    let mut end = at + 1;
    while end < bytes.len() && is_domain(bytes[end]) {
        end += 1;
    }
    // a trailing dot ends the sentence, not the domain
    while end > at + 1 && bytes[end - 1] == b'.' {
        end -= 1;
    }
    let domain = &bytes[at + 1..end];
    let last_dot = domain.iter().rposition(|&b| b == b'.')?;
    let top_level = &domain[last_dot + 1..];
    let valid = start < at
        && domain.first().is_some_and(|b| b.is_ascii_alphanumeric())
        && top_level.len() >= 2
        && top_level.iter().all(|b| b.is_ascii_alphabetic());
    valid.then_some((start, end))
}

/// The end of a phone number starting with the `+` at `plus`: a digit right
/// after it, then digits and the usual separators, 7 to 15 digits in all.
fn phone_from(bytes: &[u8], plus: usize) -> Option<usize> {
    // `a+1234567` is arithmetic or an encoding, not a phone number
    if plus > 0 && bytes[plus - 1].is_ascii_alphanumeric() {
        return None;
    }
    if !bytes.get(plus + 1).is_some_and(u8::is_ascii_digit) {
        return None;
    }
    let mut digits = 0;
    let mut end = plus + 1;
    let mut last_digit_end = end;
    while end < bytes.len() {
        match bytes[end] {
            b'0'..=b'9' => {
                digits += 1;
                end += 1;
                last_digit_end = end;
            }
            // a short run of separators with a digit after it: "+1 (415) 555-0123"
            b if is_phone_separator(b) => {
                let run = bytes[end..].iter().take_while(|b| is_phone_separator(**b)).count();
                if run > 2 || !bytes.get(end + run).is_some_and(u8::is_ascii_digit) {
                    break;
                }
                end += run;
            }
            _ => break,
        }
    }
    (7..=15).contains(&digits).then_some(last_digit_end)
}

fn is_phone_separator(b: u8) -> bool {
    matches!(b, b' ' | b'-' | b'.' | b'(' | b')')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_masked_wherever_they_appear() {
        assert_eq!(mask_personal_data("customer ana.lopez+tours@example.co.uk booked"), "customer [email] booked");
        assert_eq!(mask_personal_data(r#"{"email":"x@y.io"}"#), r#"{"email":"[email]"}"#);
        assert_eq!(mask_personal_data("mail a@b.com."), "mail [email].");
        assert_eq!(mask_personal_data("a@b.com,c@d.org"), "[email],[email]");
    }

    #[test]
    fn international_phone_numbers_are_masked_with_their_separators() {
        assert_eq!(mask_personal_data("whatsapp=+34 600 123 456 ok"), "whatsapp=[phone] ok");
        assert_eq!(mask_personal_data("\"+14155550123\""), "\"[phone]\"");
        assert_eq!(mask_personal_data("call +1 (415) 555-0123."), "call [phone].");
        assert_eq!(mask_personal_data("whatsapp:+447700900123"), "whatsapp:[phone]");
    }

    #[test]
    fn text_without_personal_data_is_left_alone() {
        for text in [
            "seats=3 +2 more",
            "x+1234567",
            "user@localhost",
            "trace_id=4bf92f3577b34da6a3ce929d0e0e4736 span_id=00f067aa0ba902b7",
            "2026-11-26T10:00:00.123456Z @ +5s",
            "@example.com",
            "rate=+12%",
        ] {
            assert!(matches!(mask_personal_data(text), Cow::Borrowed(_)), "{text}");
        }
    }

    #[test]
    fn non_ascii_text_around_a_match_survives() {
        assert_eq!(mask_personal_data("réservation für ana@example.es ✓"), "réservation für [email] ✓");
    }
}
