//! A work queue with client-go's semantics: an item is handed to at most one worker
//! at a time; adding it again while it is processed queues it once more after
//! `done`; duplicates waiting in the queue collapse; rate-limited re-adds back off
//! exponentially per item (5 ms doubling up to 1000 s, reset by `forget`).

use std::hash::Hash;
use std::time::Duration;

pub struct WorkQueue<T> {
    _item: std::marker::PhantomData<T>,
}

impl<T> Clone for WorkQueue<T> {
    fn clone(&self) -> Self {
        todo!()
    }
}

impl<T> Default for WorkQueue<T>
where
    T: Hash + Eq + Clone + Send + Sync + 'static,
{
    fn default() -> Self {
        Self::new()
    }
}

impl<T> WorkQueue<T>
where
    T: Hash + Eq + Clone + Send + Sync + 'static,
{
    pub fn new() -> WorkQueue<T> {
        todo!()
    }

    pub fn add(&self, item: T) {
        todo!()
    }

    pub fn add_after(&self, item: T, delay: Duration) {
        todo!()
    }

    /// Re-adds after the item's current back-off, then doubles it.
    pub fn add_rate_limited(&self, item: T) {
        todo!()
    }

    /// Resets the item's back-off.
    pub fn forget(&self, item: &T) {
        todo!()
    }

    /// The next item to process; `None` once shut down and drained.
    pub async fn next(&self) -> Option<T> {
        todo!()
    }

    /// Marks the item processed (it may be handed out again).
    pub fn done(&self, item: &T) {
        todo!()
    }

    pub fn len(&self) -> usize {
        todo!()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn shutdown(&self) {
        todo!()
    }
}
