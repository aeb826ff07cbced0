//! The one access check every RPC goes through: a tower layer on the server
//! builder that ties the call to a [`Principal`] (bearer token, or a verified
//! client certificate under mutual TLS), checks the role the method needs in
//! [`RPC_ACCESS`], and hands the principal to the handler in the request
//! extensions. Handlers read it with [`principal`]; they never see a token.
//!
//! A path missing from the table is answered UNIMPLEMENTED before anything
//! else: an RPC added without an access rule is closed, not open, and the
//! table test (tests/api/access.rs) names it.

use std::task::{Context, Poll};

use tonic::{
    Code, Request, Status,
    body::Body,
    transport::server::{TcpConnectInfo, TlsConnectInfo},
};
use tower::{Layer, Service};

use crate::{
    auth::{AuthError, Authenticator, Principal, Role, certificate_names},
    grpc::status::ApiError,
};

/// Who may call a method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No credential needed (health probes, reflection).
    Public,
    /// A principal with one of these roles.
    Roles(&'static [Role]),
}

const BOOKING: Access = Access::Roles(&[Role::BookingClient, Role::Operator]);
const AUDIT: Access = Access::Roles(&[Role::Auditor, Role::Operator]);
const OPERATE: Access = Access::Roles(&[Role::Operator]);

/// The role each RPC needs. RepairAvailability is open to auditors because
/// its default is a dry run; applying needs an operator, checked by the
/// handler with [`require_operator_to_apply`] (the layer cannot see the body).
pub const RPC_ACCESS: &[(&str, Access)] = &[
    ("/grpc.health.v1.Health/Check", Access::Public),
    ("/grpc.health.v1.Health/Watch", Access::Public),
    // served only when reflection is switched on (BOOKINGD_REFLECTION)
    ("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", Access::Public),
    ("/booking.v1.BookingService/CreateBooking", BOOKING),
    ("/booking.v1.BookingService/ConfirmBooking", BOOKING),
    ("/booking.v1.BookingService/CancelBooking", BOOKING),
    ("/booking.v1.BookingService/GetBooking", BOOKING),
    ("/booking.v1.BookingService/LookupJourney", BOOKING),
    ("/booking.v1.BookingService/ListTours", BOOKING),
    ("/booking.v1.IntegrityService/RunChecks", AUDIT),
    ("/booking.v1.IntegrityService/WatchChecks", AUDIT),
    ("/booking.v1.AdminService/GetFlag", AUDIT),
    ("/booking.v1.AdminService/ListFlagChanges", AUDIT),
    ("/booking.v1.AdminService/RepairAvailability", AUDIT),
    ("/booking.v1.AdminService/SetFlag", OPERATE),
    ("/booking.v1.AdminService/ClampNegativeAvailability", OPERATE),
    ("/booking.v1.AdminService/PauseBookings", OPERATE),
    ("/booking.v1.AdminService/ResumeBookings", OPERATE),
    ("/booking.v1.AdminService/DeployFunctions", OPERATE),
    ("/booking.v1.AdminService/RollbackFunctions", OPERATE),
];

pub fn access_for(path: &str) -> Option<Access> {
    RPC_ACCESS.iter().find(|(p, _)| *p == path).map(|(_, access)| *access)
}

/// The authenticated caller of an RPC (put there by [`AuthLayer`]).
pub fn principal<T>(request: &Request<T>) -> Result<Principal, Status> {
    request.extensions().get::<Principal>().cloned().ok_or_else(|| {
        // only reachable if a method is wired around the layer: refuse, never guess a name
        ApiError::from(AuthError::MissingCredential).into()
    })
}

/// A dry-run-or-apply RPC: applying needs the operator role.
pub fn require_operator_to_apply(principal: &Principal) -> Result<(), Status> {
    if principal.role() == Role::Operator {
        return Ok(());
    }
    Err(ApiError::from(AuthError::RoleNotPermitted {
        principal: principal.name().to_owned(),
        role: principal.role(),
        required: format!("{} (to apply; a dry run is open to auditors)", Role::Operator),
    })
    .into())
}

#[derive(Debug, Clone)]
pub struct AuthLayer {
    authenticator: Authenticator,
}

impl AuthLayer {
    pub fn new(authenticator: Authenticator) -> Self {
        AuthLayer { authenticator }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = AuthService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AuthService { inner, authenticator: self.authenticator.clone() }
    }
}

#[derive(Debug, Clone)]
pub struct AuthService<S> {
    inner: S,
    authenticator: Authenticator,
}

impl<S, ReqBody> Service<http::Request<ReqBody>> for AuthService<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<Body>>,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = futures::future::Either<std::future::Ready<Result<http::Response<Body>, S::Error>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<ReqBody>) -> Self::Future {
        match self.admit(&request) {
            Ok(Some(principal)) => {
                // the server span (telemetry::rpc, the outer layer) is current here
                tracing::Span::current().record("enduser.id", principal.name());
                request.extensions_mut().insert(principal);
                futures::future::Either::Right(self.inner.call(request))
            }
            Ok(None) => futures::future::Either::Right(self.inner.call(request)),
            Err(status) => futures::future::Either::Left(std::future::ready(Ok(status.into_http()))),
        }
    }
}

impl<S> AuthService<S> {
    /// `Ok(None)`: a public method. `Err`: the refusal to send.
    fn admit<B>(&self, request: &http::Request<B>) -> Result<Option<Principal>, Status> {
        let path = request.uri().path();
        let Some(access) = access_for(path) else {
            return Err(ApiError::new(Code::Unimplemented, "METHOD_NOT_FOUND", format!("no method {path}")).into());
        };
        let Access::Roles(allowed) = access else { return Ok(None) };
        let principal = self.identify(request).map_err(|error| refuse(path, error))?;
        if !allowed.contains(&principal.role()) {
            let required = allowed.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(", ");
            return Err(refuse(
                path,
                AuthError::RoleNotPermitted {
                    principal: principal.name().to_owned(),
                    role: principal.role(),
                    required,
                },
            ));
        }
        Ok(Some(principal))
    }

    /// A bearer token when one is sent (explicit beats ambient), else the
    /// verified client certificate of the connection.
    fn identify<B>(&self, request: &http::Request<B>) -> Result<Principal, AuthError> {
        let Some(header) = request.headers().get(http::header::AUTHORIZATION) else {
            return self.identify_certificate(request);
        };
        let token = header
            .to_str()
            .ok()
            .and_then(|value| value.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|token| !token.is_empty() && !token.contains(char::is_whitespace))
            .ok_or(AuthError::MalformedCredential)?;
        self.authenticator.by_token(token).ok_or(AuthError::UnknownCredential)
    }

    /// rustls verified the chain during the handshake; a certificate is only
    /// here if it passed (tonic records it in the connection's info).
    fn identify_certificate<B>(&self, request: &http::Request<B>) -> Result<Principal, AuthError> {
        let certificate = request
            .extensions()
            .get::<TlsConnectInfo<TcpConnectInfo>>()
            .and_then(TlsConnectInfo::peer_certs)
            .and_then(|chain| chain.first().cloned())
            .ok_or(AuthError::MissingCredential)?;
        certificate_names(certificate.as_ref())
            .iter()
            .find_map(|name| self.authenticator.by_certificate_name(name))
            .ok_or(AuthError::UnknownCredential)
    }
}

fn refuse(path: &str, error: AuthError) -> Status {
    tracing::warn!(path, reason = %error, "call refused");
    ApiError::from(error).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_entry_is_unique_and_a_full_method_path() {
        for (index, (path, _)) in RPC_ACCESS.iter().enumerate() {
            assert!(path.starts_with('/') && path[1..].contains('/'), "{path}");
            assert!(RPC_ACCESS[index + 1..].iter().all(|(other, _)| other != path), "{path} listed twice");
        }
        assert_eq!(access_for("/booking.v1.BookingService/NoSuchMethod"), None);
    }
}
