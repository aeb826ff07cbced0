//! Operator authentication for AdminService: `authorization: Bearer <token>`.
//!
//! The interceptor puts the caller's [`Operator`] identity into the request
//! extensions; admin handlers read it with [`operator`] for their audit trail.

use std::sync::Arc;

use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use tonic::{Code, Request, Status, service::Interceptor};

use crate::grpc::status::ApiError;

/// Who made an admin call, as recorded in audit trails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operator(pub String);

/// Accepts the configured operator tokens; with none configured every admin
/// call is refused (there is no open admin mode).
#[derive(Clone)]
pub struct AdminAuth {
    // (identity, sha-256 of the token): compared by digest so the comparison
    // time does not depend on how much of a guessed token is right
    tokens: Arc<Vec<(String, [u8; 32])>>,
}

impl AdminAuth {
    pub fn new(tokens: impl IntoIterator<Item = (String, SecretString)>) -> Self {
        let tokens = tokens.into_iter().map(|(name, token)| (name, digest(token.expose_secret()))).collect();
        AdminAuth { tokens: Arc::new(tokens) }
    }

    fn identify(&self, header: Option<&str>) -> Result<Operator, ApiError> {
        if self.tokens.is_empty() {
            return Err(unauthenticated("no operator token is configured on this server (BOOKINGD_ADMIN_TOKEN)"));
        }
        let header = header.ok_or_else(|| unauthenticated("missing authorization: Bearer <operator token>"))?;
        let token = header
            .strip_prefix("Bearer ")
            .ok_or_else(|| unauthenticated("authorization must be \"Bearer <operator token>\""))?;
        let presented = digest(token.trim());
        self.tokens
            .iter()
            .find(|(_, expected)| constant_time_eq(expected, &presented))
            .map(|(name, _)| Operator(name.clone()))
            .ok_or_else(|| unauthenticated("operator token not recognised"))
    }
}

impl Interceptor for AdminAuth {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let header = request.metadata().get("authorization").and_then(|v| v.to_str().ok());
        match self.identify(header) {
            Ok(operator) => {
                request.extensions_mut().insert(operator);
                Ok(request)
            }
            Err(error) => {
                tracing::warn!(reason = %error.message, "admin call refused");
                Err(error.into())
            }
        }
    }
}

/// The authenticated caller of an admin RPC.
pub fn operator<T>(request: &Request<T>) -> String {
    request.extensions().get::<Operator>().map(|o| o.0.clone()).unwrap_or_else(|| "unknown".to_owned())
}

fn unauthenticated(message: &str) -> ApiError {
    ApiError::new(Code::Unauthenticated, "UNAUTHENTICATED", message)
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> AdminAuth {
        AdminAuth::new([("operator".to_owned(), SecretString::from("s3cret"))])
    }

    #[test]
    fn the_right_token_identifies_the_operator() {
        assert_eq!(auth().identify(Some("Bearer s3cret")).expect("accepted"), Operator("operator".into()));
    }

    #[test]
    fn wrong_missing_or_malformed_tokens_are_refused() {
        for header in [None, Some("Bearer nope"), Some("s3cret"), Some("Basic s3cret")] {
            let error = auth().identify(header).expect_err("refused");
            assert_eq!(error.code, Code::Unauthenticated, "{header:?}");
        }
    }

    #[test]
    fn no_configured_token_refuses_everyone() {
        let error = AdminAuth::new([]).identify(Some("Bearer anything")).expect_err("refused");
        assert_eq!(error.code, Code::Unauthenticated);
    }
}
