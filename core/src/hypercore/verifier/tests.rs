//! Tests of the signables, signatures, quorums, prologues and patches against JS vectors.

use super::*;
use crate::crypto::{leaf_hash, parent_hash};
use crate::hypercore::manifest::{ManifestOptions, SignerOptions};
use proptest::prelude::*;

fn h32(s: &str) -> [u8; 32] {
    hex::decode(s).unwrap().try_into().unwrap()
}

fn kp(seed: u8) -> KeyPair {
    KeyPair::from_seed(&[seed; 32])
}

/// Tree hash of blocks "a", "b", "c" (vectors/data/02).
const TH3: &str = "7ea73eb86179fb7328e73663f90f4c91256574af1112efe97fdf9309e03b67a7";
/// Tree hash after truncate(2).
const TH2: &str = "3424a063fb40dfef317c8ca38fb8c37dfdbccac669582f6f9cddd22bbdf9c044";

#[test]
fn signables_match_js() {
    let key = Manifest::default_signer(kp(1).public_key).key();
    assert_eq!(
        hex::encode(signable(&key, &h32(TH3), 3, 0)),
        "9fac70b50ca14efc4e91c833b204e75b8b5aad8b5881bfc0adb5ef38a3275b9cd8c3a0597903b28d751c6e0b7107775e388ec5a3cf669bdd1e7ec41b8b8f6e727ea73eb86179fb7328e73663f90f4c91256574af1112efe97fdf9309e03b67a703000000000000000000000000000000"
    );
    assert_eq!(
        hex::encode(signable_compat(&h32(TH3), 3, 0)),
        "9fac70b50ca14efc4e91c833b204e75b8b5aad8b5881bfc0adb5ef38a3275b9c7ea73eb86179fb7328e73663f90f4c91256574af1112efe97fdf9309e03b67a703000000000000000000000000000000"
    );
    assert_eq!(
        signable_legacy(&h32(TH3), 3, 0)[..],
        signable_compat(&h32(TH3), 3, 0)[32..]
    );
    let s = signable(&[0; 32], &[0; 32], 0x0102, 0x0304);
    assert_eq!(&s[96..], &[2, 1, 0, 0, 0, 0, 0, 0, 4, 3, 0, 0, 0, 0, 0, 0]);
}

#[test]
fn compat_core_signatures_match_js() {
    let k = kp(1);
    let v = Verifier::for_core(k.public_key, Manifest::default_signer(k.public_key));
    assert!(v.is_compat());
    assert_eq!(v.version(), 0);
    let sig = v.sign(&k, &h32(TH3), 3, 0).unwrap();
    assert_eq!(
        hex::encode(&sig),
        "deb1a2d6b46b1ac51fa3111f84cd6d0874ab43f325e160aff4d3d95acfdfec67b399fd0bd4e09b86fdbf19bd894b28e0a9d4bbf58c4ccb326fc888d8428d960e"
    );
    v.verify(&h32(TH3), 3, 0, &sig).unwrap();
    // truncate(2): fork 1
    let sig2 = v.sign(&k, &h32(TH2), 2, 1).unwrap();
    assert_eq!(
        hex::encode(&sig2),
        "db498b9168f7e6704c90055542c29ecea01dd8a49552d9f0960ee177926725a358cd01a560461e5c889bdb90785ed138f54f929c017f5e3ae25b81172e95940d"
    );
    v.verify(&h32(TH2), 2, 1, &sig2).unwrap();
    assert_eq!(
        v.verify(&h32(TH2), 2, 0, &sig2),
        Err(VerifyError::InvalidSignature)
    );
    assert_eq!(
        v.verify(&h32(TH3), 3, 0, &[]),
        Err(VerifyError::MissingSignature)
    );
    assert_eq!(
        v.verify(&h32(TH3), 3, 0, &sig[..63]),
        Err(VerifyError::InvalidSignature)
    );
}

#[test]
fn default_core_signatures_match_js() {
    let k = kp(1);
    let m = Manifest::default_signer(k.public_key);
    let v = Verifier::for_core(m.key(), m);
    assert!(!v.is_compat());
    let sig = v.sign(&k, &h32(TH3), 3, 0).unwrap();
    assert_eq!(
        hex::encode(&sig),
        "0100ffc0d71651d8c0c24962a662c90f411f371945e3514669899d3189b832a1bd960415ee04d8ccb4c4159506ad230d223f33ca3dce6aa6d16d27e9fbd47efa25050000"
    );
    let ms = MultiSignature::from_bytes(&sig).unwrap();
    assert_eq!(ms.proofs.len(), 1);
    assert_eq!((ms.proofs[0].signer, ms.proofs[0].patch), (0, 0));
    assert!(ms.nodes.is_empty());
    assert_eq!(ms.to_bytes(), sig);
    v.verify(&h32(TH3), 3, 0, &sig).unwrap();
    let sig2 = v.sign(&k, &h32(TH2), 2, 1).unwrap();
    assert_eq!(
        hex::encode(&sig2),
        "010033992c43877378c03da43a5714fe0fe3fdefde443f126eb9475e2e9d984b1052d70da13db383587323fe20ae3dd4719c3f73860c38953d21840602c3322c110c0000"
    );
    v.verify(&h32(TH2), 2, 1, &sig2).unwrap();

    // length-5 signature of vectors/data/03 (blocks "a".."e")
    let th5 = tree_hash([
        (
            3u64,
            4u64,
            &h32("0f9ccfd59f6c98fd5b6e444a6e57325c91eddcfabceb4c74d92f28c45f310cd3"),
        ),
        (
            8,
            1,
            &h32("154996491ba67a786f089c2b396b5ce1e8479ad9416b9057a7431dad4cce19e3"),
        ),
    ]);
    assert_eq!(
        hex::encode(v.sign(&k, &th5, 5, 0).unwrap()),
        "010008e73935474edbfc1aacbb6fea559f9a1dbae4d6715497d07b07f5005ab431574e43affb680e9153941e4aa424676caf86329eda57e8c38fa8c5c09ec0f2920b0000"
    );

    // failures
    let mut bad = sig.clone();
    bad[10] ^= 1;
    assert_eq!(
        v.verify(&h32(TH3), 3, 0, &bad),
        Err(VerifyError::InvalidSignerSignature(0))
    );
    assert!(matches!(
        v.verify(&h32(TH3), 3, 0, &sig[..40]),
        Err(VerifyError::Malformed(_))
    ));
    assert_eq!(
        v.verify(&h32(TH3), 3, 0, &[0, 0]),
        Err(VerifyError::NotEnoughSignatures { have: 0, need: 1 })
    );
    let mut unknown = sig.clone();
    unknown[1] = 1;
    assert_eq!(
        v.verify(&h32(TH3), 3, 0, &unknown),
        Err(VerifyError::UnknownSigner(1))
    );
    assert_eq!(
        v.sign(&kp(2), &h32(TH3), 3, 0),
        Err(VerifyError::NotASigner)
    );
    // a raw signature is not accepted by a manifest-keyed core
    let compat = Verifier::new(k.public_key, Manifest::default_signer(k.public_key), true);
    let raw = compat.sign(&k, &h32(TH3), 3, 0).unwrap();
    assert!(v.verify(&h32(TH3), 3, 0, &raw).is_err());
}

fn two_signer(version: u64, allow_patch: bool) -> (Verifier, KeyPair, KeyPair) {
    let (a, b) = (kp(1), kp(2));
    let m = Manifest::create(ManifestOptions {
        version: Some(version),
        allow_patch,
        signers: vec![
            a.public_key.into(),
            SignerOptions {
                public_key: b.public_key,
                namespace: Some([3; 32]),
            },
        ],
        ..Default::default()
    })
    .unwrap();
    assert_eq!(m.quorum, 2);
    (Verifier::for_core(m.key(), m), a, b)
}

fn partial(v: &Verifier, k: &KeyPair, signer: u64, th: &Hash, len: u64) -> PartialSignature {
    let sig = v.sign(k, th, len, 0).unwrap();
    PartialSignature {
        signer,
        signature: sig.try_into().expect("multi-signer manifests sign raw"),
        patch: 0,
        nodes: vec![],
    }
}

#[test]
fn quorum_of_distinct_signers() {
    for version in [0, 1, 2] {
        let (v, a, b) = two_signer(version, false);
        let th = h32(TH3);
        let pa = partial(&v, &a, 0, &th, 3);
        let pb = partial(&v, &b, 1, &th, 3);
        let blob = v.assemble(&[pa.clone(), pb.clone()]);
        v.verify(&th, 3, 0, &blob).unwrap();
        // order does not matter
        v.verify(&th, 3, 0, &v.assemble(&[pb.clone(), pa.clone()]))
            .unwrap();
        assert_eq!(
            v.verify(&th, 3, 0, &v.assemble(std::slice::from_ref(&pa))),
            Err(VerifyError::NotEnoughSignatures { have: 1, need: 2 })
        );
        assert_eq!(
            v.verify(&th, 3, 0, &v.assemble(&[pa.clone(), pa.clone()])),
            Err(VerifyError::DuplicateSigner(0))
        );
        // a's signature claimed as b's
        let swapped = PartialSignature {
            signer: 1,
            ..pa.clone()
        };
        assert_eq!(
            v.verify(&th, 3, 0, &v.assemble(&[pa.clone(), swapped])),
            Err(VerifyError::InvalidSignerSignature(1))
        );
        assert!(v.verify(&h32(TH2), 3, 0, &blob).is_err());
    }
}

#[test]
fn version0_contexts() {
    // v0 single signer: raw signature over the signer namespace
    let k = kp(1);
    let m = Manifest::create(ManifestOptions {
        version: Some(0),
        signers: vec![SignerOptions {
            public_key: k.public_key,
            namespace: Some([7; 32]),
        }],
        ..Default::default()
    })
    .unwrap();
    let v = Verifier::for_core(m.key(), m);
    let sig = v.sign(&k, &h32(TH3), 3, 0).unwrap();
    assert_eq!(sig.len(), 64);
    assert!(crate::crypto::verify(
        &signable(&[7; 32], &h32(TH3), 3, 0),
        &sig,
        &k.public_key
    ));
    v.verify(&h32(TH3), 3, 0, &sig).unwrap();
}

#[test]
fn prologue_rule() {
    let k = kp(1);
    let th = h32(TH3);
    let m = Manifest::create(ManifestOptions {
        signers: vec![k.public_key.into()],
        prologue: Some(Prologue {
            hash: th,
            length: 3,
        }),
        ..Default::default()
    })
    .unwrap();
    let v = Verifier::for_core(m.key(), m);
    v.verify(&th, 3, 0, &[]).unwrap();
    assert_eq!(
        v.verify(&h32(TH2), 3, 0, &[]),
        Err(VerifyError::PrologueMismatch)
    );
    // a valid signature does not help below the prologue
    let sig2 = v.sign(&k, &h32(TH2), 2, 0).unwrap();
    assert_eq!(
        v.verify(&h32(TH2), 2, 0, &sig2),
        Err(VerifyError::PrologueMismatch)
    );
    // past the prologue, signatures are checked
    assert_eq!(
        v.verify(&[1; 32], 4, 0, &[]),
        Err(VerifyError::MissingSignature)
    );
    let sig4 = v.sign(&k, &[1; 32], 4, 0).unwrap();
    v.verify(&[1; 32], 4, 0, &sig4).unwrap();

    // no signers, quorum 0: nothing past the prologue
    let m = Manifest::create(ManifestOptions {
        prologue: Some(Prologue {
            hash: th,
            length: 3,
        }),
        ..Default::default()
    })
    .unwrap();
    let v = Verifier::for_core(m.key(), m);
    v.verify(&th, 3, 0, &[]).unwrap();
    assert_eq!(v.verify(&th, 4, 0, &sig4), Err(VerifyError::ZeroQuorum));
}

/// Blocks "a".."e": leaves, the roots at length 3 ([1, 4]) and the nodes a length-5 tree adds.
fn five_blocks() -> (Vec<TreeNode>, Hash, Vec<TreeNode>, Hash) {
    let leaf = |i: u64, b: &[u8]| TreeNode {
        index: 2 * i,
        size: 1,
        hash: leaf_hash(b),
    };
    let l: Vec<TreeNode> = [b"a", b"b", b"c", b"d", b"e"]
        .iter()
        .enumerate()
        .map(|(i, b)| leaf(i as u64, *b))
        .collect();
    let par = |i: u64, a: &TreeNode, b: &TreeNode| TreeNode {
        index: i,
        size: a.size + b.size,
        hash: parent_hash(a.size + b.size, &a.hash, &b.hash),
    };
    let n1 = par(1, &l[0], &l[1]);
    let n5 = par(5, &l[2], &l[3]);
    let n3 = par(3, &n1, &n5);
    let roots3 = vec![n1, l[2]];
    let th3 = tree_hash(roots3.iter().map(|n| (n.index, n.size, &n.hash)));
    assert_eq!(hex::encode(th3), TH3);
    let th5 = tree_hash([(3, 4, &n3.hash), (8, 1, &l[4].hash)]);
    (roots3, th3, vec![l[3], l[4]], th5)
}

#[test]
fn patched_multisig() {
    let (roots3, th3, patch_nodes, th5) = five_blocks();
    for version in [0, 1] {
        let (v, a, b) = two_signer(version, true);
        // a signed length 3, b signed length 5 and proves it with a patch of 2 blocks
        let pa = partial(&v, &a, 0, &th3, 3);
        let pb = PartialSignature {
            patch: 2,
            nodes: patch_nodes.clone(),
            ..partial(&v, &b, 1, &th5, 5)
        };
        let blob = v.assemble(&[pa.clone(), pb.clone()]);
        v.verify_with_roots(&roots3, &th3, 3, 0, &blob).unwrap();
        assert_eq!(
            v.verify(&th3, 3, 0, &blob),
            Err(VerifyError::PatchUnsupported)
        );
        assert_eq!(
            v.verify_with_roots(&roots3[..1], &th3, 3, 0, &blob),
            Err(VerifyError::RootsMismatch)
        );
        // a wrong patch node changes the tree b is checked against
        let mut bad = pb.clone();
        bad.nodes[1].hash[0] ^= 1;
        assert_eq!(
            v.verify_with_roots(&roots3, &th3, 3, 0, &v.assemble(&[pa.clone(), bad])),
            Err(VerifyError::InvalidSignerSignature(1))
        );
        // a missing patch node
        let mut missing = pb.clone();
        missing.nodes.pop();
        assert_eq!(
            v.verify_with_roots(&roots3, &th3, 3, 0, &v.assemble(&[pa.clone(), missing])),
            Err(VerifyError::InvalidPatch)
        );
    }
    // v0 patches reference shared nodes by position; start is the patched-from length + 1
    let (v, a, b) = two_signer(0, true);
    let pb = PartialSignature {
        patch: 2,
        nodes: patch_nodes.clone(),
        ..partial(&v, &b, 1, &th5, 5)
    };
    let blob = v.assemble(&[partial(&v, &a, 0, &th3, 3), pb]);
    let ms = MultiSignatureV0::from_bytes(&blob).unwrap();
    let p = ms.proofs[1].patch.clone().unwrap();
    assert_eq!((p.start, p.length, p.nodes), (5, 2, vec![0, 1]));
    assert_eq!(ms.nodes, patch_nodes);
    assert!(ms.proofs[0].patch.is_none());

    // without allowPatch the patch is ignored and b's signature is checked at length 3
    let (v, a, b) = two_signer(1, false);
    let pb = PartialSignature {
        patch: 2,
        nodes: patch_nodes,
        ..partial(&v, &b, 1, &th5, 5)
    };
    let blob = v.assemble(&[partial(&v, &a, 0, &th3, 3), pb]);
    assert_eq!(
        v.verify_with_roots(&roots3, &th3, 3, 0, &blob),
        Err(VerifyError::InvalidSignerSignature(1))
    );
}

#[test]
fn full_roots_and_spans() {
    assert_eq!(patch::full_roots(3), vec![1, 4]);
    assert_eq!(patch::full_roots(5), vec![3, 8]);
    assert_eq!(patch::full_roots(0), Vec::<u64>::new());
    assert_eq!(patch::full_roots(8), vec![7]);
    assert_eq!(patch::right_span(3), 6);
    assert_eq!(patch::right_span(4), 4);
    assert_eq!(patch::right_span(11), 14);
}

#[test]
fn capability_matches_js_capture() {
    let key = h32("d8c3a0597903b28d751c6e0b7107775e388ec5a3cf669bdd1e7ec41b8b8f6e72");
    let hh = hex::decode("9ded28bf65ff82d76f9c7a4af21a0f327f9dc182ad617211ddb3c3cd1de776c63dc1374b86e0d24e2695af7ab7cf8316cc5a99cf56c93c4f35482a9543ac6ee4").unwrap();
    assert_eq!(
        hex::encode(capability(true, &key, &hh)),
        "9c01ed87853e0217102f95688d3e92dde8d04a99e168dc61c2c723b538eab114"
    );
    assert_eq!(
        hex::encode(capability(false, &key, &hh)),
        "7d836b67a41120212964a1411abc314940e8385582e77b53c4722c558e9f3646"
    );
}

proptest! {
    #[test]
    fn decoders_and_verify_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = MultiSignature::from_bytes(&bytes);
        let _ = MultiSignatureV0::from_bytes(&bytes);
        for version in [0, 1] {
            let (v, _, _) = two_signer(version, true);
            let (roots3, th3, _, _) = five_blocks();
            let _ = v.verify(&th3, 3, 0, &bytes);
            let _ = v.verify_with_roots(&roots3, &th3, 3, 0, &bytes);
        }
    }

    #[test]
    fn multisig_round_trip(
        proofs in proptest::collection::vec((0u64..1 << 40, any::<[u8; 32]>(), 0u64..1 << 40), 0..4),
        nodes in proptest::collection::vec((0u64..1 << 40, 0u64..1 << 40, any::<[u8; 32]>()), 0..4),
    ) {
        let nodes: Vec<TreeNode> = nodes.into_iter().map(|(index, size, hash)| TreeNode { index, size, hash }).collect();
        let ms = MultiSignature {
            proofs: proofs.iter().map(|&(signer, s, patch)| {
                let mut signature = [0u8; 64];
                signature[..32].copy_from_slice(&s);
                SignatureProof { signer, signature, patch }
            }).collect(),
            nodes: nodes.clone(),
        };
        prop_assert_eq!(ms.to_bytes().len(), ms.encoded_len());
        prop_assert_eq!(MultiSignature::from_bytes(&ms.to_bytes()).unwrap(), ms);
        let v0 = MultiSignatureV0 {
            proofs: proofs.iter().map(|&(signer, s, patch)| {
                let mut signature = [0u8; 64];
                signature[32..].copy_from_slice(&s);
                SignatureProofV0 {
                    signer,
                    signature,
                    patch: (patch % 2 == 1).then(|| PatchV0 { start: patch, length: signer, nodes: vec![patch, 1] }),
                }
            }).collect(),
            nodes,
        };
        prop_assert_eq!(v0.to_bytes().len(), v0.encoded_len());
        prop_assert_eq!(MultiSignatureV0::from_bytes(&v0.to_bytes()).unwrap(), v0);
    }
}
