//! The principals configuration: a TOML file (reloadable), an environment
//! variable for the simple case, and the embedded default's generated token
//! files. Every source names principals with a role and the sha-256 of each
//! token that stands for them; raw tokens appear only in private token files.
//!
//! ```toml
//! [[principal]]
//! name = "booking-site"
//! role = "booking-client"
//! # several hashes: add the new token's, roll the client over, remove the old one
//! token_sha256 = ["3f0c…", "9ab1…"]
//! # or files holding the raw token (0600, at least 32 characters)
//! token_files = ["/run/secrets/booking-site-token"]
//! # a verified client certificate whose DNS name or subject CN is one of these (mTLS)
//! certificate_names = ["booking-site.internal"]
//! ```

use std::{collections::HashMap, path::PathBuf};

use serde::Deserialize;

use super::{
    Principal, Role,
    token::{self, TokenDigest},
};

/// Where principals come from; read again on every reload.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// The TOML file (`--principals-file`).
    pub file: Option<PathBuf>,
    /// `name:role:sha256hex[:sha256hex…]`, comma-separated (`--principals`).
    pub inline: Option<String>,
    /// Raw-token files standing for one principal each (the embedded default's).
    pub token_files: Vec<TokenFileSource>,
}

#[derive(Debug, Clone)]
pub struct TokenFileSource {
    pub name: String,
    pub role: Role,
    pub path: PathBuf,
}

impl Sources {
    pub fn is_empty(&self) -> bool {
        self.file.is_none() && self.inline.as_deref().is_none_or(|s| s.trim().is_empty()) && self.token_files.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("principals configuration: {0}")]
pub struct PrincipalConfigError(pub String);

/// Every known principal and the credentials that stand for them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PrincipalSet {
    tokens: Vec<(TokenDigest, Principal)>,
    certificate_names: HashMap<String, Principal>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    #[serde(default)]
    principal: Vec<FilePrincipal>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FilePrincipal {
    name: String,
    role: String,
    #[serde(default)]
    token_sha256: Vec<String>,
    #[serde(default)]
    token_files: Vec<PathBuf>,
    #[serde(default)]
    certificate_names: Vec<String>,
}

impl PrincipalSet {
    pub fn load(sources: &Sources) -> Result<PrincipalSet, PrincipalConfigError> {
        let mut builder = Builder::default();
        if let Some(path) = &sources.file {
            token::check_private(path).map_err(PrincipalConfigError)?;
            let text = std::fs::read_to_string(path)
                .map_err(|e| PrincipalConfigError(format!("cannot read {}: {e}", path.display())))?;
            let config: FileConfig = toml::from_str(&text)
                .map_err(|e| PrincipalConfigError(format!("{}: {}", path.display(), e.message())))?;
            let origin = path.display().to_string();
            for entry in config.principal {
                let principal = builder.principal(&entry.name, &entry.role, &origin)?;
                for hash in &entry.token_sha256 {
                    builder.hash(&principal, hash, &origin)?;
                }
                for file in &entry.token_files {
                    builder.token_file(&principal, file)?;
                }
                for name in entry.certificate_names {
                    builder.certificate_name(&principal, name, &origin)?;
                }
            }
        }
        if let Some(inline) = &sources.inline {
            let origin = "BOOKINGD_PRINCIPALS";
            for entry in inline.split(',').map(str::trim).filter(|e| !e.is_empty()) {
                let mut parts = entry.split(':');
                let (Some(name), Some(role)) = (parts.next(), parts.next()) else {
                    return Err(PrincipalConfigError(format!(
                        "{origin}: {entry:?} is not name:role:sha256hex[:sha256hex…]"
                    )));
                };
                let principal = builder.principal(name, role, origin)?;
                let mut hashes = 0;
                for hash in parts {
                    builder.hash(&principal, hash, origin)?;
                    hashes += 1;
                }
                if hashes == 0 {
                    return Err(PrincipalConfigError(format!("{origin}: principal {name} has no token hash")));
                }
            }
        }
        for source in &sources.token_files {
            let principal = builder.principal(&source.name, source.role.as_str(), "the generated token files")?;
            builder.token_file(&principal, &source.path)?;
        }
        Ok(builder.set)
    }

    /// The principal a presented bearer token stands for.
    pub fn by_token(&self, presented: &str) -> Option<&Principal> {
        let presented = token::digest(presented);
        // every entry is compared, so the time taken says nothing about which matched
        self.tokens.iter().fold(None, |found, (expected, principal)| {
            if token::constant_time_eq(expected, &presented) { Some(principal) } else { found }
        })
    }

    /// The principal a verified client certificate's name stands for.
    pub fn by_certificate_name(&self, name: &str) -> Option<&Principal> {
        self.certificate_names.get(name)
    }

    pub fn principal_count(&self) -> usize {
        let mut names: Vec<&str> = self.tokens.iter().map(|(_, p)| p.name()).collect();
        names.extend(self.certificate_names.values().map(Principal::name));
        names.sort_unstable();
        names.dedup();
        names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty() && self.certificate_names.is_empty()
    }
}

#[derive(Default)]
struct Builder {
    set: PrincipalSet,
    roles: HashMap<String, Role>,
}

impl Builder {
    fn principal(&mut self, name: &str, role: &str, origin: &str) -> Result<Principal, PrincipalConfigError> {
        let name = name.trim();
        if name.is_empty() || name.len() > 100 || name.chars().any(|c| c.is_control() || c == ',' || c == ':') {
            return Err(PrincipalConfigError(format!(
                "{origin}: principal name {name:?} must be 1-100 characters without control characters, ':' or ','"
            )));
        }
        let role = Role::parse(role.trim()).ok_or_else(|| {
            PrincipalConfigError(format!(
                "{origin}: principal {name} has role {role:?}; roles are booking-client, auditor, operator"
            ))
        })?;
        // one name, one role: an audit row naming a principal must mean one thing
        if let Some(existing) = self.roles.insert(name.to_owned(), role)
            && existing != role
        {
            return Err(PrincipalConfigError(format!(
                "{origin}: principal {name} is configured twice with different roles ({existing} and {role})"
            )));
        }
        Ok(Principal::new(name, role))
    }

    fn hash(&mut self, principal: &Principal, hex: &str, origin: &str) -> Result<(), PrincipalConfigError> {
        let digest = token::parse_digest_hex(hex).ok_or_else(|| {
            PrincipalConfigError(format!(
                "{origin}: a token hash of principal {} is not 64 hex characters (sha-256)",
                principal.name()
            ))
        })?;
        self.add_digest(principal, digest, origin)
    }

    fn token_file(&mut self, principal: &Principal, path: &std::path::Path) -> Result<(), PrincipalConfigError> {
        token::check_private(path).map_err(PrincipalConfigError)?;
        let raw = token::read_token_file(path)
            .map_err(|e| PrincipalConfigError(format!("cannot read the token file {}: {e}", path.display())))?;
        let origin = path.display().to_string();
        token::check_length(&raw, &origin).map_err(PrincipalConfigError)?;
        self.add_digest(principal, token::digest(&raw), &origin)
    }

    fn add_digest(
        &mut self,
        principal: &Principal,
        digest: TokenDigest,
        origin: &str,
    ) -> Result<(), PrincipalConfigError> {
        if let Some((_, other)) = self.set.tokens.iter().find(|(d, _)| *d == digest) {
            if other == principal {
                return Ok(());
            }
            return Err(PrincipalConfigError(format!(
                "{origin}: one token stands for two principals ({} and {})",
                other.name(),
                principal.name()
            )));
        }
        self.set.tokens.push((digest, principal.clone()));
        Ok(())
    }

    fn certificate_name(
        &mut self,
        principal: &Principal,
        name: String,
        origin: &str,
    ) -> Result<(), PrincipalConfigError> {
        if let Some(other) = self.set.certificate_names.get(&name)
            && other != principal
        {
            return Err(PrincipalConfigError(format!(
                "{origin}: certificate name {name} stands for two principals ({} and {})",
                other.name(),
                principal.name()
            )));
        }
        self.set.certificate_names.insert(name, principal.clone());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn hash(token: &str) -> String {
        token::digest_hex(token)
    }

    #[test]
    fn inline_principals_are_found_by_any_of_their_tokens() {
        let (a, b, c) = ("a".repeat(32), "b".repeat(32), "c".repeat(32));
        let inline = format!("alice:operator:{}:{}, site:booking-client:{}", hash(&a), hash(&b), hash(&c));
        let set = PrincipalSet::load(&Sources { inline: Some(inline), ..Sources::default() }).expect("loads");

        assert_eq!(set.by_token(&a), Some(&Principal::new("alice", Role::Operator)));
        assert_eq!(set.by_token(&b), Some(&Principal::new("alice", Role::Operator)));
        assert_eq!(set.by_token(&c), Some(&Principal::new("site", Role::BookingClient)));
        assert_eq!(set.by_token("d".repeat(32).as_str()), None);
        assert_eq!(set.principal_count(), 2);
    }

    #[test]
    fn bad_inline_entries_are_refused_with_a_reason() {
        for inline in
            ["alice:operator", "alice:root:00", "alice:operator:nothex", ":operator:00", "alice"].map(String::from)
        {
            let error = PrincipalSet::load(&Sources { inline: Some(inline.clone()), ..Sources::default() });
            assert!(error.is_err(), "{inline:?} must be refused");
        }
        let same = hash(&"x".repeat(32));
        let twice = format!("a:operator:{same},b:auditor:{same}");
        assert!(PrincipalSet::load(&Sources { inline: Some(twice), ..Sources::default() }).is_err());
    }

    #[test]
    fn the_file_is_refused_when_world_readable_and_its_token_files_when_short() {
        let dir = std::env::temp_dir().join(format!("bookingd-principals-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("dir");
        let token_file = dir.join("token");
        std::fs::write(&token_file, "short\n").expect("write");
        std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let file = dir.join("principals.toml");
        std::fs::write(
            &file,
            format!(
                "[[principal]]\nname = \"ops\"\nrole = \"operator\"\ntoken_files = [\"{}\"]\n",
                token_file.display()
            ),
        )
        .expect("write");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let sources = Sources { file: Some(file.clone()), ..Sources::default() };

        let world_readable = PrincipalSet::load(&sources).expect_err("world-readable file");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let short = PrincipalSet::load(&sources).expect_err("short token");
        std::fs::write(&token_file, format!("{}\n", "t".repeat(40))).expect("write");
        let loaded = PrincipalSet::load(&sources).expect("a long private token loads");

        assert!(world_readable.0.contains("readable"), "{world_readable}");
        assert!(short.0.contains("at least 32"), "{short}");
        assert_eq!(loaded.by_token(&"t".repeat(40)).map(Principal::name), Some("ops"));
        std::fs::remove_dir_all(dir).expect("cleanup");
    }
}
