//! The built-in Ingress gateway: an HTTP(S) reverse proxy routing by host and path to Service endpoints.
#![forbid(unsafe_code)]
