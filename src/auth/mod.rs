//! Who is calling: principals (a name and a role), the credentials that stand
//! for them (bearer tokens by their sha-256, verified client certificates by
//! name), and the configuration they come from, reloaded without a restart.
//!
//! Nothing here knows gRPC: the one layer that checks every call and the
//! table of which role each RPC needs live in [`crate::grpc::auth`]; handlers
//! and domains receive a [`Principal`], never a token.

mod certificate;
mod principals;
mod reload;
pub mod token;

use std::{fmt, sync::Arc};

pub use certificate::certificate_names;
pub use principals::{PrincipalConfigError, PrincipalSet, Sources, TokenFileSource};
pub use reload::Authenticator;

/// What a principal may do. Not an order: an auditor may not book.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// BookingService only: the booking site's backend, a partner backend.
    BookingClient,
    /// IntegrityService and the read-only admin RPCs (and dry runs).
    Auditor,
    /// Everything.
    Operator,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::BookingClient, Role::Auditor, Role::Operator];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::BookingClient => "booking-client",
            Role::Auditor => "auditor",
            Role::Operator => "operator",
        }
    }

    pub fn parse(text: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|role| role.as_str() == text)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An authenticated caller, as handlers see it (request extensions) and as
/// audit rows record it (by name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    name: Arc<str>,
    role: Role,
}

impl Principal {
    pub fn new(name: impl Into<Arc<str>>, role: Role) -> Self {
        Principal { name: name.into(), role }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn role(&self) -> Role {
        self.role
    }
}

/// Why a call could not be tied to a principal, or was not allowed to it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no credential: send authorization: Bearer <token>")]
    MissingCredential,
    #[error("the authorization header must be \"Bearer <token>\"")]
    MalformedCredential,
    #[error("the credential is not recognised")]
    UnknownCredential,
    #[error("principal {principal} (role {role}) may not call this method; it needs one of: {required}")]
    RoleNotPermitted { principal: String, role: Role, required: String },
}
