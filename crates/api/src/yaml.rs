//! YAML request bodies, decoded with a bound on alias expansion.
//!
//! An alias (`*a`) repeats its anchor's whole subtree, so a few kilobytes of YAML can
//! name millions of nodes: one anchor of a thousand items aliased a thousand times is
//! a million-item document, and nesting such anchors grows it exponentially.
//! `serde_yaml` stops the exponential case (at a hundred alias jumps per event) but
//! not the quadratic one, which still turns a body well under the size limit into
//! gigabytes of `Value` and seconds of CPU per request. Upstream (go-yaml) refuses
//! such documents with `document contains excessive aliasing`; Skiff does the same
//! once the expanded document outgrows what a body of that size could hold without
//! aliases.
//!
//! The same pass holds the nesting to [`MAX_NESTING`], which is what the JSON decoder
//! accepts: `serde_yaml` allows one level more, and an object that deep could be stored
//! but never read back.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use crate::patch::MAX_NESTING;

/// Expansion every body may use whatever its size, so ordinary anchors and merge
/// keys in hand-written manifests always decode.
const MIN_BUDGET: usize = 64 * 1024;

/// Why a YAML body did not decode.
#[derive(Debug, thiserror::Error)]
pub enum YamlError {
    /// Not YAML, or not exactly one document.
    #[error("{0}")]
    Syntax(#[from] serde_yaml::Error),
    /// Aliases expand the document far beyond its own size.
    #[error("document contains excessive aliasing")]
    ExcessiveAliasing,
    /// Arrays and objects nest deeper than [`MAX_NESTING`] levels.
    #[error("recursion limit exceeded")]
    TooDeep,
}

/// Decodes the single YAML document in `raw`, as `serde_yaml::from_slice` does,
/// unless its aliases expand it past [`expansion_budget`] or it nests deeper than
/// [`MAX_NESTING`].
pub fn from_slice(raw: &[u8]) -> Result<Value, YamlError> {
    check_expansion(raw)?;
    Ok(serde_yaml::from_slice(raw)?)
}

/// Fails with [`YamlError::ExcessiveAliasing`] if the first document of `raw`, with its
/// aliases expanded, costs more than [`expansion_budget`], and with
/// [`YamlError::TooDeep`] if it nests deeper than [`MAX_NESTING`]. Anything else that
/// is wrong with the document is left for the decoder to report, in its own words.
pub fn check_expansion(raw: &[u8]) -> Result<(), YamlError> {
    let mut remaining = expansion_budget(raw.len());
    let mut stop = None;
    let measure = Measure { remaining: &mut remaining, stop: &mut stop, depth: 0 };
    match (measure.deserialize(serde_yaml::Deserializer::from_slice(raw)), stop) {
        (Err(_), Some(why)) => Err(why),
        _ => Ok(()),
    }
}

/// How much an expanded document of `len` raw bytes may cost: one unit per node plus
/// one per byte of each scalar. Without aliases a document costs at most about one and
/// a half units per raw byte (escapes such as `\L` grow), so twice the size never
/// refuses an alias-free body.
pub fn expansion_budget(len: usize) -> usize {
    len.saturating_mul(2).max(MIN_BUDGET)
}

/// Visits a document without building it, spending the budget on every node and
/// scalar byte, and stops at the first node it cannot pay for or that nests too deep.
struct Measure<'a> {
    remaining: &'a mut usize,
    /// Why the visit stopped, when it was this check and not the decoder that stopped it.
    stop: &'a mut Option<YamlError>,
    /// Arrays and objects around the node being visited.
    depth: usize,
}

impl Measure<'_> {
    fn spend<E: de::Error>(&mut self, cost: usize) -> Result<(), E> {
        match self.remaining.checked_sub(cost.saturating_add(1)) {
            Some(left) => {
                *self.remaining = left;
                Ok(())
            }
            None => {
                *self.stop = Some(YamlError::ExcessiveAliasing);
                Err(E::custom("document contains excessive aliasing"))
            }
        }
    }

    /// Pays for an array or object and checks that it does not nest too deep.
    fn enter<E: de::Error>(&mut self) -> Result<(), E> {
        self.spend(0)?;
        if self.depth >= MAX_NESTING {
            *self.stop = Some(YamlError::TooDeep);
            return Err(E::custom("recursion limit exceeded"));
        }
        Ok(())
    }

    /// The visitor for a member of the array or object being visited.
    fn child(&mut self) -> Measure<'_> {
        Measure { remaining: self.remaining, stop: self.stop, depth: self.depth + 1 }
    }
}

impl<'de> DeserializeSeed<'de> for Measure<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<(), D::Error> {
        de.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Measure<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any value")
    }

    fn visit_bool<E: de::Error>(mut self, _: bool) -> Result<(), E> {
        self.spend(0)
    }
    fn visit_i64<E: de::Error>(mut self, _: i64) -> Result<(), E> {
        self.spend(0)
    }
    fn visit_i128<E: de::Error>(mut self, _: i128) -> Result<(), E> {
        self.spend(0)
    }
    fn visit_u64<E: de::Error>(mut self, _: u64) -> Result<(), E> {
        self.spend(0)
    }
    fn visit_u128<E: de::Error>(mut self, _: u128) -> Result<(), E> {
        self.spend(0)
    }
    fn visit_f64<E: de::Error>(mut self, _: f64) -> Result<(), E> {
        self.spend(0)
    }
    fn visit_str<E: de::Error>(mut self, s: &str) -> Result<(), E> {
        self.spend(s.len())
    }
    fn visit_bytes<E: de::Error>(mut self, b: &[u8]) -> Result<(), E> {
        self.spend(b.len())
    }
    fn visit_none<E: de::Error>(mut self) -> Result<(), E> {
        self.spend(0)
    }
    fn visit_unit<E: de::Error>(mut self) -> Result<(), E> {
        self.spend(0)
    }
    fn visit_some<D: Deserializer<'de>>(mut self, de: D) -> Result<(), D::Error> {
        self.spend(0)?;
        self.deserialize(de)
    }
    fn visit_newtype_struct<D: Deserializer<'de>>(mut self, de: D) -> Result<(), D::Error> {
        self.spend(0)?;
        self.deserialize(de)
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
        self.enter()?;
        while seq.next_element_seed(self.child())?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<(), A::Error> {
        self.enter()?;
        while map.next_key_seed(self.child())?.is_some() {
            map.next_value_seed(self.child())?;
        }
        Ok(())
    }

    /// Values with a custom tag (`!foo {...}`) arrive as enums.
    fn visit_enum<A: de::EnumAccess<'de>>(mut self, data: A) -> Result<(), A::Error> {
        use de::VariantAccess;
        self.spend(0)?;
        let (IgnoredAny, variant) = data.variant::<IgnoredAny>()?;
        variant.newtype_variant_seed(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// `a: &a [x, x, ...]` followed by `b: [*a, *a, ...]`: `items` times `aliases` nodes.
    fn alias_bomb(items: usize, aliases: usize) -> String {
        format!("a: &a [{}]\nb: [{}]\n", vec!["x"; items].join(","), vec!["*a"; aliases].join(","))
    }

    #[test]
    fn quadratic_alias_expansion_is_refused() {
        // Eight kilobytes that expand to two million scalars.
        let bomb = alias_bomb(1000, 2000);
        assert!(bomb.len() < 10_000);
        assert!(matches!(from_slice(bomb.as_bytes()), Err(YamlError::ExcessiveAliasing)));
        assert_eq!(YamlError::ExcessiveAliasing.to_string(), "document contains excessive aliasing");
    }

    #[test]
    fn nested_alias_expansion_is_refused_quickly() {
        let mut doc = String::from("l0: &l0 [x,x,x,x,x,x,x,x,x,x]\n");
        for i in 1..9 {
            doc.push_str(&format!("l{i}: &l{i} [{}]\n", vec![format!("*l{}", i - 1); 10].join(",")));
        }
        let started = std::time::Instant::now();
        assert!(from_slice(doc.as_bytes()).is_err());
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
    }

    #[test]
    fn modest_anchors_and_aliases_still_decode() {
        let doc = "common: &c {image: nginx, imagePullPolicy: Always}\ncontainers:\n- *c\n- *c\n";
        let v = from_slice(doc.as_bytes()).unwrap();
        assert_eq!(v["containers"][1], json!({"image": "nginx", "imagePullPolicy": "Always"}));
        let small = alias_bomb(100, 100);
        assert_eq!(from_slice(small.as_bytes()).unwrap()["b"][99][99], json!("x"));
    }

    #[test]
    fn large_documents_without_aliases_stay_within_budget() {
        let items = "- [a, b]\n- {}\n-\n".repeat(20_000);
        assert!(items.len() > MIN_BUDGET);
        assert_eq!(from_slice(items.as_bytes()).unwrap().as_array().map(Vec::len), Some(60_000));
        // Short escapes that decode to longer UTF-8 are the densest alias-free input.
        let escapes = format!("\"{}\"", "\\L".repeat(200_000));
        assert_eq!(from_slice(escapes.as_bytes()).unwrap().as_str().map(str::len), Some(600_000));
    }

    #[test]
    fn yaml_nested_deeper_than_json_allows_is_refused() {
        // serde_yaml accepts 128 levels, one more than serde_json reads back.
        let nested = |n: usize| format!("{}1{}", "[".repeat(n), "]".repeat(n));
        let at_limit = from_slice(nested(MAX_NESTING).as_bytes()).unwrap();
        assert!(serde_json::from_str::<Value>(&at_limit.to_string()).is_ok());
        assert!(matches!(from_slice(nested(MAX_NESTING + 1).as_bytes()), Err(YamlError::TooDeep)));
        let deep_map = format!("{}1{}", "{a: ".repeat(MAX_NESTING + 1), "}".repeat(MAX_NESTING + 1));
        assert!(matches!(from_slice(deep_map.as_bytes()), Err(YamlError::TooDeep)));
        assert!(serde_yaml::from_slice::<Value>(nested(MAX_NESTING + 1).as_bytes()).is_ok(), "serde_yaml alone lets it through");
    }

    #[test]
    fn syntax_errors_keep_the_decoders_words() {
        let err = from_slice(b"a: [").unwrap_err();
        assert!(matches!(err, YamlError::Syntax(_)));
        let multi = from_slice(b"a: 1\n---\nb: 2\n").unwrap_err();
        assert_eq!(multi.to_string(), serde_yaml::from_slice::<Value>(b"a: 1\n---\nb: 2\n").unwrap_err().to_string());
    }
}
