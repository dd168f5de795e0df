//! Optimistic writers (JS autobase `optimistic: true`, `append(value, { optimistic: true })`,
//! `host.ackWriter`): a non-member appends optimistic nodes, apply keeps one only by acking its
//! writer, and every member linearizes them in one order.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use super::messages::{Checkout, Node, OplogMessage};
use super::{ApplyNode, Autobase, Host, Views};
use crate::encoding::Encode;

/// What apply saw: (value, optimistic flag).
type Seen = Rc<RefCell<Vec<(String, bool)>>>;

/// `add:<hex key>` adds a writer, `rm:<hex key>` removes one, a value starting with `ok` acks its
/// writer (JS `host.ackWriter(node.from.key)`); every other value goes to the view, acked or not.
fn apply_fn(seen: Seen) -> impl FnMut(&[ApplyNode<'_>], &mut Views, &mut Host<'_>) {
    move |nodes, views, host| {
        let view = views.open("view");
        for n in nodes {
            let s = String::from_utf8_lossy(n.value).into_owned();
            seen.borrow_mut().push((s.clone(), n.optimistic));
            if let Some(k) = s.strip_prefix("add:") {
                let k: [u8; 32] = hex::decode(k).unwrap().try_into().unwrap();
                host.add_writer(&k, false);
                continue;
            }
            if let Some(k) = s.strip_prefix("rm:") {
                let k: [u8; 32] = hex::decode(k).unwrap().try_into().unwrap();
                host.remove_writer(&k).unwrap();
                continue;
            }
            if s.starts_with("ok") {
                host.ack_writer(n.from);
            }
            views.append(view, n.value.to_vec());
        }
    }
}

type Base = Autobase<Box<dyn FnMut(&[ApplyNode<'_>], &mut Views, &mut Host<'_>)>>;

struct Peer {
    key: [u8; 32],
    base: Base,
    seen: Seen,
}

const A: [u8; 32] = [0xa1; 32];
const B: [u8; 32] = [0xb2; 32];
const C: [u8; 32] = [0xc3; 32];

fn peer(key: [u8; 32], optimistic: bool) -> Peer {
    let seen: Seen = Rc::default();
    let mut base: Base = Autobase::new(A, Box::new(apply_fn(seen.clone())));
    base.set_optimistic(optimistic);
    base.open_view("view");
    Peer { key, base, seen }
}

/// Every oplog block written so far, by writer.
#[derive(Default)]
struct Net(HashMap<[u8; 32], Vec<Vec<u8>>>);

impl Net {
    fn write(&mut self, key: &[u8; 32], msgs: Vec<OplogMessage>) {
        let log = self.0.entry(*key).or_default();
        log.extend(msgs.iter().map(Encode::to_bytes));
    }
    /// Give `p` every block it wants, then update.
    fn sync(&self, p: &mut Peer) {
        loop {
            let mut fed = false;
            for (key, from) in p.base.wanted() {
                let Some(log) = self.0.get(&key) else {
                    continue;
                };
                for seq in from..log.len() as u64 {
                    p.base.handle_block(&key, seq, &log[seq as usize]).unwrap();
                    fed = true;
                }
            }
            p.base.update();
            if !fed {
                break;
            }
        }
    }
}

fn append(net: &mut Net, p: &mut Peer, v: &str) {
    let m = p.base.append(&p.key, vec![v.as_bytes().to_vec()]).unwrap();
    net.write(&p.key, m);
    p.base.update();
}

fn append_optimistic(net: &mut Net, p: &mut Peer, v: &str) {
    let m = p
        .base
        .append_optimistic(&p.key, v.as_bytes().to_vec())
        .unwrap();
    assert!(m.iter().all(|m| m.optimistic && m.node.batch == 1));
    net.write(&p.key, m);
    p.base.update();
}

fn view(p: &Peer) -> Vec<String> {
    let v = p.base.views().blocks(0);
    v.iter()
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .collect()
}

fn indexed_view(p: &Peer) -> Vec<String> {
    let n = p.base.indexed_view_lengths()[0];
    view(p)[..n].to_vec()
}

/// The JS test `optimistic - two writer`: a non-writer's optimistic node that apply does not ack
/// leaves nothing; the one it acks is applied, indexed once the indexer links it, in the same
/// place on both peers; the writer stays a non-member (JS `ackWriter` records its length only).
#[test]
fn an_acked_optimistic_node_is_indexed_in_order() {
    let mut net = Net::default();
    let mut a = peer(A, true);
    let mut b = peer(B, true);
    append(&mut net, &mut a, "hello");
    net.sync(&mut b);
    assert!(!b.base.is_writable(&B));
    assert!(
        b.base.append(&B, vec![b"plain".to_vec()]).is_none(),
        "not a writer"
    );
    append_optimistic(&mut net, &mut b, "world");
    append_optimistic(&mut net, &mut b, "ok optimistic");
    assert_eq!(
        view(&b),
        ["hello", "ok optimistic"],
        "the non-writer's own view"
    );
    // the indexer learns of B from outside the system (JS: the wakeup protocol)
    assert!(!a.base.wanted().iter().any(|(k, _)| *k == B));
    a.base.hint_writer(&B);
    assert!(a.base.wanted().contains(&(B, 0)));
    net.sync(&mut a);
    assert_eq!(view(&a), ["hello", "ok optimistic"]);
    append(&mut net, &mut a, "after");
    net.sync(&mut b);
    for p in [&a, &b] {
        assert_eq!(view(p), ["hello", "ok optimistic", "after"]);
        assert_eq!(indexed_view(p), view(p), "all indexed");
        let m = p.base.indexed_system().get(&B).expect("acked: a record");
        assert!(m.is_removed && !m.is_indexer, "not made a writer: {m:?}");
        assert_eq!(m.length, 2);
        assert_eq!(p.base.indexed_system().members, 1);
    }
    assert_eq!(a.base.indexed_system(), b.base.indexed_system());
    let seen = a.seen.borrow();
    assert!(seen.contains(&("world".to_string(), true)), "{seen:?}");
    assert!(seen.contains(&("ok optimistic".to_string(), true)));
    assert!(seen.contains(&("hello".to_string(), false)));
}

/// An optimistic node apply does not ack leaves no trace: not in the view, no member record,
/// no system head, the same system as a base that never saw it. Nor does a base that is not
/// optimistic apply any of them.
#[test]
fn an_unacked_optimistic_node_leaves_no_trace() {
    let mut net = Net::default();
    let mut a = peer(A, true);
    let mut b = peer(B, true);
    let mut plain = peer(C, false);
    append(&mut net, &mut a, "hello");
    net.sync(&mut b);
    append_optimistic(&mut net, &mut b, "nope");
    let mut control = peer(C, true);
    net.sync(&mut control);
    a.base.hint_writer(&B);
    plain.base.hint_writer(&B);
    net.sync(&mut a);
    net.sync(&mut plain);
    assert_eq!(view(&a), ["hello"]);
    assert!(
        a.seen.borrow().contains(&("nope".to_string(), true)),
        "apply saw it"
    );
    assert!(a.base.system().get(&B).is_none());
    assert!(!a.base.system().heads.iter().any(|h| h.key == B));
    assert_eq!(a.base.system(), control.base.system(), "as if never seen");
    assert_eq!(view(&b), ["hello"], "nor on the writer's own base");
    assert!(b.base.system().get(&B).is_none());
    // not optimistic: never even handed to apply
    assert_eq!(view(&plain), ["hello"]);
    assert!(!plain.seen.borrow().iter().any(|(v, _)| v == "nope"));
    // an ok from a non-optimistic base's point of view is skipped too
    append_optimistic(&mut net, &mut b, "ok later");
    net.sync(&mut plain);
    net.sync(&mut a);
    assert_eq!(view(&plain), ["hello"]);
    assert_eq!(view(&a), ["hello", "ok later"]);
}

/// A writer added, then removed, is a non-member again: its plain appends are refused, its
/// optimistic nodes are applied only when acked, and the ack keeps it removed.
#[test]
fn an_optimistic_node_from_a_writer_later_removed() {
    let mut net = Net::default();
    let mut a = peer(A, true);
    let mut b = peer(B, true);
    append(&mut net, &mut a, &format!("add:{}", hex::encode(B)));
    net.sync(&mut b);
    assert!(b.base.is_writable(&B));
    append(&mut net, &mut b, "b member");
    net.sync(&mut a);
    append(&mut net, &mut a, &format!("rm:{}", hex::encode(B)));
    net.sync(&mut b);
    assert!(!b.base.is_writable(&B));
    assert!(b.base.append(&B, vec![b"plain".to_vec()]).is_none());
    append_optimistic(&mut net, &mut b, "nope removed");
    append_optimistic(&mut net, &mut b, "ok removed");
    net.sync(&mut a);
    append(&mut net, &mut a, "after");
    net.sync(&mut b);
    for p in [&a, &b] {
        assert_eq!(view(p), ["b member", "ok removed", "after"]);
        assert_eq!(indexed_view(p), view(p));
        let m = p.base.indexed_system().get(&B).unwrap();
        assert!(m.is_removed, "still removed: {m:?}");
        assert_eq!(m.length, 3);
        assert_eq!(p.base.indexed_system().members, 1);
    }
}

/// Bad input: the optimistic flag on a member's node changes nothing (applied without an ack,
/// apply told it is not optimistic); on a non-member's node in a batch of two, or without a
/// value, it is not an optimistic node (JS `optimistic && batch === 1 && !!value`): skipped.
#[test]
fn an_optimistic_flag_where_it_does_not_apply() {
    let mut net = Net::default();
    let mut a = peer(A, true);
    let mut c = peer(C, true);
    append(&mut net, &mut a, &format!("add:{}", hex::encode(C)));
    net.sync(&mut c);
    append_optimistic(&mut net, &mut c, "member flagged");
    net.sync(&mut a);
    assert_eq!(view(&a), ["member flagged"]);
    assert!(a
        .seen
        .borrow()
        .contains(&("member flagged".to_string(), false)));
    // a non-member writes a batch of two flagged optimistic, then a flagged node without value
    let head = Checkout { key: A, length: 1 };
    let flagged = |heads: Vec<Checkout>, batch, value: Option<&str>| {
        let mut m = OplogMessage::new(Node {
            heads,
            batch,
            value: value.map(|v| v.as_bytes().to_vec()),
        });
        m.optimistic = true;
        m
    };
    net.write(
        &B,
        vec![
            flagged(vec![head], 2, Some("ok batch one")),
            flagged(vec![], 1, Some("ok batch two")),
            flagged(vec![], 1, None),
            flagged(vec![], 1, Some("ok alone")),
        ],
    );
    a.base.hint_writer(&B);
    net.sync(&mut a);
    // concurrent with the member's node: the tip sorts the two (optimistic ones by key)
    assert_eq!(view(&a), ["ok alone", "member flagged"]);
    assert!(!a.seen.borrow().iter().any(|(v, _)| v.contains("batch")));
    assert_eq!(a.base.system().get(&B).unwrap().length, 4);
}

/// The wakeup protocol carries what `hint_writer` stood in for: B (a non-member) appends
/// optimistically and announces itself over a wakeup channel (real protomux on both ends); A
/// hints B with its length, fetches and applies it. Stale and excess hints are dropped.
#[test]
fn wakeup_announce_makes_the_indexer_fetch_an_optimistic_writer() {
    use super::wakeup::{wakeup_writers, AutobaseWakeup};
    use crate::protomux::{ChannelId, Event as MuxEvent, Protomux};
    use crate::protomux_wakeup::{Output, WakeupWriter, PROTOCOL};

    struct End {
        w: AutobaseWakeup<u8>,
        mux: Protomux,
        ch: Option<ChannelId>,
        initiator: bool,
    }
    fn pump(from: &mut End, to: &mut End, to_base: &mut Base) {
        while let Some(o) = from.w.poll_output() {
            match o {
                Output::Send {
                    message_type,
                    payload,
                    ..
                } => from
                    .mux
                    .send(from.ch.unwrap(), message_type, &payload)
                    .unwrap(),
                Output::Close { .. } => from.mux.close(from.ch.unwrap()).unwrap(),
            }
        }
        while let Some(f) = from.mux.poll_transmit() {
            to.mux.handle_frame(&f).unwrap();
        }
        while let Some(ev) = to.mux.poll_event() {
            match ev {
                MuxEvent::PairRequest { .. } => {
                    let o = to.w.add_peer(1, to.initiator, [5; 64]).unwrap();
                    to.ch = Some(to.mux.open(o).unwrap());
                }
                MuxEvent::ChannelOpened { handshake, .. } => {
                    to.w.handle_open(1, &handshake).unwrap()
                }
                MuxEvent::Message {
                    message_type,
                    payload,
                    ..
                } => to.w.handle_message(1, message_type, &payload).unwrap(),
                _ => to.w.handle_closed(1),
            }
            to.w.handle_events(to_base);
        }
        to.w.handle_events(to_base);
    }

    let mut net = Net::default();
    let mut a = peer(A, true);
    let mut b = peer(B, true);
    append(&mut net, &mut a, "hello");
    net.sync(&mut b);
    let mut ea = End {
        w: AutobaseWakeup::new(A),
        mux: Protomux::new(),
        ch: None,
        initiator: true,
    };
    let mut eb = End {
        w: AutobaseWakeup::new(A),
        mux: Protomux::new(),
        ch: None,
        initiator: false,
    };
    eb.mux.pair(PROTOCOL, None);
    let o = ea.w.add_peer(1, true, [5; 64]).unwrap();
    ea.ch = Some(ea.mux.open(o).unwrap());
    pump(&mut ea, &mut eb, &mut b.base);
    pump(&mut eb, &mut ea, &mut a.base);
    assert!(ea.w.session().is_open(1) && eb.w.session().is_open(1));

    append_optimistic(&mut net, &mut b, "ok optimistic");
    assert_eq!(
        wakeup_writers(&b.base),
        [WakeupWriter { key: B, length: 1 }]
    );
    eb.w.refresh(&b.base);
    eb.w.refresh(&b.base); // the same list is not announced twice
    assert!(!a.base.wanted().iter().any(|(k, _)| *k == B));
    pump(&mut eb, &mut ea, &mut a.base);
    assert_eq!(eb.w.session().stats().announce_tx, 1);
    assert_eq!(ea.w.hints, 1);
    assert!(a.base.wanted().contains(&(B, 0)), "hinted by the announce");
    net.sync(&mut a);
    assert_eq!(view(&a), ["hello", "ok optimistic"]);

    // a peer that replicates B's core already is not told again (JS's CoreCoupler); one that
    // does not is
    append_optimistic(&mut net, &mut b, "ok again");
    eb.w.refresh_with(&b.base, |_, k| *k == B);
    assert!(eb.w.poll_output().is_none());
    eb.w.refresh_with(&b.base, |_, _| false);
    assert!(eb.w.poll_output().is_some());

    // a hint for blocks A holds already is stale; past the bound, hints are refused
    assert!(!a.base.hint_writer_length(&C, 0));
    for i in 0..super::MAX_HINTED {
        let mut k = [0u8; 32];
        k[..8].copy_from_slice(&(i as u64).to_le_bytes());
        k[31] = 0xee;
        assert!(a.base.hint_writer_length(&k, 1));
    }
    assert!(!a.base.hint_writer_length(&C, 1), "at the bound");
    assert!(a.base.wanted().len() <= super::MAX_HINTED + 2);
}

/// A peer that knows the room key announces [`MAX_HINTED`](super::MAX_HINTED) made-up writers
/// with huge lengths. A plain base drops every hint (a non-member's nodes cannot be applied) and
/// wants none; an optimistic base wants each for one block only, lets the hints expire after
/// the next update (JS clears its hints after each drain), and then takes a genuine optimistic
/// writer's hint and applies it. Blocks of writers with no member record are held up to
/// [`MAX_NONMEMBER_BLOCKS`](super::MAX_NONMEMBER_BLOCKS), past it refused (typed). Before the
/// fix: every made-up key was wanted forever, from block 0 with no end, the genuine hint was
/// refused at the bound and every block of them was stored.
#[test]
fn made_up_announced_writers_are_bounded_and_expire() {
    use super::{AutobaseError, WantedWriter, MAX_HINTED, MAX_NONMEMBER_BLOCKS};
    let mut net = Net::default();
    let mut a = peer(A, true);
    let mut b = peer(B, true);
    let mut plain = peer(C, false);
    append(&mut net, &mut a, "hello");
    net.sync(&mut b);
    net.sync(&mut plain);
    let fake = |i: usize| {
        let mut k = [0xeeu8; 32];
        k[..8].copy_from_slice(&(i as u64).to_le_bytes());
        k
    };
    let is_fake = |k: &[u8; 32]| k[8..] == [0xee; 24];
    for i in 0..MAX_HINTED {
        assert!(!plain.base.hint_writer_length(&fake(i), u64::MAX));
        assert!(a.base.hint_writer_length(&fake(i), u64::MAX));
    }
    assert!(!plain.base.wanted().iter().any(|(k, _)| is_fake(k)));
    let fakes: Vec<WantedWriter> = a
        .base
        .wanted_ranges()
        .into_iter()
        .filter(|w| is_fake(&w.key))
        .collect();
    assert_eq!(fakes.len(), MAX_HINTED);
    assert!(
        fakes.iter().all(|w| w.from == 0 && w.until == Some(1)),
        "one block each"
    );
    assert!(!a.base.hint_writer_length(&B, 1), "at the bound");
    for _ in 0..3 {
        a.base.update();
        plain.base.update();
    }
    assert!(
        !a.base.wanted().iter().any(|(k, _)| is_fake(k)),
        "expired once drained"
    );
    // the genuine optimistic writer is hinted and applied
    append_optimistic(&mut net, &mut b, "ok optimistic");
    assert!(a.base.hint_writer_length(&B, 1));
    net.sync(&mut a);
    assert_eq!(view(&a), ["hello", "ok optimistic"]);
    // blocks of a made-up writer: bounded, then refused
    let block = net.0[&B][0].clone();
    for seq in 0..MAX_NONMEMBER_BLOCKS as u64 {
        plain.base.handle_block(&fake(0), seq, &block).unwrap();
    }
    let over = plain
        .base
        .handle_block(&fake(0), MAX_NONMEMBER_BLOCKS as u64, &block);
    assert!(
        matches!(over, Err(AutobaseError::NotAMember { .. })),
        "{over:?}"
    );
    plain.base.update();
    assert!(plain.base.handle_block(&fake(1), 0, &block).is_err());
    assert_eq!(plain.base.oplog_len(&fake(0)), MAX_NONMEMBER_BLOCKS as u64);
    assert_eq!(plain.base.oplog_len(&fake(1)), 0);
    assert!(!plain.base.wanted().iter().any(|(k, _)| is_fake(k)));
    assert_eq!(view(&plain), ["hello"]);
    // a new member that has not read the system cannot tell: it wants a hinted writer, a
    // bounded number of blocks on
    let mut fresh = peer(C, false);
    assert!(fresh.base.hint_writer_length(&fake(7), u64::MAX));
    let w = fresh
        .base
        .wanted_ranges()
        .into_iter()
        .find(|w| w.key == fake(7));
    assert_eq!(
        w,
        Some(WantedWriter {
            key: fake(7),
            from: 0,
            until: Some(super::MAX_UNKNOWN_SYSTEM_BLOCKS)
        })
    );
}
