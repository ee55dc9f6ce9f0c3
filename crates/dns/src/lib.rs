//! Cluster DNS: an in-process DNS server answering for Services and their endpoints, fed by watches, forwarding other names.
#![forbid(unsafe_code)]
