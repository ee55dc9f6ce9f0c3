//! Label and field selectors: parsed once per request, matched against many objects.
//!
//! - [`LabelSelector`] follows `k8s.io/apimachinery/pkg/labels`: the string grammar
//!   (`a=b,c!=d,e in (x,y),!f,g,h>3`) with upstream's lexer quirks and error texts, and
//!   the `metav1.LabelSelector` form (`matchLabels` + `matchExpressions`) that
//!   workload specs carry.
//! - [`FieldSelector`] follows `k8s.io/apimachinery/pkg/fields`: comma-separated
//!   `field=value`, `field==value` and `field!=value` terms with backslash escaping.
//! - [`selectable_fields`] is the per-kind table of fields a field selector may name,
//!   computed as upstream's `pkg/registry/*/strategy.go` `ToSelectableFields` do.
//!
//! Error texts are upstream's word for word, because kubectl shows them verbatim.

use std::fmt;

use serde_json::Value;

use crate::ResourceInfo;

/// A selector that does not parse, or names a field its kind does not support.
/// The text is what kube-apiserver would put in the `BadRequest` status message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SelectorError(pub String);

// === impl Operator ===

/// How a label requirement relates a key to its values (`selection.Operator`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operator {
    /// `key=value`
    Equals,
    /// `key==value`
    DoubleEquals,
    /// `key!=value`: also matches objects without the label.
    NotEquals,
    /// `key in (a,b)`
    In,
    /// `key notin (a,b)`: also matches objects without the label.
    NotIn,
    /// `key`
    Exists,
    /// `!key`
    DoesNotExist,
    /// `key>3`: the label must parse as an integer.
    GreaterThan,
    /// `key<3`: the label must parse as an integer.
    LessThan,
}

// === impl Requirement ===

/// One term of a label selector. All terms of a selector must hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    key: String,
    operator: Operator,
    values: Vec<String>,
}

impl Requirement {
    pub fn key(&self) -> &str {
        &self.key
    }

    pub fn operator(&self) -> Operator {
        self.operator
    }

    /// The values, in the order given (sorted and deduplicated when parsed from a string).
    pub fn values(&self) -> &[String] {
        &self.values
    }

    /// Whether a label value (`None` when the label is absent) satisfies the requirement.
    pub fn matches(&self, value: Option<&str>) -> bool {
        let has = |v: &str| self.values.iter().any(|x| x == v);
        match self.operator {
            Operator::In | Operator::Equals | Operator::DoubleEquals => value.is_some_and(has),
            Operator::NotIn | Operator::NotEquals => !value.is_some_and(has),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
            Operator::GreaterThan | Operator::LessThan => {
                let Some(actual) = value.and_then(|v| v.parse::<i64>().ok()) else { return false };
                let [wanted] = self.values.as_slice() else { return false };
                let Ok(wanted) = wanted.parse::<i64>() else { return false };
                match self.operator {
                    Operator::GreaterThan => actual > wanted,
                    _ => actual < wanted,
                }
            }
        }
    }

    /// Builds a requirement with upstream's checks (`labels.NewRequirement`); all
    /// problems are reported together, as an aggregate.
    fn new(key: &str, operator: Operator, values: Vec<String>) -> Result<Requirement, SelectorError> {
        let mut errs = Vec::new();
        let key_errs = qualified_name_errors(key);
        if !key_errs.is_empty() {
            errs.push(format!("key: Invalid value: {}: {}", go_quote(key), key_errs.join("; ")));
        }
        let rendered = go_json_strings(&values);
        match operator {
            Operator::In | Operator::NotIn if values.is_empty() => {
                errs.push(format!("values: Invalid value: {rendered}: for 'in', 'notin' operators, values set can't be empty"));
            }
            Operator::Equals | Operator::DoubleEquals | Operator::NotEquals if values.len() != 1 => {
                errs.push(format!("values: Invalid value: {rendered}: exact-match compatibility requires one single value"));
            }
            Operator::Exists | Operator::DoesNotExist if !values.is_empty() => {
                errs.push(format!("values: Invalid value: {rendered}: values set must be empty for exists and does not exist"));
            }
            Operator::GreaterThan | Operator::LessThan => {
                if values.len() != 1 {
                    errs.push(format!("values: Invalid value: {rendered}: for 'Gt', 'Lt' operators, exactly one value is required"));
                }
                for (i, v) in values.iter().enumerate() {
                    if v.parse::<i64>().is_err() {
                        errs.push(format!("values[{i}]: Invalid value: {}: for 'Gt', 'Lt' operators, the value must be an integer", go_quote(v)));
                    }
                }
            }
            _ => {}
        }
        for (i, v) in values.iter().enumerate() {
            let value_errs = label_value_errors(v);
            if !value_errs.is_empty() {
                errs.push(format!("values[{i}][{key}]: Invalid value: {}: {}", go_quote(v), value_errs.join("; ")));
            }
        }
        if errs.is_empty() {
            Ok(Requirement { key: key.to_string(), operator, values })
        } else {
            Err(SelectorError(aggregate(errs)))
        }
    }
}

/// Renders as upstream's `Requirement.String()`, which is also what
/// `metav1.FormatLabelSelector` prints.
impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.operator == Operator::DoesNotExist {
            f.write_str("!")?;
        }
        f.write_str(&self.key)?;
        let op = match self.operator {
            Operator::Equals => "=",
            Operator::DoubleEquals => "==",
            Operator::NotEquals => "!=",
            Operator::In => " in ",
            Operator::NotIn => " notin ",
            Operator::GreaterThan => ">",
            Operator::LessThan => "<",
            Operator::Exists | Operator::DoesNotExist => return Ok(()),
        };
        f.write_str(op)?;
        let set = matches!(self.operator, Operator::In | Operator::NotIn);
        if set {
            f.write_str("(")?;
        }
        let mut values = self.values.clone();
        values.sort();
        f.write_str(&values.join(","))?;
        if set {
            f.write_str(")")?;
        }
        Ok(())
    }
}

// === impl LabelSelector ===

/// A parsed label selector. The default value is the empty selector, which
/// matches everything; [`LabelSelector::nothing`] matches nothing.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LabelSelector {
    /// Sorted by key, as upstream keeps them.
    requirements: Vec<Requirement>,
    /// Upstream's `labels.Nothing()`: what a missing `metav1.LabelSelector` selects.
    nothing: bool,
}

impl LabelSelector {
    /// Parses the string form used by `?labelSelector=` and `kubectl -l`.
    pub fn parse(s: &str) -> Result<Self, SelectorError> {
        let mut requirements = Parser::new(s).parse()?;
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(LabelSelector { requirements, nothing: false })
    }

    /// Builds a selector from a `metav1.LabelSelector` as found in workload specs, as
    /// `metav1.LabelSelectorAsSelector` does: `null` selects nothing, `{}` everything.
    pub fn from_json(v: &Value) -> Result<Self, SelectorError> {
        let map = match v {
            Value::Null => return Ok(LabelSelector::nothing()),
            Value::Object(map) => map,
            other => return Err(SelectorError(format!("a label selector must be an object, not {other}"))),
        };
        let mut requirements = Vec::new();
        match map.get("matchLabels") {
            None | Some(Value::Null) => {}
            Some(Value::Object(labels)) => {
                for (k, v) in labels {
                    let v = v
                        .as_str()
                        .ok_or_else(|| SelectorError(format!("matchLabels[{k}]: the value must be a string")))?;
                    requirements.push(Requirement::new(k, Operator::Equals, vec![v.to_string()])?);
                }
            }
            Some(_) => return Err(SelectorError("matchLabels must be a map of strings".into())),
        }
        match map.get("matchExpressions") {
            None | Some(Value::Null) => {}
            Some(Value::Array(exprs)) => {
                for expr in exprs {
                    let text = |field: &str| expr.get(field).and_then(Value::as_str).unwrap_or("");
                    let operator = match text("operator") {
                        "In" => Operator::In,
                        "NotIn" => Operator::NotIn,
                        "Exists" => Operator::Exists,
                        "DoesNotExist" => Operator::DoesNotExist,
                        other => return Err(SelectorError(format!("{} is not a valid label selector operator", go_quote(other)))),
                    };
                    let values = match expr.get("values") {
                        None | Some(Value::Null) => Vec::new(),
                        Some(Value::Array(vs)) => vs
                            .iter()
                            .map(|v| v.as_str().map(String::from))
                            .collect::<Option<Vec<_>>>()
                            .ok_or_else(|| SelectorError("matchExpressions values must be strings".into()))?,
                        Some(_) => return Err(SelectorError("matchExpressions values must be a list of strings".into())),
                    };
                    requirements.push(Requirement::new(text("key"), operator, values)?);
                }
            }
            Some(_) => return Err(SelectorError("matchExpressions must be a list".into())),
        }
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(LabelSelector { requirements, nothing: false })
    }

    /// The selector of a plain `map[string]string` (a Service's `spec.selector`),
    /// like `labels.SelectorFromSet`: no validation, and an empty map selects everything.
    pub fn from_set<'a>(labels: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let mut requirements: Vec<Requirement> = labels
            .into_iter()
            .map(|(k, v)| Requirement { key: k.to_string(), operator: Operator::Equals, values: vec![v.to_string()] })
            .collect();
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        LabelSelector { requirements, nothing: false }
    }

    /// The selector that matches no object at all.
    pub fn nothing() -> Self {
        LabelSelector { requirements: Vec::new(), nothing: true }
    }

    /// True for the empty selector, which matches everything.
    pub fn is_empty(&self) -> bool {
        !self.nothing && self.requirements.is_empty()
    }

    /// The requirements, sorted by key.
    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }

    /// Whether the labels looked up through `labels` (absent labels are `None`)
    /// satisfy every requirement.
    pub fn matches(&self, labels: &dyn Fn(&str) -> Option<String>) -> bool {
        !self.nothing && self.requirements.iter().all(|r| r.matches(labels(&r.key).as_deref()))
    }

    /// [`matches`](Self::matches) against `metadata.labels` of an object.
    pub fn matches_object(&self, obj: &Value) -> bool {
        let labels = obj.pointer("/metadata/labels");
        self.matches(&|k| labels.and_then(|l| l.get(k)).and_then(Value::as_str).map(String::from))
    }
}

/// Upstream's `Selector.String()`: requirements joined by commas; empty for both
/// the empty and the nothing selector.
impl fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

// === impl Parser ===
//
// A port of the lexer and recursive-descent parser of `labels/selector.go`. The
// structure is kept close to upstream on purpose: its quirks (such as `in` being a
// plain identifier in value position, or `()` meaning the empty string) are part of
// the behaviour clients see.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    Error,
    EndOfString,
    ClosedPar,
    Comma,
    DoesNotExist,
    DoubleEquals,
    Equals,
    GreaterThan,
    Identifier,
    In,
    LessThan,
    NotEquals,
    NotIn,
    OpenPar,
}

fn keyword(s: &[u8]) -> Option<Token> {
    Some(match s {
        b")" => Token::ClosedPar,
        b"," => Token::Comma,
        b"!" => Token::DoesNotExist,
        b"==" => Token::DoubleEquals,
        b"=" => Token::Equals,
        b">" => Token::GreaterThan,
        b"in" => Token::In,
        b"<" => Token::LessThan,
        b"!=" => Token::NotEquals,
        b"notin" => Token::NotIn,
        b"(" => Token::OpenPar,
        _ => return None,
    })
}

fn is_whitespace(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

fn is_special(b: u8) -> bool {
    matches!(b, b'=' | b'!' | b'(' | b')' | b',' | b'>' | b'<')
}

struct Lexer<'a> {
    s: &'a [u8],
    pos: usize,
}

impl Lexer<'_> {
    /// The next byte, or 0 at the end (a NUL byte in the input reads the same).
    fn read(&mut self) -> u8 {
        match self.s.get(self.pos) {
            Some(&b) => {
                self.pos += 1;
                b
            }
            None => 0,
        }
    }

    fn unread(&mut self) {
        self.pos = self.pos.saturating_sub(1);
    }

    fn scan_id_or_keyword(&mut self) -> (Token, String) {
        let mut buf = Vec::new();
        loop {
            let ch = self.read();
            if ch == 0 {
                break;
            }
            if is_special(ch) || is_whitespace(ch) {
                self.unread();
                break;
            }
            buf.push(ch);
        }
        let tok = keyword(&buf).unwrap_or(Token::Identifier);
        (tok, String::from_utf8_lossy(&buf).into_owned())
    }

    fn scan_special_symbol(&mut self) -> (Token, String) {
        let mut buf = Vec::new();
        let mut last: Option<(Token, String)> = None;
        loop {
            let ch = self.read();
            if ch == 0 {
                break;
            }
            if !is_special(ch) {
                self.unread();
                break;
            }
            buf.push(ch);
            if let Some(tok) = keyword(&buf) {
                last = Some((tok, String::from_utf8_lossy(&buf).into_owned()));
            } else if last.is_some() {
                self.unread();
                break;
            }
        }
        last.unwrap_or_else(|| (Token::Error, format!("error expected: keyword found '{}'", String::from_utf8_lossy(&buf))))
    }

    fn lex(&mut self) -> (Token, String) {
        let mut ch = self.read();
        while is_whitespace(ch) {
            ch = self.read();
        }
        if ch == 0 {
            return (Token::EndOfString, String::new());
        }
        self.unread();
        if is_special(ch) {
            self.scan_special_symbol()
        } else {
            self.scan_id_or_keyword()
        }
    }
}

/// In value position `in` and `notin` are ordinary identifiers.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Context {
    KeyAndOperator,
    Values,
}

struct Parser {
    items: Vec<(Token, String)>,
    position: usize,
}

impl Parser {
    fn new(s: &str) -> Parser {
        let mut lexer = Lexer { s: s.as_bytes(), pos: 0 };
        let mut items = Vec::new();
        loop {
            let item = lexer.lex();
            let end = item.0 == Token::EndOfString;
            items.push(item);
            if end {
                break;
            }
        }
        Parser { items, position: 0 }
    }

    fn item(&self, at: usize, ctx: Context) -> (Token, String) {
        let (tok, lit) = self.items.get(at).cloned().unwrap_or((Token::EndOfString, String::new()));
        match (ctx, tok) {
            (Context::Values, Token::In | Token::NotIn) => (Token::Identifier, lit),
            _ => (tok, lit),
        }
    }

    fn lookahead(&self, ctx: Context) -> (Token, String) {
        self.item(self.position, ctx)
    }

    fn consume(&mut self, ctx: Context) -> (Token, String) {
        self.position += 1;
        self.item(self.position - 1, ctx)
    }

    fn parse(&mut self) -> Result<Vec<Requirement>, SelectorError> {
        let mut out = Vec::new();
        loop {
            let (tok, lit) = self.lookahead(Context::Values);
            match tok {
                Token::Identifier | Token::DoesNotExist => {
                    let r = self.parse_requirement().map_err(|e| SelectorError(format!("unable to parse requirement: {}", e.0)))?;
                    out.push(r);
                    let (t, l) = self.consume(Context::Values);
                    match t {
                        Token::EndOfString => return Ok(out),
                        Token::Comma => {
                            let (t2, l2) = self.lookahead(Context::Values);
                            if t2 != Token::Identifier && t2 != Token::DoesNotExist {
                                return Err(SelectorError(format!("found '{l2}', expected: identifier after ','")));
                            }
                        }
                        _ => return Err(SelectorError(format!("found '{l}', expected: ',' or 'end of string'"))),
                    }
                }
                Token::EndOfString => return Ok(out),
                _ => return Err(SelectorError(format!("found '{lit}', expected: !, identifier, or 'end of string'"))),
            }
        }
    }

    fn parse_requirement(&mut self) -> Result<Requirement, SelectorError> {
        let (key, operator) = self.parse_key_and_infer_operator()?;
        if let Some(op @ (Operator::Exists | Operator::DoesNotExist)) = operator {
            return Requirement::new(&key, op, Vec::new());
        }
        let operator = self.parse_operator()?;
        let values = match operator {
            Operator::In | Operator::NotIn => self.parse_values()?,
            _ => self.parse_exact_value()?,
        };
        Requirement::new(&key, operator, values)
    }

    fn parse_key_and_infer_operator(&mut self) -> Result<(String, Option<Operator>), SelectorError> {
        let mut operator = None;
        let (mut tok, mut lit) = self.consume(Context::Values);
        if tok == Token::DoesNotExist {
            operator = Some(Operator::DoesNotExist);
            (tok, lit) = self.consume(Context::Values);
        }
        if tok != Token::Identifier {
            return Err(SelectorError(format!("found '{lit}', expected: identifier")));
        }
        let errs = qualified_name_errors(&lit);
        if !errs.is_empty() {
            // Upstream validates with a nil field path here, hence "<nil>".
            return Err(SelectorError(format!("<nil>: Invalid value: {}: {}", go_quote(&lit), errs.join("; "))));
        }
        let (next, _) = self.lookahead(Context::Values);
        if matches!(next, Token::EndOfString | Token::Comma) && operator.is_none() {
            operator = Some(Operator::Exists);
        }
        Ok((lit, operator))
    }

    fn parse_operator(&mut self) -> Result<Operator, SelectorError> {
        let (tok, lit) = self.consume(Context::KeyAndOperator);
        Ok(match tok {
            Token::In => Operator::In,
            Token::Equals => Operator::Equals,
            Token::DoubleEquals => Operator::DoubleEquals,
            Token::GreaterThan => Operator::GreaterThan,
            Token::LessThan => Operator::LessThan,
            Token::NotIn => Operator::NotIn,
            Token::NotEquals => Operator::NotEquals,
            _ => return Err(SelectorError(format!("found '{lit}', expected: in, notin, =, ==, !=, gt, lt"))),
        })
    }

    /// `(a,b,c)`; the result is sorted and deduplicated, like upstream's string set.
    fn parse_values(&mut self) -> Result<Vec<String>, SelectorError> {
        let (tok, lit) = self.consume(Context::Values);
        if tok != Token::OpenPar {
            return Err(SelectorError(format!("found '{lit}' expected: '('")));
        }
        let (tok, lit) = self.lookahead(Context::Values);
        match tok {
            Token::Identifier | Token::Comma => {
                let values = self.parse_identifiers_list()?;
                let (tok, _) = self.consume(Context::Values);
                if tok != Token::ClosedPar {
                    return Err(SelectorError(format!("found '{lit}', expected: ')'")));
                }
                Ok(values)
            }
            Token::ClosedPar => {
                self.consume(Context::Values);
                Ok(vec![String::new()])
            }
            _ => Err(SelectorError(format!("found '{lit}', expected: ',', ')' or identifier"))),
        }
    }

    fn parse_identifiers_list(&mut self) -> Result<Vec<String>, SelectorError> {
        let mut set = std::collections::BTreeSet::new();
        loop {
            let (tok, lit) = self.consume(Context::Values);
            match tok {
                Token::Identifier => {
                    set.insert(lit);
                    let (tok2, lit2) = self.lookahead(Context::Values);
                    match tok2 {
                        Token::Comma => continue,
                        Token::ClosedPar => return Ok(set.into_iter().collect()),
                        _ => return Err(SelectorError(format!("found '{lit2}', expected: ',' or ')'"))),
                    }
                }
                Token::Comma => {
                    if set.is_empty() {
                        set.insert(String::new());
                    }
                    let (tok2, _) = self.lookahead(Context::Values);
                    if tok2 == Token::ClosedPar {
                        set.insert(String::new());
                        return Ok(set.into_iter().collect());
                    }
                    if tok2 == Token::Comma {
                        self.consume(Context::Values);
                        set.insert(String::new());
                    }
                }
                _ => return Err(SelectorError(format!("found '{lit}', expected: ',', or identifier"))),
            }
        }
    }

    fn parse_exact_value(&mut self) -> Result<Vec<String>, SelectorError> {
        let (tok, _) = self.lookahead(Context::Values);
        if matches!(tok, Token::EndOfString | Token::Comma) {
            return Ok(vec![String::new()]);
        }
        let (tok, lit) = self.consume(Context::Values);
        if tok == Token::Identifier {
            Ok(vec![lit])
        } else {
            Err(SelectorError(format!("found '{lit}', expected: identifier")))
        }
    }
}

// === impl FieldSelector ===

/// One `field=value` or `field!=value` term.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FieldTerm {
    field: String,
    value: String,
    negated: bool,
}

/// A parsed field selector. The default value is empty and matches everything.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FieldSelector {
    terms: Vec<FieldTerm>,
}

impl FieldSelector {
    /// Parses the string form used by `?fieldSelector=` (`fields.ParseSelector`).
    /// Terms are split on unescaped commas; values may escape `\`, `,` and `=`.
    pub fn parse(s: &str) -> Result<Self, SelectorError> {
        let mut parts = split_terms(s);
        parts.sort();
        let mut terms = Vec::new();
        for part in parts.iter().filter(|p| !p.is_empty()) {
            let cant = || SelectorError(format!("invalid selector: '{s}'; can't understand '{part}'"));
            let (field, op, rhs) = split_term(part).ok_or_else(cant)?;
            let value = unescape_value(rhs)?;
            terms.push(FieldTerm { field: field.to_string(), value, negated: op == "!=" });
        }
        Ok(FieldSelector { terms })
    }

    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    /// The field names the selector mentions.
    pub fn fields(&self) -> Vec<String> {
        self.terms.iter().map(|t| t.field.clone()).collect()
    }

    /// The value the selector requires `field` to equal, if it does (for index lookups
    /// such as pods by `spec.nodeName`).
    pub fn requires_exact_match(&self, field: &str) -> Option<&str> {
        self.terms.iter().find(|t| !t.negated && t.field == field).map(|t| t.value.as_str())
    }

    /// Whether the fields looked up through `fields` satisfy every term. A field the
    /// lookup does not know compares as the empty string, as upstream's `fields.Set` does.
    pub fn matches(&self, fields: &dyn Fn(&str) -> Option<String>) -> bool {
        self.terms.iter().all(|t| {
            let actual = fields(&t.field).unwrap_or_default();
            (actual == t.value) != t.negated
        })
    }

    /// 400-worthy error if the selector names a field the kind does not support:
    /// `field label not supported: foo` (worded per kind as upstream's field label
    /// conversion functions word it).
    pub fn check_supported(&self, res: &ResourceInfo) -> Result<(), SelectorError> {
        let kind = SelectableKind::of(res);
        for t in &self.terms {
            if !kind.accepts(&t.field) {
                return Err(kind.unsupported(&t.field));
            }
        }
        Ok(())
    }
}

impl fmt::Display for FieldSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, t) in self.terms.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            let value = t.value.replace('\\', "\\\\").replace(',', "\\,").replace('=', "\\=");
            write!(f, "{}{}{}", t.field, if t.negated { "!=" } else { "=" }, value)?;
        }
        Ok(())
    }
}

/// Splits on commas that are not escaped by a backslash; escapes stay in the parts.
fn split_terms(s: &str) -> Vec<&str> {
    if s.is_empty() {
        return Vec::new();
    }
    let mut terms = Vec::new();
    let mut start = 0;
    let mut in_slash = false;
    for (i, c) in s.char_indices() {
        if in_slash {
            in_slash = false;
        } else if c == '\\' {
            in_slash = true;
        } else if c == ',' {
            terms.push(&s[start..i]);
            start = i + 1;
        }
    }
    terms.push(&s[start..]);
    terms
}

/// Splits a term at its first operator; `!=` and `==` win over `=` at the same place.
fn split_term(term: &str) -> Option<(&str, &'static str, &str)> {
    for (i, _) in term.char_indices() {
        for op in ["!=", "==", "="] {
            if term[i..].starts_with(op) {
                return Some((&term[..i], op, &term[i + op.len()..]));
            }
        }
    }
    None
}

fn unescape_value(s: &str) -> Result<String, SelectorError> {
    if !s.contains(['\\', ',', '=']) {
        return Ok(s.to_string());
    }
    let mut out = String::with_capacity(s.len());
    let mut in_slash = false;
    for c in s.chars() {
        if in_slash {
            match c {
                '\\' | ',' | '=' => out.push(c),
                _ => return Err(SelectorError(format!("invalid field selector: invalid escape sequence: \\{c}"))),
            }
            in_slash = false;
            continue;
        }
        match c {
            '\\' => in_slash = true,
            // Upstream formats the rune with %v, which prints its code point.
            ',' | '=' => return Err(SelectorError(format!("invalid field selector: unescaped character in value: {}", c as u32))),
            _ => out.push(c),
        }
    }
    if in_slash {
        return Err(SelectorError("invalid field selector: invalid escape sequence: \\".into()));
    }
    Ok(out)
}

// === selectable fields ===

/// The kinds whose field selectors differ from the default (`metadata.name` and
/// `metadata.namespace` only), after upstream's field label conversion functions.
#[derive(Clone, Copy, PartialEq, Eq)]
enum SelectableKind {
    Pod,
    Node,
    Namespace,
    Secret,
    Service,
    CoreEvent,
    EventsEvent,
    ReplicaSet,
    Job,
    Default,
}

const POD_FIELDS: &[&str] = &[
    "metadata.name",
    "metadata.namespace",
    "spec.nodeName",
    "spec.restartPolicy",
    "spec.schedulerName",
    "spec.serviceAccountName",
    "spec.hostNetwork",
    "status.phase",
    "status.podIP",
    "status.nominatedNodeName",
    // Old v1 clients send `spec.host`; upstream converts it to `spec.nodeName`.
    "spec.host",
];
const CORE_EVENT_FIELDS: &[&str] = &[
    "metadata.name",
    "metadata.namespace",
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
    "reason",
    "reportingComponent",
    "source",
    "type",
];
const EVENTS_EVENT_FIELDS: &[&str] = &[
    "metadata.name",
    "metadata.namespace",
    "regarding.kind",
    "regarding.namespace",
    "regarding.name",
    "regarding.uid",
    "regarding.apiVersion",
    "regarding.resourceVersion",
    "regarding.fieldPath",
    "reason",
    "reportingController",
    "source",
    "type",
];

impl SelectableKind {
    fn of(res: &ResourceInfo) -> SelectableKind {
        match (res.group, res.kind) {
            ("", "Pod") => SelectableKind::Pod,
            ("", "Node") => SelectableKind::Node,
            ("", "Namespace") => SelectableKind::Namespace,
            ("", "Secret") => SelectableKind::Secret,
            ("", "Service") => SelectableKind::Service,
            ("", "Event") => SelectableKind::CoreEvent,
            ("events.k8s.io", "Event") => SelectableKind::EventsEvent,
            ("apps", "ReplicaSet") => SelectableKind::ReplicaSet,
            ("batch", "Job") => SelectableKind::Job,
            _ => SelectableKind::Default,
        }
    }

    /// The field names a selector may use. Nodes and namespaces do not accept
    /// `metadata.namespace`, as upstream.
    fn accepted(self) -> &'static [&'static str] {
        match self {
            SelectableKind::Pod => POD_FIELDS,
            SelectableKind::Node => &["metadata.name", "spec.unschedulable"],
            SelectableKind::Namespace => &["metadata.name", "status.phase"],
            SelectableKind::Secret => &["metadata.name", "metadata.namespace", "type"],
            SelectableKind::Service => &["metadata.name", "metadata.namespace", "spec.clusterIP", "spec.type"],
            SelectableKind::CoreEvent => CORE_EVENT_FIELDS,
            SelectableKind::EventsEvent => EVENTS_EVENT_FIELDS,
            SelectableKind::ReplicaSet => &["metadata.name", "metadata.namespace", "status.replicas"],
            SelectableKind::Job => &["metadata.name", "metadata.namespace", "status.successful"],
            SelectableKind::Default => &["metadata.name", "metadata.namespace"],
        }
    }

    fn accepts(self, field: &str) -> bool {
        self.accepted().contains(&field)
    }

    fn unsupported(self, field: &str) -> SelectorError {
        SelectorError(match self {
            SelectableKind::Job => format!("field label {} not supported for batchv1.Job", go_quote(field)),
            SelectableKind::Default => format!(
                "{} is not a known field selector: only \"metadata.name\", \"metadata.namespace\"",
                go_quote(field)
            ),
            _ => format!("field label not supported: {field}"),
        })
    }
}

/// The field-selector fields of `res` with their values in `obj`, computed as
/// upstream's `ToSelectableFields`: absent strings are `""`, booleans `true`/`false`,
/// counters decimal. `metadata.name` and `metadata.namespace` are always listed
/// (the namespace is `""` for cluster-scoped kinds, which is what upstream compares).
pub fn selectable_fields(res: &ResourceInfo, obj: &Value) -> Vec<(&'static str, String)> {
    let text = |ptr: &str| obj.pointer(ptr).and_then(Value::as_str).unwrap_or("").to_string();
    let int = |ptr: &str| obj.pointer(ptr).and_then(Value::as_i64).unwrap_or(0).to_string();
    let boolean = |ptr: &str| obj.pointer(ptr).and_then(Value::as_bool).unwrap_or(false).to_string();
    let mut out = vec![("metadata.name", text("/metadata/name")), ("metadata.namespace", text("/metadata/namespace"))];
    match SelectableKind::of(res) {
        SelectableKind::Pod => {
            let node = text("/spec/nodeName");
            // The primary IP is `podIPs[0]`; `podIP` alone is what old writers set.
            let ip = obj
                .pointer("/status/podIPs/0/ip")
                .and_then(Value::as_str)
                .map(String::from)
                .unwrap_or_else(|| text("/status/podIP"));
            out.extend([
                ("spec.nodeName", node.clone()),
                ("spec.restartPolicy", text("/spec/restartPolicy")),
                ("spec.schedulerName", text("/spec/schedulerName")),
                ("spec.serviceAccountName", text("/spec/serviceAccountName")),
                ("spec.hostNetwork", boolean("/spec/hostNetwork")),
                ("status.phase", text("/status/phase")),
                ("status.podIP", ip),
                ("status.nominatedNodeName", text("/status/nominatedNodeName")),
                ("spec.host", node),
            ]);
        }
        SelectableKind::Node => out.push(("spec.unschedulable", boolean("/spec/unschedulable"))),
        SelectableKind::Namespace => out.push(("status.phase", text("/status/phase"))),
        SelectableKind::Secret => out.push(("type", text("/type"))),
        SelectableKind::Service => {
            out.extend([("spec.clusterIP", text("/spec/clusterIP")), ("spec.type", text("/spec/type"))]);
        }
        SelectableKind::CoreEvent => {
            let reporting = text("/reportingComponent");
            let source = Some(text("/source/component")).filter(|s| !s.is_empty()).unwrap_or_else(|| reporting.clone());
            out.extend([
                ("involvedObject.kind", text("/involvedObject/kind")),
                ("involvedObject.namespace", text("/involvedObject/namespace")),
                ("involvedObject.name", text("/involvedObject/name")),
                ("involvedObject.uid", text("/involvedObject/uid")),
                ("involvedObject.apiVersion", text("/involvedObject/apiVersion")),
                ("involvedObject.resourceVersion", text("/involvedObject/resourceVersion")),
                ("involvedObject.fieldPath", text("/involvedObject/fieldPath")),
                ("reason", text("/reason")),
                ("reportingComponent", reporting),
                ("source", source),
                ("type", text("/type")),
            ]);
        }
        SelectableKind::EventsEvent => {
            let reporting = text("/reportingController");
            let source =
                Some(text("/deprecatedSource/component")).filter(|s| !s.is_empty()).unwrap_or_else(|| reporting.clone());
            out.extend([
                ("regarding.kind", text("/regarding/kind")),
                ("regarding.namespace", text("/regarding/namespace")),
                ("regarding.name", text("/regarding/name")),
                ("regarding.uid", text("/regarding/uid")),
                ("regarding.apiVersion", text("/regarding/apiVersion")),
                ("regarding.resourceVersion", text("/regarding/resourceVersion")),
                ("regarding.fieldPath", text("/regarding/fieldPath")),
                ("reason", text("/reason")),
                ("reportingController", reporting),
                ("source", source),
                ("type", text("/type")),
            ]);
        }
        SelectableKind::ReplicaSet => out.push(("status.replicas", int("/status/replicas"))),
        SelectableKind::Job => out.push(("status.successful", int("/status/succeeded"))),
        SelectableKind::Default => {}
    }
    out
}

// === upstream validation and formatting ===

const QUALIFIED_NAME_FMT: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const QUALIFIED_NAME_MSG: &str =
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const LABEL_VALUE_FMT: &str = "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?";
const LABEL_VALUE_MSG: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const DNS1123_SUBDOMAIN_FMT: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";
const DNS1123_SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character";

fn regex_error(msg: &str, fmt: &str, examples: &[&str]) -> String {
    let mut out = format!("{msg} (e.g. ");
    for (i, e) in examples.iter().enumerate() {
        if i > 0 {
            out.push_str(" or ");
        }
        out.push_str(&format!("'{e}', "));
    }
    out.push_str(&format!("regex used for validation is '{fmt}')"));
    out
}

/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`
fn is_qualified_token(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

fn is_dns1123_subdomain(s: &str) -> bool {
    let label = |l: &str| {
        let b = l.as_bytes();
        let alnum = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
        !b.is_empty() && alnum(&b[0]) && alnum(&b[b.len() - 1]) && b.iter().all(|c| alnum(c) || *c == b'-')
    };
    s.split('.').all(label)
}

/// Upstream's `IsQualifiedName` messages for a label key.
fn qualified_name_errors(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    let parts: Vec<&str> = value.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                errs.push("prefix part must be non-empty".to_string());
            } else {
                if prefix.len() > 253 {
                    errs.push("prefix part must be no more than 253 characters".to_string());
                }
                if !is_dns1123_subdomain(prefix) {
                    errs.push(format!(
                        "prefix part {}",
                        regex_error(DNS1123_SUBDOMAIN_MSG, DNS1123_SUBDOMAIN_FMT, &["example.com"])
                    ));
                }
            }
            *name
        }
        _ => {
            errs.push(format!(
                "a qualified name {} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
                regex_error(QUALIFIED_NAME_MSG, QUALIFIED_NAME_FMT, &["MyName", "my.name", "123-abc"])
            ));
            return errs;
        }
    };
    if name.is_empty() {
        errs.push("name part must be non-empty".to_string());
    } else if name.len() > 63 {
        errs.push("name part must be no more than 63 characters".to_string());
    }
    if !is_qualified_token(name) {
        errs.push(format!(
            "name part {}",
            regex_error(QUALIFIED_NAME_MSG, QUALIFIED_NAME_FMT, &["MyName", "my.name", "123-abc"])
        ));
    }
    errs
}

/// Upstream's `IsValidLabelValue` messages.
fn label_value_errors(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > 63 {
        errs.push("must be no more than 63 characters".to_string());
    }
    if !value.is_empty() && !is_qualified_token(value) {
        errs.push(regex_error(LABEL_VALUE_MSG, LABEL_VALUE_FMT, &["MyValue", "my_value", "12345"]));
    }
    errs
}

/// `utilerrors.NewAggregate(...).Error()`: one message as is, several in brackets,
/// duplicates dropped.
fn aggregate(errs: Vec<String>) -> String {
    let mut unique: Vec<String> = Vec::new();
    for e in errs {
        if !unique.contains(&e) {
            unique.push(e);
        }
    }
    if unique.len() == 1 {
        unique.remove(0)
    } else {
        format!("[{}]", unique.join(", "))
    }
}

/// Go's `strconv.Quote`, which upstream's error messages use for values.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if c.is_control() || (c.is_whitespace() && c != ' ') => {
                if (c as u32) < 0x10000 {
                    out.push_str(&format!("\\u{:04x}", c as u32));
                } else {
                    out.push_str(&format!("\\U{:08x}", c as u32));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Go's `json.Marshal` of a `[]string` (`null` when empty, HTML-escaped), as
/// `field.Invalid` renders list values.
fn go_json_strings(values: &[String]) -> String {
    if values.is_empty() {
        return "null".to_string();
    }
    serde_json::to_string(values)
        .unwrap_or_default()
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::lookup;
    use serde_json::json;
    use std::collections::BTreeMap;

    fn labels(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: BTreeMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k| map.get(k).cloned()
    }

    fn sel(s: &str) -> LabelSelector {
        LabelSelector::parse(s).unwrap_or_else(|e| panic!("{s:?}: {e}"))
    }

    fn err(s: &str) -> String {
        LabelSelector::parse(s).expect_err(s).0
    }

    #[test]
    fn every_label_operator_matches_as_upstream() {
        let l = labels(&[("app", "web"), ("tier", "front"), ("version", "5")]);
        let cases = [
            ("app=web", true),
            ("app==web", true),
            ("app=db", false),
            ("app!=db", true),
            ("missing!=x", true),
            ("app in (web,db)", true),
            ("app in (db)", false),
            ("app notin (db)", true),
            ("missing notin (db)", true),
            ("app notin (web)", false),
            ("app", true),
            ("missing", false),
            ("!missing", true),
            ("!app", false),
            ("version>4", true),
            ("version>5", false),
            ("version<6", true),
            ("app>1", false),
            ("missing<1", false),
            ("app=web,tier=front", true),
            ("app=web,tier=back", false),
            ("", true),
        ];
        for (s, want) in cases {
            assert_eq!(sel(s).matches(&l), want, "{s}");
        }
    }

    #[test]
    fn whitespace_and_keywords_as_values_parse() {
        let s = sel("  x  in  ( in , notin ) , y ");
        assert_eq!(s.to_string(), "x in (in,notin),y");
        assert!(s.matches(&labels(&[("x", "notin"), ("y", "")])));
    }

    #[test]
    fn empty_values_in_sets_mean_the_empty_string() {
        assert_eq!(sel("x in ()").requirements()[0].values(), [""]);
        assert_eq!(sel("x in (,a)").requirements()[0].values(), ["", "a"]);
        assert_eq!(sel("x in (a,,b)").requirements()[0].values(), ["", "a", "b"]);
        assert_eq!(sel("x=").requirements()[0].values(), [""]);
        assert!(sel("x=").matches(&labels(&[("x", "")])));
    }

    #[test]
    fn requirements_are_sorted_by_key_and_printed_as_upstream() {
        assert_eq!(sel("z=1,a notin (c,b),!m,k").to_string(), "a notin (b,c),k,!m,z=1");
    }

    #[test]
    fn syntax_errors_use_upstream_wording() {
        assert_eq!(err("a,"), "found '', expected: identifier after ','");
        assert_eq!(err("a b"), "unable to parse requirement: found 'b', expected: in, notin, =, ==, !=, gt, lt");
        assert_eq!(err("a in b"), "unable to parse requirement: found 'b' expected: '('");
        assert_eq!(err("a in (b"), "unable to parse requirement: found '', expected: ',' or ')'");
        assert_eq!(err("a in (b c)"), "unable to parse requirement: found 'c', expected: ',' or ')'");
        assert_eq!(err("a=b c"), "found 'c', expected: ',' or 'end of string'");
        assert_eq!(err("=a"), "found '=', expected: !, identifier, or 'end of string'");
        assert_eq!(err("!"), "unable to parse requirement: found '', expected: identifier");
        assert_eq!(err("a>=1"), "unable to parse requirement: found '=', expected: identifier");
    }

    #[test]
    fn invalid_keys_and_values_report_upstream_messages() {
        assert_eq!(
            err("a/b/c"),
            "unable to parse requirement: <nil>: Invalid value: \"a/b/c\": a qualified name must consist of alphanumeric \
             characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or \
             'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an \
             optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
        );
        assert_eq!(
            err("app=-x"),
            "unable to parse requirement: values[0][app]: Invalid value: \"-x\": a valid label must be an empty string or \
             consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character \
             (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is \
             '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
        );
        assert_eq!(
            err("v>x"),
            "unable to parse requirement: values[0]: Invalid value: \"x\": for 'Gt', 'Lt' operators, the value must be an integer"
        );
        assert!(err("Bad_/x").contains("prefix part a lowercase RFC 1123 subdomain"));
        assert!(err(&format!("{}=1", "k".repeat(64))).contains("name part must be no more than 63 characters"));
    }

    #[test]
    fn metav1_selector_converts_with_upstream_semantics() {
        let s = LabelSelector::from_json(&json!({
            "matchLabels": {"app": "web"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["front", "edge"]},
                {"key": "canary", "operator": "DoesNotExist"},
            ],
        }))
        .unwrap();
        assert_eq!(s.to_string(), "app=web,!canary,tier in (edge,front)");
        assert!(s.matches(&labels(&[("app", "web"), ("tier", "edge")])));
        assert!(!s.matches(&labels(&[("app", "web"), ("tier", "edge"), ("canary", "")])));

        let nothing = LabelSelector::from_json(&Value::Null).unwrap();
        assert!(!nothing.is_empty() && !nothing.matches(&labels(&[])));
        let everything = LabelSelector::from_json(&json!({})).unwrap();
        assert!(everything.is_empty() && everything.matches(&labels(&[])));
    }

    #[test]
    fn metav1_selector_rejects_bad_operators_and_values() {
        let e = |v: Value| LabelSelector::from_json(&v).expect_err("should fail").0;
        assert_eq!(
            e(json!({"matchExpressions": [{"key": "a", "operator": "Equals", "values": ["b"]}]})),
            "\"Equals\" is not a valid label selector operator"
        );
        assert_eq!(
            e(json!({"matchExpressions": [{"key": "a", "operator": "In"}]})),
            "values: Invalid value: null: for 'in', 'notin' operators, values set can't be empty"
        );
        assert_eq!(
            e(json!({"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["b"]}]})),
            "values: Invalid value: [\"b\"]: values set must be empty for exists and does not exist"
        );
        assert!(e(json!({"matchLabels": {"a b": "c"}})).starts_with("key: Invalid value: \"a b\": name part must consist"));
        assert!(e(json!({"matchLabels": {"a": "b c"}})).starts_with("values[0][a]: Invalid value: \"b c\""));
        let two = e(json!({"matchExpressions": [{"key": "-", "operator": "In", "values": ["-"]}]}));
        assert!(two.starts_with("[key: Invalid value: \"-\"") && two.contains(", values[0][-]: Invalid value"), "{two}");
    }

    #[test]
    fn object_labels_are_matched_from_metadata() {
        let obj = json!({"metadata": {"labels": {"app": "web"}}});
        assert!(sel("app=web").matches_object(&obj));
        assert!(!sel("app=db").matches_object(&obj));
        assert!(LabelSelector::from_set([("app", "web")]).matches_object(&obj));
        assert!(LabelSelector::from_set(std::iter::empty()).is_empty());
    }

    fn fsel(s: &str) -> FieldSelector {
        FieldSelector::parse(s).unwrap_or_else(|e| panic!("{s:?}: {e}"))
    }

    #[test]
    fn field_selectors_compare_missing_fields_as_empty() {
        let f = labels(&[("metadata.name", "web"), ("status.phase", "Running")]);
        assert!(fsel("metadata.name=web").matches(&f));
        assert!(fsel("metadata.name==web,status.phase!=Pending").matches(&f));
        assert!(!fsel("metadata.name!=web").matches(&f));
        assert!(fsel("spec.nodeName=").matches(&f));
        assert!(!fsel("spec.nodeName=n1").matches(&f));
        assert!(fsel("").is_empty() && fsel(",,").is_empty());
        assert_eq!(fsel("b=1,a!=2").fields(), ["a", "b"]);
        assert_eq!(fsel("spec.nodeName=n1").requires_exact_match("spec.nodeName"), Some("n1"));
    }

    #[test]
    fn field_values_unescape_backslashes_commas_and_equals() {
        let s = fsel(r"metadata.name=a\,b\=c\\d,x=y");
        assert!(s.matches(&labels(&[("metadata.name", r"a,b=c\d"), ("x", "y")])));
        assert_eq!(s.to_string(), r"metadata.name=a\,b\=c\\d,x=y");
        assert_eq!(fsel("a==b").fields(), ["a"]);
    }

    #[test]
    fn field_selector_errors_use_upstream_wording() {
        let e = |s: &str| FieldSelector::parse(s).expect_err(s).0;
        assert_eq!(e("a=b,c"), "invalid selector: 'a=b,c'; can't understand 'c'");
        assert_eq!(e(r"a=b\x"), r"invalid field selector: invalid escape sequence: \x");
        assert_eq!(e(r"a=b\"), r"invalid field selector: invalid escape sequence: \");
        assert_eq!(e("a=b=c"), "invalid field selector: unescaped character in value: 61");
        assert_eq!(e("a!==b"), "invalid field selector: unescaped character in value: 61");
    }

    #[test]
    fn unsupported_fields_are_rejected_per_kind() {
        let pods = lookup("", "v1", "pods").unwrap();
        assert!(fsel("spec.nodeName=n1,status.phase=Running,spec.host=n1").check_supported(pods).is_ok());
        assert_eq!(fsel("spec.foo=x").check_supported(pods).unwrap_err().0, "field label not supported: spec.foo");

        let nodes = lookup("", "v1", "nodes").unwrap();
        assert!(fsel("spec.unschedulable=true").check_supported(nodes).is_ok());
        assert!(fsel("metadata.namespace=x").check_supported(nodes).is_err());

        let cms = lookup("", "v1", "configmaps").unwrap();
        assert!(fsel("metadata.name=a,metadata.namespace=b").check_supported(cms).is_ok());
        assert_eq!(
            fsel("data.x=1").check_supported(cms).unwrap_err().0,
            "\"data.x\" is not a known field selector: only \"metadata.name\", \"metadata.namespace\""
        );

        let jobs = lookup("batch", "v1", "jobs").unwrap();
        assert_eq!(
            fsel("status.succeeded=1").check_supported(jobs).unwrap_err().0,
            "field label \"status.succeeded\" not supported for batchv1.Job"
        );
        let events = lookup("events.k8s.io", "v1", "events").unwrap();
        assert!(fsel("regarding.name=p,reportingController=k").check_supported(events).is_ok());
        assert!(fsel("involvedObject.name=p").check_supported(events).is_err());
    }

    #[test]
    fn every_selectable_field_of_every_kind_has_a_value_and_is_accepted() {
        for res in crate::RESOURCES {
            let fields = selectable_fields(res, &json!({}));
            let kind = SelectableKind::of(res);
            for name in kind.accepted() {
                assert!(fields.iter().any(|(f, _)| f == name), "{} lacks {name}", res.plural);
            }
        }
    }

    #[test]
    fn pod_fields_are_computed_as_upstream() {
        let pods = lookup("", "v1", "pods").unwrap();
        let pod = json!({
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"nodeName": "n1", "restartPolicy": "Always", "hostNetwork": true},
            "status": {"phase": "Running", "podIP": "10.0.0.9", "podIPs": [{"ip": "10.0.0.1"}]},
        });
        let fields: BTreeMap<_, _> = selectable_fields(pods, &pod).into_iter().collect();
        assert_eq!(fields["metadata.namespace"], "default");
        assert_eq!(fields["spec.nodeName"], "n1");
        assert_eq!(fields["spec.hostNetwork"], "true");
        assert_eq!(fields["spec.schedulerName"], "");
        assert_eq!(fields["status.podIP"], "10.0.0.1");
        assert_eq!(fields["spec.host"], "n1");

        let nodes = lookup("", "v1", "nodes").unwrap();
        let fields: BTreeMap<_, _> = selectable_fields(nodes, &json!({})).into_iter().collect();
        assert_eq!(fields["spec.unschedulable"], "false");

        let events = lookup("", "v1", "events").unwrap();
        let ev = json!({"involvedObject": {"kind": "Pod"}, "reportingComponent": "kubelet"});
        let fields: BTreeMap<_, _> = selectable_fields(events, &ev).into_iter().collect();
        assert_eq!(fields["source"], "kubelet");
        assert_eq!(fields["involvedObject.kind"], "Pod");

        let jobs = lookup("batch", "v1", "jobs").unwrap();
        let fields: BTreeMap<_, _> = selectable_fields(jobs, &json!({"status": {"succeeded": 2}})).into_iter().collect();
        assert_eq!(fields["status.successful"], "2");
    }

    #[test]
    fn odd_input_never_panics() {
        for s in ["\0", "a\0b", "(((", "!=!=", "a in (", "é=ü", "a in (é)", "a=\u{7f}", ",", "!!a", "a notin", "a<", "a=(b)"] {
            let _ = LabelSelector::parse(s);
            let _ = FieldSelector::parse(s);
        }
        let _ = go_quote("\u{1}\u{85}x");
    }
}
