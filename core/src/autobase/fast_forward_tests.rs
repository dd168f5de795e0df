use super::*;
use crate::autobase::messages::{Checkout, Digest, Node as OplogNode};
use crate::encoding::Encode;
use crate::hyperbee::messages::encode_node;

#[test]
fn info_block_round_trip_and_refusals() {
    let info = Info {
        version: 1,
        members: 2,
        pending_indexers: vec![],
        indexers: vec![Checkout {
            key: [1; 32],
            length: 7,
        }],
        heads: vec![Checkout {
            key: [2; 32],
            length: 3,
        }],
        views: vec![Checkout {
            key: [3; 32],
            length: 5,
        }],
        encryption_length: 0,
        entropy: None,
    };
    let block = encode_node(&[], INFO_KEY, Some(&info.to_bytes()));
    assert_eq!(info_from_block(9, &block).unwrap(), info);
    let other = encode_node(&[], b"\x01\x00member", Some(&info.to_bytes()));
    assert_eq!(
        info_from_block(9, &other),
        Err(FastForwardError::NotInfo(9))
    );
    assert!(info_from_block(9, &[0xff; 3]).is_err());
    let bad = encode_node(&[], INFO_KEY, Some(&[0xff]));
    assert!(info_from_block(9, &bad).is_err());
}

/// The key of the manifest JS builds is accepted; a core whose manifest differs in any way
/// (another signer, namespace, quorum, a prologue, not patchable, another version) has another
/// key and is refused, and so is a wrong key.
#[test]
fn view_keys_and_refusals() {
    let pks = [[1u8; 32], [2; 32], [3; 32]];
    let ns = view_namespace(&[7; 32], &[8; 32], "_system");
    let good = view_manifest(1, None, &pks, &ns);
    assert_eq!(good.quorum, 2);
    let key = good.key();
    assert_eq!(
        check_view_key(&key, "_system", 1, None, &ns, &pks),
        Ok(good.clone())
    );
    let refused = |m: &Manifest| {
        matches!(
            check_view_key(&m.key(), "_system", 1, None, &ns, &pks),
            Err(FastForwardError::Manifest { .. })
        )
    };
    let mut m = good.clone();
    m.signers[1].public_key = [9; 32];
    assert!(refused(&m), "wrong signer");
    let mut m = good.clone();
    m.signers.swap(0, 1);
    assert!(refused(&m), "signers out of order");
    let mut m = good.clone();
    m.signers.pop();
    m.quorum = 2;
    assert!(refused(&m), "a signer missing");
    let mut m = good.clone();
    m.signers[2].namespace = view_namespace(&[7; 32], &[8; 32], "view");
    assert!(refused(&m), "wrong namespace");
    let mut m = good.clone();
    m.quorum = 1;
    assert!(refused(&m), "wrong quorum");
    let mut m = good.clone();
    m.prologue = Some(Prologue {
        hash: [5; 32],
        length: 1,
    });
    assert!(refused(&m), "a prologue");
    let mut m = good.clone();
    m.allow_patch = false;
    assert!(refused(&m), "no patches");
    assert!(
        refused(&view_manifest(0, None, &pks, &ns)),
        "another version"
    );
    // a recreated core's prologue, taken from its manifest: accepted with it, and only so
    let p = Prologue {
        hash: [5; 32],
        length: 4,
    };
    let with = view_manifest(1, Some(p), &pks, &ns);
    assert!(check_view_key(&with.key(), "_system", 1, Some(p), &ns, &pks).is_ok());
    let p0 = Prologue {
        hash: [5; 32],
        length: 0,
    };
    let with0 = view_manifest(1, Some(p0), &pks, &ns);
    assert!(check_view_key(&with0.key(), "_system", 1, Some(p0), &ns, &pks).is_err());
    // the right manifest, checked against another namespace, indexer set or key
    let other_ns = view_namespace(&[7; 32], &[9; 32], "_system");
    assert!(check_view_key(&key, "_system", 1, None, &other_ns, &pks).is_err());
    assert!(check_view_key(&key, "_system", 1, None, &ns, &pks[..2]).is_err());
    assert!(check_view_key(&[0; 32], "_system", 1, None, &ns, &pks).is_err());
    assert!(check_view_key(&key, "_system", 1, None, &ns, &[]).is_err());
    assert!(check_view_key(
        &view_manifest(2, None, &pks, &ns).key(),
        "_system",
        2,
        None,
        &ns,
        &pks
    )
    .is_err());
}

#[test]
fn views_matched_by_key() {
    let pks = [[1u8; 32]];
    let (boot, entropy) = ([7u8; 32], [8u8; 32]);
    let key = |n: &str| view_manifest(1, None, &pks, &view_namespace(&boot, &entropy, n)).key();
    let info = Info {
        version: 1,
        members: 1,
        pending_indexers: vec![],
        indexers: vec![],
        heads: vec![],
        views: vec![
            Checkout {
                key: key("other"),
                length: 3,
            },
            Checkout {
                key: key("view"),
                length: 9,
            },
        ],
        encryption_length: 0,
        entropy: None,
    };
    assert_eq!(
        match_views(&info, &[], &["view"], 1, &boot, &entropy, &pks),
        Ok(vec![("view".to_string(), key("view"), 9)])
    );
    assert_eq!(
        match_views(&info, &[], &["view", "missing"], 1, &boot, &entropy, &pks),
        Err(FastForwardError::UnknownView("missing".into()))
    );
    // another entropy or indexer set: no view matches
    assert!(match_views(&info, &[], &["view"], 1, &boot, &[9; 32], &pks).is_err());
    assert!(match_views(&info, &[], &["view"], 1, &boot, &entropy, &[[2; 32]]).is_err());
    // a recreated view: found with the prologue of its own manifest
    let p = Prologue {
        hash: [6; 32],
        length: 2,
    };
    let m = view_manifest(1, Some(p), &pks, &view_namespace(&boot, &entropy, "late"));
    let mut info2 = info.clone();
    info2.views.push(Checkout {
        key: m.key(),
        length: 4,
    });
    assert!(match_views(&info2, &[], &["late"], 1, &boot, &entropy, &pks).is_err());
    let ms = [None, None, Some(m.clone())];
    assert_eq!(
        match_views(&info2, &ms, &["late"], 1, &boot, &entropy, &pks),
        Ok(vec![("late".to_string(), m.key(), 4)])
    );
    assert_eq!(namespace_entropy(&info, Some([4; 32])), Some([4; 32]));
    assert_eq!(namespace_entropy(&info, None), None);
}

#[test]
fn member_keys() {
    let m = Member {
        is_indexer: true,
        is_removed: false,
        length: 4,
    };
    let mut k = MEMBERS_PREFIX.to_vec();
    k.extend_from_slice(&[9; 32]);
    assert_eq!(member_from_entry(&k, &m.to_bytes()).unwrap(), ([9; 32], m));
    assert!(member_from_entry(&k[..20], &m.to_bytes()).is_err());
    assert!(member_from_entry(INFO_KEY, &m.to_bytes()).is_err());
}

/// The apply of the fast-forward tests: `add:<key>` adds a writer, anything else goes to the
/// view `view`.
fn apply(
    nodes: &[crate::autobase::ApplyNode<'_>],
    views: &mut crate::autobase::Views,
    host: &mut crate::autobase::Host<'_>,
) {
    let v = views.open("view");
    for n in nodes {
        if let Some(k) = n.value.strip_prefix(b"add:") {
            host.add_writer(&k.try_into().unwrap(), false);
            continue;
        }
        views.append(v, n.value.to_vec());
    }
}

#[test]
fn digests() {
    let mut msg = OplogMessage {
        version: 2,
        max_supported_version: 0,
        checkpoint: None,
        digest: None,
        optimistic: false,
        trace: None,
        node: OplogNode {
            heads: vec![],
            batch: 1,
            value: None,
        },
    };
    assert_eq!(digest_source(&msg, 5), Err(FastForwardError::NoDigest));
    msg.digest = Some(Digest {
        pointer: 0,
        key: Some([4; 32]),
    });
    assert_eq!(digest_source(&msg, 5), Ok(DigestSource::Key([4; 32])));
    msg.digest = Some(Digest {
        pointer: 3,
        key: None,
    });
    assert_eq!(digest_source(&msg, 5), Ok(DigestSource::At(1)));
    msg.digest = Some(Digest {
        pointer: 5,
        key: None,
    });
    assert_eq!(digest_source(&msg, 5), Err(FastForwardError::NoDigest));
}

/// A base that fast-forwards to another's indexed state, fed only the oplog blocks past it,
/// ends with the same view (the part below the fast-forward point not in memory).
#[test]
fn engine_continues_from_the_indexed_state() {
    use crate::autobase::Autobase;
    let boot = [7u8; 32];
    let other = [8u8; 32];
    let mut a = Autobase::new(boot, apply);
    let view = a.open_view("view");
    let mut logs: Vec<([u8; 32], Vec<u8>)> = Vec::new();
    let mut write = |a: &mut Autobase<_>, key: &[u8; 32], vals: Vec<Vec<u8>>| {
        for m in a.append(key, vals).unwrap() {
            logs.push((*key, m.to_bytes()));
        }
        a.update();
    };
    let mut add = b"add:".to_vec();
    add.extend_from_slice(&other);
    write(&mut a, &boot, vec![add]);
    for i in 0..40u32 {
        write(&mut a, &boot, vec![format!("e {i}").into_bytes()]);
    }
    write(&mut a, &other, vec![b"o 0".to_vec(), b"o 1".to_vec()]);
    let indexed = a.indexed_view_lengths()[view];
    assert!(indexed >= 40, "{indexed}");
    let info = a.indexed_system().info();
    let members: Vec<_> = a
        .indexed_system()
        .member_records()
        .map(|(k, m)| (*k, *m))
        .collect();
    let sys_len = a.indexed_system().length;
    // more after the fast-forward point, from both writers
    write(&mut a, &boot, vec![b"e 40".to_vec()]);
    write(&mut a, &other, vec![b"o 2".to_vec()]);
    let want = a.views().blocks(view).to_vec();

    let mut b = Autobase::new(boot, apply);
    b.fast_forward(sys_len, &info, &members, &[("view", indexed as u64)]);
    let bv = b.open_view("view");
    assert_eq!(b.views().start(bv), indexed);
    let mut fed = 0;
    for (k, _) in b.wanted() {
        assert_eq!(
            b.oplog_start(&k),
            members.iter().find(|m| m.0 == k).unwrap().1.length
        );
    }
    let mut next: std::collections::HashMap<[u8; 32], u64> = Default::default();
    for (k, block) in &logs {
        let seq = next.entry(*k).or_default();
        if *seq >= b.oplog_start(k) {
            b.handle_block(k, *seq, block).unwrap();
            fed += 1;
        }
        *seq += 1;
    }
    b.update();
    assert!(fed < logs.len() / 4, "fed {fed} of {}", logs.len());
    assert_eq!(b.views().len(bv), want.len());
    assert_eq!(b.views().blocks(bv), &want[indexed..]);
    assert_eq!(b.system().length, a.system().length);
}

/// A member that indexed up to some point while the system was signed further (a running or
/// restarted member that fell behind, JS `_queueFastForward`): a point fewer than
/// [`MINIMUM`] system blocks past what it indexed is not worth it and changes nothing; one at
/// least [`MINIMUM`] past is adopted, and what it indexed never goes back (system length,
/// view, each writer's oplog start); a point behind it in a writer or a view is refused
/// however long its system; fed the blocks past the point, it ends with the writer's view.
#[test]
fn a_member_that_fell_behind_fast_forwards_only_ahead() {
    use crate::autobase::Autobase;
    type Snap = (u64, Info, Vec<([u8; 32], Member)>, u64, usize);
    let boot = [7u8; 32];
    let other = [8u8; 32];
    let mut a = Autobase::new(boot, apply);
    let view = a.open_view("view");
    let mut logs: Vec<([u8; 32], Vec<u8>)> = Vec::new();
    // after each write: (system length, info, members, view length, blocks written so far)
    let mut snaps: Vec<Snap> = Vec::new();
    let mut write = |a: &mut Autobase<_>, key: &[u8; 32], vals: Vec<Vec<u8>>| {
        for m in a.append(key, vals).unwrap() {
            logs.push((*key, m.to_bytes()));
        }
        a.update();
        let members = a
            .indexed_system()
            .member_records()
            .map(|(k, m)| (*k, *m))
            .collect();
        snaps.push((
            a.indexed_system().length,
            a.indexed_system().info(),
            members,
            a.indexed_view_lengths()[view] as u64,
            logs.len(),
        ));
    };
    let mut add = b"add:".to_vec();
    add.extend_from_slice(&other);
    write(&mut a, &boot, vec![add]);
    for i in 0..80u32 {
        write(&mut a, &boot, vec![format!("e {i}").into_bytes()]);
        if i % 10 == 0 {
            write(&mut a, &other, vec![format!("o {i}").into_bytes()]);
        }
    }
    let want = a.views().blocks(view).to_vec();

    // the member fed the blocks up to the 20th write, then stopped
    let mut b = Autobase::new(boot, apply);
    let bv = b.open_view("view");
    let fed_to = snaps[20].4;
    let mut next: std::collections::HashMap<[u8; 32], u64> = Default::default();
    for (k, block) in &logs[..fed_to] {
        let seq = next.entry(*k).or_default();
        b.handle_block(k, *seq, block).unwrap();
        *seq += 1;
    }
    b.update();
    let had_system = b.indexed_system().length;
    let had_view = b.indexed_view_lengths()[bv];
    let had: Vec<([u8; 32], u64)> = b
        .indexed_system()
        .member_records()
        .map(|(k, m)| (*k, m.length))
        .collect();
    assert_eq!(had.len(), 2, "both writers indexed");
    assert_eq!(had_system, snaps[20].0);
    assert!(had_view > 10, "{had_view}");
    assert_eq!(b.fast_forward_minimum(), had_system + MINIMUM);
    // what the writers' oplogs are known to hold: a hint to look only when MINIMUM ahead
    let count = |n: usize, k: [u8; 32]| logs[..n].iter().filter(|l| l.0 == k).count() as u64;
    let known = |n: usize| [(boot, count(n, boot)), (other, count(n, other))];
    assert!(!b.fast_forward_may_be_due(&known(fed_to)));
    assert!(!b.fast_forward_may_be_due(&known(fed_to + MINIMUM as usize - 1)));
    assert!(b.fast_forward_may_be_due(&known(fed_to + MINIMUM as usize)));
    assert!(b.fast_forward_may_be_due(&known(logs.len())));

    // signed 15 blocks further: not worth it, nothing changes
    let short = snaps.iter().rfind(|s| s.0 < had_system + MINIMUM).unwrap();
    assert!(short.0 > had_system, "a point ahead, just not far enough");
    let views = [("view", short.3)];
    assert!(!b.fast_forward_if_worth(short.0, &short.1, &short.2, &views));
    assert_eq!(b.indexed_system().length, had_system);
    assert_eq!(b.views().start(bv), 0);
    assert_eq!(b.oplog_start(&boot), 0);

    // a long system that is behind in a writer or in the view: refused
    let far = snaps.last().unwrap().clone();
    let mut behind = far.2.clone();
    let boot_had = had.iter().find(|h| h.0 == boot).unwrap().1;
    for (k, m) in &mut behind {
        if *k == boot {
            m.length = boot_had - 1;
        }
    }
    assert!(!b.fast_forward_worth(far.0, &behind, &[("view", far.3)]));
    assert!(!b.fast_forward_worth(far.0, &far.2, &[("view", had_view as u64 - 1)]));
    assert!(!b.fast_forward_worth(far.0, &far.2[..1], &[("view", far.3)]));
    // a point that does not name a view holding indexed blocks here would reset it: refused
    assert!(!b.fast_forward_worth(far.0, &far.2, &[]));
    assert!(!b.fast_forward_worth(far.0, &far.2, &[("other view", far.3)]));

    // signed at least MINIMUM further: adopted, nothing it had goes back
    let ahead = snaps
        .iter()
        .find(|s| s.0 >= had_system + MINIMUM)
        .unwrap()
        .clone();
    let views = [("view", ahead.3)];
    assert!(b.fast_forward_if_worth(ahead.0, &ahead.1, &ahead.2, &views));
    assert_eq!(b.indexed_system().length, ahead.0);
    assert!(b.indexed_view_lengths()[bv] >= had_view);
    assert_eq!(b.views().start(bv), ahead.3 as usize);
    for (k, m) in &ahead.2 {
        assert_eq!(b.oplog_start(k), m.length);
    }
    for (k, length) in &had {
        assert!(b.indexed_system().get(k).unwrap().length >= *length);
        assert!(b.oplog_start(k) >= *length);
    }
    // the same point again is not worth it any more
    assert!(!b.fast_forward_if_worth(ahead.0, &ahead.1, &ahead.2, &views));

    // fed what it lacks past the point: the writer's view
    let mut next: std::collections::HashMap<[u8; 32], u64> = Default::default();
    let mut fed = 0;
    for (k, block) in &logs {
        let seq = next.entry(*k).or_default();
        if *seq >= b.oplog_len(k) {
            b.handle_block(k, *seq, block).unwrap();
            fed += 1;
        }
        *seq += 1;
    }
    b.update();
    assert!(fed < logs.len() - fed_to, "{fed}");
    assert_eq!(b.views().len(bv), want.len());
    assert_eq!(b.views().blocks(bv), &want[ahead.3 as usize..]);
    assert_eq!(b.indexed_system().length, a.indexed_system().length);
}

/// A signed state with absurd lengths (the indexers are trusted with the order, not with
/// memory safety) fast-forwards without panicking and the engine still runs.
#[test]
fn absurd_lengths_do_not_panic() {
    use crate::autobase::{ApplyNode, Autobase, Host, Views};
    let apply = |nodes: &[ApplyNode<'_>], views: &mut Views, _: &mut Host<'_>| {
        let v = views.open("view");
        for n in nodes {
            views.append(v, n.value.to_vec());
        }
    };
    let boot = [7u8; 32];
    let info = Info {
        version: 1,
        members: 1,
        pending_indexers: vec![],
        indexers: vec![Checkout {
            key: boot,
            length: u64::MAX,
        }],
        heads: vec![Checkout {
            key: boot,
            length: u64::MAX,
        }],
        views: vec![],
        encryption_length: 0,
        entropy: None,
    };
    let members = [(
        boot,
        Member {
            is_indexer: true,
            is_removed: false,
            length: u64::MAX,
        },
    )];
    let mut b = Autobase::new(boot, apply);
    b.fast_forward(u64::MAX, &info, &members, &[("view", u64::MAX)]);
    let v = b.open_view("view");
    assert_eq!(b.views().len(v), usize::MAX);
    assert_eq!(b.oplog_len(&boot), u64::MAX);
    let _ = b.handle_block(&boot, u64::MAX - 1, &[1, 2, 3]);
    b.update();
    assert_eq!(b.views().len(v), usize::MAX);
}

/// What an indexer that fast-forwarded takes over: the system core and each named view at
/// the point's lengths (a view the point lacks: `None`), the indexers in the system's order
/// and a majority quorum of them.
#[test]
fn an_indexer_prefix_names_the_points_cores() {
    let c = |k: u8, length| Checkout {
        key: [k; 32],
        length,
    };
    let mut p = FastForwardPoint {
        system_key: [3; 32],
        system_length: 64,
        info: Info {
            version: 2,
            members: 3,
            pending_indexers: vec![],
            indexers: vec![c(2, 30), c(1, 31)],
            heads: vec![c(1, 31)],
            views: vec![c(9, 30)],
            encryption_length: 0,
            entropy: None,
        },
        members: vec![],
        views: vec![("messages".into(), [9; 32], 30)],
    };
    let x = p.indexer_prefix(&["messages", "other"]);
    assert_eq!(x.system, ([3; 32], 64));
    assert_eq!(x.views, vec![Some(([9; 32], 30)), None]);
    assert_eq!(x.indexers, vec![[2; 32], [1; 32]], "the system's order");
    assert_eq!(x.quorum, 2);
    for (n, q) in [(1, 1), (3, 2), (4, 3), (5, 3)] {
        p.info.indexers = (0..n).map(|i| c(i as u8, 1)).collect();
        assert_eq!(p.indexer_prefix(&[]).quorum, q, "{n} indexers");
    }
    p.info.indexers.clear();
    assert_eq!(p.indexer_prefix(&[]).quorum, 0);
}

/// The stored form of a fast-forward point round-trips; every truncation and a wrong version
/// are typed errors.
#[test]
fn stored_point_round_trip_and_refusals() {
    let p = FastForwardPoint {
        system_key: [3; 32],
        system_length: 4021,
        info: Info {
            version: 2,
            members: 2,
            pending_indexers: vec![],
            indexers: vec![Checkout {
                key: [1; 32],
                length: 2000,
            }],
            heads: vec![Checkout {
                key: [1; 32],
                length: 2000,
            }],
            views: vec![Checkout {
                key: [9; 32],
                length: 2000,
            }],
            encryption_length: 0,
            entropy: Some([7; 32]),
        },
        members: vec![(
            [1; 32],
            Member {
                is_indexer: true,
                is_removed: false,
                length: 2000,
            },
        )],
        views: vec![("messages".into(), [9; 32], 2000)],
    };
    let b = p.to_bytes();
    assert_eq!(b.len(), p.encoded_len());
    assert_eq!(FastForwardPoint::from_bytes(&b), Ok(p.clone()));
    assert_eq!(p.view_length("messages"), 2000);
    assert_eq!(p.view_length("other"), 0);
    for n in 0..b.len() {
        assert!(FastForwardPoint::from_bytes(&b[..n]).is_err(), "{n}");
    }
    let mut v = b.clone();
    v[0] = 2;
    assert_eq!(
        FastForwardPoint::from_bytes(&v),
        Err(DecodeError::Invalid("fast-forward point version"))
    );
}
