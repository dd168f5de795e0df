//! `autobase_index` with a hyperbee view (the `bee:` values of the tests' apply).

use super::*;
use hyperpunch_core::hyperbee::RangeOptions;

/// A hyperbee view (apply runs `Views::bee` on `view`): the indexer writes the bee's blocks
/// into the view core unchanged and signs them (the stored core verifies: every block hashed,
/// the signature checked), and a bee read from the stored blocks answers as the engine's view.
#[tokio::test]
async fn a_bee_view_is_written_into_its_core_unchanged() {
    let mut t = setup().await;
    let mut cores = t.cores(&["view"]).await;
    for i in 0..30u32 {
        let op = if i % 4 == 3 {
            format!("bee:del:k{:02}", (i * 3) % 17)
        } else {
            format!("bee:put:k{:02}=v{i}", (i * 7) % 17)
        };
        t.append(op.as_bytes());
        if i % 5 == 4 {
            t.sync(&mut cores).await.unwrap();
        }
    }
    t.sync(&mut cores).await.unwrap();
    let view = t.base.views().blocks(0).to_vec();
    assert!(view.len() > 25, "a header and a block per put or delete");
    let h = t
        .store
        .get(GetOptions::from_key(cores.view_keys()[0]))
        .await
        .unwrap();
    let c = t.store.core(&h).unwrap();
    assert_eq!(c.length(), view.len() as u64);
    let mut stored = Views::default();
    let sv = stored.open("view");
    for (i, b) in view.iter().enumerate() {
        let got = c.get(i as u64).await.unwrap().unwrap();
        assert_eq!(&got, b, "view block {i}");
        stored.append(sv, got);
    }
    c.verify_all().await.unwrap();
    assert_eq!(cores.signed_length(), t.base.indexed_system().length);
    let ours = t.base.views().read_bee(0).with_codecs(Utf8, Utf8);
    let theirs = stored.read_bee(sv).with_codecs(Utf8, Utf8);
    let all = ours.range(RangeOptions::default()).unwrap();
    assert!(all.len() > 5);
    assert_eq!(theirs.range(RangeOptions::default()).unwrap(), all);
    for k in 0..17 {
        let k = format!("k{k:02}");
        assert_eq!(theirs.get(&k).unwrap(), ours.get(&k).unwrap());
    }
}
