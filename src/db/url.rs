//! PostgreSQL URLs, parsed with the `url` crate: replacing the database,
//! taking the password out for a command line.

use url::Url;

/// Replaces the database of a postgres URL, keeping user, host and query.
/// Text that is no URL is returned unchanged (the caller's connect reports it).
pub fn with_database(url: &str, database: &str) -> String {
    let Ok(mut parsed) = Url::parse(url) else { return url.to_owned() };
    parsed.set_path(&format!("/{database}"));
    parsed.into()
}

/// `postgres://user:secret@host/db` → (`postgres://user@host/db`, `secret`),
/// the password percent-decoded.
pub fn split_password(url: &str) -> (String, Option<String>) {
    let Ok(mut parsed) = Url::parse(url) else { return (url.to_owned(), None) };
    let Some(password) =
        parsed.password().map(|p| percent_encoding::percent_decode_str(p).decode_utf8_lossy().into_owned())
    else {
        return (url.to_owned(), None);
    };
    if parsed.set_password(None).is_err() {
        return (url.to_owned(), None);
    }
    (parsed.into(), Some(password))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_leaves_the_url_and_is_decoded() {
        let (url, password) = split_password("postgres://app:s%40cr%3At@db.example:5432/bookings?sslmode=require");
        assert_eq!(url, "postgres://app@db.example:5432/bookings?sslmode=require");
        assert_eq!(password.as_deref(), Some("s@cr:t"));

        let (url, password) = split_password("postgres://postgres@127.0.0.1:5432/postgres");
        assert_eq!(url, "postgres://postgres@127.0.0.1:5432/postgres");
        assert_eq!(password, None);
    }

    #[test]
    fn the_database_of_a_url_is_replaced() {
        assert_eq!(with_database("postgres://u@h:1/a?x=y", "b"), "postgres://u@h:1/b?x=y");
        assert_eq!(with_database("postgres://u@h:1", "b"), "postgres://u@h:1/b");
        assert_eq!(with_database("postgres://u:p@h:1/a/?x=y#f", "b"), "postgres://u:p@h:1/b?x=y#f");
    }
}
