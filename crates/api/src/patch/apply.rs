//! Server-side apply and field ownership (`metadata.managedFields`), following
//! sigs.k8s.io/structured-merge-diff and k8s.io/apimachinery/pkg/util/managedfields.
//!
//! Every manager owns a [`Set`] of field paths, recorded per (manager, operation,
//! apiVersion for updates, subresource). An ordinary write gives the fields it added or
//! changed to its manager and takes them from everyone else; fields it removed are
//! dropped from every set. An apply merges the applied configuration into the live
//! object, owns exactly the fields of that configuration, removes what it owned last
//! time but no longer applies (unless someone else owns it), and fails with conflicts
//! when it would change a value that another manager owns (unless forced, which takes
//! the field away from them).

use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

use serde_json::{json, Map, Value};

use super::fieldpath::{
    check_fields_v1, compare_values, fields_v1_intersects, fields_v1_is_empty, fields_v1_subtract, path_string, values_equal, FieldsV1, Path, PathElement, Set,
};
use super::meta::ListType;
use super::typed::{Shape, Ty};
use super::{ApplyError, Conflict, PatchError};
use crate::resources::{Subresource, RESOURCES};

/// Upstream caps the number of `Update` entries; older ones are merged into this one.
const MAX_UPDATE_MANAGERS: usize = 10;
const ANCIENT_CHANGES: &str = "ancient-changes";
/// The manager that takes the existing fields of an object applied for the first time.
const BEFORE_FIRST_APPLY: &str = "before-first-apply";

// === managers ===

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Operation {
    Apply,
    Update,
}

impl Operation {
    fn as_str(self) -> &'static str {
        match self {
            Operation::Apply => "Apply",
            Operation::Update => "Update",
        }
    }
}

/// Who owns a set of fields. Apply entries are one per manager whatever the version;
/// update entries are per version too.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct ManagerId {
    manager: String,
    operation: Operation,
    /// Empty for `Apply`.
    api_version: String,
    subresource: String,
}

impl ManagerId {
    fn new(manager: &str, operation: Operation, api_version: &str, subresource: &str) -> ManagerId {
        ManagerId {
            manager: if manager.is_empty() { "unknown".into() } else { manager.into() },
            operation,
            api_version: if operation == Operation::Apply { String::new() } else { api_version.into() },
            subresource: subresource.into(),
        }
    }
}

/// What one manager owns, and since when.
#[derive(Debug, Clone)]
struct Entry<'a> {
    fields: Fields<'a>,
    api_version: String,
    time: Option<String>,
}

/// The fields of a manager. Reading `fieldsV1` into a [`Set`] costs as much as the
/// rest of a write, and a write leaves most managers alone; so a `fieldsV1` that is
/// already in the form [`Set::to_fields_v1`] writes is kept as it was read, and only
/// parsed when a write takes fields from it.
#[derive(Debug, Clone)]
enum Fields<'a> {
    Set(Set),
    /// Valid `fieldsV1` in the form [`Set::to_fields_v1`] writes.
    Json(Cow<'a, Value>),
}

impl Entry<'_> {
    fn new(set: Set, api_version: String, time: Option<String>) -> Self {
        Entry { fields: Fields::Set(set), api_version, time }
    }

    /// The set, parsed first if need be.
    fn set(&mut self) -> &mut Set {
        if let Fields::Json(v) = &self.fields {
            self.fields = Fields::Set(Set::from_fields_v1(v).unwrap_or_default());
        }
        match &mut self.fields {
            Fields::Set(set) => set,
            Fields::Json(_) => unreachable!("parsed above"),
        }
    }

    fn is_empty(&self) -> bool {
        match &self.fields {
            Fields::Set(set) => set.is_empty(),
            Fields::Json(v) => fields_v1_is_empty(v),
        }
    }

    /// Whether the entry may own some of `paths`; `false` means it does not.
    fn may_own(&self, paths: &Set) -> bool {
        match &self.fields {
            Fields::Set(set) => set.intersects(paths),
            Fields::Json(v) => fields_v1_intersects(paths, v),
        }
    }

    /// Gives up `paths` (exact paths, as [`Set::subtract`]).
    fn give_up(&mut self, paths: &Set) {
        if paths.is_empty() || !self.may_own(paths) {
            return;
        }
        match &mut self.fields {
            Fields::Set(set) => set.subtract(paths),
            Fields::Json(v) => fields_v1_subtract(v.to_mut(), paths),
        }
    }
}

type Managers<'a> = BTreeMap<ManagerId, Entry<'a>>;

/// Reads `managedFields`; `None` if it is not valid (upstream then ignores it). An
/// owned list gives its `fieldsV1` away; a borrowed one lends them.
fn decode(managed_fields: Option<Cow<'_, Value>>) -> Option<Managers<'_>> {
    let mut out = Managers::new();
    let Some(list) = managed_fields.filter(|v| !v.is_null()) else { return Some(out) };
    let list: Vec<Cow<'_, Value>> = match list {
        Cow::Borrowed(v) => v.as_array()?.iter().map(Cow::Borrowed).collect(),
        Cow::Owned(Value::Array(a)) => a.into_iter().map(Cow::Owned).collect(),
        Cow::Owned(_) => return None,
    };
    for e in list {
        let operation = match e.get("operation")?.as_str()? {
            "Apply" => Operation::Apply,
            "Update" => Operation::Update,
            _ => return None,
        };
        let api_version = e.get("apiVersion")?.as_str().filter(|s| !s.is_empty())?.to_string();
        if e.get("fieldsType")?.as_str()? != "FieldsV1" {
            return None;
        }
        let manager = e.get("manager").and_then(Value::as_str).unwrap_or("");
        let subresource = e.get("subresource").and_then(Value::as_str).unwrap_or("");
        let id = ManagerId {
            manager: manager.into(),
            operation,
            api_version: if operation == Operation::Apply { String::new() } else { api_version.clone() },
            subresource: subresource.into(),
        };
        let time = e.get("time").and_then(Value::as_str).map(String::from);
        let fields = match e.get("fieldsV1") {
            None | Some(Value::Null) => Fields::Set(Set::new()),
            Some(f) => match check_fields_v1(f) {
                FieldsV1::Invalid => return None,
                FieldsV1::Valid => Fields::Set(Set::from_fields_v1(f)?),
                FieldsV1::Canonical => Fields::Json(match e {
                    Cow::Borrowed(e) => Cow::Borrowed(&e["fieldsV1"]),
                    Cow::Owned(mut e) => Cow::Owned(e.get_mut("fieldsV1").map(Value::take).unwrap_or_default()),
                }),
            },
        };
        out.insert(id, Entry { fields, api_version, time });
    }
    Some(out)
}

/// Writes `managedFields` in upstream's order: applies first, then by time, manager,
/// apiVersion and subresource. Most writes leave most entries alone: a `fieldsV1` kept
/// as it was read (see [`Fields`]) goes back as it is, and an entry that `previous`
/// holds word for word is copied from it rather than written again.
fn encode(managers: Managers<'_>, mut previous: Previous<'_>) -> Option<Value> {
    if managers.is_empty() {
        return None;
    }
    let mut entries: Vec<(i64, ManagerId, Entry<'_>)> = managers.into_iter().map(|(id, e)| (seconds(e.time.as_deref()), id, e)).collect();
    entries.sort_by(|(ta, a, ea), (tb, b, eb)| {
        a.operation
            .cmp(&b.operation)
            .then_with(|| ta.cmp(tb))
            .then_with(|| a.manager.cmp(&b.manager))
            .then_with(|| ea.api_version.cmp(&eb.api_version))
            .then_with(|| a.subresource.cmp(&b.subresource))
    });
    let list = entries
        .into_iter()
        .enumerate()
        .map(|(i, (_, id, e))| {
            let fields_v1 = match e.fields {
                Fields::Json(v) => v.into_owned(),
                Fields::Set(ref set) => match previous.take(i, &id, &e.api_version, e.time.as_deref(), set) {
                    Some(entry) => return entry,
                    None => set.to_fields_v1(),
                },
            };
            let mut m = Map::with_capacity(7);
            m.insert("manager".into(), json!(id.manager));
            m.insert("operation".into(), json!(id.operation.as_str()));
            m.insert("apiVersion".into(), json!(e.api_version));
            if let Some(t) = &e.time {
                m.insert("time".into(), json!(t));
            }
            m.insert("fieldsType".into(), json!("FieldsV1"));
            m.insert("fieldsV1".into(), fields_v1);
            if !id.subresource.is_empty() {
                m.insert("subresource".into(), json!(id.subresource));
            }
            Value::Object(m)
        })
        .collect();
    Some(Value::Array(list))
}

/// The entries of the live object's managedFields, which [`encode`] may copy rather
/// than write again.
struct Previous<'a> {
    live: &'a [Value],
}

impl<'a> Previous<'a> {
    fn new(live: Option<&'a Value>) -> Previous<'a> {
        Previous { live: live.and_then(Value::as_array).map_or(&[], Vec::as_slice) }
    }

    /// An entry that says exactly what [`encode`] would write at position `i`.
    fn take(&mut self, i: usize, id: &ManagerId, api_version: &str, time: Option<&str>, set: &Set) -> Option<Value> {
        let n = self.live.len();
        (i..n).chain(0..i.min(n)).find(|&j| entry_matches(&self.live[j], id, api_version, time, set)).map(|j| self.live[j].clone())
    }
}

/// Whether `v` is the managedFields entry that [`encode`] writes for these.
fn entry_matches(v: &Value, id: &ManagerId, api_version: &str, time: Option<&str>, set: &Set) -> bool {
    let Some(m) = v.as_object() else { return false };
    if m.len() != 5 + usize::from(time.is_some()) + usize::from(!id.subresource.is_empty()) {
        return false;
    }
    let mut fields = m.iter();
    let mut next = |key: &str| fields.next().filter(|(k, _)| k.as_str() == key).map(|(_, v)| v);
    next("manager").and_then(Value::as_str) == Some(id.manager.as_str())
        && next("operation").and_then(Value::as_str) == Some(id.operation.as_str())
        && next("apiVersion").and_then(Value::as_str) == Some(api_version)
        && time.is_none_or(|t| next("time").and_then(Value::as_str) == Some(t))
        && next("fieldsType").and_then(Value::as_str) == Some("FieldsV1")
        && next("fieldsV1").is_some_and(|f| set.matches_fields_v1(f))
        && (id.subresource.is_empty() || next("subresource").and_then(Value::as_str) == Some(id.subresource.as_str()))
}

fn seconds(t: Option<&str>) -> i64 {
    t.and_then(crate::meta::parse_time).map_or(0, |t| t.as_second())
}

/// How upstream names a manager in conflict messages.
fn describe(id: &ManagerId, entry: &Entry<'_>) -> String {
    let mut s = format!("{:?}", id.manager);
    if !id.subresource.is_empty() {
        s = format!("{s} with subresource {:?}", id.subresource);
    }
    if id.operation == Operation::Update {
        match &entry.time {
            Some(t) => s = format!("{s} using {} at {t}", entry.api_version),
            None => s = format!("{s} using {}", entry.api_version),
        }
    }
    s
}

/// Merges the oldest `Update` entries into `ancient-changes` when there are too many.
fn cap_update_managers(managers: &mut Managers<'_>) {
    if managers.keys().filter(|id| id.operation == Operation::Update).count() <= MAX_UPDATE_MANAGERS {
        return;
    }
    let mut updaters: Vec<ManagerId> = managers.keys().filter(|id| id.operation == Operation::Update).cloned().collect();
    updaters.sort_by(|a, b| {
        seconds(managers[a].time.as_deref()).cmp(&seconds(managers[b].time.as_deref())).then_with(|| a.manager.cmp(&b.manager))
    });
    let mut first_per_version: BTreeMap<String, ManagerId> = BTreeMap::new();
    let mut count = updaters.len();
    for id in updaters {
        if count <= MAX_UPDATE_MANAGERS {
            break;
        }
        let entry = managers[&id].clone();
        let bucket = ManagerId::new(ANCIENT_CHANGES, Operation::Update, &entry.api_version, "");
        match first_per_version.get(&entry.api_version) {
            Some(first) => {
                if !managers.contains_key(&bucket) {
                    if let Some(e) = managers.remove(first) {
                        managers.insert(bucket.clone(), e);
                    }
                }
                let mut entry = entry;
                let b = managers.get_mut(&bucket).expect("bucket");
                let merged = entry.set().union(b.set());
                *b.set() = merged;
                b.time = entry.time.clone();
                managers.remove(&id);
                count -= 1;
            }
            None => {
                first_per_version.insert(entry.api_version.clone(), id);
            }
        }
    }
}

// === ignored fields ===

/// Fields that never count as owned: upstream strips these from every set.
fn strip_meta(set: &mut Set) {
    static STRIP: OnceLock<Set> = OnceLock::new();
    let strip = STRIP.get_or_init(|| {
        let mut strip = Set::new();
        for p in [
            &["apiVersion"][..],
            &["kind"],
            &["metadata"],
            &["metadata", "name"],
            &["metadata", "namespace"],
            &["metadata", "creationTimestamp"],
            &["metadata", "selfLink"],
            &["metadata", "uid"],
            &["metadata", "clusterName"],
            &["metadata", "generation"],
            &["metadata", "managedFields"],
            &["metadata", "resourceVersion"],
        ] {
            strip.insert(&fields(p));
        }
        strip
    });
    set.subtract(strip);
}

fn fields(names: &[&str]) -> Path {
    names.iter().map(|n| PathElement::Field((*n).into())).collect()
}

/// Fields that a write through this endpoint cannot change (the strategy resets
/// them), so nobody gets to own them there: `status` on the main resource of kinds
/// with a status subresource, and everything but `status` and `metadata` (and the
/// labels) on `/status`.
fn reset_fields(definition: &str, subresource: &str, object: &Value) -> Vec<Path> {
    let has_status = RESOURCES.iter().any(|r| r.definition == definition && r.has_subresource(Subresource::Status));
    match subresource {
        "" if has_status => vec![fields(&["status"])],
        "status" => {
            let mut out: Vec<Path> = object
                .as_object()
                .into_iter()
                .flat_map(|m| m.keys())
                .filter(|k| !matches!(k.as_str(), "status" | "metadata" | "apiVersion" | "kind"))
                .map(|k| fields(&[k]))
                .collect();
            out.push(fields(&["spec"]));
            out.push(fields(&["metadata", "labels"]));
            out
        }
        _ => Vec::new(),
    }
}

fn without(mut set: Set, paths: &[Path]) -> Set {
    for p in paths {
        set.remove_subtree(p);
    }
    set
}

// === typed operations ===

/// The path element of a list element; `Err` if it lacks a key field.
fn element_pe(ty: Ty, list_type: ListType, item: &Value) -> Result<PathElement, String> {
    match list_type {
        ListType::Map(keys) => {
            let m = item.as_object().ok_or_else(|| "associative list with keys has an element that is not a map type".to_string())?;
            let mut out = Vec::with_capacity(keys.len());
            for k in keys {
                match m.get(*k) {
                    Some(v) => out.push(((*k).to_string(), v.clone())),
                    None => match ty.item().key_default(k) {
                        Some(d) => out.push(((*k).to_string(), json!(d))),
                        None => {
                            return Err(format!(
                                "associative list with keys has an element that omits key field {k:?} (and doesn't have default value)"
                            ))
                        }
                    },
                }
            }
            out.sort_by(|a, b| a.0.cmp(&b.0));
            Ok(PathElement::Key(out))
        }
        ListType::Set => {
            if item.is_object() {
                Err("associative list without keys has an element that's a map type".into())
            } else {
                Ok(PathElement::Value(item.clone()))
            }
        }
        ListType::Atomic => Err("atomic lists have no element paths".into()),
    }
}

/// The fields of `value`: every leaf, atomic value, list element, map entry and empty
/// object (upstream's `ToFieldSet`).
fn to_field_set(ty: Ty, value: &Value) -> Result<Set, String> {
    match field_set_at(ty, value) {
        Ok((_, set)) => Ok(set),
        Err(FieldSetError { mut path, message }) => {
            path.reverse();
            Err(format!("{}: {message}", path_string(&path)))
        }
    }
}

/// A list element without a usable key, and where the list is (collected in reverse
/// while the walk unwinds, so that the walk itself keeps no path).
struct FieldSetError {
    path: Path,
    message: String,
}

/// The set below `value`, and whether `value` itself is a member.
fn field_set_at(ty: Ty, value: &Value) -> Result<(bool, Set), FieldSetError> {
    let mut set = Set::new();
    match ty.shape(value) {
        Shape::Scalar | Shape::List(ListType::Atomic) => return Ok((true, set)),
        Shape::List(lt) => {
            let items = value.as_array().map(Vec::as_slice).unwrap_or_default();
            let mut pes = Vec::with_capacity(items.len());
            for item in items {
                pes.push(element_pe(ty, lt, item).map_err(|message| FieldSetError { path: Vec::new(), message })?);
            }
            // Elements whose key appears more than once are owned whole, once.
            let mut order: Vec<usize> = (0..pes.len()).collect();
            order.sort_by(|a, b| pes[*a].cmp(&pes[*b]));
            let mut duplicate = vec![false; pes.len()];
            let mut first_duplicate = vec![false; pes.len()];
            for run in order.chunk_by(|a, b| pes[*a] == pes[*b]).filter(|run| run.len() > 1) {
                first_duplicate[*run.iter().min().expect("a run is not empty")] = true;
                for &i in run {
                    duplicate[i] = true;
                }
            }
            let item_ty = ty.item();
            for (i, (item, pe)) in items.iter().zip(pes).enumerate() {
                if duplicate[i] {
                    if first_duplicate[i] {
                        set.push(pe, true, Set::new());
                    }
                    continue;
                }
                match field_set_at(item_ty, item) {
                    Ok((_, children)) => set.push(pe, true, children),
                    Err(mut e) => {
                        e.path.push(pe);
                        return Err(e);
                    }
                }
            }
        }
        Shape::Struct | Shape::Map => {
            if ty.is_atomic() {
                return Ok((true, set));
            }
            let Some(map) = value.as_object() else { return Ok((false, set)) };
            for (k, v) in map {
                let (field_ty, declared) = ty.field_and_declared(k);
                match field_set_at(field_ty, v) {
                    Ok((member, children)) => {
                        let empty_object = v.as_object().is_some_and(Map::is_empty);
                        set.push(PathElement::Field(k.clone()), member || v.is_null() || empty_object || !declared, children);
                    }
                    Err(mut e) => {
                        e.path.push(PathElement::Field(k.clone()));
                        return Err(e);
                    }
                }
            }
        }
    }
    set.sort();
    Ok((false, set))
}

/// What changed between two versions of an object.
#[derive(Debug, Default)]
struct Comparison {
    added: Set,
    modified: Set,
    removed: Set,
}

/// Which sets of a [`Comparison`] a path itself goes to.
#[derive(Debug, Default, Clone, Copy)]
struct Marks {
    added: bool,
    modified: bool,
    removed: bool,
}

impl Marks {
    const NONE: Marks = Marks { added: false, modified: false, removed: false };
    const ADDED: Marks = Marks { added: true, modified: false, removed: false };
    const MODIFIED: Marks = Marks { added: false, modified: true, removed: false };
    const REMOVED: Marks = Marks { added: false, modified: false, removed: true };
}

impl Comparison {
    fn changed(&self) -> Set {
        self.added.union(&self.modified)
    }

    fn without(mut self, paths: &[Path]) -> Comparison {
        for p in paths {
            self.added.remove_subtree(p);
            self.modified.remove_subtree(p);
            self.removed.remove_subtree(p);
        }
        self
    }

    /// Files the comparison `sub` of a child under `pe`, with the child's own `marks`.
    /// The path element is only made when something is filed.
    fn attach(&mut self, pe: impl FnOnce() -> Option<PathElement>, marks: Marks, sub: Comparison) {
        let wanted = [marks.added || !sub.added.is_empty(), marks.modified || !sub.modified.is_empty(), marks.removed || !sub.removed.is_empty()];
        let Some(last) = wanted.iter().rposition(|w| *w) else { return };
        let Some(pe) = pe() else { return };
        let mut pe = Some(pe);
        let mut take = |i: usize| if i == last { pe.take().expect("taken once") } else { pe.clone().expect("taken last") };
        if wanted[0] {
            self.added.push(take(0), marks.added, sub.added);
        }
        if wanted[1] {
            self.modified.push(take(1), marks.modified, sub.modified);
        }
        if wanted[2] {
            self.removed.push(take(2), marks.removed, sub.removed);
        }
    }

    fn sort(&mut self) {
        self.added.sort();
        self.modified.sort();
        self.removed.sort();
    }
}

/// What of the compared objects the comparison leaves out: `metadata.managedFields`,
/// which is bookkeeping, not a field anyone owns. Skipping it spares copying the
/// objects to remove it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Skip {
    Nothing,
    /// The object itself: its `metadata` skips `managedFields`.
    Root,
    /// The object's `metadata`.
    ManagedFields,
}

/// An object as comparisons see it: upstream compares typed Go values, so a struct
/// also holds the fields of its zero value (see [`super::typed::zero_fill`]), and
/// `metadata.managedFields` is left out. This reads the object that way in place.
#[derive(Clone, Copy)]
struct View<'a> {
    map: &'a Map<String, Value>,
    ty: Ty,
    /// Whether the zero-value fields of `ty` apply (the object is a struct).
    zero: bool,
    skip_managed_fields: bool,
}

impl<'a> View<'a> {
    fn new(ty: Ty, v: &'a Value, skip_managed_fields: bool) -> Option<View<'a>> {
        let map = v.as_object()?;
        let zero = ty.has_zero_fields() && ty.shape(v) == Shape::Struct;
        Some(View { map, ty, zero, skip_managed_fields })
    }

    fn get(&self, k: &str) -> Option<&'a Value> {
        if self.skip_managed_fields && k == "managedFields" {
            return None;
        }
        match self.map.get(k) {
            Some(v) => Some(v),
            None if self.zero => self.ty.zero_fields().find(|(f, _)| *f == k).map(|(_, v)| v),
            None => None,
        }
    }

    /// The fields in order: the object's own, then the zero-value fields it lacks
    /// (where [`super::typed::zero_fill`] appends them).
    fn iter(&self) -> impl Iterator<Item = (&'a str, &'a Value)> {
        let View { map, ty, zero, skip_managed_fields } = *self;
        let own = map.iter().filter(move |(k, _)| !(skip_managed_fields && k.as_str() == "managedFields")).map(|(k, v)| (k.as_str(), v));
        let zero = ty.zero_fields().filter(move |(f, _)| zero && !map.contains_key(*f));
        own.chain(zero.map(|(f, v)| -> (&'a str, &'a Value) { (f, v) }))
    }

    fn len(&self) -> usize {
        self.iter().count()
    }

    fn is_empty(&self) -> bool {
        self.iter().next().is_none()
    }
}

/// Deep equality of `a` and `b` as comparisons see them (zero-value fields filled in,
/// `managedFields` skipped when `skip_managed_fields`).
fn typed_equal(ty: Ty, a: &Value, b: &Value, skip_managed_fields: bool) -> bool {
    if values_equal(a, b) {
        return true;
    }
    match (ty.shape(a), a, b) {
        (Shape::Struct | Shape::Map, Value::Object(_), Value::Object(_)) => {
            let (Some(x), Some(y)) = (View::new(ty, a, skip_managed_fields), View::new(ty, b, skip_managed_fields)) else { return false };
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| typed_equal(ty.field(k), v, w, false)))
        }
        (Shape::List(_), Value::Array(x), Value::Array(y)) => {
            let item = ty.item();
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| typed_equal(item, p, q, false))
        }
        _ => false,
    }
}

/// Compares two versions of an object (upstream's `Compare` of the typed values).
/// Neither needs its zero-value fields filled in or `managedFields` removed first.
fn compare(ty: Ty, old: &Value, new: &Value) -> Comparison {
    let mut c = Comparison::default();
    compare_at(ty, Some(old), Some(new), Skip::Root, &mut c);
    c
}

/// Whether the value is an empty container as comparisons see it.
fn is_empty_container(ty: Ty, v: Option<&Value>, skip_managed_fields: bool) -> bool {
    match v {
        None | Some(Value::Null) => true,
        Some(Value::Array(a)) => a.is_empty(),
        Some(v @ Value::Object(_)) => View::new(ty, v, skip_managed_fields).is_some_and(|view| view.is_empty()),
        Some(_) => false,
    }
}

/// Compares `lhs` and `rhs` at `ty`, filing what changed below them in `c` and
/// returning what changed about the position itself.
fn compare_at(ty: Ty, lhs: Option<&Value>, rhs: Option<&Value>, skip: Skip, c: &mut Comparison) -> Marks {
    let shape = match (lhs, rhs) {
        (None, None) => return Marks::NONE,
        (Some(l), Some(r)) => {
            let (a, b) = (ty.shape(l), ty.shape(r));
            if a != b {
                return Marks::MODIFIED;
            }
            a
        }
        (Some(v), None) | (None, Some(v)) => ty.shape(v),
    };
    let skip_mf = skip == Skip::ManagedFields;
    let leaf = match shape {
        Shape::Scalar | Shape::List(ListType::Atomic) => true,
        Shape::Struct | Shape::Map => {
            ty.is_atomic() || (is_empty_container(ty, lhs, skip_mf) && is_empty_container(ty, rhs, skip_mf))
        }
        Shape::List(_) => is_empty_container(ty, lhs, false) && is_empty_container(ty, rhs, false),
    };
    if leaf {
        return match (lhs, rhs) {
            (None, _) => Marks::ADDED,
            (_, None) => Marks::REMOVED,
            (Some(l), Some(r)) if !typed_equal(ty, l, r, skip_mf) => Marks::MODIFIED,
            _ => Marks::NONE,
        };
    }
    if let (Some(l), Some(r)) = (lhs, rhs) {
        // Equal values have nothing to compare below them; most of an update is this.
        if values_equal(l, r) {
            return Marks::NONE;
        }
    }
    match shape {
        Shape::List(lt) => compare_lists(ty, lt, lhs, rhs, c),
        _ => compare_fields(ty, lhs, rhs, skip, c),
    }
    match (lhs, rhs) {
        (None, _) => Marks::ADDED,
        (_, None) => Marks::REMOVED,
        _ => Marks::NONE,
    }
}

fn compare_fields(ty: Ty, lhs: Option<&Value>, rhs: Option<&Value>, skip: Skip, c: &mut Comparison) {
    let skip_mf = skip == Skip::ManagedFields;
    let l = lhs.and_then(|v| View::new(ty, v, skip_mf));
    let r = rhs.and_then(|v| View::new(ty, v, skip_mf));
    let child_skip = |k: &str| if skip == Skip::Root && k == "metadata" { Skip::ManagedFields } else { Skip::Nothing };
    for (k, lv) in l.iter().flat_map(View::iter) {
        let mut sub = Comparison::default();
        let marks = compare_at(ty.field(k), Some(lv), r.and_then(|r| r.get(k)), child_skip(k), &mut sub);
        c.attach(|| Some(PathElement::Field(k.to_string())), marks, sub);
    }
    for (k, rv) in r.iter().flat_map(View::iter) {
        if l.is_some_and(|l| l.get(k).is_some()) {
            continue;
        }
        let mut sub = Comparison::default();
        let marks = compare_at(ty.field(k), None, Some(rv), child_skip(k), &mut sub);
        c.attach(|| Some(PathElement::Field(k.to_string())), marks, sub);
    }
    c.sort();
}

/// The value of the key field `key` of a list element, or its default.
fn key_value<'a>(item_ty: Ty, item: &'a Value, key: &str) -> Option<&'a Value> {
    item.as_object()?.get(key).or_else(|| item_ty.key_default_value(key))
}

/// The elements of a list that can be told apart (those [`element_pe`] names),
/// sorted as their path elements sort, with the values that name them side by side:
/// the key fields (or their defaults) of an associative list, the element itself in
/// a set. Elements with the same key keep their order.
struct Keyed<'a> {
    items: Vec<&'a Value>,
    /// The key values of `items[i]` are `keys[i * stride..][..stride]`.
    keys: Vec<&'a Value>,
    stride: usize,
}

impl<'a> Keyed<'a> {
    fn new(item_ty: Ty, list_type: ListType, list: Option<&'a Value>) -> Keyed<'a> {
        let all = list.and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
        let names: &[&str] = match list_type {
            ListType::Map(names) => names,
            ListType::Set | ListType::Atomic => &[],
        };
        let stride = names.len().max(1);
        let mut items = Vec::with_capacity(all.len());
        let mut keys = Vec::with_capacity(all.len() * stride);
        for item in all {
            let start = keys.len();
            let named = match list_type {
                ListType::Map(_) => names.iter().all(|k| key_value(item_ty, item, k).map(|v| keys.push(v)).is_some()),
                ListType::Set => !item.is_object() && {
                    keys.push(item);
                    true
                },
                ListType::Atomic => false,
            };
            if named {
                items.push(item);
            } else {
                keys.truncate(start);
            }
        }
        let mut keyed = Keyed { items, keys, stride };
        if !(1..keyed.items.len()).all(|i| keyed.compare(i - 1, &keyed, i) != Ordering::Greater) {
            let mut order: Vec<usize> = (0..keyed.items.len()).collect();
            order.sort_by(|&a, &b| keyed.compare(a, &keyed, b));
            keyed = Keyed {
                items: order.iter().map(|&i| keyed.items[i]).collect(),
                keys: order.iter().flat_map(|&i| keyed.key(i).iter().copied()).collect(),
                stride,
            };
        }
        keyed
    }

    fn key(&self, i: usize) -> &[&'a Value] {
        &self.keys[i * self.stride..][..self.stride]
    }

    /// The order of element `i` and element `j` of `other`, as their path elements.
    fn compare(&self, i: usize, other: &Keyed<'_>, j: usize) -> Ordering {
        self.key(i).iter().zip(other.key(j)).map(|(a, b)| compare_values(a, b)).find(|o| *o != Ordering::Equal).unwrap_or(Ordering::Equal)
    }

    /// How many elements from `i` on share its key.
    fn run(&self, i: usize) -> usize {
        (i..self.items.len()).take_while(|&k| self.compare(i, self, k) == Ordering::Equal).count()
    }
}

fn compare_lists(ty: Ty, lt: ListType, lhs: Option<&Value>, rhs: Option<&Value>, c: &mut Comparison) {
    let item_ty = ty.item();
    // Elements without their keys cannot be tracked; upstream fails the comparison,
    // which leaves ownership as it was. Skipping them is close.
    let (ls, rs) = (Keyed::new(item_ty, lt, lhs), Keyed::new(item_ty, lt, rhs));
    let (mut i, mut j) = (0, 0);
    while i < ls.items.len() || j < rs.items.len() {
        let order = match (i < ls.items.len(), j < rs.items.len()) {
            (true, true) => ls.compare(i, &rs, j),
            (true, false) => Ordering::Less,
            _ => Ordering::Greater,
        };
        let ln = if order == Ordering::Greater { 0 } else { ls.run(i) };
        let rn = if order == Ordering::Less { 0 } else { rs.run(j) };
        let (lg, rg) = (&ls.items[i..i + ln], &rs.items[j..j + rn]);
        i += ln;
        j += rn;
        let mut sub = Comparison::default();
        let marks = match (lg.len(), rg.len()) {
            (0..=1, 0..=1) => compare_at(item_ty, lg.first().copied(), rg.first().copied(), Skip::Nothing, &mut sub),
            (2.., 2..) => {
                if lg.len() != rg.len() || lg.iter().zip(rg).any(|(a, b)| !typed_equal(item_ty, a, b, false)) {
                    Marks::MODIFIED
                } else {
                    Marks::NONE
                }
            }
            (2.., _) => {
                let m = rg.first().map_or(Marks::NONE, |first| compare_at(item_ty, None, Some(first), Skip::Nothing, &mut sub));
                Marks { removed: true, ..m }
            }
            (_, _) => {
                let m = lg.first().map_or(Marks::NONE, |first| compare_at(item_ty, Some(first), None, Skip::Nothing, &mut sub));
                Marks { added: true, ..m }
            }
        };
        // The first element with the key names it, as upstream's first-seen order does.
        let named = lg.first().or(rg.first()).copied();
        c.attach(|| named.and_then(|item| element_pe(ty, lt, item).ok()), marks, sub);
    }
    c.sort();
}

fn is_empty_value(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Array(a) => a.is_empty(),
        Value::Object(m) => m.is_empty(),
        _ => false,
    }
}

/// Merges the applied configuration into the live object (upstream's typed `Merge`):
/// structs and maps field by field, associative lists and sets element by element,
/// everything else replaced.
fn merge(ty: Ty, lhs: Option<&Value>, rhs: Option<&Value>) -> Result<Option<Value>, String> {
    let (l, r) = match (lhs, rhs) {
        (None, None) => return Ok(None),
        (Some(l), None) => return Ok(Some(l.clone())),
        (None, Some(r)) => return Ok(Some(r.clone())),
        (Some(l), Some(r)) => (l, r),
    };
    let shape = ty.shape(r);
    if ty.shape(l) != shape {
        return Ok(Some(r.clone()));
    }
    match shape {
        Shape::Scalar | Shape::List(ListType::Atomic) => Ok(Some(r.clone())),
        Shape::Struct | Shape::Map => {
            if ty.is_atomic() || (is_empty_value(l) && is_empty_value(r)) {
                return Ok(Some(r.clone()));
            }
            let empty = Map::new();
            let lm = l.as_object().unwrap_or(&empty);
            let rm = r.as_object().unwrap_or(&empty);
            let mut out = Map::new();
            for k in lm.keys().chain(rm.keys().filter(|k| !lm.contains_key(*k))) {
                if let Some(v) = merge(ty.field(k), lm.get(k), rm.get(k))? {
                    out.insert(k.clone(), v);
                }
            }
            Ok(Some(Value::Object(out)))
        }
        Shape::List(lt) => {
            if is_empty_value(l) && is_empty_value(r) {
                return Ok(Some(r.clone()));
            }
            merge_lists(ty, lt, l.as_array().map(Vec::as_slice).unwrap_or_default(), r.as_array().map(Vec::as_slice).unwrap_or_default())
                .map(|v| Some(Value::Array(v)))
        }
    }
}

/// Merges two associative lists or sets. Elements shared by both keep the applied
/// order; live-only elements stay where they were relative to them.
fn merge_lists(ty: Ty, lt: ListType, lhs: &[Value], rhs: &[Value]) -> Result<Vec<Value>, String> {
    let item_ty = ty.item();
    let mut r_pes = Vec::with_capacity(rhs.len());
    let mut r_seen: BTreeMap<PathElement, &Value> = BTreeMap::new();
    for item in rhs {
        let pe = element_pe(ty, lt, item)?;
        if r_seen.insert(pe.clone(), item).is_some() {
            return Err(format!("duplicate entries for key {pe}"));
        }
        r_pes.push(pe);
    }
    static NULL: Value = Value::Null;
    let mut l_pes = Vec::with_capacity(lhs.len());
    let mut l_seen: BTreeMap<PathElement, &Value> = BTreeMap::new();
    for item in lhs {
        let pe = element_pe(ty, lt, item)?;
        if l_seen.contains_key(&pe) {
            // Duplicates in the live list merge as one element.
            l_seen.insert(pe.clone(), &NULL);
        } else {
            l_seen.insert(pe.clone(), item);
        }
        l_pes.push(pe);
    }
    let mut shared: std::collections::VecDeque<&PathElement> = r_pes.iter().filter(|pe| l_seen.contains_key(*pe)).collect();
    let mut next_shared = shared.pop_front();
    let mut merged_rhs: BTreeSet<PathElement> = BTreeSet::new();
    let mut out = Vec::with_capacity(lhs.len().max(rhs.len()));
    let (mut li, mut ri) = (0, 0);
    while li < l_pes.len() || ri < r_pes.len() {
        if li < l_pes.len() && ri < r_pes.len() {
            let pe = &l_pes[li];
            if *pe == r_pes[ri] {
                merged_rhs.insert(pe.clone());
                out.extend(merge(item_ty, l_seen.get(pe).copied(), r_seen.get(pe).copied())?);
                li += 1;
                ri += 1;
                next_shared = shared.pop_front();
                continue;
            }
            if r_seen.contains_key(pe) && next_shared.is_some_and(|n| n != pe) {
                li += 1;
                continue;
            }
        }
        if li < l_pes.len() {
            let pe = &l_pes[li];
            if !r_seen.contains_key(pe) {
                out.extend(merge(item_ty, Some(&lhs[li]), None)?);
                li += 1;
                continue;
            } else if merged_rhs.contains(pe) {
                li += 1;
            }
        }
        if ri < r_pes.len() {
            let pe = &r_pes[ri];
            merged_rhs.insert(pe.clone());
            out.extend(merge(item_ty, l_seen.get(pe).copied(), r_seen.get(pe).copied())?);
            ri += 1;
            if next_shared == Some(pe) {
                next_shared = shared.pop_front();
            }
        }
    }
    Ok(out)
}

/// Removes the paths of `set` from `value`: an exact match removes the whole value,
/// a prefix match recurses. `None` when nothing is left.
fn remove_items(ty: Ty, value: &Value, set: &Set) -> Option<Value> {
    match (ty.shape(value), value) {
        (Shape::List(lt), Value::Array(items)) if lt != ListType::Atomic && !items.is_empty() => {
            let item_ty = ty.item();
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                let Ok(pe) = element_pe(ty, lt, item) else {
                    out.push(item.clone());
                    continue;
                };
                if set.has(std::slice::from_ref(&pe)) {
                    continue;
                }
                match set.with_prefix(&pe) {
                    Some(sub) => out.extend(remove_items(item_ty, item, sub)),
                    None => out.push(item.clone()),
                }
            }
            (!out.is_empty()).then_some(Value::Array(out))
        }
        (Shape::Struct | Shape::Map, Value::Object(map)) if !ty.is_atomic() && !map.is_empty() => {
            let mut out = Map::new();
            for (k, v) in map {
                let pe = PathElement::Field(k.clone());
                if set.has(std::slice::from_ref(&pe)) {
                    continue;
                }
                match set.with_prefix(&pe) {
                    Some(sub) => {
                        if let Some(v) = remove_items(ty.field(k), v, sub) {
                            out.insert(k.clone(), v);
                        }
                    }
                    None => {
                        out.insert(k.clone(), v.clone());
                    }
                }
            }
            (!out.is_empty()).then_some(Value::Object(out))
        }
        _ => Some(value.clone()),
    }
}

fn remove_set(ty: Ty, value: &Value, set: &Set) -> Value {
    remove_items(ty, value, set).unwrap_or_else(|| Value::Object(Map::new()))
}

/// Drops the fields the applier owned last time and no longer applies, unless some
/// manager (the applier's new configuration included) still owns them.
fn prune(ty: Ty, merged: &Value, managers: &mut Managers<'_>, last: &Set) -> Result<Value, String> {
    if last.is_empty() {
        return Ok(merged.clone());
    }
    let named = |s: &Set| s.with_named_fields_as_members(ty);
    let last = named(last);
    let merged_set = named(&to_field_set(ty, merged)?);
    // Remove everything applied last time...
    let pruned = remove_set(ty, merged, &last);
    // ...add back what someone owns...
    let owned = managers.values_mut().fold(Set::new(), |mut acc, e| {
        acc.union_with(e.set());
        acc
    });
    let pruned_set = named(&to_field_set(ty, &pruned)?);
    let pruned = remove_set(ty, merged, &merged_set.difference(&pruned_set.union(&named(&owned))));
    // ...and only remove what the applier itself had.
    let pruned_set = named(&to_field_set(ty, &pruned)?);
    Ok(remove_set(ty, merged, &merged_set.difference(&pruned_set).intersection(&last)))
}

/// Upstream's `Updater.update`: other managers lose what changed (conflicts, unless
/// `force`) and what was removed. Returns the conflicts when not forced.
fn take_ownership(managers: &mut Managers<'_>, cmp: &Comparison, except: &ManagerId, force: bool) -> Result<(), Vec<Conflict>> {
    let changed = cmp.changed();
    if !force {
        let mut conflicts = Vec::new();
        for (id, entry) in managers.iter_mut() {
            if id == except || !entry.may_own(&changed) {
                continue;
            }
            let description = describe(id, entry);
            for p in entry.set().intersection(&changed).paths() {
                conflicts.push(Conflict { manager: id.manager.clone(), field: path_string(&p), description: description.clone() });
            }
        }
        if !conflicts.is_empty() {
            return Err(conflicts);
        }
    }
    give_up(managers, &changed, &cmp.removed, except);
    Ok(())
}

/// Takes `changed` and `removed` from every manager but `except`, dropping the ones
/// left with nothing.
fn give_up(managers: &mut Managers<'_>, changed: &Set, removed: &Set, except: &ManagerId) {
    for (id, entry) in managers.iter_mut() {
        if id == except {
            continue;
        }
        entry.give_up(changed);
        entry.give_up(removed);
    }
    managers.retain(|_, e| !e.is_empty());
}

/// An ordinary write by `id` from `old` to `new`: the managedFields updater +
/// stripMeta + Updater.Update chain upstream. `id` is an `Update` identity, whose
/// apiVersion is the one recorded.
fn update(ty: Ty, old: &Value, new: &Value, managers: &mut Managers<'_>, id: &ManagerId, reset: &[Path], now: &str) {
    let Comparison { added, modified, removed } = compare(ty, old, new).without(reset);
    let mut mine = added;
    mine.union_with(&modified);
    give_up(managers, &mine, &removed, id);
    let previous = managers.remove(id);
    strip_meta(&mut mine);
    if mine.is_empty() {
        // Nothing new is owned: the entry (if any) stays as the write left it.
        if let Some(mut p) = previous {
            p.give_up(&removed);
            if !p.is_empty() {
                managers.insert(id.clone(), p);
            }
        }
        return;
    }
    if let Some(mut p) = previous {
        p.give_up(&removed);
        mine.union_with(p.set());
    }
    managers.insert(id.clone(), Entry::new(mine, id.api_version.clone(), Some(now.into())));
}

fn api_version_of(v: &Value) -> &str {
    v.get("apiVersion").and_then(Value::as_str).unwrap_or("")
}

fn managed_fields(v: &Value) -> Option<&Value> {
    v.pointer("/metadata/managedFields")
}

/// Takes `metadata.managedFields` out of `v`.
fn take_managed_fields(v: &mut Value) -> Option<Value> {
    v.get_mut("metadata").and_then(Value::as_object_mut).and_then(|m| m.remove("managedFields"))
}

fn without_managed_fields(v: &Value) -> Value {
    let mut v = v.clone();
    take_managed_fields(&mut v);
    v
}

fn set_managed_fields(v: &mut Value, managers: Managers<'_>, previous: Previous<'_>) {
    match encode(managers, previous) {
        Some(list) => {
            crate::meta::metadata_mut(v).insert("managedFields".into(), list);
        }
        None => {
            take_managed_fields(v);
        }
    }
}

/// `{}`, the object that does not exist yet.
fn empty_object() -> &'static Value {
    static EMPTY: OnceLock<Value> = OnceLock::new();
    EMPTY.get_or_init(|| Value::Object(Map::new()))
}

// === entry points ===

pub(crate) fn record_update(definition: &str, old: Option<&Value>, new: &mut Value, manager: &str, subresource: &str, now: &str) {
    let ty = Ty::root(definition);
    // From here on `new` is the body, without managedFields.
    let sent = take_managed_fields(new);
    let live_managers = || old.and_then(|o| decode(managed_fields(o).map(Cow::Borrowed))).unwrap_or_default();
    // A subresource write cannot touch managedFields; a main write may set them (an
    // explicit empty list resets them), and otherwise keeps the live ones.
    let mut managers = if !subresource.is_empty() {
        // Clients send back the list they read; taking that copy spares making one.
        match (sent, old.and_then(managed_fields)) {
            (Some(sent), Some(live)) if values_equal(&sent, live) => decode(Some(Cow::Owned(sent))).unwrap_or_default(),
            _ => live_managers(),
        }
    } else {
        match sent {
            Some(Value::Array(a)) if a.is_empty() || (a.len() == 1 && a[0].as_object().is_some_and(Map::is_empty)) => Managers::new(),
            Some(mf) => match decode(Some(Cow::Owned(mf))) {
                Some(m) if !m.is_empty() => m,
                _ => live_managers(),
            },
            None => live_managers(),
        }
    };
    // Objects that exist without managed fields stay untracked, as upstream.
    let has_uid = old.and_then(|o| o.pointer("/metadata/uid")).and_then(Value::as_str).is_some_and(|u| !u.is_empty());
    if managers.is_empty() && has_uid {
        return;
    }
    let api_version = match api_version_of(new) {
        "" => old.map(api_version_of).unwrap_or(""),
        v => v,
    }
    .to_string();
    let id = ManagerId::new(manager, Operation::Update, &api_version, subresource);
    let reset = reset_fields(definition, subresource, new);
    update(ty, old.unwrap_or(empty_object()), new, &mut managers, &id, &reset, now);
    cap_update_managers(&mut managers);
    set_managed_fields(new, managers, Previous::new(old.and_then(managed_fields)));
}

pub(crate) fn server_side_apply(
    definition: &str,
    live: Option<&Value>,
    applied: &Value,
    manager: &str,
    force: bool,
    now: &str,
) -> Result<Value, ApplyError> {
    let malformed = |m: String| ApplyError::Patch(PatchError::Malformed(m));
    if !applied.is_object() {
        return Err(malformed("the apply configuration must be an object".into()));
    }
    if managed_fields(applied).is_some_and(|v| !v.is_null()) {
        return Err(malformed("metadata.managedFields must be nil".into()));
    }
    let ty = Ty::root(definition);
    let api_version = match api_version_of(applied) {
        "" => live.map(api_version_of).unwrap_or(""),
        v => v,
    }
    .to_string();
    let mut managers = live.and_then(|l| decode(managed_fields(l).map(Cow::Borrowed))).unwrap_or_default();
    let live_body = live.map(without_managed_fields).unwrap_or_else(|| Value::Object(Map::new()));
    let reset = reset_fields(definition, "", applied);

    // An object that predates field tracking: its fields go to a placeholder
    // manager first, so that the applier does not silently take them.
    if managers.is_empty() && live.is_some() {
        let id = ManagerId::new(BEFORE_FIRST_APPLY, Operation::Update, &api_version, "");
        update(ty, empty_object(), &live_body, &mut managers, &id, &reset, now);
        cap_update_managers(&mut managers);
    }

    let id = ManagerId::new(manager, Operation::Apply, &api_version, "");
    let merged = merge(ty, Some(&live_body), Some(applied)).map_err(malformed)?.unwrap_or_else(|| Value::Object(Map::new()));
    let applied_set = without(to_field_set(ty, applied).map_err(malformed)?, &reset);
    let previous = managers.remove(&id);
    managers.insert(id.clone(), Entry::new(applied_set, api_version.clone(), previous.as_ref().and_then(|p| p.time.clone())));
    let merged = match previous {
        Some(mut p) => prune(ty, &merged, &mut managers, p.set()).map_err(malformed)?,
        None => merged,
    };

    let cmp = compare(ty, &live_body, &merged).without(&reset);
    take_ownership(&mut managers, &cmp, &id, force).map_err(ApplyError::Conflicts)?;

    let changed = !values_equal(&merged, &live_body);
    if let Some(entry) = managers.get_mut(&id) {
        strip_meta(entry.set());
        if changed {
            entry.time = Some(now.into());
        }
        if entry.is_empty() {
            managers.remove(&id);
        }
    }
    let mut out = if changed || live.is_none() { merged } else { live_body };
    set_managed_fields(&mut out, managers, Previous::new(live.and_then(managed_fields)));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEPLOY: &str = "io.k8s.api.apps.v1.Deployment";
    const CM: &str = "io.k8s.api.core.v1.ConfigMap";
    const T0: &str = "2024-01-01T00:00:00Z";
    const T1: &str = "2024-01-01T00:01:00Z";
    const T2: &str = "2024-01-01T00:02:00Z";

    fn deployment(replicas: Option<i64>, image: &str) -> Value {
        let mut d = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": {
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "nginx", "image": image, "ports": [{"containerPort": 80}]}]}
                }
            }
        });
        if let Some(r) = replicas {
            d["spec"]["replicas"] = json!(r);
        }
        d
    }

    /// What the store would hold after a write: identity and bookkeeping fields.
    fn stored(mut v: Value) -> Value {
        let m = crate::meta::metadata_mut(&mut v);
        m.insert("uid".into(), json!("0b7c1c5e-0000-4000-8000-000000000001"));
        m.insert("resourceVersion".into(), json!("7"));
        m.insert("creationTimestamp".into(), json!(T0));
        v
    }

    fn apply(live: Option<&Value>, applied: &Value, manager: &str, force: bool, now: &str) -> Result<Value, ApplyError> {
        server_side_apply(DEPLOY, live, applied, manager, force, now).map(stored)
    }

    fn entries(obj: &Value) -> Vec<(String, String)> {
        obj["metadata"]["managedFields"]
            .as_array()
            .map(|a| a.iter().map(|e| (e["manager"].as_str().unwrap().to_string(), e["operation"].as_str().unwrap().to_string())).collect())
            .unwrap_or_default()
    }

    fn fields_of<'a>(obj: &'a Value, manager: &str, operation: &str) -> &'a Value {
        obj["metadata"]["managedFields"]
            .as_array()
            .and_then(|a| a.iter().find(|e| e["manager"] == manager && e["operation"] == operation))
            .map(|e| &e["fieldsV1"])
            .unwrap_or(&Value::Null)
    }

    fn conflicts(r: Result<Value, ApplyError>) -> Vec<(String, String)> {
        match r {
            Err(ApplyError::Conflicts(cs)) => cs.into_iter().map(|c| (c.manager, c.field)).collect(),
            other => panic!("expected conflicts, got {other:?}"),
        }
    }

    #[test]
    fn apply_creates_the_object_and_records_upstream_fields_v1() {
        let obj = apply(None, &deployment(Some(2), "nginx:1.27"), "kubectl", false, T0).unwrap();
        assert_eq!(obj["spec"]["replicas"], 2);
        let mf = &obj["metadata"]["managedFields"];
        assert_eq!(mf.as_array().unwrap().len(), 1);
        let e = &mf[0];
        assert_eq!(e["manager"], "kubectl");
        assert_eq!(e["operation"], "Apply");
        assert_eq!(e["apiVersion"], "apps/v1");
        assert_eq!(e["time"], T0);
        assert_eq!(e["fieldsType"], "FieldsV1");
        assert!(e.get("subresource").is_none());
        let expected = json!({
            "f:metadata": {"f:labels": {"f:app": {}}},
            "f:spec": {
                "f:replicas": {},
                "f:selector": {},
                "f:template": {
                    "f:metadata": {"f:labels": {"f:app": {}}},
                    "f:spec": {"f:containers": {"k:{\"name\":\"nginx\"}": {
                        ".": {}, "f:image": {}, "f:name": {},
                        "f:ports": {"k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {".": {}, "f:containerPort": {}}}
                    }}}
                }
            }
        });
        assert_eq!(e["fieldsV1"], expected);
        let keys: Vec<&String> = e.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["manager", "operation", "apiVersion", "time", "fieldsType", "fieldsV1"]);
    }

    #[test]
    fn reapplying_without_a_field_removes_it() {
        let mut live = apply(None, &deployment(Some(2), "nginx:1.27"), "kubectl", false, T0).unwrap();
        // Defaults the server filled in belong to nobody and survive pruning.
        live["spec"]["revisionHistoryLimit"] = json!(10);
        live["spec"]["strategy"] = json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}});
        live["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] = json!("IfNotPresent");
        live["spec"]["template"]["spec"]["containers"][0]["ports"][0]["protocol"] = json!("TCP");
        let mut fewer = deployment(None, "nginx:1.27");
        fewer["metadata"]["labels"] = json!({"team": "a"});
        let obj = apply(Some(&live), &fewer, "kubectl", false, T1).unwrap();
        assert!(obj["spec"].get("replicas").is_none(), "{}", obj["spec"]);
        assert_eq!(obj["metadata"]["labels"], json!({"team": "a"}));
        // Bookkeeping the applier never owned is kept.
        assert_eq!(obj["metadata"]["uid"], live["metadata"]["uid"]);
        assert_eq!(obj["metadata"]["name"], "web");
        assert!(fields_of(&obj, "kubectl", "Apply")["f:spec"].get("f:replicas").is_none());
        assert_eq!(obj["spec"]["revisionHistoryLimit"], 10);
        assert_eq!(obj["spec"]["strategy"], live["spec"]["strategy"]);
        assert_eq!(obj["spec"]["template"]["spec"]["containers"], live["spec"]["template"]["spec"]["containers"]);
        // Applying the same configuration again changes nothing.
        let again = apply(Some(&obj), &fewer, "kubectl", false, T2).unwrap();
        assert_eq!(again, obj);
    }

    #[test]
    fn removing_a_container_port_from_the_applied_config_removes_it() {
        let mut two = deployment(Some(1), "nginx");
        two["spec"]["template"]["spec"]["containers"][0]["ports"] = json!([{"containerPort": 80}, {"containerPort": 443}]);
        let live = apply(None, &two, "kubectl", false, T0).unwrap();
        let obj = apply(Some(&live), &deployment(Some(1), "nginx"), "kubectl", false, T1).unwrap();
        assert_eq!(obj["spec"]["template"]["spec"]["containers"][0]["ports"], json!([{"containerPort": 80}]));
    }

    #[test]
    fn a_different_value_owned_by_another_applier_conflicts() {
        let live = apply(None, &deployment(Some(2), "nginx"), "a", false, T0).unwrap();
        let err = apply(Some(&live), &deployment(Some(3), "nginx:2"), "b", false, T1);
        let mut got = conflicts(err);
        got.sort();
        assert_eq!(
            got,
            [
                ("a".to_string(), r#".spec.replicas"#.to_string()),
                ("a".to_string(), r#".spec.template.spec.containers[name="nginx"].image"#.to_string()),
            ]
        );
    }

    #[test]
    fn forcing_moves_ownership_to_the_applier() {
        let live = apply(None, &deployment(Some(2), "nginx"), "a", false, T0).unwrap();
        let obj = apply(Some(&live), &deployment(Some(3), "nginx"), "b", true, T1).unwrap();
        assert_eq!(obj["spec"]["replicas"], 3);
        assert!(fields_of(&obj, "a", "Apply")["f:spec"].get("f:replicas").is_none());
        assert!(fields_of(&obj, "b", "Apply")["f:spec"].get("f:replicas").is_some());
        // "a" no longer owns replicas, so its next apply without them leaves them alone...
        let obj = apply(Some(&obj), &deployment(None, "nginx"), "a", false, T2).unwrap();
        assert_eq!(obj["spec"]["replicas"], 3);
    }

    #[test]
    fn agreeing_appliers_share_ownership() {
        let live = apply(None, &deployment(Some(2), "nginx"), "a", false, T0).unwrap();
        let both = apply(Some(&live), &deployment(Some(2), "nginx"), "b", false, T1).unwrap();
        // The object did not change, so b's entry carries no time and sorts first, as upstream.
        assert_eq!(entries(&both), [("b".into(), "Apply".into()), ("a".into(), "Apply".into())]);
        assert!(both["metadata"]["managedFields"][0].get("time").is_none());
        assert!(fields_of(&both, "b", "Apply")["f:spec"].get("f:replicas").is_some());
        // When a stops applying replicas, b still owns them: they stay.
        let obj = apply(Some(&both), &deployment(None, "nginx"), "a", false, T2).unwrap();
        assert_eq!(obj["spec"]["replicas"], 2);
    }

    #[test]
    fn a_scale_update_keeps_replicas_when_the_applier_drops_them() {
        let live = apply(None, &deployment(Some(2), "nginx"), "kubectl", false, T0).unwrap();
        let mut scaled = live.clone();
        scaled["spec"]["replicas"] = json!(5);
        record_update(DEPLOY, Some(&live), &mut scaled, "kubectl-scale", "", T1);
        assert_eq!(fields_of(&scaled, "kubectl-scale", "Update"), &json!({"f:spec": {"f:replicas": {}}}));
        assert!(fields_of(&scaled, "kubectl", "Apply")["f:spec"].get("f:replicas").is_none());
        let scaled = stored(scaled);
        // Re-applying the old replicas conflicts with the scaler...
        let err = apply(Some(&scaled), &deployment(Some(2), "nginx"), "kubectl", false, T2);
        assert_eq!(conflicts(err), [("kubectl-scale".to_string(), ".spec.replicas".to_string())]);
        // ...and applying without them keeps the scaled value.
        let obj = apply(Some(&scaled), &deployment(None, "nginx"), "kubectl", false, T2).unwrap();
        assert_eq!(obj["spec"]["replicas"], 5);
    }

    #[test]
    fn conflict_descriptions_name_updaters_with_version_and_time() {
        let live = apply(None, &deployment(Some(2), "nginx"), "kubectl", false, T0).unwrap();
        let mut scaled = live.clone();
        scaled["spec"]["replicas"] = json!(5);
        record_update(DEPLOY, Some(&live), &mut scaled, "kubectl-scale", "", T1);
        let Err(ApplyError::Conflicts(cs)) = apply(Some(&stored(scaled)), &deployment(Some(2), "nginx"), "kubectl", false, T2) else {
            panic!("expected a conflict")
        };
        assert_eq!(cs[0].description, format!("\"kubectl-scale\" using apps/v1 at {T1}"));
        assert_eq!(
            super::super::conflicts_message(&cs),
            format!("Apply failed with 1 conflict: conflict with \"kubectl-scale\" using apps/v1 at {T1}: .spec.replicas")
        );
    }

    #[test]
    fn an_update_records_what_it_created_with_self_markers() {
        let mut obj = deployment(Some(1), "nginx");
        record_update(DEPLOY, None, &mut obj, "kubectl-create", "", T0);
        let f = fields_of(&obj, "kubectl-create", "Update");
        // Labels did not exist before, so the map itself is owned too; spec and the
        // template always exist (they are not pointers upstream), so they are not.
        assert_eq!(f["f:metadata"], json!({"f:labels": {".": {}, "f:app": {}}}));
        assert!(f["f:spec"].get(".").is_none());
        assert_eq!(f["f:spec"]["f:selector"], json!({}));
        assert!(f["f:spec"]["f:template"]["f:spec"]["f:containers"].get(".").is_none());
        let c = &f["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"nginx\"}"];
        assert_eq!(c["."], json!({}));
        assert_eq!(c["f:ports"]["."], json!({}));
        assert_eq!(obj["metadata"]["managedFields"][0]["time"], T0);
    }

    #[test]
    fn an_update_takes_changed_fields_from_other_managers() {
        let mut obj = deployment(Some(1), "nginx");
        record_update(DEPLOY, None, &mut obj, "kubectl-create", "", T0);
        let old = stored(obj);
        let mut new = old.clone();
        new["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:2");
        record_update(DEPLOY, Some(&old), &mut new, "kubectl-edit", "", T1);
        let edit = fields_of(&new, "kubectl-edit", "Update");
        assert_eq!(edit["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"nginx\"}"], json!({"f:image": {}}));
        let create = fields_of(&new, "kubectl-create", "Update");
        assert!(create["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"nginx\"}"].get("f:image").is_none());
        assert_eq!(entries(&new), [("kubectl-create".into(), "Update".into()), ("kubectl-edit".into(), "Update".into())]);
    }

    #[test]
    fn managers_left_with_nothing_are_dropped() {
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "1"}});
        let mut created = cm.clone();
        record_update(CM, None, &mut created, "first", "", T0);
        let old = stored(created);
        let mut new = old.clone();
        new["data"]["a"] = json!("2");
        record_update(CM, Some(&old), &mut new, "second", "", T1);
        // "first" still owns the data map itself (it created it).
        assert_eq!(fields_of(&new, "first", "Update"), &json!({"f:data": {}}));
        let old = stored(new);
        let mut new = old.clone();
        new.as_object_mut().unwrap().remove("data");
        record_update(CM, Some(&old), &mut new, "third", "", T2);
        assert!(new["metadata"].get("managedFields").is_none(), "{}", new["metadata"]);
    }

    #[test]
    fn status_writes_record_the_subresource_and_ignore_the_rest() {
        let mut obj = deployment(Some(1), "nginx");
        record_update(DEPLOY, None, &mut obj, "kubectl", "", T0);
        let old = stored(obj);
        let mut new = old.clone();
        new["status"] = json!({"replicas": 1, "conditions": [{"type": "Available", "status": "True"}]});
        record_update(DEPLOY, Some(&old), &mut new, "kube-controller-manager", "status", T1);
        let e = new["metadata"]["managedFields"].as_array().unwrap().iter().find(|e| e["manager"] == "kube-controller-manager").unwrap();
        assert_eq!(e["subresource"], "status");
        assert_eq!(
            e["fieldsV1"],
            json!({"f:status": {"f:conditions": {".": {}, "k:{\"type\":\"Available\"}": {".": {}, "f:status": {}, "f:type": {}}}, "f:replicas": {}}})
        );
    }

    #[test]
    fn objects_created_before_tracking_stay_untracked_on_update() {
        let old = stored(deployment(Some(1), "nginx"));
        let mut new = old.clone();
        new["spec"]["replicas"] = json!(3);
        record_update(DEPLOY, Some(&old), &mut new, "kubectl", "", T1);
        assert!(new["metadata"].get("managedFields").is_none());
    }

    #[test]
    fn the_first_apply_to_an_untracked_object_conflicts_with_its_existing_fields() {
        let live = stored(deployment(Some(1), "nginx"));
        let err = apply(Some(&live), &deployment(Some(4), "nginx"), "kubectl", false, T1);
        assert_eq!(conflicts(err), [("before-first-apply".to_string(), ".spec.replicas".to_string())]);
        let obj = apply(Some(&live), &deployment(Some(1), "nginx"), "kubectl", false, T1).unwrap();
        assert_eq!(entries(&obj), [("kubectl".into(), "Apply".into()), ("before-first-apply".into(), "Update".into())]);
    }

    #[test]
    fn applying_status_through_the_main_resource_owns_no_status() {
        let mut d = deployment(Some(1), "nginx");
        d["status"] = json!({"replicas": 9});
        let obj = apply(None, &d, "kubectl", false, T0).unwrap();
        assert!(fields_of(&obj, "kubectl", "Apply").get("f:status").is_none());
    }

    #[test]
    fn a_no_op_apply_returns_the_live_object_unchanged() {
        let live = apply(None, &deployment(Some(2), "nginx"), "kubectl", false, T0).unwrap();
        let again = apply(Some(&live), &deployment(Some(2), "nginx"), "kubectl", false, T1).unwrap();
        assert_eq!(again, live);
    }

    #[test]
    fn applied_managed_fields_are_rejected() {
        let mut d = deployment(Some(1), "nginx");
        d["metadata"]["managedFields"] = json!([]);
        assert!(matches!(apply(None, &d, "kubectl", false, T0), Err(ApplyError::Patch(PatchError::Malformed(_)))));
    }

    #[test]
    fn merged_lists_keep_live_only_elements() {
        let live = apply(None, &deployment(Some(1), "nginx"), "a", false, T0).unwrap();
        let mut sidecar = deployment(None, "nginx");
        sidecar["spec"]["template"]["spec"]["containers"] = json!([{"name": "sidecar", "image": "busybox"}]);
        let obj = apply(Some(&live), &sidecar, "b", false, T1).unwrap();
        let names: Vec<&str> =
            obj["spec"]["template"]["spec"]["containers"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["nginx", "sidecar"]);
    }

    #[test]
    fn config_map_data_follows_the_applied_configuration() {
        let apply_cm = |live: Option<&Value>, data: Value, manager: &str| {
            let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa"}, "data": data});
            server_side_apply(CM, live, &cm, manager, false, T0).map(stored)
        };
        let live = apply_cm(None, json!({"a": "1", "b": "2"}), "kubectl").unwrap();
        assert_eq!(fields_of(&live, "kubectl", "Apply"), &json!({"f:data": {"f:a": {}, "f:b": {}}}));
        let err = apply_cm(Some(&live), json!({"a": "changed"}), "other");
        assert_eq!(conflicts(err), [("kubectl".to_string(), ".data.a".to_string())]);
        let obj = apply_cm(Some(&live), json!({"a": "1"}), "kubectl").unwrap();
        assert_eq!(obj["data"], json!({"a": "1"}));
        let obj = apply_cm(Some(&obj), json!({"c": "3"}), "other").unwrap();
        assert_eq!(obj["data"], json!({"a": "1", "c": "3"}));
    }

    #[test]
    fn dropping_a_container_from_the_configuration_removes_it() {
        let mut two = deployment(Some(1), "nginx");
        two["spec"]["template"]["spec"]["containers"] = json!([{"name": "a", "image": "a"}, {"name": "b", "image": "b"}]);
        let live = apply(None, &two, "kubectl", false, T0).unwrap();
        let mut one = two.clone();
        one["spec"]["template"]["spec"]["containers"] = json!([{"name": "a", "image": "a"}]);
        let obj = apply(Some(&live), &one, "kubectl", false, T1).unwrap();
        assert_eq!(obj["spec"]["template"]["spec"]["containers"], json!([{"name": "a", "image": "a"}]));
    }

    #[test]
    fn service_ports_are_keyed_by_port_and_default_protocol() {
        let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}});
        let obj = server_side_apply("io.k8s.api.core.v1.Service", None, &svc, "kubectl", false, T0).unwrap();
        assert_eq!(
            fields_of(&obj, "kubectl", "Apply")["f:spec"],
            json!({"f:ports": {"k:{\"port\":80,\"protocol\":\"TCP\"}": {".": {}, "f:port": {}, "f:targetPort": {}}}, "f:selector": {}})
        );
    }

    #[test]
    fn no_op_update_leaves_managed_fields_untouched() {
        let mut obj = deployment(Some(1), "nginx");
        record_update(DEPLOY, None, &mut obj, "kubectl-create", "", T0);
        let old = stored(obj);
        let mut new = old.clone();
        record_update(DEPLOY, Some(&old), &mut new, "kubectl-edit", "", T1);
        assert_eq!(new, old);
        assert_eq!(entries(&new), [("kubectl-create".into(), "Update".into())]);
    }

    #[test]
    fn changing_one_label_moves_only_that_label() {
        let mut obj = deployment(Some(1), "nginx");
        obj["metadata"]["labels"]["tier"] = json!("web");
        record_update(DEPLOY, None, &mut obj, "kubectl-create", "", T0);
        let old = stored(obj);
        let mut new = old.clone();
        new["metadata"]["labels"]["tier"] = json!("db");
        record_update(DEPLOY, Some(&old), &mut new, "kubectl-label", "", T1);
        assert_eq!(fields_of(&new, "kubectl-label", "Update"), &json!({"f:metadata": {"f:labels": {"f:tier": {}}}}));
        let create = fields_of(&new, "kubectl-create", "Update");
        assert_eq!(create["f:metadata"], json!({"f:labels": {".": {}, "f:app": {}}}));
        assert_eq!(create["f:spec"], fields_of(&old, "kubectl-create", "Update")["f:spec"]);
    }

    /// The comparison reads zero-value fields and skips `managedFields` in place; it
    /// must see what comparing filled-in copies without them sees.
    #[test]
    fn comparing_in_place_matches_comparing_zero_filled_copies() {
        use super::super::typed::zero_fill;
        let filled = |ty: Ty, v: &Value| {
            let mut v = without_managed_fields(v);
            zero_fill(ty, &mut v);
            v
        };
        let cmp_sets = |c: Comparison| (c.added.to_fields_v1(), c.modified.to_fields_v1(), c.removed.to_fields_v1());
        let mut managed = deployment(Some(1), "nginx");
        managed["metadata"]["managedFields"] = json!([{"manager": "m", "operation": "Update", "apiVersion": "apps/v1", "fieldsType": "FieldsV1", "fieldsV1": {}}]);
        let mut no_spec = deployment(None, "nginx");
        no_spec.as_object_mut().unwrap().remove("spec");
        let mut null_template = deployment(Some(2), "nginx");
        null_template["spec"]["template"] = Value::Null;
        let mut dup_env = deployment(Some(2), "nginx");
        dup_env["spec"]["template"]["spec"]["containers"][0]["env"] = json!([{"name": "A", "value": "1"}, {"name": "A", "value": "2"}]);
        let mut only_managed_metadata = json!({"apiVersion": "apps/v1", "kind": "Deployment"});
        only_managed_metadata["metadata"] = json!({"managedFields": []});
        let null_metadata = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": null});
        let objects =
            [json!({}), deployment(Some(1), "nginx"), managed, no_spec, null_template, dup_env, only_managed_metadata, null_metadata, json!({"spec": {}})];
        let ty = Ty::root(DEPLOY);
        for old in &objects {
            for new in &objects {
                assert_eq!(
                    cmp_sets(compare(ty, old, new)),
                    cmp_sets(compare(ty, &filled(ty, old), &filled(ty, new))),
                    "{old} -> {new}"
                );
            }
        }
    }

    #[test]
    fn duplicate_list_keys_are_owned_whole() {
        let mut obj = deployment(Some(1), "nginx");
        obj["spec"]["template"]["spec"]["containers"][0]["env"] = json!([{"name": "A", "value": "1"}, {"name": "A", "value": "2"}]);
        record_update(DEPLOY, None, &mut obj, "kubectl-create", "", T0);
        let env = &fields_of(&obj, "kubectl-create", "Update")["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"nginx\"}"]["f:env"];
        assert_eq!(env, &json!({".": {}, "k:{\"name\":\"A\"}": {}}));
        let old = stored(obj);
        let mut new = old.clone();
        new["spec"]["template"]["spec"]["containers"][0]["env"][1]["value"] = json!("3");
        record_update(DEPLOY, Some(&old), &mut new, "kubectl-edit", "", T1);
        let env = &fields_of(&new, "kubectl-edit", "Update")["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"nginx\"}"]["f:env"];
        assert_eq!(env, &json!({"k:{\"name\":\"A\"}": {}}));
    }
}
