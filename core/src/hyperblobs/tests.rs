//! Blobs on their own (the drive suite, `hyperdrive::suite`, covers them through a drive).

use std::future::Future;

use futures_executor::block_on;

use super::*;
use crate::crypto::KeyPair;
use crate::hypercore::{CreateOptions, Hypercore, Session};
use crate::storage::MemoryStorage;

async fn blobs() -> Hyperblobs<Session<MemoryStorage>> {
    let core = Hypercore::create(
        MemoryStorage::new(),
        CreateOptions {
            key_pair: Some(KeyPair::from_seed(&[2; 32])),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    Hyperblobs::new(core.into_session())
}

#[test]
fn put_get_and_ids() {
    block_on(async {
        let b = blobs().await;
        let a = b.put(b"hello").await.unwrap();
        assert_eq!(
            a,
            BlobId {
                block_offset: 0,
                byte_offset: 0,
                block_length: 1,
                byte_length: 5,
                block_map: false
            }
        );
        let big = b.put(&vec![3u8; 3 * DEFAULT_BLOCK_SIZE + 1]).await.unwrap();
        assert_eq!(
            (big.block_offset, big.byte_offset, big.block_length),
            (1, 5, 4)
        );
        let empty = b.put(b"").await.unwrap();
        assert_eq!((empty.block_offset, empty.block_length), (5, 0));
        assert_eq!(b.get(&empty).await.unwrap().unwrap(), b"");
        assert_eq!(b.get(&a).await.unwrap().unwrap(), b"hello");
        assert_eq!(
            b.get(&big).await.unwrap().unwrap().len(),
            3 * DEFAULT_BLOCK_SIZE + 1
        );
        let small = Hyperblobs::new(b.core().clone()).with_block_size(2);
        let s = small.put(b"abcde").await.unwrap();
        assert_eq!(s.block_length, 3);
        assert_eq!(
            small
                .get_range(&s, ReadRange::inclusive(1, 3))
                .await
                .unwrap()
                .unwrap(),
            b"bcd"
        );
    });
}

#[test]
fn writer_holds_the_lock() {
    block_on(async {
        let b = blobs().await;
        let mut w = b.writer(WriteOptions::default()).await.unwrap();
        w.write(b"one").await.unwrap();
        {
            let mut other = std::pin::pin!(b.put(b"two"));
            let waker = std::task::Waker::noop();
            assert!(other
                .as_mut()
                .poll(&mut std::task::Context::from_waker(waker))
                .is_pending());
            let id = w.finish().await.unwrap();
            assert_eq!(id.byte_length, 3);
            let two = other.await.unwrap();
            assert_eq!(two.block_offset, 1);
        }
    });
}
