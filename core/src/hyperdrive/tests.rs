//! The drive suite on memory storage, one test per check (so a failure names its check).

use futures_executor::block_on;

use super::suite;
use crate::storage::MemoryStorage;

fn m() -> MemoryStorage {
    MemoryStorage::new()
}

#[test]
fn layout_like_js() {
    block_on(suite::layout_like_js(m(), m()));
}

#[test]
fn basics() {
    block_on(suite::basics(m(), m()));
}

#[test]
fn ranges() {
    block_on(suite::ranges(m(), m()));
}

#[test]
fn listings() {
    block_on(suite::listings(m(), m()));
}

#[test]
fn batches() {
    block_on(suite::batches(m(), m()));
}

#[test]
fn versions() {
    block_on(suite::versions(m(), m()));
}

#[test]
fn truncation() {
    block_on(suite::truncation(m(), m()));
}

#[test]
fn dedup_and_local_copies() {
    block_on(suite::dedup_and_local_copies(m(), m()));
}

#[test]
fn hostile() {
    block_on(suite::hostile(m(), m()));
}

#[test]
fn model() {
    for seed in 1..=6 {
        block_on(suite::model(m(), m(), seed, 200));
    }
}

#[test]
fn whole_suite() {
    block_on(suite::run_all(|| async { MemoryStorage::new() }));
}
