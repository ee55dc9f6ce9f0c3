//! The store conformance suite, run against [`SqliteStore`].

use std::sync::Arc;

use skiff_store::{SqliteStore, Store};

async fn make() -> Arc<dyn Store> {
    Arc::new(SqliteStore::open_temporary().expect("opening a temporary SQLite store"))
}

skiff_store::conformance_tests!(make);
