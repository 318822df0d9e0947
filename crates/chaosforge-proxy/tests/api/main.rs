//! Black-box tests of the Toxiproxy-compatible HTTP API: a real `ApiServer` on 127.0.0.1, raw
//! HTTP/1.1 requests (so the exact bytes, status codes and headers are what is checked), and
//! faults measured from plain socket clients.

#![allow(clippy::unwrap_used)]

mod attributes;
mod better;
mod prop;
mod routes;
mod support;
mod toxics;
