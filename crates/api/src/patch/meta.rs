//! Patch metadata of the lists in the built-in kinds.

/// The patch metadata of one list (or map) field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListMeta {
    /// `x-kubernetes-patch-strategy`: `merge`, `retainKeys`, `merge,retainKeys`, or `replace`.
    pub patch_strategy: Option<&'static str>,
    /// `x-kubernetes-patch-merge-key`.
    pub patch_merge_key: Option<&'static str>,
    /// `x-kubernetes-list-type`: `atomic`, `set` or `map`.
    pub list_type: Option<&'static str>,
    /// `x-kubernetes-list-map-keys`.
    pub list_map_keys: &'static [&'static str],
}

/// Patch metadata of `field` in the definition `definition`, if the field has any.
pub fn field_meta(_definition: &str, _field: &str) -> Option<ListMeta> {
    todo!()
}
