//! What a hypercore signature covers and how it is checked (`lib/verifier.js`, `lib/caps.js`,
//! `lib/multisig.js`).
//!
//! - [`signable`] / [`signable_compat`]: the 112- and 80-byte messages Ed25519 signs.
//! - [`MultiSignature`] / [`MultiSignatureV0`]: the multisig blobs stored and sent as signature by
//!   manifest-keyed cores.
//! - [`Verifier`]: signs and verifies a tree (hash, length, fork) for a manifest.
//! - [`capability`]: the replication capability of the channel handshake.

use crate::crypto::{keyed_hash_batch, tree_hash, verify as ed25519_verify, Hash, KeyPair};
use crate::encoding::{uint_len, write_uint, Decode, DecodeError, Decoder, Encode};

use super::manifest::{Manifest, Prologue, Signer, REPLICATE_INITIATOR, REPLICATE_RESPONDER, TREE};
use super::messages::TreeNode;

/// The 112-byte signable of a manifest-keyed core (`caps.treeSignable`):
/// `TREE ‖ ctx ‖ tree_hash ‖ u64le(length) ‖ u64le(fork)`. `ctx` is the manifest hash (the core
/// key) for manifest version ≥ 1 and the signer's namespace for version 0.
pub fn signable(ctx: &[u8; 32], tree_hash: &[u8; 32], length: u64, fork: u64) -> [u8; 112] {
    let mut out = [0u8; 112];
    out[..32].copy_from_slice(&TREE);
    out[32..64].copy_from_slice(ctx);
    out[64..96].copy_from_slice(tree_hash);
    out[96..104].copy_from_slice(&length.to_le_bytes());
    out[104..].copy_from_slice(&fork.to_le_bytes());
    out
}

/// The 80-byte signable of a compat core (`caps.treeSignableCompat`):
/// `TREE ‖ tree_hash ‖ u64le(length) ‖ u64le(fork)`.
pub fn signable_compat(tree_hash: &[u8; 32], length: u64, fork: u64) -> [u8; 80] {
    let mut out = [0u8; 80];
    out[..32].copy_from_slice(&TREE);
    out[32..].copy_from_slice(&signable_legacy(tree_hash, length, fork));
    out
}

/// The 48-byte "ultra legacy" signable (`treeSignableCompat(..., noHeader = true)`):
/// `tree_hash ‖ u64le(length) ‖ u64le(fork)`. Only used by verifiers built with `legacy: true`.
pub fn signable_legacy(tree_hash: &[u8; 32], length: u64, fork: u64) -> [u8; 48] {
    let mut out = [0u8; 48];
    out[..32].copy_from_slice(tree_hash);
    out[32..40].copy_from_slice(&length.to_le_bytes());
    out[40..].copy_from_slice(&fork.to_le_bytes());
    out
}

/// The replication capability sent in the channel handshake (`caps.replicate`):
/// BLAKE2b-256 keyed with the Noise handshake hash over
/// `(REPLICATE_INITIATOR or REPLICATE_RESPONDER) ‖ core key`.
///
/// # Panics
/// If `handshake_hash` is longer than 64 bytes (the Noise handshake hash is exactly 64).
pub fn capability(is_initiator: bool, key: &[u8; 32], handshake_hash: &[u8]) -> Hash {
    let ns = if is_initiator {
        &REPLICATE_INITIATOR
    } else {
        &REPLICATE_RESPONDER
    };
    keyed_hash_batch(handshake_hash, &[ns, key])
}

/// One signer's entry in a [`MultiSignature`]: `uint signer ‖ fixed64 signature ‖ uint patch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignatureProof {
    /// Index of the signer in the manifest.
    pub signer: u64,
    /// Ed25519 signature.
    pub signature: [u8; 64],
    /// 0, or how many blocks past the verified length this signer signed (needs `allowPatch`).
    pub patch: u64,
}

impl Encode for SignatureProof {
    fn encoded_len(&self) -> usize {
        uint_len(self.signer) + 64 + uint_len(self.patch)
    }
    fn encode(&self, out: &mut Vec<u8>) {
        write_uint(out, self.signer);
        out.extend_from_slice(&self.signature);
        write_uint(out, self.patch);
    }
}

impl Decode<'_> for SignatureProof {
    fn decode(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(SignatureProof {
            signer: d.uint()?,
            signature: d.fixed()?,
            patch: d.uint()?,
        })
    }
}

/// The multisig blob of manifest version ≥ 1 (`messages.multiSignature`):
/// `array(SignatureProof) ‖ array(TreeNode)` (JS calls the nodes `patch`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MultiSignature {
    /// Signatures, in the order they are checked.
    pub proofs: Vec<SignatureProof>,
    /// Tree nodes shared by the patched proofs.
    pub nodes: Vec<TreeNode>,
}

impl Encode for MultiSignature {
    fn encoded_len(&self) -> usize {
        self.proofs.encoded_len() + self.nodes.encoded_len()
    }
    fn encode(&self, out: &mut Vec<u8>) {
        self.proofs.encode(out);
        self.nodes.encode(out);
    }
}

impl Decode<'_> for MultiSignature {
    fn decode(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(MultiSignature {
            proofs: d.array()?,
            nodes: d.array()?,
        })
    }
}

/// The patch of a version-0 multisig proof: `uint start ‖ uint length ‖ array(uint) nodes`, the
/// nodes being positions in [`MultiSignatureV0::nodes`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatchV0 {
    /// First block of the patch (the verified length + 1 in JS `compressUpgrade`).
    pub start: u64,
    /// Number of blocks patched.
    pub length: u64,
    /// Positions of the patch nodes in the shared node list.
    pub nodes: Vec<u64>,
}

impl Encode for PatchV0 {
    fn encoded_len(&self) -> usize {
        uint_len(self.start) + uint_len(self.length) + self.nodes.encoded_len()
    }
    fn encode(&self, out: &mut Vec<u8>) {
        write_uint(out, self.start);
        write_uint(out, self.length);
        self.nodes.encode(out);
    }
}

impl Decode<'_> for PatchV0 {
    fn decode(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(PatchV0 {
            start: d.uint()?,
            length: d.uint()?,
            nodes: d.array()?,
        })
    }
}

/// One proof of a [`MultiSignatureV0`]: `uint flags ‖ uint signer ‖ fixed64 signature ‖
/// [flags & 1: PatchV0]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureProofV0 {
    /// Index of the signer in the manifest.
    pub signer: u64,
    /// Ed25519 signature.
    pub signature: [u8; 64],
    /// Optional patch.
    pub patch: Option<PatchV0>,
}

impl Encode for SignatureProofV0 {
    fn encoded_len(&self) -> usize {
        1 + uint_len(self.signer) + 64 + self.patch.as_ref().map_or(0, Encode::encoded_len)
    }
    fn encode(&self, out: &mut Vec<u8>) {
        write_uint(out, u64::from(self.patch.is_some()));
        write_uint(out, self.signer);
        out.extend_from_slice(&self.signature);
        if let Some(p) = &self.patch {
            p.encode(out);
        }
    }
}

impl Decode<'_> for SignatureProofV0 {
    fn decode(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        let flags = d.uint()?;
        Ok(SignatureProofV0 {
            signer: d.uint()?,
            signature: d.fixed()?,
            patch: if flags & 1 != 0 {
                Some(PatchV0::decode(d)?)
            } else {
                None
            },
        })
    }
}

/// The multisig blob of manifest version 0 (`messages.multiSignaturev0`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MultiSignatureV0 {
    /// Signatures, in the order they are checked.
    pub proofs: Vec<SignatureProofV0>,
    /// Tree nodes referenced by the patches.
    pub nodes: Vec<TreeNode>,
}

impl Encode for MultiSignatureV0 {
    fn encoded_len(&self) -> usize {
        self.proofs.encoded_len() + self.nodes.encoded_len()
    }
    fn encode(&self, out: &mut Vec<u8>) {
        self.proofs.encode(out);
        self.nodes.encode(out);
    }
}

impl Decode<'_> for MultiSignatureV0 {
    fn decode(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(MultiSignatureV0 {
            proofs: d.array()?,
            nodes: d.array()?,
        })
    }
}

/// Why a signature did not verify or could not be made.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum VerifyError {
    /// No signature was given.
    #[error("missing signature")]
    MissingSignature,
    /// A single-signer raw signature that does not verify.
    #[error("invalid signature")]
    InvalidSignature,
    /// The signature of one multisig signer does not verify.
    #[error("invalid signature of signer {0}")]
    InvalidSignerSignature(u64),
    /// The multisig blob does not decode.
    #[error("malformed multisig: {0}")]
    Malformed(#[from] DecodeError),
    /// The manifest's quorum is 0: nothing can be signed past the prologue.
    #[error("manifest quorum is 0")]
    ZeroQuorum,
    /// Fewer proofs than the quorum.
    #[error("{have} signatures, quorum is {need}")]
    NotEnoughSignatures {
        /// Proofs in the blob.
        have: usize,
        /// Manifest quorum.
        need: u64,
    },
    /// A proof names a signer the manifest does not have.
    #[error("unknown signer {0}")]
    UnknownSigner(u64),
    /// Two proofs name the same signer.
    #[error("signer {0} counted twice")]
    DuplicateSigner(u64),
    /// At or below the prologue length, only the prologue tree itself is valid.
    #[error("tree does not match the prologue")]
    PrologueMismatch,
    /// A patched multisig proof (manifest `allowPatch`) needs the tree's roots; use
    /// [`Verifier::verify_with_roots`].
    #[error("patched multisig proofs need the tree roots")]
    PatchUnsupported,
    /// The patch nodes do not build a valid tree at the patched length.
    #[error("invalid multisig patch")]
    InvalidPatch,
    /// The roots given to [`Verifier::verify_with_roots`] are not those of the tree verified.
    #[error("roots do not match the tree hash and length")]
    RootsMismatch,
    /// Signing with a key pair that is not a declared signer.
    #[error("public key is not a declared signer")]
    NotASigner,
}

/// One signer's contribution for [`Verifier::assemble`] (JS `partialSignature` output).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartialSignature {
    /// Index of the signer in the manifest.
    pub signer: u64,
    /// Raw Ed25519 signature.
    pub signature: [u8; 64],
    /// 0, or how many blocks past the target length were signed.
    pub patch: u64,
    /// The upgrade nodes proving the patch (empty without a patch).
    pub nodes: Vec<TreeNode>,
}

/// Signs and verifies trees for one core (`lib/verifier.js` `Verifier`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verifier {
    key: [u8; 32],
    manifest: Manifest,
    compat: bool,
    version: u64,
    allow_patch: bool,
    quorum: u64,
    prologue: Option<Prologue>,
}

impl Verifier {
    /// A verifier for the core `core_key` with `manifest`. `compat` is true when the core key is the
    /// single signer's public key ([`Manifest::is_compat`], JS core.js:283-287); compat cores sign the
    /// 80-byte signable with raw signatures and ignore quorum, patches and prologue.
    pub fn new(core_key: [u8; 32], manifest: Manifest, compat: bool) -> Self {
        Verifier {
            key: core_key,
            compat,
            version: if compat { 0 } else { manifest.version },
            allow_patch: !compat && manifest.allow_patch,
            quorum: if compat { 1 } else { manifest.quorum },
            prologue: if compat { None } else { manifest.prologue },
            manifest,
        }
    }

    /// A verifier for a core whose key is derived from `manifest` (compat detected as in JS).
    pub fn for_core(core_key: [u8; 32], manifest: Manifest) -> Self {
        let compat = manifest.is_compat(&core_key);
        Self::new(core_key, manifest, compat)
    }

    /// Whether this is a compat core (80-byte signable, raw signature).
    pub fn is_compat(&self) -> bool {
        self.compat
    }

    /// The core key.
    pub fn key(&self) -> &[u8; 32] {
        &self.key
    }

    /// The manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The effective version (0 for compat cores).
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The effective quorum (1 for compat cores).
    pub fn quorum(&self) -> u64 {
        self.quorum
    }

    /// The effective prologue (none for compat cores).
    pub fn prologue(&self) -> Option<&Prologue> {
        self.prologue.as_ref()
    }

    fn signer_message(&self, s: &Signer, tree_hash: &Hash, length: u64, fork: u64) -> Vec<u8> {
        if self.compat {
            signable_compat(tree_hash, length, fork).to_vec()
        } else {
            let ctx = if self.version == 0 {
                &s.namespace
            } else {
                &self.key
            };
            signable(ctx, tree_hash, length, fork).to_vec()
        }
    }

    /// Sign the tree `(tree_hash, length, fork)` as `key_pair`, returning the bytes stored and sent as
    /// the signature: the raw 64-byte signature for compat cores, version-0 manifests and
    /// multi-signer manifests (a partial signature to [`Verifier::assemble`]), and the multisig blob
    /// for single-signer manifests of version ≥ 1 (68 bytes).
    pub fn sign(
        &self,
        key_pair: &KeyPair,
        tree_hash: &[u8; 32],
        length: u64,
        fork: u64,
    ) -> Result<Vec<u8>, VerifyError> {
        let (_, s) = self
            .manifest
            .signers
            .iter()
            .enumerate()
            .find(|(_, s)| s.public_key == key_pair.public_key)
            .ok_or(VerifyError::NotASigner)?;
        let sig = key_pair.sign(&self.signer_message(s, tree_hash, length, fork));
        if self.manifest.signers.len() != 1 || self.version == 0 {
            return Ok(sig.to_vec());
        }
        Ok(self.assemble(&[PartialSignature {
            signer: 0,
            signature: sig,
            patch: 0,
            nodes: Vec::new(),
        }]))
    }

    /// Combine partial signatures into the multisig blob of this manifest's version (JS `assemble` /
    /// `assemblev0`). Nodes shared by several patches are stored once.
    pub fn assemble(&self, inputs: &[PartialSignature]) -> Vec<u8> {
        if self.version == 0 {
            return assemble_v0(inputs).to_bytes();
        }
        let mut nodes: Vec<TreeNode> = Vec::new();
        let mut proofs = Vec::with_capacity(inputs.len());
        for u in inputs {
            for n in &u.nodes {
                if !nodes.iter().any(|m| m.index == n.index) {
                    nodes.push(*n);
                }
            }
            proofs.push(SignatureProof {
                signer: u.signer,
                signature: u.signature,
                patch: u.patch,
            });
        }
        MultiSignature { proofs, nodes }.to_bytes()
    }

    /// Verify `signature` for the tree `(tree_hash, length, fork)`. Patched multisig proofs return
    /// [`VerifyError::PatchUnsupported`]; use [`Verifier::verify_with_roots`] for them.
    pub fn verify(
        &self,
        tree_hash: &[u8; 32],
        length: u64,
        fork: u64,
        signature: &[u8],
    ) -> Result<(), VerifyError> {
        self.verify_inner(tree_hash, length, fork, signature, None)
    }

    /// Like [`Verifier::verify`], with the roots of the tree (left to right) so that patched multisig
    /// proofs can be checked: their signer signed a longer tree, proven from `roots` by the patch
    /// nodes.
    pub fn verify_with_roots(
        &self,
        roots: &[TreeNode],
        tree_hash: &[u8; 32],
        length: u64,
        fork: u64,
        signature: &[u8],
    ) -> Result<(), VerifyError> {
        self.verify_inner(tree_hash, length, fork, signature, Some(roots))
    }

    fn verify_inner(
        &self,
        tree_hash: &Hash,
        length: u64,
        fork: u64,
        signature: &[u8],
        roots: Option<&[TreeNode]>,
    ) -> Result<(), VerifyError> {
        if self.version == 0 {
            if signature.is_empty() {
                return Err(VerifyError::MissingSignature);
            }
            if self.compat || (!self.allow_patch && self.manifest.signers.len() == 1) {
                let s = self
                    .manifest
                    .signers
                    .first()
                    .ok_or(VerifyError::UnknownSigner(0))?;
                let msg = self.signer_message(s, tree_hash, length, fork);
                return if ed25519_verify(&msg, signature, &s.public_key) {
                    Ok(())
                } else {
                    Err(VerifyError::InvalidSignature)
                };
            }
            let v0 = MultiSignatureV0::from_bytes(signature)?;
            let ms = MultiSignature {
                proofs: v0
                    .proofs
                    .iter()
                    .map(|p| SignatureProof {
                        signer: p.signer,
                        signature: p.signature,
                        patch: p.patch.as_ref().map_or(0, |p| p.length),
                    })
                    .collect(),
                nodes: v0.nodes,
            };
            return self.verify_multi(tree_hash, length, fork, &ms, roots);
        }
        if let Some(p) = &self.prologue {
            if length <= p.length {
                return if length == p.length && tree_hash == &p.hash {
                    Ok(())
                } else {
                    Err(VerifyError::PrologueMismatch)
                };
            }
        }
        if signature.is_empty() {
            return Err(VerifyError::MissingSignature);
        }
        let ms = MultiSignature::from_bytes(signature)?;
        self.verify_multi(tree_hash, length, fork, &ms, roots)
    }

    fn verify_multi(
        &self,
        tree_hash_in: &Hash,
        length: u64,
        fork: u64,
        ms: &MultiSignature,
        roots: Option<&[TreeNode]>,
    ) -> Result<(), VerifyError> {
        if self.quorum == 0 {
            return Err(VerifyError::ZeroQuorum);
        }
        if (ms.proofs.len() as u64) < self.quorum {
            return Err(VerifyError::NotEnoughSignatures {
                have: ms.proofs.len(),
                need: self.quorum,
            });
        }
        let mut tried = vec![false; self.manifest.signers.len()];
        // `quorum <= proofs.len()` here, so the cast cannot truncate.
        for inp in &ms.proofs[..self.quorum as usize] {
            let patched = if inp.patch != 0 && self.allow_patch {
                let roots = roots.ok_or(VerifyError::PatchUnsupported)?;
                let own = tree_hash(roots.iter().map(|n| (n.index, n.size, &n.hash)));
                if &own != tree_hash_in || patch::full_roots(length).len() != roots.len() {
                    return Err(VerifyError::RootsMismatch);
                }
                Some(patch::apply(roots, length, inp.patch, &ms.nodes)?)
            } else {
                None
            };
            let idx = usize::try_from(inp.signer)
                .ok()
                .filter(|&i| i < tried.len())
                .ok_or(VerifyError::UnknownSigner(inp.signer))?;
            if tried[idx] {
                return Err(VerifyError::DuplicateSigner(inp.signer));
            }
            tried[idx] = true;
            let s = &self.manifest.signers[idx];
            let (h, l) = match &patched {
                Some((h, l)) => (h, *l),
                None => (tree_hash_in, length),
            };
            let msg = self.signer_message(s, h, l, fork);
            if !ed25519_verify(&msg, &inp.signature, &s.public_key) {
                return Err(VerifyError::InvalidSignerSignature(inp.signer));
            }
        }
        Ok(())
    }
}

fn assemble_v0(inputs: &[PartialSignature]) -> MultiSignatureV0 {
    let mut nodes: Vec<TreeNode> = Vec::new();
    let mut proofs = Vec::with_capacity(inputs.len());
    for u in inputs {
        let patch = if u.patch != 0 && !u.nodes.is_empty() {
            let last = u.nodes[u.nodes.len() - 1].index;
            let mut p = PatchV0 {
                start: patch::right_span(last) / 2 + 1,
                length: u.patch,
                nodes: Vec::with_capacity(u.nodes.len()),
            };
            for n in &u.nodes {
                let pos = match nodes.iter().position(|m| m == n) {
                    Some(i) => i,
                    None => {
                        nodes.push(*n);
                        nodes.len() - 1
                    }
                };
                p.nodes.push(pos as u64);
            }
            Some(p)
        } else {
            None
        };
        proofs.push(SignatureProofV0 {
            signer: u.signer,
            signature: u.signature,
            patch,
        });
    }
    MultiSignatureV0 { proofs, nodes }
}

/// Rebuilding the tree a patched signer signed (JS `generateUpgrade` + `verifyUpgrade`), with
/// just enough flat-tree arithmetic.
mod patch {
    use super::{TreeNode, VerifyError};
    use crate::crypto::{parent_hash, tree_hash, Hash};

    fn depth(i: u64) -> u32 {
        (!i).trailing_zeros()
    }

    fn left_span(i: u64) -> u64 {
        let d = depth(i);
        if d == 0 {
            i
        } else {
            (i >> (d + 1)) << (d + 1)
        }
    }

    pub(super) fn right_span(i: u64) -> u64 {
        let d = depth(i);
        if d == 0 {
            i
        } else {
            (((i >> (d + 1)) + 1) << (d + 1)) - 2
        }
    }

    /// `flat.fullRoots(2 * length)`.
    pub(super) fn full_roots(length: u64) -> Vec<u64> {
        let mut out = Vec::new();
        let (mut rest, mut offset) = (length, 0u64);
        while rest > 0 {
            let factor = 1u64 << (63 - rest.leading_zeros());
            out.push(offset + factor - 1);
            offset += 2 * factor;
            rest -= factor;
        }
        out
    }

    fn node(
        index: u64,
        from: u64,
        roots: &[TreeNode],
        nodes: &[TreeNode],
    ) -> Result<TreeNode, VerifyError> {
        if let Some(r) = roots.iter().find(|r| r.index == index) {
            return Ok(*r);
        }
        if left_span(index) >= from {
            return nodes
                .iter()
                .find(|n| n.index == index)
                .copied()
                .ok_or(VerifyError::InvalidPatch);
        }
        let d = depth(index);
        if d == 0 || right_span(index) < from {
            // an old node that is not one of the roots: the roots are not those of `length`
            return Err(VerifyError::InvalidPatch);
        }
        let half = 1u64 << (d - 1);
        let l = node(index - half, from, roots, nodes)?;
        let r = node(index + half, from, roots, nodes)?;
        let size = l
            .size
            .checked_add(r.size)
            .ok_or(VerifyError::InvalidPatch)?;
        Ok(TreeNode {
            index,
            size,
            hash: parent_hash(size, &l.hash, &r.hash),
        })
    }

    /// From `roots` at `length`, extend the tree by `patch` blocks using `nodes` (looked up by flat
    /// index) and return the tree hash and length the patched signer signed.
    pub(super) fn apply(
        roots: &[TreeNode],
        length: u64,
        patch: u64,
        nodes: &[TreeNode],
    ) -> Result<(Hash, u64), VerifyError> {
        let to = length
            .checked_add(patch)
            .filter(|&t| t <= u64::MAX / 2)
            .ok_or(VerifyError::InvalidPatch)?;
        let from = 2 * length;
        let new_roots = full_roots(to)
            .into_iter()
            .map(|i| node(i, from, roots, nodes))
            .collect::<Result<Vec<_>, _>>()?;
        let h = tree_hash(new_roots.iter().map(|n| (n.index, n.size, &n.hash)));
        Ok((h, to))
    }
}

#[cfg(test)]
mod tests;
