//! The swarm engine against a scripted owner: discovery, the queue, retries, flushes, the
//! firewall and JS's duplicate tie-break (two engines dialing each other at once).

use super::*;
use crate::dht::messages::PeerRecord;

const T0: Duration = Duration::from_secs(1000);

fn kp(n: u8) -> KeyPair {
    KeyPair::from_seed(&[n; 32])
}

fn swarm(n: u8) -> Swarm {
    let mut c = SwarmConfig::new(kp(n));
    c.backoffs = Some([
        Duration::from_secs(1),
        Duration::from_secs(5),
        Duration::from_secs(15),
        Duration::from_secs(600),
    ]);
    c.jitter = Duration::ZERO;
    Swarm::new(c, [n; 32])
}

fn actions(s: &mut Swarm) -> Vec<Action> {
    std::iter::from_fn(|| s.poll_action()).collect()
}

fn events(s: &mut Swarm) -> Vec<Event> {
    std::iter::from_fn(|| s.poll_event()).collect()
}

fn peer(n: u8) -> PeerRecord {
    PeerRecord {
        public_key: kp(n).public_key,
        relay_addresses: vec![SocketAddrV4::new([10, 0, 0, n].into(), 49737)],
    }
}

fn query_of(a: &[Action]) -> (QueryId, QueryKind, Vec<SocketAddrV4>) {
    a.iter()
        .find_map(|a| match a {
            Action::Query {
                id, kind, nodes, ..
            } => Some((*id, *kind, nodes.clone())),
            _ => None,
        })
        .expect("a query")
}

fn connects(a: &[Action]) -> Vec<(ConnectionId, [u8; 32])> {
    a.iter()
        .filter_map(|a| match a {
            Action::Connect { id, public_key, .. } => Some((*id, *public_key)),
            _ => None,
        })
        .collect()
}

fn never(_: ConnectionId) -> bool {
    false
}

#[test]
fn server_and_client_join_listens_announces_and_connects_to_found_peers() {
    let mut s = swarm(1);
    let topic = [7; 32];
    s.join(T0, topic, JoinOptions::default()).unwrap();
    assert_eq!(
        actions(&mut s),
        vec![Action::Listen],
        "listen before announcing"
    );
    s.handle_listening(T0);
    let a = actions(&mut s);
    let (q, kind, nodes) = query_of(&a);
    assert_eq!(kind, QueryKind::Announce { clear: true });
    assert!(nodes.is_empty());
    // Five peers in one reply (and ourselves, ignored): three attempts at once.
    let mut found: Vec<PeerRecord> = (2..7).map(peer).collect();
    found.push(PeerRecord {
        public_key: kp(1).public_key,
        relay_addresses: vec![],
    });
    s.handle_query_peers(T0, q, &found);
    let c = connects(&actions(&mut s));
    assert_eq!(c.len(), MAX_PARALLEL);
    assert_eq!(s.connecting(), 3);
    // The relay addresses of the record go along.
    assert!(s.peer(&c[0].1).unwrap().relay_addresses.len() == 1);
    assert!(s.handle_connected(T0, c[0].0));
    let e = events(&mut s);
    assert!(
        matches!(&e[0], Event::Connection { client: true, topics, .. } if topics == &vec![topic])
    );
    // One finished: the next peer is dialed.
    assert_eq!(connects(&actions(&mut s)).len(), 1);
    let c2 = connects(&[]);
    assert!(c2.is_empty());
    // The announce ends: the next refresh is 10-12 minutes later, from the closest nodes.
    let closest = vec![SocketAddrV4::new([10, 0, 0, 9].into(), 1)];
    s.handle_query_done(T0, q, Ok(closest.clone()));
    let due = s.poll_timeout().unwrap();
    assert!(due >= T0 + Duration::from_secs(600) && due <= T0 + Duration::from_secs(720));
    s.handle_timeout(due);
    let (_, kind, nodes) = query_of(&actions(&mut s));
    assert_eq!(kind, QueryKind::Announce { clear: false });
    assert_eq!(nodes, closest);
}

#[test]
fn client_only_join_looks_up_without_listening() {
    let mut s = swarm(1);
    s.join(
        T0,
        [7; 32],
        JoinOptions {
            server: false,
            ..JoinOptions::default()
        },
    )
    .unwrap();
    let (_, kind, _) = query_of(&actions(&mut s));
    assert_eq!(kind, QueryKind::Lookup);
}

#[test]
fn a_topic_no_longer_served_is_unannounced() {
    let mut s = swarm(1);
    let topic = [7; 32];
    let server = s
        .join(
            T0,
            topic,
            JoinOptions {
                client: false,
                ..JoinOptions::default()
            },
        )
        .unwrap();
    s.handle_listening(T0);
    let (q, _, _) = query_of(&actions(&mut s));
    let closest = vec![SocketAddrV4::new([10, 0, 0, 9].into(), 1)];
    s.handle_query_done(T0, q, Ok(closest.clone()));
    // A client session joins; the server session leaves: lookup-and-unannounce.
    let client = s
        .join(
            T0,
            topic,
            JoinOptions {
                server: false,
                ..JoinOptions::default()
            },
        )
        .unwrap();
    let (q2, kind, _) = query_of(&actions(&mut s));
    assert_eq!(kind, QueryKind::Announce { clear: false });
    s.handle_query_done(T0, q2, Ok(closest.clone()));
    s.leave_session(T0, server);
    let (q3, kind, _) = query_of(&actions(&mut s));
    assert_eq!(kind, QueryKind::LookupAndUnannounce);
    s.handle_query_done(T0, q3, Ok(closest.clone()));
    assert!(!s.status(&topic).unwrap().is_server);
    // Leaving the last session stops the topic; nothing left to unannounce.
    s.leave_session(T0, client);
    assert!(s.status(&topic).is_none());
    assert!(!actions(&mut s)
        .iter()
        .any(|a| matches!(a, Action::Unannounce { .. })));

    // Leaving while announced unannounces from the closest nodes.
    let mut s = swarm(1);
    s.join(T0, topic, JoinOptions::default()).unwrap();
    s.handle_listening(T0);
    let (q, _, _) = query_of(&actions(&mut s));
    s.handle_query_done(T0, q, Ok(closest.clone()));
    s.leave(T0, topic);
    assert_eq!(
        actions(&mut s),
        vec![Action::Unannounce {
            topic,
            nodes: closest
        }]
    );
}

#[test]
fn failed_connections_retry_with_backoff_then_stop() {
    let mut s = swarm(1);
    let (q, _, _) = {
        s.join(
            T0,
            [7; 32],
            JoinOptions {
                server: false,
                ..JoinOptions::default()
            },
        );
        query_of(&actions(&mut s))
    };
    s.handle_query_peers(T0, q, &[peer(2)]);
    let key = kp(2).public_key;
    let mut now = T0;
    let mut retries = Vec::new();
    for attempt in 1..=5 {
        let c = connects(&actions(&mut s));
        if c.is_empty() {
            break;
        }
        assert_eq!(c.len(), 1);
        s.handle_closed(now, c[0].0, &never);
        assert_eq!(
            s.peer(&key).map(|p| p.attempts),
            (attempt < 4).then_some(attempt)
        );
        let closed = now;
        // The bulk timer fires on its first or second tick after the add.
        while s.connecting() == 0 {
            let Some(t) = s
                .poll_timeout()
                .filter(|t| *t < closed + Duration::from_secs(500))
            else {
                break;
            };
            s.handle_timeout(t);
            now = t;
        }
        if s.connecting() == 0 {
            break;
        }
        retries.push(now - closed);
    }
    // Never proven: 1 failure → the medium timer (5 s: ticks every 3.3 s), then the long one
    // (15 s: every 9.9 s) twice, then none.
    assert_eq!(
        retries.len(),
        3,
        "three retries after the first failure: {retries:?}"
    );
    let ms = |d: &Duration| d.as_millis() as u64;
    assert!((3300..=6600).contains(&ms(&retries[0])), "{retries:?}");
    assert!((9900..=19800).contains(&ms(&retries[1])), "{retries:?}");
    assert!((9900..=19800).contains(&ms(&retries[2])), "{retries:?}");
    assert!(connects(&actions(&mut s)).is_empty());
    // An unproven peer that failed 4 times is forgotten unless explicit.
    assert!(s.peer(&key).is_none());
}

#[test]
fn explicit_peers_are_dialed_and_kept() {
    let mut s = swarm(1);
    let key = kp(2).public_key;
    s.join_peer(T0, key);
    let c = connects(&actions(&mut s));
    assert_eq!(c.len(), 1);
    s.handle_closed(T0, c[0].0, &never);
    assert!(s.peer(&key).unwrap().waiting);
    s.leave_peer(&key);
    assert!(s.peer(&key).is_some(), "kept while waiting for its retry");
}

#[test]
fn flush_resolves_once_found_peers_were_tried() {
    let mut s = swarm(1);
    s.join(
        T0,
        [7; 32],
        JoinOptions {
            server: false,
            ..JoinOptions::default()
        },
    );
    let (q, _, _) = query_of(&actions(&mut s));
    let f = s.flush(T0);
    s.handle_query_peers(T0, q, &[peer(2), peer(3)]);
    assert!(events(&mut s).is_empty());
    s.handle_query_done(T0, q, Ok(vec![]));
    let e = events(&mut s);
    assert!(
        !e.iter().any(|e| matches!(e, Event::Flushed { .. })),
        "{e:?}"
    );
    let c = connects(&actions(&mut s));
    assert!(s.handle_connected(T0, c[0].0));
    assert!(!events(&mut s)
        .iter()
        .any(|e| matches!(e, Event::Flushed { .. })));
    s.handle_closed(T0, c[1].0, &never);
    assert!(events(&mut s).contains(&Event::Flushed { id: f, ok: true }));
    // Nothing to do: a flush resolves at once.
    let f2 = s.flush(T0);
    assert!(events(&mut s).contains(&Event::Flushed { id: f2, ok: true }));
}

#[test]
fn the_firewall_refuses_and_bans() {
    let mut c = SwarmConfig::new(kp(1));
    let bad = kp(3).public_key;
    c.firewall = Some(Box::new(move |k| *k == bad));
    let mut s = Swarm::new(c, [1; 32]);
    let fw = s.firewall();
    assert!(fw.refuses(&kp(1).public_key), "our own key");
    assert!(!fw.refuses(&kp(2).public_key));
    s.join(
        T0,
        [7; 32],
        JoinOptions {
            server: false,
            ..JoinOptions::default()
        },
    );
    let (q, _, _) = query_of(&actions(&mut s));
    s.handle_query_peers(T0, q, &[peer(3), peer(2)]);
    let c = connects(&actions(&mut s));
    assert_eq!(
        c.iter().map(|c| c.1).collect::<Vec<_>>(),
        vec![kp(2).public_key]
    );
    assert!(events(&mut s).contains(&Event::Ban { public_key: bad }));
    assert!(s.peer(&bad).unwrap().banned);
    assert!(fw.refuses(&bad), "the server refuses it too");
}

#[test]
fn limit_caps_the_peers_taken_per_refresh() {
    let mut s = swarm(1);
    s.join(
        T0,
        [7; 32],
        JoinOptions {
            server: false,
            limit: Some(2),
            ..JoinOptions::default()
        },
    );
    let (q, _, _) = query_of(&actions(&mut s));
    s.handle_query_peers(T0, q, &[peer(2), peer(3), peer(4), peer(5)]);
    assert_eq!(connects(&actions(&mut s)).len(), 2);
    assert_eq!(s.peers().count(), 2);
}

/// Two engines cross-wired: what one dials arrives at the other as a server connection.
struct Pair {
    s: [Swarm; 2],
    /// (side, id) ↔ (other side, id) of the same stream.
    links: Vec<((usize, ConnectionId), (usize, ConnectionId))>,
    open: std::collections::BTreeSet<(usize, ConnectionId)>,
}

impl Pair {
    fn other(&self, at: (usize, ConnectionId)) -> Option<(usize, ConnectionId)> {
        self.links.iter().find_map(|(a, b)| {
            if *a == at {
                Some(*b)
            } else if *b == at {
                Some(*a)
            } else {
                None
            }
        })
    }

    /// Runs the actions of side `i` (dial: the stream exists on both sides at once).
    fn run(&mut self, i: usize, dial: bool) -> bool {
        let mut moved = false;
        let acts = actions(&mut self.s[i]);
        for a in acts {
            moved = true;
            match a {
                Action::Connect { id, .. } if dial => {
                    let j = 1 - i;
                    let pk = self.s[i].key_pair().public_key;
                    let sid = self.s[j].handle_server_connection(T0, pk, &never);
                    self.links.push(((i, id), (j, sid)));
                    self.open.insert((j, sid));
                    self.open.insert((i, id));
                    self.s[i].handle_connected(T0, id);
                }
                Action::Destroy(id) => self.close((i, id)),
                _ => {}
            }
        }
        moved
    }

    fn close(&mut self, at: (usize, ConnectionId)) {
        for end in [Some(at), self.other(at)].into_iter().flatten() {
            if self.open.remove(&end) {
                self.s[end.0].handle_closed(T0, end.1, &never);
            }
        }
    }
}

#[test]
fn simultaneous_dials_keep_one_connection_on_both_sides() {
    for (a, b) in [(1u8, 2u8), (2, 1), (5, 9), (9, 5)] {
        let mut p = Pair {
            s: [swarm(a), swarm(b)],
            links: Vec::new(),
            open: Default::default(),
        };
        p.s[0].join_peer(T0, kp(b).public_key);
        p.s[1].join_peer(T0, kp(a).public_key);
        // Both dial before either hears of the other.
        let d0 = actions(&mut p.s[0]);
        let d1 = actions(&mut p.s[1]);
        for a in d0 {
            p.s[0].actions.push_back(a);
        }
        for a in d1 {
            p.s[1].actions.push_back(a);
        }
        p.run(0, true);
        p.run(1, true);
        while p.run(0, true) | p.run(1, true) {}
        let live0: Vec<_> = p.open.iter().filter(|x| x.0 == 0).collect();
        let live1: Vec<_> = p.open.iter().filter(|x| x.0 == 1).collect();
        assert_eq!(live0.len(), 1, "{a} {b}: {:?}", p.open);
        assert_eq!(live1.len(), 1);
        assert_eq!(p.other(*live0[0]), Some(*live1[0]), "the same stream");
        // The survivor is the one the larger key dialed.
        let dialer = if kp(a).public_key > kp(b).public_key {
            0
        } else {
            1
        };
        let survivor = *live0[0];
        let dialed_by_0 = p.links.iter().any(|(x, _)| *x == survivor);
        assert_eq!(dialed_by_0, dialer == 0, "{a} {b}");
        assert_eq!(p.s[0].connections().count(), 1);
        assert_eq!(p.s[1].connections().count(), 1);
    }
}

#[test]
fn an_established_connection_gives_way_to_a_reconnect() {
    // Side 1 has a live server connection from 2; 2 lost it and dials again: the new one wins
    // whatever the keys say.
    let mut s = swarm(1);
    let remote = kp(2).public_key;
    let first = s.handle_server_connection(T0, remote, &never);
    events(&mut s);
    let second = s.handle_server_connection(T0, remote, &|id| id == first);
    assert_eq!(actions(&mut s), vec![Action::Destroy(first)]);
    assert!(events(&mut s).is_empty(), "held until the old one closed");
    s.handle_closed(T0, first, &never);
    let e = events(&mut s);
    assert!(matches!(&e[..], [Event::Connection { id, client: false, .. }] if *id == second));
}
