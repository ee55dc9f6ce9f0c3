//! Host matching: what a request's Host names, and which rule hosts it matches.
//!
//! Rule hosts are exact DNS names or wildcards `*.example.com`, which match
//! exactly one more label (`foo.example.com`, not `example.com` nor
//! `a.b.example.com`), as the Ingress API defines them. Matching ignores case,
//! a port in the Host header and a trailing dot.

/// The host a Host header (or `:authority`) names: lower case, without port,
/// brackets or trailing dot. `"Example.COM:8080"` becomes `"example.com"`,
/// `"[::1]:80"` becomes `"::1"`.
pub fn normalize(raw: &str) -> String {
    let raw = raw.trim();
    let host = if let Some(rest) = raw.strip_prefix('[') {
        rest.split(']').next().unwrap_or_default()
    } else {
        match raw.rsplit_once(':') {
            Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
            _ => raw,
        }
    };
    host.trim_end_matches('.').to_ascii_lowercase()
}

/// A rule's host as the routing table keys it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HostPattern {
    /// A rule without host: any request no other server claims.
    Any,
    /// `foo.example.com`.
    Exact(String),
    /// `*.example.com`, kept as its suffix `example.com`.
    Wildcard(String),
}

impl HostPattern {
    /// The pattern of an Ingress rule's `host` field (`None` or empty: any host).
    pub fn parse(host: Option<&str>) -> HostPattern {
        let host = host.map(normalize).unwrap_or_default();
        if host.is_empty() {
            HostPattern::Any
        } else if let Some(suffix) = host.strip_prefix("*.") {
            HostPattern::Wildcard(suffix.to_string())
        } else {
            HostPattern::Exact(host)
        }
    }

    /// Whether a normalized request host matches this pattern on its own (the
    /// routing table also prefers exact over wildcard over any).
    pub fn matches(&self, host: &str) -> bool {
        match self {
            HostPattern::Any => true,
            HostPattern::Exact(h) => h == host,
            HostPattern::Wildcard(suffix) => wildcard_suffix(host) == Some(suffix.as_str()),
        }
    }
}

/// The part of `host` a one-label wildcard would have to name: `"example.com"`
/// for `"foo.example.com"`; `None` for a single label.
pub fn wildcard_suffix(host: &str) -> Option<&str> {
    match host.split_once('.') {
        Some((first, rest)) if !first.is_empty() && !rest.is_empty() => Some(rest),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_header_loses_its_port_case_and_trailing_dot() {
        assert_eq!(normalize("Example.COM:8080"), "example.com");
        assert_eq!(normalize("example.com."), "example.com");
        assert_eq!(normalize("127.0.0.1:80"), "127.0.0.1");
        assert_eq!(normalize("[::1]:443"), "::1");
        assert_eq!(normalize(""), "");
    }

    #[test]
    fn a_wildcard_matches_exactly_one_more_label() {
        let p = HostPattern::parse(Some("*.example.com"));
        assert_eq!(p, HostPattern::Wildcard("example.com".into()));
        assert!(p.matches("foo.example.com"));
        assert!(!p.matches("example.com"));
        assert!(!p.matches("a.b.example.com"));
        assert!(!p.matches("fooexample.com"));
    }

    #[test]
    fn rule_hosts_compare_without_case_and_empty_means_any() {
        assert_eq!(HostPattern::parse(Some("Foo.Example.com")), HostPattern::Exact("foo.example.com".into()));
        assert_eq!(HostPattern::parse(Some("")), HostPattern::Any);
        assert_eq!(HostPattern::parse(None), HostPattern::Any);
        assert!(HostPattern::Any.matches("anything.test"));
    }
}
