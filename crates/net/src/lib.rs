//! Pod network and service datapath of a node: nftables service proxy and network policy in one table, host-gw routes.
#![forbid(unsafe_code)]
