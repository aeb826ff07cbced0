//! gRPC adapters: one per service, each unpacking a request, calling one
//! domain function and converting the answer. Domain errors become
//! `tonic::Status` in exactly one place, [`status`]. The layers every call
//! passes: [`auth`] (access) and [`limits`] (the concurrency limit).

pub mod admin;
pub mod auth;
pub mod booking;
pub mod convert;
pub mod deadline;
pub mod flags;
pub mod health;
pub mod integrity;
pub mod limits;
pub mod shutdown;
pub mod status;
