//! The embedded default's operator token: generated once into
//! `<data_dir>/admin-token` (mode 0600) and reused on every later start, so
//! bookingctl on the same machine can read it and nobody else can.

use std::{
    fs,
    io::{self, Write},
    os::unix::fs::{OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
};

use rand::RngCore;

/// File name of the generated token inside the data directory.
pub const TOKEN_FILE_NAME: &str = "admin-token";

/// Returns the token file's path, creating it with a fresh random token when
/// it does not exist. `created` tells whether it was made now.
pub fn ensure_token_file(data_dir: &Path) -> io::Result<(PathBuf, bool)> {
    let path = data_dir.join(TOKEN_FILE_NAME);
    fs::create_dir_all(data_dir)?;
    let mut file = match fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path) {
        Ok(file) => file,
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {
            let text = fs::read_to_string(&path)?;
            if text.trim().is_empty() {
                return Err(io::Error::new(io::ErrorKind::InvalidData, format!("{} is empty", path.display())));
            }
            // a token file others can read is a token others know
            fs::set_permissions(&path, fs::Permissions::from_mode(0o600))?;
            return Ok((path, false));
        }
        Err(error) => return Err(error),
    };
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    writeln!(file, "{}", hex::encode(bytes))?;
    file.sync_all()?;
    Ok((path, true))
}

/// First non-empty line of a token file.
pub fn read_token_file(path: &Path) -> io::Result<String> {
    let text = fs::read_to_string(path)?;
    text.lines()
        .map(str::trim)
        .find(|line| !line.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, format!("{} holds no token", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_generated_once_private_and_then_reused() {
        let dir = std::env::temp_dir().join(format!("bookingd-token-test-{}", uuid::Uuid::new_v4()));

        let (path, created) = ensure_token_file(&dir).expect("first call");
        let first = read_token_file(&path).expect("token");
        let (again, created_again) = ensure_token_file(&dir).expect("second call");

        assert!(created && !created_again);
        assert_eq!(path, again);
        assert_eq!(read_token_file(&again).expect("token"), first);
        assert_eq!(first.len(), 64, "32 random bytes, hex");
        assert_eq!(fs::metadata(&path).expect("metadata").permissions().mode() & 0o777, 0o600);
        fs::remove_dir_all(dir).expect("cleanup");
    }
}
