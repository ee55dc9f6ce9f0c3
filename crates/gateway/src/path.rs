//! Path matching, as `networking.k8s.io/v1` defines the path types.
//!
//! - `Exact` matches the URL path exactly, case-sensitive.
//! - `Prefix` matches element by element: `/foo` matches `/foo`, `/foo/` and
//!   `/foo/bar` but not `/foobar`; a trailing slash in the rule is ignored.
//! - `ImplementationSpecific` is treated as `Prefix`.
//!
//! Among the paths of one host the longest match wins, and an `Exact` path beats
//! a `Prefix` path of the same length ([`PathRule::precedence`]).

/// How a rule's path is compared with the request's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PathKind {
    Exact,
    Prefix,
}

impl PathKind {
    /// The kind for an Ingress `pathType` (anything but `Exact` compares as a prefix).
    pub fn parse(path_type: &str) -> PathKind {
        match path_type {
            "Exact" => PathKind::Exact,
            _ => PathKind::Prefix,
        }
    }
}

/// One rule path with its type.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PathRule {
    pub path: String,
    pub kind: PathKind,
}

impl PathRule {
    /// A rule path; an empty or missing path is `/`, as ingress-nginx reads it.
    pub fn new(path: Option<&str>, kind: PathKind) -> PathRule {
        let path = match path {
            Some(p) if !p.is_empty() => p.to_string(),
            _ => "/".to_string(),
        };
        PathRule { path, kind }
    }

    /// Whether the request path (without query) matches.
    pub fn matches(&self, request: &str) -> bool {
        let request = if request.is_empty() { "/" } else { request };
        match self.kind {
            PathKind::Exact => request == self.path,
            PathKind::Prefix => {
                let prefix = self.path.trim_end_matches('/');
                prefix.is_empty()
                    || request
                        .strip_prefix(prefix)
                        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
            }
        }
    }

    /// The order among a host's paths: larger first. The length compared is the
    /// part of the path that must match (a prefix's trailing slash does not
    /// count), and at equal length an exact path goes first.
    pub fn precedence(&self) -> (usize, bool) {
        match self.kind {
            PathKind::Exact => (self.path.len(), true),
            PathKind::Prefix => (self.path.trim_end_matches('/').len(), false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefix(p: &str) -> PathRule {
        PathRule::new(Some(p), PathKind::Prefix)
    }

    fn exact(p: &str) -> PathRule {
        PathRule::new(Some(p), PathKind::Exact)
    }

    #[test]
    fn a_prefix_matches_whole_path_elements_only() {
        let foo = prefix("/foo");
        assert!(foo.matches("/foo"));
        assert!(foo.matches("/foo/"));
        assert!(foo.matches("/foo/bar"));
        assert!(!foo.matches("/foobar"));
        assert!(!foo.matches("/"));
    }

    #[test]
    fn a_prefix_ignores_its_trailing_slash() {
        let foo = prefix("/aaa/bbb/");
        assert!(foo.matches("/aaa/bbb"));
        assert!(foo.matches("/aaa/bbb/ccc"));
        assert!(!foo.matches("/aaa/bbbxyz"));
    }

    #[test]
    fn the_root_prefix_matches_everything() {
        assert!(prefix("/").matches("/anything/at/all"));
        assert!(prefix("/").matches(""));
        assert!(PathRule::new(None, PathKind::Prefix).matches("/x"));
    }

    #[test]
    fn exact_matches_only_the_same_path() {
        let foo = exact("/foo");
        assert!(foo.matches("/foo"));
        assert!(!foo.matches("/foo/"));
        assert!(!foo.matches("/FOO"));
    }

    #[test]
    fn implementation_specific_is_a_prefix() {
        assert_eq!(PathKind::parse("ImplementationSpecific"), PathKind::Prefix);
        assert_eq!(PathKind::parse("Prefix"), PathKind::Prefix);
        assert_eq!(PathKind::parse("Exact"), PathKind::Exact);
    }

    #[test]
    fn longer_paths_and_then_exact_paths_go_first() {
        assert!(prefix("/foo/bar").precedence() > prefix("/foo").precedence());
        assert!(exact("/foo").precedence() > prefix("/foo").precedence());
        assert!(exact("/foo").precedence() > prefix("/foo/").precedence());
        assert_eq!(prefix("/foo/").precedence(), prefix("/foo").precedence());
    }
}
