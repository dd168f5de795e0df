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
#![deny(unsafe_code)] // allowed only in crypto::blake2b_x8 and secretstream::chacha20_x16 (AVX-512, AVX2)
#![warn(missing_docs)]

pub mod autobase;
/// hyperbeam: a pipe named by a passphrase (the passphrase, its key pair, the firewall).
pub mod beam;
pub mod corestore;
pub mod crypto;
/// The DHT: dht-rpc, the hyperdht record layer and connecting by public key, sans-IO.
pub mod dht;
pub mod encoding;
pub mod hyperbee;
pub mod hyperblobs;
pub mod hypercore;
pub mod hyperdrive;
/// hypercore-id-encoding: keys as 52 z-base-32 characters (how hypershell prints them).
pub mod id_encoding;
pub mod mirror_drive;
/// The Noise XX/IK handshake (Ed25519 DH, ChaCha20-Poly1305, BLAKE2b) as noise-handshake runs it.
pub mod noise;
/// protomux: typed, paired channels over one framed stream, as a sans-IO engine.
pub mod protomux;
/// Relaying connections through a third peer: blind-relay.
pub mod relay;
/// hypercore replication: the sans-IO replicator and its protomux stream glue.
pub mod replication;
/// @hyperswarm/secret-stream: framed handshake, secretstream-encrypted messages and datagrams, sans-IO.
pub mod secretstream;
/// hypershell: shells, commands and copies on a server reached by its key (messages, channels,
/// allow list, the tar stream of copies).
pub mod shell;
pub mod storage;
/// hyperswarm: topics, peer discovery and one connection per peer over the DHT, sans-IO.
pub mod swarm;
/// hypertele: a TCP port exposed under a key (access rules, the `--compress` framing).
pub mod tele;
/// UDX: the reliable UDP stream transport (packet codec, stream and socket engines), sans-IO.
pub mod udx;
