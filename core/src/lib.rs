//! # hyperpunch-core
//!
//! The sans-IO engines of hyperpunch, a Rust implementation of the Holepunch stack that is
//! wire-compatible with the JavaScript original. Nothing in this crate performs I/O, reads a clock or
//! uses a global random number generator: time and randomness come in as arguments, and storage is
//! reached only through the [`storage::Storage`] trait that a transport crate implements.
//!
//! One module per Holepunch concept:
//! - [`autobase`] — multi-writer systems on hypercores (autobase 7.28.1).
//! - [`encoding`] — compact-encoding.
//! - [`corestore`] — many cores in one storage, named cores, replicated together.
//! - [`crypto`] — hypercore-crypto (BLAKE2b, namespaces, discovery keys, Ed25519).
//! - [`hypercore`] — the signed append-only log (flat-tree, merkle tree, manifests, proofs, encryption).
//! - [`hyperbee`] — the append-only B-tree on a hypercore (byte-identical to hyperbee 2.27.3).
//! - [`hyperblobs`] — files as runs of blocks in a hypercore (hyperblobs 2.12.1).
//! - [`hyperdrive`] — a file system on a db bee and a blobs core (byte-identical to hyperdrive 13.3.4).
//! - [`mirror_drive`] — mirroring one drive into another (mirror-drive 1.14.2).
//! - [`storage`] — the storage trait, the in-memory backend and the backend conformance suite.
//! - [`parallel`] — fork-join: big appends and batches split in two halves a transport may run
//!   at once (the core itself starts no thread).
//!
//! The network side, each a sans-IO engine its transport drives:
//! - [`noise`] — the Noise XX/IK handshake as noise-handshake runs it.
//! - [`secretstream`] — @hyperswarm/secret-stream: the framed handshake and encrypted messages.
//! - [`protomux`] — typed, paired channels over one framed stream.
//! - [`replication`] — hypercore replication: the replicator and its protomux stream glue.
//! - [`udx`] — UDX, the reliable UDP stream transport (packets, streams, sockets).
//! - [`dht`] — dht-rpc, the hyperdht record layer and connecting by public key.
//! - [`swarm`] — hyperswarm: topics, peer discovery, one connection per peer.
//! - [`relay`] — relaying through a third peer: blind-relay and the browsers' dht-relay.
//! - [`shell`], [`tele`], [`beam`] — hypershell, hypertele and hyperbeam.
//! - [`id_encoding`] — keys as z-base-32 text (hypercore-id-encoding).
// unsafe is allowed only in crypto::blake2b_x8 and secretstream::chacha20_x16 (AVX-512, AVX2) and
// in hyperbee's prefetch_record (a prefetch instruction).
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod autobase;
pub mod beam;
pub mod corestore;
pub mod crypto;
pub mod dht;
pub mod encoding;
pub mod hyperbee;
pub mod hyperblobs;
pub mod hypercore;
pub mod hyperdrive;
pub mod id_encoding;
pub mod mirror_drive;
pub mod noise;
pub mod parallel;
pub mod protomux;
pub mod protomux_wakeup;
pub mod relay;
pub mod replication;
pub mod rng;
pub mod secretstream;
pub mod shell;
pub mod storage;
pub mod swarm;
pub mod tele;
pub mod udx;
