//! Field paths and sets of them, as `metadata.managedFields` records ownership.
//!
//! A path is a list of [`PathElement`]s: a field name, the key of an element of an
//! associative list, the value of an element of a set, or an index. A [`Set`] is a
//! trie of paths and serializes to the `fieldsV1` format: `f:<field>`, `k:{...}`,
//! `v:<json>`, `i:<index>`, with `.` marking a node that is itself in the set as
//! well as having children.

use std::cmp::Ordering;
use std::collections::BTreeMap;
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

/// Parses the key of a `k:` element the way it is almost always written (see
/// [`SimpleKey`]) to what `serde_json` would make of it; `None` for anything else,
/// which `serde_json` then parses.
fn parse_simple_key(s: &str) -> Option<Vec<(String, Value)>> {
    let key = SimpleKey::read(s)?;
    Some(key.fields().map(|(name, v)| (name.to_string(), v.to_value())).collect())
}

// === path elements read in place ===

/// A string without escapes or an integer that fits `i64`: the values that name list
/// elements almost always, read without copying. Integers sort before strings, as
/// [`compare_values`] sorts them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Scalar<'a> {
    Int(i64),
    Str(&'a str),
}

impl<'a> Scalar<'a> {
    /// Reads a scalar written as `serde_json` writes it from the start of `s`, and
    /// returns the rest. Escapes, `-0`, floats and integers beyond `i64` are left out.
    fn read(s: &'a str) -> Option<(Scalar<'a>, &'a str)> {
        match s.as_bytes().first()? {
            b'"' => {
                let body = &s[1..];
                let end = body.bytes().position(|b| b == b'"' || b == b'\\' || b < b' ')?;
                (body.as_bytes()[end] == b'"').then(|| (Scalar::Str(&body[..end]), &body[end + 1..]))
            }
            b'-' | b'0'..=b'9' => {
                let end = s.bytes().position(|b| !(b == b'-' || b.is_ascii_digit())).unwrap_or(s.len());
                let digits = &s[..end];
                let unsigned = digits.strip_prefix('-').unwrap_or(digits);
                let leading_zero = unsigned.len() > 1 && unsigned.starts_with('0');
                // serde_json reads `-0` as a float.
                if unsigned.is_empty() || !unsigned.bytes().all(|b| b.is_ascii_digit()) || leading_zero || digits == "-0" {
                    return None;
                }
                Some((Scalar::Int(digits.parse().ok()?), &s[end..]))
            }
            _ => None,
        }
    }

    fn to_value(self) -> Value {
        match self {
            Scalar::Int(i) => Value::from(i),
            Scalar::Str(s) => Value::from(s),
        }
    }

    /// Whether `v` is the same value, as [`compare_values`] sees it.
    fn is(self, v: &Value) -> bool {
        match (self, v) {
            (Scalar::Int(i), Value::Number(_)) => compare_values(&Value::from(i), v) == Ordering::Equal,
            (Scalar::Str(s), Value::String(t)) => s == t,
            _ => false,
        }
    }
}

/// The key of a `k:` element as this module writes it, read without copying: compact
/// JSON with sorted names and [`Scalar`] values, `{"containerPort":80,"protocol":"TCP"}`.
/// Written this way, the text is exactly what [`PathElement::write_fields_key`] writes.
#[derive(Debug, Clone, Copy)]
struct SimpleKey<'a> {
    /// The text, checked, without its braces.
    fields: &'a str,
}

impl<'a> SimpleKey<'a> {
    fn read(s: &'a str) -> Option<SimpleKey<'a>> {
        let fields = s.strip_prefix('{')?.strip_suffix('}')?;
        let mut rest = fields;
        let mut last: Option<&str> = None;
        loop {
            let (Scalar::Str(name), after) = Scalar::read(rest)? else { return None };
            if last.is_some_and(|last| last >= name) {
                return None;
            }
            last = Some(name);
            let (_, after) = Scalar::read(after.strip_prefix(':')?)?;
            match after.strip_prefix(',') {
                Some(more) => rest = more,
                None if after.is_empty() => return Some(SimpleKey { fields }),
                None => return None,
            }
        }
    }

    /// The names and values, in order.
    fn fields(self) -> impl Iterator<Item = (&'a str, Scalar<'a>)> {
        let mut rest = self.fields;
        std::iter::from_fn(move || {
            let (Scalar::Str(name), after) = Scalar::read(rest)? else { return None };
            let (value, after) = Scalar::read(after.strip_prefix(':')?)?;
            rest = after.strip_prefix(',').unwrap_or("");
            Some((name, value))
        })
    }
}

/// A `fieldsV1` key read in place where it is written as this module writes it, parsed
/// otherwise.
#[derive(Debug, Clone)]
enum Step<'a> {
    Field(&'a str),
    Key(SimpleKey<'a>),
    Value(Scalar<'a>),
    Index(usize),
    Parsed(Box<PathElement>),
}

impl<'a> Step<'a> {
    /// Reads `k`, and whether it is written as [`PathElement::write_fields_key`] writes
    /// it; `None` if it is not a path element.
    fn read(k: &'a str, key: &mut String) -> Option<(Step<'a>, bool)> {
        // Kinds are one letter: `f:`, `k:`, `v:`, `i:`.
        if k.as_bytes().get(1) != Some(&b':') {
            return None;
        }
        let rest = &k[2..];
        let simple = match k.as_bytes()[0] {
            b'f' => return Some((Step::Field(rest), true)),
            b'k' => SimpleKey::read(rest).map(Step::Key),
            b'v' => Scalar::read(rest).filter(|(_, after)| after.is_empty()).map(|(v, _)| Step::Value(v)),
            b'i' => (rest == "0" || (!rest.starts_with('0') && !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit())))
                .then(|| rest.parse().ok().map(Step::Index))
                .flatten(),
            _ => None,
        };
        if let Some(step) = simple {
            return Some((step, true));
        }
        let pe = PathElement::from_fields_key(k)?;
        key.clear();
        pe.write_fields_key(key);
        let canonical = key == k;
        Some((Step::Parsed(Box::new(pe)), canonical))
    }

    fn rank(&self) -> u8 {
        match self {
            Step::Field(_) => 0,
            Step::Key(_) => 1,
            Step::Value(_) => 2,
            Step::Index(_) => 3,
            Step::Parsed(pe) => pe.rank(),
        }
    }

    fn to_pe(&self) -> PathElement {
        match self {
            Step::Field(f) => PathElement::Field((*f).to_string()),
            Step::Key(k) => PathElement::Key(k.fields().map(|(n, v)| (n.to_string(), v.to_value())).collect()),
            Step::Value(v) => PathElement::Value(v.to_value()),
            Step::Index(i) => PathElement::Index(*i),
            Step::Parsed(pe) => (**pe).clone(),
        }
    }

    /// The order of the path elements, as [`PathElement`] orders them.
    fn cmp(&self, other: &Step<'_>) -> Ordering {
        match (self, other) {
            (Step::Field(a), Step::Field(b)) => a.cmp(b),
            (Step::Key(a), Step::Key(b)) => a.fields().cmp(b.fields()),
            (Step::Value(a), Step::Value(b)) => a.cmp(b),
            (Step::Index(a), Step::Index(b)) => a.cmp(b),
            _ if self.rank() != other.rank() => self.rank().cmp(&other.rank()),
            _ => self.to_pe().cmp(&other.to_pe()),
        }
    }

    /// Whether this names `pe`.
    fn is(&self, pe: &PathElement) -> bool {
        match (self, pe) {
            (Step::Field(a), PathElement::Field(b)) => *a == b,
            (Step::Key(a), PathElement::Key(b)) => a.fields().count() == b.len() && a.fields().zip(b).all(|((n, v), (m, w))| n == m && v.is(w)),
            (Step::Value(a), PathElement::Value(b)) => a.is(b),
            (Step::Index(a), PathElement::Index(b)) => a == b,
            (Step::Parsed(a), b) => **a == *b,
            _ => false,
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

// === fieldsV1 as it is ===

/// What [`check_fields_v1`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FieldsV1 {
    /// [`Set::from_fields_v1`] would fail.
    Invalid,
    /// Valid, but not what [`Set::to_fields_v1`] of its set writes.
    Valid,
    /// Exactly what [`Set::to_fields_v1`] of its set writes, keys in the same order.
    Canonical,
}

/// Checks `fieldsV1` JSON without building its set: whether it parses, and whether it
/// is already in the form this module writes. Sets written by us always are, so a
/// manager whose fields a write leaves alone can keep its JSON as it is.
pub(crate) fn check_fields_v1(v: &Value) -> FieldsV1 {
    let Some(map) = v.as_object() else { return FieldsV1::Invalid };
    let mut canonical = true;
    if !check_level(map, false, &mut canonical, &mut String::new()) {
        return FieldsV1::Invalid;
    }
    if canonical {
        FieldsV1::Canonical
    } else {
        FieldsV1::Valid
    }
}

/// Checks one level; `marked` when the level may start with the `"."` marker of its
/// parent (it is below a path element).
fn check_level(map: &Map<String, Value>, marked: bool, canonical: &mut bool, key: &mut String) -> bool {
    let mut previous: Option<Step<'_>> = None;
    for (i, (k, inner)) in map.iter().enumerate() {
        if k == "." {
            // Only `{}` first below an element that also has children is written.
            if !(marked && i == 0 && inner.as_object().is_some_and(Map::is_empty) && map.len() > 1) {
                *canonical = false;
            }
            continue;
        }
        let Some(inner) = inner.as_object() else { return false };
        let Some((step, written)) = Step::read(k, key) else { return false };
        if !written || previous.as_ref().is_some_and(|p| p.cmp(&step) != Ordering::Less) {
            *canonical = false;
        }
        previous = Some(step);
        if !inner.is_empty() && !check_level(inner, true, canonical, key) {
            return false;
        }
    }
    true
}

/// The key of `map` that names `pe`, if any.
fn find_key<'m>(map: &'m Map<String, Value>, pe: &PathElement, key: &mut String) -> Option<&'m String> {
    if let PathElement::Field(name) = pe {
        // `f:` keys name a field one way only.
        key.clear();
        key.push_str("f:");
        key.push_str(name);
        return map.get_key_value(key.as_str()).map(|(k, _)| k);
    }
    // Other keys may spell one element several ways (`v:1`, `v:1.0`).
    let mut scratch = String::new();
    map.keys().find(|k| k.as_str() != "." && !k.starts_with("f:") && Step::read(k, &mut scratch).is_some_and(|(step, _)| step.is(pe)))
}

/// Each entry of `set` with the key of `map` that names it (the first, where valid JSON
/// spells one element several ways, `v:1` and `v:1.0`), in no particular order.
///
/// Goes through the smaller of the two: finding every entry's key by reading every key
/// costs their product, and one manager's update of thousands of list elements meets
/// thousands of managers, each owning a few of them (minutes, before).
fn matching_keys<'s, 'm>(set: &'s Set, map: &'m Map<String, Value>, key: &mut String) -> Vec<(&'s Entry, &'m String)> {
    let mut out = Vec::new();
    let mut scratch = String::new();
    if set.entries.len() <= map.len() {
        // Keys of elements other than fields, read once, by the element they name.
        let mut elements: Option<BTreeMap<PathElement, &'m String>> = None;
        for e in &set.entries {
            let found = match &e.pe {
                PathElement::Field(_) => find_key(map, &e.pe, key),
                pe => elements
                    .get_or_insert_with(|| {
                        let mut by_element = BTreeMap::new();
                        for k in map.keys().filter(|k| k.as_str() != "." && !k.starts_with("f:")) {
                            if let Some((step, _)) = Step::read(k, &mut scratch) {
                                by_element.entry(step.to_pe()).or_insert(k);
                            }
                        }
                        by_element
                    })
                    .get(pe)
                    .copied(),
            };
            out.extend(found.map(|k| (e, k)));
        }
    } else {
        let mut paired = vec![false; set.entries.len()];
        for k in map.keys().filter(|k| k.as_str() != ".") {
            let Some((step, _)) = Step::read(k, &mut scratch) else { continue };
            let found = match step {
                Step::Field(name) => set.entries.binary_search_by(|e| match &e.pe {
                    PathElement::Field(f) => f.as_str().cmp(name),
                    _ => Ordering::Greater,
                }),
                step => set.find(&step.to_pe()),
            };
            if let Ok(i) = found {
                if !std::mem::replace(&mut paired[i], true) {
                    out.push((&set.entries[i], k));
                }
            }
        }
    }
    out
}

/// Whether `set` may share a path with the set of the valid `fieldsV1` JSON `v`;
/// `false` means it certainly does not. It reads only the levels of `v` that `set`
/// reaches.
pub(crate) fn fields_v1_intersects(set: &Set, v: &Value) -> bool {
    v.as_object().is_some_and(|map| intersects_level(set, map, &mut String::new()))
}

fn intersects_level(set: &Set, map: &Map<String, Value>, key: &mut String) -> bool {
    matching_keys(set, map, key).into_iter().any(|(e, k)| {
        let Some(inner) = map.get(k).and_then(Value::as_object) else { return false };
        let member = inner.is_empty() || inner.contains_key(".");
        (e.member && member) || (!e.children.is_empty() && intersects_level(&e.children, inner, key))
    })
}

/// Removes the paths of `set` (exact paths, as [`Set::subtract`]) from `fieldsV1` JSON
/// in the form [`Set::to_fields_v1`] writes, which it stays in: the result is what
/// parsing, subtracting and writing would give, without doing that.
pub(crate) fn fields_v1_subtract(v: &mut Value, set: &Set) {
    if let Some(map) = v.as_object_mut() {
        subtract_level(map, set, &mut String::new());
    }
}

fn subtract_level(map: &mut Map<String, Value>, set: &Set, key: &mut String) {
    let found: Vec<(&Entry, String)> = matching_keys(set, map, key).into_iter().map(|(e, k)| (e, k.clone())).collect();
    for (e, k) in found {
        let Some(inner) = map.get_mut(&k).and_then(Value::as_object_mut) else { continue };
        let member = (inner.is_empty() || inner.contains_key(".")) && !e.member;
        if !e.children.is_empty() {
            subtract_level(inner, &e.children, key);
        }
        let children = inner.keys().any(|k| k != ".");
        match (member, children) {
            (false, false) => {
                map.shift_remove(&k);
            }
            (true, false) => inner.clear(),
            (false, true) => {
                inner.shift_remove(".");
            }
            (true, true) => {}
        }
    }
}

/// Whether the set of the valid `fieldsV1` JSON `v` is empty.
pub(crate) fn fields_v1_is_empty(v: &Value) -> bool {
    v.as_object().is_none_or(|m| m.keys().all(|k| k == "."))
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
    fn many_managers_of_many_list_elements_are_updated_in_linear_time() {
        // 12 500 appliers of one container each took 13 seconds in release builds, when
        // every changed element was matched against every key of every manager.
        const N: usize = 6_000;
        let containers = |image: &str| -> Vec<Value> { (0..N).map(|i| json!({"name": format!("c{i}"), "image": image})).collect() };
        let managed: Vec<Value> = (0..N)
            .map(|i| {
                json!({"manager": format!("m{i}"), "operation": "Apply", "apiVersion": "v1", "fieldsType": "FieldsV1",
                       "fieldsV1": {"f:spec": {"f:containers": {format!("k:{{\"name\":\"c{i}\"}}"): {".": {}, "f:image": {}, "f:name": {}}}}}})
            })
            .collect();
        let started = std::time::Instant::now();
        // A create: its manager takes every field from the managers it was sent.
        let mut created = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "managedFields": managed}, "spec": {"containers": containers("a")}});
        crate::patch::record_update("io.k8s.api.core.v1.Pod", None, &mut created, "creator", "", "2024-01-01T00:00:00Z");
        assert_eq!(created["metadata"]["managedFields"].as_array().map(Vec::len), Some(1));
        let live = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "uid": "u", "managedFields": managed}, "spec": {"containers": containers("a")}});
        // Another manager changes every image: each applier loses its image to it.
        let mut new = live.clone();
        new["spec"]["containers"] = Value::Array(containers("b"));
        crate::patch::record_update("io.k8s.api.core.v1.Pod", Some(&live), &mut new, "editor", "", "2024-01-01T00:00:01Z");
        let entries = new["metadata"]["managedFields"].as_array().unwrap();
        let m7 = entries.iter().find(|e| e["manager"] == "m7").unwrap();
        assert_eq!(m7["fieldsV1"], json!({"f:spec": {"f:containers": {"k:{\"name\":\"c7\"}": {".": {}, "f:name": {}}}}}));
        assert!(started.elapsed() < std::time::Duration::from_secs(20), "{:?}", started.elapsed());
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

    /// A small deterministic generator of sets, for checking the in-place `fieldsV1`
    /// operations against parsing.
    struct Gen(u64);

    impl Gen {
        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % n
        }

        fn pe(&mut self) -> PathElement {
            let names = ["a", "b", "name", "é", "q\"uote", "x y"];
            let pick = |g: &mut Gen| names[g.below(names.len() as u64) as usize].to_string();
            match self.below(9) {
                0..=3 => PathElement::Field(pick(self)),
                4 => PathElement::Key(vec![(pick(self), json!(self.below(3)))]),
                5 => PathElement::Key(vec![("name".into(), json!(pick(self))), ("protocol".into(), json!("TCP"))]),
                6 => PathElement::Key(vec![("port".into(), json!(self.below(2) as f64 + 0.5))]),
                7 => PathElement::Value([json!(pick(self)), json!(self.below(3)), json!(-1), json!(1.5), json!(true)][self.below(5) as usize].clone()),
                _ => PathElement::Index(self.below(12) as usize),
            }
        }

        fn set(&mut self, depth: u32) -> Set {
            let mut set = Set::new();
            for _ in 0..self.below(5) {
                let mut path = vec![self.pe()];
                for _ in 0..self.below(u64::from(depth) + 1) {
                    path.push(self.pe());
                }
                set.insert(&path);
                if self.below(3) == 0 {
                    set.insert(&path[..1]);
                }
            }
            set
        }
    }

    #[test]
    fn fields_v1_in_place_agrees_with_parsing() {
        let mut g = Gen(0x2545_f491_4f6c_dd1d);
        for _ in 0..2000 {
            let owned = g.set(3);
            let json = owned.to_fields_v1();
            assert_eq!(check_fields_v1(&json), FieldsV1::Canonical, "{json}");
            assert_eq!(fields_v1_is_empty(&json), owned.is_empty());
            let taken = if g.below(2) == 0 { g.set(3) } else { owned.intersection(&g.set(3)).union(&g.set(1)) };
            assert_eq!(fields_v1_intersects(&taken, &json), owned.intersects(&taken), "{json} and {}", taken.to_fields_v1());
            let mut after = json.clone();
            fields_v1_subtract(&mut after, &taken);
            let expected = owned.difference(&taken).to_fields_v1();
            assert_eq!(serde_json::to_string(&after).unwrap(), serde_json::to_string(&expected).unwrap());
        }
    }

    #[test]
    fn fields_v1_not_written_our_way_is_told_apart() {
        let cases = [
            (json!({"f:b": {}, "f:a": {}}), FieldsV1::Valid),
            (json!({"f:a": {".": {}}}), FieldsV1::Valid),
            (json!({".": {}, "f:a": {}}), FieldsV1::Valid),
            (json!({"f:a": {"f:b": {}, ".": {}}}), FieldsV1::Valid),
            (json!({"k:{\"name\": \"x\"}": {}}), FieldsV1::Valid),
            (json!({"v:1": {}, "v:1.0": {}}), FieldsV1::Valid),
            (json!({"i:01": {}}), FieldsV1::Valid),
            (json!({"k:{\"b\":1,\"a\":2}": {}}), FieldsV1::Valid),
            (json!({"v:2": {}, "k:{\"a\":1}": {}}), FieldsV1::Valid),
            (json!({"f:a": {"f:b": {}}, "k:{\"a\":1}": {".": {}, "f:c": {}}, "v:\"x\"": {}, "i:3": {}}), FieldsV1::Canonical),
            (json!({"x:a": {}}), FieldsV1::Invalid),
            (json!({"f:a": []}), FieldsV1::Invalid),
            (json!({"k:[1]": {}}), FieldsV1::Invalid),
            (json!({"f:a": {"i:x": {}}}), FieldsV1::Invalid),
            (json!([]), FieldsV1::Invalid),
        ];
        for (json, expected) in cases {
            assert_eq!(check_fields_v1(&json), expected, "{json}");
            assert_eq!(expected == FieldsV1::Invalid, Set::from_fields_v1(&json).is_none(), "{json}");
            if let Some(set) = Set::from_fields_v1(&json) {
                let written = serde_json::to_string(&set.to_fields_v1()).unwrap();
                assert_eq!(written == serde_json::to_string(&json).unwrap(), expected == FieldsV1::Canonical, "{json}");
            }
        }
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
