//! The conformance suite every [`Storage`] backend runs: memory here, native files in
//! `hyperpunch`, IndexedDB in `hyperpunch-web` (in headless Chromium).
//!
//! Each check panics with a message naming the property that failed; backends call
//! [`run_all`] from their own test harness with a factory for fresh, empty stores.

use super::{Batch, Storage};
use std::future::Future;

/// Run every check, each on a fresh store from `fresh`.
pub async fn run_all<S, F, Fut>(fresh: F)
where
    S: Storage,
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
{
    get_put_delete(&fresh().await).await;
    batch_is_ordered(&fresh().await).await;
    scan_order_bounds_limit(&fresh().await).await;
    delete_range(&fresh().await).await;
    get_many(&fresh().await).await;
    binary_keys_and_large_values(&fresh().await).await;
    put_parts(&fresh().await).await;
}

/// Put, overwrite, get, delete of single keys.
pub async fn get_put_delete<S: Storage>(s: &S) {
    assert_eq!(
        s.get(b"a").await.unwrap(),
        None,
        "fresh store must be empty"
    );
    let mut b = Batch::new();
    b.put(b"a".to_vec(), b"1".to_vec());
    s.write(b).await.unwrap();
    assert_eq!(s.get(b"a").await.unwrap().as_deref(), Some(&b"1"[..]));
    let mut b = Batch::new();
    b.put(b"a".to_vec(), b"2".to_vec());
    s.write(b).await.unwrap();
    assert_eq!(
        s.get(b"a").await.unwrap().as_deref(),
        Some(&b"2"[..]),
        "overwrite"
    );
    let mut b = Batch::new();
    b.delete(b"a".to_vec()).delete(b"missing".to_vec());
    s.write(b).await.unwrap();
    assert_eq!(s.get(b"a").await.unwrap(), None, "delete");
    // An empty value is a value, not an absence.
    let mut b = Batch::new();
    b.put(b"e".to_vec(), Vec::new());
    s.write(b).await.unwrap();
    assert_eq!(s.get(b"e").await.unwrap(), Some(Vec::new()), "empty value");
}

/// Operations inside one batch apply in order.
pub async fn batch_is_ordered<S: Storage>(s: &S) {
    let mut b = Batch::new();
    b.put(b"k".to_vec(), b"1".to_vec())
        .delete(b"k".to_vec())
        .put(b"k".to_vec(), b"3".to_vec())
        .put(b"j".to_vec(), b"x".to_vec())
        .delete_range(b"j".to_vec(), b"k".to_vec());
    s.write(b).await.unwrap();
    assert_eq!(s.get(b"k").await.unwrap().as_deref(), Some(&b"3"[..]));
    assert_eq!(
        s.get(b"j").await.unwrap(),
        None,
        "range delete after put in one batch"
    );
}

/// Scans are ascending by unsigned bytes, end-exclusive and honour the limit.
pub async fn scan_order_bounds_limit<S: Storage>(s: &S) {
    let mut b = Batch::new();
    for k in [&b"b"[..], b"a", b"\xff", b"ab", b"\x00", b"c"] {
        b.put(k.to_vec(), k.to_vec());
    }
    s.write(b).await.unwrap();
    let all = s.scan(b"", b"\xff\xff", None).await.unwrap();
    let keys: Vec<&[u8]> = all.iter().map(|(k, _)| k.as_slice()).collect();
    assert_eq!(
        keys,
        vec![&b"\x00"[..], b"a", b"ab", b"b", b"c", b"\xff"],
        "byte order"
    );
    for (k, v) in &all {
        assert_eq!(k, v);
    }
    let mid = s.scan(b"a", b"c", None).await.unwrap();
    assert_eq!(mid.len(), 3, "end is exclusive");
    let lim = s.scan(b"a", b"\xff\xff", Some(2)).await.unwrap();
    assert_eq!(lim.len(), 2);
    assert_eq!(lim[0].0, b"a");
    assert!(
        s.scan(b"c", b"a", None).await.unwrap().is_empty(),
        "empty when start >= end"
    );
}

/// Range deletes remove exactly `start..end`.
pub async fn delete_range<S: Storage>(s: &S) {
    let mut b = Batch::new();
    for i in 0u32..100 {
        b.put(i.to_be_bytes().to_vec(), vec![i as u8]);
    }
    s.write(b).await.unwrap();
    let mut b = Batch::new();
    b.delete_range(10u32.to_be_bytes().to_vec(), 90u32.to_be_bytes().to_vec());
    s.write(b).await.unwrap();
    let left = s.scan(&[], &[0xff; 5], None).await.unwrap();
    assert_eq!(left.len(), 20);
    assert_eq!(s.get(&9u32.to_be_bytes()).await.unwrap(), Some(vec![9]));
    assert_eq!(s.get(&10u32.to_be_bytes()).await.unwrap(), None);
    assert_eq!(s.get(&89u32.to_be_bytes()).await.unwrap(), None);
    assert_eq!(s.get(&90u32.to_be_bytes()).await.unwrap(), Some(vec![90]));
}

/// `get_many` returns values in the order asked, with gaps as `None`.
pub async fn get_many<S: Storage>(s: &S) {
    let mut b = Batch::new();
    b.put(b"x".to_vec(), b"1".to_vec())
        .put(b"z".to_vec(), b"3".to_vec());
    s.write(b).await.unwrap();
    let got = s
        .get_many(&[b"z".to_vec(), b"y".to_vec(), b"x".to_vec()])
        .await
        .unwrap();
    assert_eq!(got, vec![Some(b"3".to_vec()), None, Some(b"1".to_vec())]);
    assert!(s.get_many(&[]).await.unwrap().is_empty());
}

/// Arbitrary binary keys and a multi-megabyte value round-trip.
pub async fn binary_keys_and_large_values<S: Storage>(s: &S) {
    let big: Vec<u8> = (0..3 * 1024 * 1024u32)
        .map(|i| (i * 7 % 251) as u8)
        .collect();
    let key = vec![0u8, 0, 0xff, 0x80, 0];
    let mut b = Batch::new();
    b.put(key.clone(), big.clone());
    s.write(b).await.unwrap();
    assert_eq!(s.get(&key).await.unwrap().as_deref(), Some(big.as_slice()));
}

/// A put in parts stores their concatenation: short and long (past any inline threshold),
/// empty parts, overwrites either way, and the last op of a key in a batch wins.
pub async fn put_parts<S: Storage>(s: &S) {
    let long: Vec<u8> = (0..70_000u32).map(|i| (i * 13 % 251) as u8).collect();
    let mut b = Batch::new();
    b.put_parts(
        b"s".to_vec(),
        vec![b"ab".to_vec(), Vec::new(), b"cd".to_vec()],
    )
    .put_parts(b"l".to_vec(), vec![vec![1, 0, 0, 0], long.clone()])
    .put_parts(b"e".to_vec(), Vec::new())
    .put_parts(b"one".to_vec(), vec![long.clone()]);
    s.write(b).await.unwrap();
    let mut whole = vec![1, 0, 0, 0];
    whole.extend_from_slice(&long);
    assert_eq!(s.get(b"s").await.unwrap().as_deref(), Some(&b"abcd"[..]));
    assert_eq!(
        s.get(b"l").await.unwrap().as_deref(),
        Some(whole.as_slice())
    );
    assert_eq!(s.get(b"e").await.unwrap(), Some(Vec::new()), "no parts");
    assert_eq!(
        s.get(b"one").await.unwrap().as_deref(),
        Some(long.as_slice())
    );
    let all = s.scan(b"a", b"z", None).await.unwrap();
    assert_eq!(
        all,
        vec![
            (b"e".to_vec(), Vec::new()),
            (b"l".to_vec(), whole.clone()),
            (b"one".to_vec(), long.clone()),
            (b"s".to_vec(), b"abcd".to_vec()),
        ],
        "scan gives the joined values"
    );
    let mut b = Batch::new();
    b.put_parts(b"s".to_vec(), vec![long.clone(), b"!".to_vec()])
        .put(b"l".to_vec(), b"short".to_vec())
        .put_parts(b"one".to_vec(), vec![b"x".to_vec()])
        .put_parts(b"one".to_vec(), vec![b"y".to_vec(), b"z".to_vec()]);
    s.write(b).await.unwrap();
    let mut long_bang = long.clone();
    long_bang.push(b'!');
    assert_eq!(
        s.get(b"s").await.unwrap().as_deref(),
        Some(long_bang.as_slice())
    );
    assert_eq!(s.get(b"l").await.unwrap().as_deref(), Some(&b"short"[..]));
    assert_eq!(
        s.get(b"one").await.unwrap().as_deref(),
        Some(&b"yz"[..]),
        "the last op of a key in a batch wins"
    );
    let mut b = Batch::new();
    b.put_parts(b"k".to_vec(), vec![b"1".to_vec()])
        .delete_range(b"k".to_vec(), b"l".to_vec())
        .put_parts(b"m".to_vec(), vec![b"2".to_vec(), long.clone()]);
    s.write(b).await.unwrap();
    assert_eq!(
        s.get(b"k").await.unwrap(),
        None,
        "range delete after a put in parts"
    );
    let mut two = b"2".to_vec();
    two.extend_from_slice(&long);
    assert_eq!(s.get(b"m").await.unwrap().as_deref(), Some(two.as_slice()));
}
