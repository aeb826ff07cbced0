//! Bearer tokens: how they are stored (sha-256, hex), compared (by digest, in
//! constant time) and, for the embedded default, generated into 0600 files
//! that bookingctl on the same machine reads and nobody else can.
//!
//! An unsalted sha-256 is enough here because a token is at least 32
//! characters of a secret (the generated ones are 32 random bytes): nobody
//! guesses it from its hash, and a slow password hash would cost every call.

use std::{
    fs,
    io::{self, Write},
    os::unix::fs::{OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
};

use rand::RngCore;
use sha2::{Digest, Sha256};

/// Shortest token accepted anywhere a token is configured.
pub const MIN_TOKEN_CHARS: usize = 32;

/// The embedded default's operator token (the name bookingctl has always looked for).
pub const OPERATOR_TOKEN_FILE: &str = "admin-token";
/// The embedded default's booking-client token.
pub const BOOKING_CLIENT_TOKEN_FILE: &str = "booking-client-token";

pub type TokenDigest = [u8; 32];

pub fn digest(token: &str) -> TokenDigest {
    Sha256::digest(token.as_bytes()).into()
}

/// The hex form configuration files hold.
pub fn digest_hex(token: &str) -> String {
    hex::encode(digest(token))
}

pub fn parse_digest_hex(text: &str) -> Option<TokenDigest> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut out).ok()?;
    Some(out)
}

pub fn constant_time_eq(a: &TokenDigest, b: &TokenDigest) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// 32 random bytes, hex: 64 characters.
pub fn generate() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// Refuses a token shorter than [`MIN_TOKEN_CHARS`] (said with its source, never its text).
pub fn check_length(token: &str, source: &str) -> Result<(), String> {
    let length = token.chars().count();
    if length < MIN_TOKEN_CHARS {
        return Err(format!("the token in {source} has {length} characters; at least {MIN_TOKEN_CHARS} are required"));
    }
    Ok(())
}

/// Refuses a file that others on the machine can read (a token others can
/// read is a token others know) or write (and so replace).
pub fn check_private(path: &Path) -> Result<(), String> {
    let mode = fs::metadata(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?.permissions().mode();
    if mode & 0o006 != 0 {
        return Err(format!(
            "{} is readable or writable by every user (mode {:o}); chmod o-rwx it (e.g. 0600)",
            path.display(),
            mode & 0o777
        ));
    }
    Ok(())
}

/// Returns `dir/name`, creating it (0600) with a fresh token when it does not
/// exist. `created` tells whether it was made now.
pub fn ensure_token_file(dir: &Path, name: &str) -> io::Result<(PathBuf, bool)> {
    let path = dir.join(name);
    fs::create_dir_all(dir)?;
    let mut file = match fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path) {
        Ok(file) => file,
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists => return Ok((path, false)),
        Err(error) => return Err(error),
    };
    writeln!(file, "{}", generate())?;
    file.sync_all()?;
    Ok((path, true))
}

/// First non-empty line of a token file.
pub fn read_token_file(path: &Path) -> io::Result<String> {
    let text = fs::read_to_string(path)?;
    first_line(&text)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, format!("{} holds no token", path.display())))
}

pub(crate) fn first_line(text: &str) -> Option<String> {
    text.lines().map(str::trim).find(|line| !line.is_empty()).map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_generated_once_private_and_then_reused() {
        let dir = std::env::temp_dir().join(format!("bookingd-token-test-{}", uuid::Uuid::new_v4()));

        let (path, created) = ensure_token_file(&dir, OPERATOR_TOKEN_FILE).expect("first call");
        let first = read_token_file(&path).expect("token");
        let (again, created_again) = ensure_token_file(&dir, OPERATOR_TOKEN_FILE).expect("second call");

        assert!(created && !created_again);
        assert_eq!(path, again);
        assert_eq!(read_token_file(&again).expect("token"), first);
        assert_eq!(first.len(), 64, "32 random bytes, hex");
        assert_eq!(fs::metadata(&path).expect("metadata").permissions().mode() & 0o777, 0o600);
        assert!(check_private(&path).is_ok());
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod");
        assert!(check_private(&path).is_err(), "world-readable is refused");
        fs::remove_dir_all(dir).expect("cleanup");
    }

    #[test]
    fn short_tokens_are_refused_and_digests_round_trip() {
        assert!(check_length("short", "env").is_err());
        assert!(check_length(&"x".repeat(MIN_TOKEN_CHARS), "env").is_ok());
        let hex = digest_hex("some token");
        assert_eq!(parse_digest_hex(&hex), Some(digest("some token")));
        assert_eq!(parse_digest_hex("not hex"), None);
        assert!(constant_time_eq(&digest("a"), &digest("a")));
        assert!(!constant_time_eq(&digest("a"), &digest("b")));
    }
}
