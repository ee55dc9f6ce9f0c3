//! Field paths and sets of them, as `metadata.managedFields` records ownership.
//!
//! A path is a list of [`PathElement`]s: a field name, the key of an element of an
//! associative list, the value of an element of a set, or an index. A [`Set`] is a
//! trie of paths and serializes to the `fieldsV1` format: `f:<field>`, `k:{...}`,
//! `v:<json>`, `i:<index>`, with `.` marking a node that is itself in the set as
//! well as having children.

use std::cmp::Ordering;
use std::fmt;

use serde_json::{Map, Value};

use super::typed::Ty;

/// One step of a field path.
#[derive(Debug, Clone)]
pub(crate) enum PathElement {
    /// A field of a struct or a key of a map.
    Field(String),
    /// The element of an associative list with these key values, sorted by name.
    Key(Vec<(String, Value)>),
    /// The element of a set with this value.
    Value(Value),
    /// An element by position (lists without keys).
    Index(usize),
}

/// A field path.
pub(crate) type Path = Vec<PathElement>;

// === impl PathElement ===

impl PathElement {
    fn rank(&self) -> u8 {
        match self {
            PathElement::Field(_) => 0,
            PathElement::Key(_) => 1,
            PathElement::Value(_) => 2,
            PathElement::Index(_) => 3,
        }
    }

    /// The `fieldsV1` form: `f:name`, `k:{"name":"x"}`, `v:"x"`, `i:0`.
    #[cfg(test)]
    pub(crate) fn to_fields_key(&self) -> String {
        let mut out = String::new();
        self.write_fields_key(&mut out);
        out
    }

    /// Appends the `fieldsV1` form to `out`. The fields of a key are written in their
    /// (sorted) order, as compact JSON.
    pub(crate) fn write_fields_key(&self, out: &mut String) {
        use std::fmt::Write as _;
        match self {
            PathElement::Field(f) => {
                out.push_str("f:");
                out.push_str(f);
            }
            PathElement::Key(fields) => {
                out.push_str("k:{");
                for (i, (k, v)) in fields.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    push_json_string(out, k);
                    out.push(':');
                    let _ = write!(out, "{v}");
                }
                out.push('}');
            }
            PathElement::Value(v) => {
                let _ = write!(out, "v:{v}");
            }
            PathElement::Index(i) => {
                let _ = write!(out, "i:{i}");
            }
        }
    }

    /// Parses the `fieldsV1` form.
    pub(crate) fn from_fields_key(s: &str) -> Option<PathElement> {
        let (kind, rest) = s.split_once(':')?;
        Some(match kind {
            "f" => PathElement::Field(rest.to_string()),
            "v" => PathElement::Value(serde_json::from_str(rest).ok()?),
            "i" => PathElement::Index(rest.parse().ok()?),
            "k" => {
                if let Some(fields) = parse_simple_key(rest) {
                    return Some(PathElement::Key(fields));
                }
                let Value::Object(m) = serde_json::from_str(rest).ok()? else { return None };
                let mut fields: Vec<(String, Value)> = m.into_iter().collect();
                fields.sort_by(|a, b| a.0.cmp(&b.0));
                PathElement::Key(fields)
            }
            _ => return None,
        })
    }
}

/// Parses the key of a `k:` element the way it is almost always written, compact with
/// sorted names and string or integer values (`{"containerPort":80,"protocol":"TCP"}`),
/// to what `serde_json` would make of it. `None` for anything else, which `serde_json`
/// then parses: escapes, whitespace, other values, unsorted or repeated names.
fn parse_simple_key(s: &str) -> Option<Vec<(String, Value)>> {
    /// A string without escapes at the start of `s`, and the rest after it.
    fn string(s: &str) -> Option<(&str, &str)> {
        let body = s.strip_prefix('"')?;
        let end = body.find(|c: char| c == '"' || c == '\\' || c < ' ')?;
        (body.as_bytes()[end] == b'"').then(|| (&body[..end], &body[end + 1..]))
    }
    let mut rest = s.strip_prefix('{')?.strip_suffix('}')?;
    let mut fields: Vec<(String, Value)> = Vec::with_capacity(2);
    loop {
        let (name, after) = string(rest)?;
        if fields.last().is_some_and(|(last, _)| last.as_str() >= name) {
            return None;
        }
        let after = after.strip_prefix(':')?;
        let (value, after) = match after.as_bytes().first()? {
            b'"' => {
                let (v, after) = string(after)?;
                (Value::String(v.to_string()), after)
            }
            b'-' | b'0'..=b'9' => {
                let end = after.find(|c: char| !(c == '-' || c.is_ascii_digit())).unwrap_or(after.len());
                let digits = &after[..end];
                let unsigned = digits.strip_prefix('-').unwrap_or(digits);
                let leading_zero = unsigned.len() > 1 && unsigned.starts_with('0');
                // serde_json reads `-0` as a float.
                if unsigned.is_empty() || !unsigned.bytes().all(|b| b.is_ascii_digit()) || leading_zero || digits == "-0" {
                    return None;
                }
                let n = if digits.starts_with('-') { Value::from(digits.parse::<i64>().ok()?) } else { Value::from(digits.parse::<u64>().ok()?) };
                (n, &after[end..])
            }
            _ => return None,
        };
        fields.push((name.to_string(), value));
        match after.strip_prefix(',') {
            Some(more) => rest = more,
            None if after.is_empty() => return Some(fields),
            None => return None,
        }
    }
}

impl PartialEq for PathElement {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for PathElement {}

impl PartialOrd for PathElement {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for PathElement {
    /// Fields, then keys, then values, then indices, as upstream orders them.
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (PathElement::Field(a), PathElement::Field(b)) => a.cmp(b),
            (PathElement::Key(a), PathElement::Key(b)) => {
                for ((an, av), (bn, bv)) in a.iter().zip(b) {
                    let c = an.cmp(bn).then_with(|| compare_values(av, bv));
                    if c != Ordering::Equal {
                        return c;
                    }
                }
                a.len().cmp(&b.len())
            }
            (PathElement::Value(a), PathElement::Value(b)) => compare_values(a, b),
            (PathElement::Index(a), PathElement::Index(b)) => a.cmp(b),
            _ => self.rank().cmp(&other.rank()),
        }
    }
}

impl fmt::Display for PathElement {
    /// Upstream's path notation: `.name`, `[name="x"]`, `[="x"]`, `[0]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathElement::Field(name) => write!(f, ".{name}"),
            PathElement::Key(fields) => {
                let parts: Vec<String> = fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
                write!(f, "[{}]", parts.join(","))
            }
            PathElement::Value(v) => write!(f, "[={v}]"),
            PathElement::Index(i) => write!(f, "[{i}]"),
        }
    }
}

/// Appends `s` as a JSON string, escaped as `serde_json` escapes it.
fn push_json_string(out: &mut String, s: &str) {
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push('"');
        out.push_str(s);
        out.push('"');
    } else {
        out.push_str(&Value::from(s).to_string());
    }
}

/// A path as upstream prints it in conflicts: `.spec.containers[name="nginx"].image`.
pub(crate) fn path_string(path: &[PathElement]) -> String {
    path.iter().map(ToString::to_string).collect()
}

/// A total order on JSON values, upstream's: by type (numbers, strings, booleans,
/// arrays, objects, null), then by value.
pub(crate) fn compare_values(a: &Value, b: &Value) -> Ordering {
    fn rank(v: &Value) -> u8 {
        match v {
            Value::Number(_) => 0,
            Value::String(_) => 1,
            Value::Bool(_) => 2,
            Value::Array(_) => 3,
            Value::Object(_) => 4,
            Value::Null => 5,
        }
    }
    match (a, b) {
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(x), Some(y)) => x.cmp(&y),
            _ => x.as_f64().unwrap_or(0.0).total_cmp(&y.as_f64().unwrap_or(0.0)),
        },
        (Value::String(x), Value::String(y)) => x.cmp(y),
        (Value::Array(x), Value::Array(y)) => {
            for (p, q) in x.iter().zip(y) {
                let c = compare_values(p, q);
                if c != Ordering::Equal {
                    return c;
                }
            }
            x.len().cmp(&y.len())
        }
        (Value::Object(x), Value::Object(y)) => {
            let mut xs: Vec<_> = x.iter().collect();
            let mut ys: Vec<_> = y.iter().collect();
            xs.sort_by(|a, b| a.0.cmp(b.0));
            ys.sort_by(|a, b| a.0.cmp(b.0));
            for ((kx, vx), (ky, vy)) in xs.iter().zip(&ys) {
                let c = kx.cmp(ky).then_with(|| compare_values(vx, vy));
                if c != Ordering::Equal {
                    return c;
                }
            }
            xs.len().cmp(&ys.len())
        }
        _ => rank(a).cmp(&rank(b)),
    }
}

/// Deep equality of JSON values where `1` and `1.0` are the same number.
pub(crate) fn values_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(_), Value::Number(_)) => compare_values(a, b) == Ordering::Equal,
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(p, q)| values_equal(p, q)),
        (Value::Object(x), Value::Object(y)) => {
            // Keys usually come in the same order: compare side by side, and only look
            // a key up when they do not.
            x.len() == y.len()
                && x.iter().zip(y).all(|((kx, vx), (ky, vy))| {
                    if kx == ky {
                        values_equal(vx, vy)
                    } else {
                        y.get(kx).is_some_and(|w| values_equal(vx, w))
                    }
                })
        }
        _ => a == b,
    }
}

// === impl Set ===

/// A set of field paths, held as a trie. Each level is a vector sorted by path
/// element, so that lookups are binary searches and the set algebra is a merge of
/// sorted runs; that is the order `fieldsV1` is written in, too.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Set {
    /// Sorted by `pe`, one entry per element; every entry is a member, has children,
    /// or both.
    entries: Vec<Entry>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    pe: PathElement,
    /// Whether the path ending here is in the set.
    member: bool,
    /// Paths that continue below.
    children: Set,
}

impl Entry {
    fn is_empty(&self) -> bool {
        !self.member && self.children.is_empty()
    }
}

impl Set {
    pub(crate) fn new() -> Set {
        Set::default()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn find(&self, pe: &PathElement) -> Result<usize, usize> {
        self.entries.binary_search_by(|e| e.pe.cmp(pe))
    }

    fn entry(&self, pe: &PathElement) -> Option<&Entry> {
        self.find(pe).ok().map(|i| &self.entries[i])
    }

    pub(crate) fn insert(&mut self, path: &[PathElement]) {
        let [first, rest @ ..] = path else { return };
        let i = match self.find(first) {
            Ok(i) => i,
            Err(i) => {
                self.entries.insert(i, Entry { pe: first.clone(), member: false, children: Set::new() });
                i
            }
        };
        if rest.is_empty() {
            self.entries[i].member = true;
        } else {
            self.entries[i].children.insert(rest);
        }
    }

    /// Adds `pe` to a set being built one level at a time: a member if `member`, with
    /// `children` below it. `pe` must not be in the set yet; [`Set::sort`] restores the
    /// order once the level is complete.
    pub(crate) fn push(&mut self, pe: PathElement, member: bool, children: Set) {
        if member || !children.is_empty() {
            self.entries.push(Entry { pe, member, children });
        }
    }

    /// Puts a level built with [`Set::push`] in order.
    pub(crate) fn sort(&mut self) {
        if !self.entries.windows(2).all(|w| w[0].pe < w[1].pe) {
            self.entries.sort_by(|a, b| a.pe.cmp(&b.pe));
        }
    }

    pub(crate) fn has(&self, path: &[PathElement]) -> bool {
        match path {
            [] => false,
            [last] => self.entry(last).is_some_and(|e| e.member),
            [first, rest @ ..] => self.entry(first).is_some_and(|e| e.children.has(rest)),
        }
    }

    /// The paths below `pe`, without it.
    pub(crate) fn with_prefix(&self, pe: &PathElement) -> Option<&Set> {
        self.entry(pe).map(|e| &e.children).filter(|c| !c.is_empty())
    }

    pub(crate) fn union(&self, other: &Set) -> Set {
        let mut out = self.clone();
        out.union_with(other);
        out
    }

    /// Adds the paths of `other`.
    pub(crate) fn union_with(&mut self, other: &Set) {
        if other.is_empty() {
            return;
        }
        if self.is_empty() {
            self.entries = other.entries.clone();
            return;
        }
        let mine = std::mem::take(&mut self.entries);
        let mut out = Vec::with_capacity(mine.len().max(other.entries.len()));
        let mut theirs = other.entries.iter().peekable();
        for mut e in mine {
            while let Some(o) = theirs.next_if(|o| o.pe < e.pe) {
                out.push(o.clone());
            }
            if let Some(o) = theirs.next_if(|o| o.pe == e.pe) {
                e.member |= o.member;
                e.children.union_with(&o.children);
            }
            out.push(e);
        }
        out.extend(theirs.cloned());
        self.entries = out;
    }

    /// The paths of `self` that are not in `other` (exact paths, not prefixes).
    pub(crate) fn difference(&self, other: &Set) -> Set {
        let mut out = self.clone();
        out.subtract(other);
        out
    }

    /// Removes the paths of `other` (exact paths, not prefixes).
    pub(crate) fn subtract(&mut self, other: &Set) {
        if other.is_empty() || self.is_empty() {
            return;
        }
        let mut theirs = other.entries.iter().peekable();
        self.entries.retain_mut(|e| {
            while theirs.next_if(|o| o.pe < e.pe).is_some() {}
            if let Some(o) = theirs.next_if(|o| o.pe == e.pe) {
                e.member &= !o.member;
                e.children.subtract(&o.children);
            }
            !e.is_empty()
        });
    }

    pub(crate) fn intersection(&self, other: &Set) -> Set {
        let mut entries = Vec::new();
        let mut theirs = other.entries.iter().peekable();
        for e in &self.entries {
            while theirs.next_if(|o| o.pe < e.pe).is_some() {}
            if let Some(o) = theirs.next_if(|o| o.pe == e.pe) {
                let entry = Entry { pe: e.pe.clone(), member: e.member && o.member, children: e.children.intersection(&o.children) };
                if !entry.is_empty() {
                    entries.push(entry);
                }
            }
        }
        Set { entries }
    }

    /// Whether the two sets share a path.
    pub(crate) fn intersects(&self, other: &Set) -> bool {
        let mut theirs = other.entries.iter().peekable();
        for e in &self.entries {
            while theirs.next_if(|o| o.pe < e.pe).is_some() {}
            if let Some(o) = theirs.next_if(|o| o.pe == e.pe) {
                if (e.member && o.member) || e.children.intersects(&o.children) {
                    return true;
                }
            }
        }
        false
    }

    /// Removes `path` and everything below it.
    pub(crate) fn remove_subtree(&mut self, path: &[PathElement]) {
        let [first, rest @ ..] = path else { return };
        let Ok(i) = self.find(first) else { return };
        if rest.is_empty() {
            self.entries.remove(i);
            return;
        }
        let e = &mut self.entries[i];
        e.children.remove_subtree(rest);
        if e.is_empty() {
            self.entries.remove(i);
        }
    }

    /// Every path in the set, members of a node before its children.
    pub(crate) fn paths(&self) -> Vec<Path> {
        let mut out = Vec::new();
        self.collect_paths(&mut Vec::new(), &mut out);
        out
    }

    fn collect_paths(&self, prefix: &mut Path, out: &mut Vec<Path>) {
        for e in self.entries.iter().filter(|e| e.member) {
            let mut p = prefix.clone();
            p.push(e.pe.clone());
            out.push(p);
        }
        for e in self.entries.iter().filter(|e| !e.children.is_empty()) {
            prefix.push(e.pe.clone());
            e.children.collect_paths(prefix, out);
            prefix.pop();
        }
    }

    /// Makes every declared struct field that has owned children a member too, so
    /// that removing the set removes those fields whole (upstream's
    /// `EnsureNamedFieldsAreMembers`, used when pruning).
    pub(crate) fn with_named_fields_as_members(&self, ty: Ty) -> Set {
        let entries = self
            .entries
            .iter()
            .map(|e| {
                if e.children.is_empty() {
                    return e.clone();
                }
                let (member, child_ty) = match &e.pe {
                    PathElement::Field(name) => (e.member || ty.has_field(name), ty.field(name)),
                    _ => (e.member, ty.item()),
                };
                Entry { pe: e.pe.clone(), member, children: e.children.with_named_fields_as_members(child_ty) }
            })
            .collect();
        Set { entries }
    }

    /// The `fieldsV1` JSON of the set.
    pub(crate) fn to_fields_v1(&self) -> Value {
        let mut out = Map::with_capacity(self.entries.len());
        self.emit(&mut out, &mut String::new());
        Value::Object(out)
    }

    /// Whether [`Set::to_fields_v1`] would write exactly `v`, keys in the same order;
    /// then `v` can be kept instead of writing it again.
    pub(crate) fn matches_fields_v1(&self, v: &Value) -> bool {
        v.as_object().is_some_and(|m| self.matches(m, false, &mut String::new()))
    }

    /// Whether `map` holds this level, after a `"."` marker if `marked`.
    fn matches(&self, map: &Map<String, Value>, marked: bool, key: &mut String) -> bool {
        if map.len() != self.entries.len() + usize::from(marked) {
            return false;
        }
        let mut fields = map.iter();
        if marked && !fields.next().is_some_and(|(k, v)| k == "." && v.as_object().is_some_and(Map::is_empty)) {
            return false;
        }
        self.entries.iter().zip(fields).all(|(e, (k, inner))| {
            let same_key = match &e.pe {
                PathElement::Field(f) => k.strip_prefix("f:") == Some(f.as_str()),
                pe => {
                    key.clear();
                    pe.write_fields_key(key);
                    key == k
                }
            };
            same_key
                && inner.as_object().is_some_and(|inner| {
                    if e.children.is_empty() {
                        inner.is_empty()
                    } else {
                        e.children.matches(inner, e.member, key)
                    }
                })
        })
    }

    fn emit(&self, out: &mut Map<String, Value>, key: &mut String) {
        for e in &self.entries {
            let mut inner = Map::new();
            if !e.children.is_empty() {
                inner = Map::with_capacity(e.children.entries.len() + usize::from(e.member));
                if e.member {
                    inner.insert(".".into(), Value::Object(Map::new()));
                }
                e.children.emit(&mut inner, key);
            }
            key.clear();
            e.pe.write_fields_key(key);
            out.insert(key.as_str().into(), Value::Object(inner));
        }
    }

    /// Parses `fieldsV1` JSON; `None` if it is not in that format.
    pub(crate) fn from_fields_v1(v: &Value) -> Option<Set> {
        let map = v.as_object()?;
        let mut set = Set { entries: Vec::with_capacity(map.len()) };
        for (k, inner) in map {
            if k == "." {
                continue;
            }
            let pe = PathElement::from_fields_key(k)?;
            let inner_map = inner.as_object()?;
            let member = inner_map.is_empty() || inner_map.contains_key(".");
            let children = Set::from_fields_v1(inner)?;
            set.push(pe, member, children);
        }
        set.dedup();
        Some(set)
    }

    /// Sorts a level parsed from `fieldsV1`, whose keys may come in any order, and
    /// merges keys that name the same element (`v:1` and `v:1.0`): it is a member if
    /// any of them is, with the children of the last one that has some.
    fn dedup(&mut self) {
        if self.entries.windows(2).all(|w| w[0].pe < w[1].pe) {
            return;
        }
        self.entries.sort_by(|a, b| a.pe.cmp(&b.pe));
        let mut out: Vec<Entry> = Vec::with_capacity(self.entries.len());
        for e in std::mem::take(&mut self.entries) {
            match out.last_mut() {
                Some(last) if last.pe == e.pe => {
                    if e.member && !last.member {
                        last.pe = e.pe;
                        last.member = true;
                    }
                    if !e.children.is_empty() {
                        last.children = e.children;
                    }
                }
                _ => out.push(e),
            }
        }
        self.entries = out;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn f(name: &str) -> PathElement {
        PathElement::Field(name.into())
    }

    fn key(name: &str, v: Value) -> PathElement {
        PathElement::Key(vec![(name.into(), v)])
    }

    #[test]
    fn fields_v1_round_trips_with_self_markers() {
        let v = json!({
            "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
            "f:spec": {"f:containers": {"k:{\"name\":\"nginx\"}": {".": {}, "f:image": {}, "f:name": {}}}}
        });
        let set = Set::from_fields_v1(&v).unwrap();
        assert!(set.has(&[f("metadata"), f("labels")]));
        assert!(set.has(&[f("metadata"), f("labels"), f("app")]));
        assert!(!set.has(&[f("metadata")]));
        assert!(set.has(&[f("spec"), f("containers"), key("name", json!("nginx")), f("image")]));
        assert_eq!(set.to_fields_v1(), v);
        assert_eq!(serde_json::to_string(&set.to_fields_v1()).unwrap(), serde_json::to_string(&v).unwrap());
    }

    #[test]
    fn keys_serialize_with_sorted_fields() {
        let pe = PathElement::Key(vec![("containerPort".into(), json!(80)), ("protocol".into(), json!("TCP"))]);
        assert_eq!(pe.to_fields_key(), r#"k:{"containerPort":80,"protocol":"TCP"}"#);
        assert_eq!(PathElement::from_fields_key(&pe.to_fields_key()), Some(pe.clone()));
        assert_eq!(pe.to_string(), r#"[containerPort=80,protocol="TCP"]"#);
        assert_eq!(PathElement::Value(json!("a")).to_fields_key(), r#"v:"a""#);
    }

    #[test]
    fn simple_keys_parse_as_serde_json_parses_them() {
        let slow = |s: &str| {
            let Value::Object(m) = serde_json::from_str(s).ok()? else { return None };
            let mut fields: Vec<(String, Value)> = m.into_iter().collect();
            fields.sort_by(|a, b| a.0.cmp(&b.0));
            Some(fields)
        };
        let inputs = [
            r#"{"name":"nginx"}"#,
            r#"{"containerPort":80,"protocol":"TCP"}"#,
            r#"{"port":-8,"protocol":"UDP"}"#,
            r#"{"a":18446744073709551615}"#,
            r#"{"a":18446744073709551616}"#,
            r#"{"a":-9223372036854775808}"#,
            r#"{"a":-9223372036854775809}"#,
            r#"{"a":-0}"#,
            r#"{"a":0}"#,
            r#"{"a":01}"#,
            r#"{"a":1.5}"#,
            r#"{"a":1e3}"#,
            r#"{"a":"x"y"}"#,
            r#"{"a":"é"}"#,
            r#"{"b":1,"a":2}"#,
            r#"{"a":1,"a":2}"#,
            r#"{"a": 1}"#,
            r#"{"a":true}"#,
            r#"{"a":null}"#,
            r#"{}"#,
            r#"{"a":1,}"#,
            r#"{"a":"1"}x"#,
            "{\"a\":\"\u{1}\"}",
        ];
        for s in inputs {
            let fast = parse_simple_key(s);
            if fast.is_some() {
                assert_eq!(fast, slow(s), "{s}");
            }
            let pe = PathElement::from_fields_key(&format!("k:{s}"));
            assert_eq!(pe.map(|pe| match pe {
                PathElement::Key(f) => f,
                _ => unreachable!(),
            }), slow(s), "{s}");
        }
        assert!(parse_simple_key(r#"{"containerPort":80,"protocol":"TCP"}"#).is_some());
    }

    #[test]
    fn set_algebra_works_on_exact_paths() {
        let mut a = Set::new();
        a.insert(&[f("spec"), f("replicas")]);
        a.insert(&[f("spec"), f("paused")]);
        let mut b = Set::new();
        b.insert(&[f("spec"), f("replicas")]);
        b.insert(&[f("spec")]);
        assert_eq!(a.difference(&b).paths(), vec![vec![f("spec"), f("paused")]]);
        assert_eq!(a.intersection(&b).paths(), vec![vec![f("spec"), f("replicas")]]);
        assert_eq!(a.union(&b).paths().len(), 3);
        assert_eq!(
            path_string(&[f("spec"), f("containers"), key("name", json!("nginx")), f("image")]),
            r#".spec.containers[name="nginx"].image"#
        );
        a.remove_subtree(&[f("spec")]);
        assert!(a.is_empty());
    }
}
