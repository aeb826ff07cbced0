//! Generated code for the `booking.v1` protos (see `build.rs`).

#![allow(clippy::all, clippy::pedantic)]

pub mod v1 {
    tonic::include_proto!("booking.v1");
}

/// The encoded `FileDescriptorSet` served by gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("booking_descriptor");

/// Fully qualified service names, as health and reflection report them.
pub const BOOKING_SERVICE: &str = "booking.v1.BookingService";
pub const INTEGRITY_SERVICE: &str = "booking.v1.IntegrityService";
pub const ADMIN_SERVICE: &str = "booking.v1.AdminService";
