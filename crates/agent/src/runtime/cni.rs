//! The pod network config that containerd's CRI plugin reads: a bridge with
//! host-local IPAM over the node's podCIDR, portmap for hostPorts, and loopback.
//!
//! Loopback is not in the list: containerd's CRI plugin sets up `lo` in every pod
//! network namespace itself (with the `loopback` binary from the same bin dir), so a
//! second loopback entry would only run the plugin twice.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

/// The network name containerd reports for pods; also the conflist's file stem.
pub const NETWORK_NAME: &str = "skiff";

/// The Linux bridge pods attach to when the caller does not name one.
pub const DEFAULT_BRIDGE: &str = "skiff0";

/// The CNI spec version the conflist declares. Debian 12 ships plugins 1.1.1 and
/// containerd 1.6 vendors libcni 1.1; both speak 0.4.0, which is also what every
/// plugin used here supports (1.0.0 would drop older plugin builds for nothing).
pub const CNI_VERSION: &str = "0.4.0";

/// The file name of the conflist: containerd loads the first file in name order, and
/// the `10-` prefix puts Skiff's ahead of the usual `87-podman`/`99-loopback` leftovers.
pub const CONFLIST_FILE: &str = "10-skiff.conflist";

/// Writes `<conf_dir>/10-skiff.conflist` for the node's pod CIDRs (atomically: a
/// reader never sees half a file) and returns its path. `bridge` names the Linux
/// bridge (default "skiff0"); host-local keeps its leases under `ipam_dir`.
pub fn write_conflist(conf_dir: &Path, bridge: &str, pod_cidrs: &[String], ipam_dir: &Path) -> std::io::Result<PathBuf> {
    let conflist = conflist(bridge, pod_cidrs, ipam_dir)?;
    std::fs::create_dir_all(conf_dir)?;
    let path = conf_dir.join(CONFLIST_FILE);
    let mut bytes = serde_json::to_vec_pretty(&conflist).map_err(std::io::Error::other)?;
    bytes.push(b'\n');

    // containerd watches the directory and reloads on every event: the temporary
    // name must not end in `.conflist`/`.conf`/`.json`, or it could be loaded half
    // written.
    let tmp = conf_dir.join(format!(".{CONFLIST_FILE}.tmp"));
    {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(&bytes)?;
        file.sync_all()?;
    }
    std::fs::rename(&tmp, &path)?;
    Ok(path)
}

/// The conflist as JSON: one bridge network with a range set per pod CIDR (one
/// address per family for dual-stack nodes), and portmap chained after it.
pub fn conflist(bridge: &str, pod_cidrs: &[String], ipam_dir: &Path) -> std::io::Result<Value> {
    let bridge = if bridge.is_empty() { DEFAULT_BRIDGE } else { bridge };
    // Linux interface names are at most 15 bytes (IFNAMSIZ - 1).
    if bridge.len() > 15 || bridge.contains(['/', ' ']) {
        return Err(invalid(format!("invalid bridge name {bridge:?}")));
    }
    let ipam_dir = ipam_dir.to_str().ok_or_else(|| invalid(format!("IPAM directory {} is not UTF-8", ipam_dir.display())))?;
    if pod_cidrs.is_empty() {
        return Err(invalid("the node has no pod CIDR".to_string()));
    }

    let mut ranges = Vec::new();
    let mut routes = Vec::new();
    let (mut v4, mut v6) = (false, false);
    for cidr in pod_cidrs {
        let ipv6 = parse_cidr(cidr)?;
        ranges.push(json!([{ "subnet": cidr }]));
        // The default route goes through the bridge's address (host-local's gateway,
        // the first address of the range): traffic to the node and beyond leaves the
        // pod there. No masquerading: pod addresses are seen as they are.
        if ipv6 && !v6 {
            routes.push(json!({ "dst": "::/0" }));
            v6 = true;
        } else if !ipv6 && !v4 {
            routes.push(json!({ "dst": "0.0.0.0/0" }));
            v4 = true;
        }
    }

    Ok(json!({
        "cniVersion": CNI_VERSION,
        "name": NETWORK_NAME,
        "plugins": [
            {
                "type": "bridge",
                "bridge": bridge,
                "isGateway": true,
                "ipMasq": false,
                "hairpinMode": true,
                "ipam": {
                    "type": "host-local",
                    "ranges": ranges,
                    "routes": routes,
                    "dataDir": ipam_dir,
                },
            },
            {
                "type": "portmap",
                "capabilities": { "portMappings": true },
                "snat": true,
            },
        ],
    }))
}

/// Checks `addr/prefix` and tells whether it is IPv6.
fn parse_cidr(cidr: &str) -> std::io::Result<bool> {
    let bad = || invalid(format!("invalid pod CIDR {cidr:?}"));
    let (addr, prefix) = cidr.split_once('/').ok_or_else(bad)?;
    let addr: std::net::IpAddr = addr.parse().map_err(|_| bad())?;
    let prefix: u8 = prefix.parse().map_err(|_| bad())?;
    let max = if addr.is_ipv6() { 128 } else { 32 };
    if prefix > max {
        return Err(bad());
    }
    Ok(addr.is_ipv6())
}

fn invalid(message: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidInput, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidrs(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn conflist_chains_bridge_and_portmap_over_the_pod_cidr() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_conflist(dir.path(), "skiff0", &cidrs(&["10.42.0.0/24"]), Path::new("/var/lib/skiff/cni")).unwrap();
        assert_eq!(path, dir.path().join("10-skiff.conflist"));

        let written: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(written["cniVersion"], "0.4.0");
        assert_eq!(written["name"], "skiff");
        let plugins = written["plugins"].as_array().unwrap();
        assert_eq!(plugins.len(), 2);

        let bridge = &plugins[0];
        assert_eq!(bridge["type"], "bridge");
        assert_eq!(bridge["bridge"], "skiff0");
        assert_eq!(bridge["isGateway"], true);
        assert_eq!(bridge["ipMasq"], false);
        assert_eq!(bridge["hairpinMode"], true);
        assert_eq!(bridge["ipam"]["type"], "host-local");
        assert_eq!(bridge["ipam"]["ranges"], json!([[{ "subnet": "10.42.0.0/24" }]]));
        assert_eq!(bridge["ipam"]["routes"], json!([{ "dst": "0.0.0.0/0" }]));
        assert_eq!(bridge["ipam"]["dataDir"], "/var/lib/skiff/cni");

        let portmap = &plugins[1];
        assert_eq!(portmap["type"], "portmap");
        assert_eq!(portmap["capabilities"]["portMappings"], true);
        assert_eq!(portmap["snat"], true);
    }

    #[test]
    fn dual_stack_nodes_get_one_range_set_and_one_default_route_per_family() {
        let config = conflist("br1", &cidrs(&["10.42.1.0/24", "fd00:42:1::/64"]), Path::new("/ipam")).unwrap();
        let ipam = &config["plugins"][0]["ipam"];
        assert_eq!(ipam["ranges"], json!([[{ "subnet": "10.42.1.0/24" }], [{ "subnet": "fd00:42:1::/64" }]]));
        assert_eq!(ipam["routes"], json!([{ "dst": "0.0.0.0/0" }, { "dst": "::/0" }]));
        assert_eq!(config["plugins"][0]["bridge"], "br1");
    }

    #[test]
    fn an_empty_bridge_name_means_the_default_bridge() {
        let config = conflist("", &cidrs(&["10.42.0.0/16"]), Path::new("/ipam")).unwrap();
        assert_eq!(config["plugins"][0]["bridge"], DEFAULT_BRIDGE);
    }

    #[test]
    fn bad_cidrs_and_bridge_names_are_refused_without_writing() {
        let dir = tempfile::tempdir().unwrap();
        for bad in [&[][..], &["10.42.0.0"][..], &["10.42.0.0/33"][..], &["nonsense/8"][..]] {
            let err = write_conflist(dir.path(), "skiff0", &cidrs(bad), Path::new("/ipam")).unwrap_err();
            assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput, "{bad:?}");
        }
        let err = write_conflist(dir.path(), "a-bridge-name-too-long", &cidrs(&["10.0.0.0/8"]), Path::new("/ipam")).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn rewriting_replaces_the_file_and_leaves_no_temporary_behind() {
        let dir = tempfile::tempdir().unwrap();
        let conf_dir = dir.path().join("net.d");
        write_conflist(&conf_dir, "skiff0", &cidrs(&["10.42.0.0/24"]), Path::new("/ipam")).unwrap();
        let path = write_conflist(&conf_dir, "skiff0", &cidrs(&["10.42.7.0/24"]), Path::new("/ipam")).unwrap();

        let names: Vec<_> = std::fs::read_dir(&conf_dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from(CONFLIST_FILE)]);
        let written: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        assert_eq!(written["plugins"][0]["ipam"]["ranges"][0][0]["subnet"], "10.42.7.0/24");
    }
}
