//! Arbitrary bytes, in arbitrary chunk sizes, into the client's state
//! machine: it never panics, stays within its limits, and every byte it
//! sends back is a valid frame stream.
#![no_main]

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use rfc6455::proto::Role;

fuzz_target!(|data: &[u8]| common::run(Role::Client, data));
