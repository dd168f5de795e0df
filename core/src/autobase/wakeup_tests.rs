//! [`HubWakeup`] on a [`ReplicationHub`] against a remote protomux that speaks the wakeup
//! protocol ([`AutobaseWakeup`] on a bare [`Protomux`]): lookups from a peer that never reads,
//! and a remote that closes its wakeup channel and opens it again.

use futures_executor::block_on;

use super::wakeup::{wakeup_writers, AutobaseWakeup, HubWakeup};
use super::{ApplyNode, Autobase, Host, Views};
use crate::protomux::{ChannelId, Event as MuxEvent, Protomux};
use crate::protomux_wakeup::{Output, WakeupWriter, PROTOCOL};
use crate::replication::{ReplicationHub, StreamId, HIGH_WATER};
use crate::storage::MemoryStorage;

type Base = Autobase<Box<dyn FnMut(&[ApplyNode<'_>], &mut Views, &mut Host<'_>)>>;

const A: [u8; 32] = [0xa1; 32];
const B: [u8; 32] = [0xb2; 32];
const HH: [u8; 64] = [0x44; 64];

/// An optimistic base where the non-member B appended a node: B is its wakeup writer.
fn base() -> Base {
    let mut base: Base = Autobase::new(A, Box::new(|_, _, _| {}));
    base.set_optimistic(true);
    base.append_optimistic(&B, b"hi".to_vec()).unwrap();
    base.update();
    assert_eq!(wakeup_writers(&base), [WakeupWriter { key: B, length: 1 }]);
    base
}

/// Our side: the hub, its wakeup and the base.
struct Local {
    hub: ReplicationHub<MemoryStorage>,
    wakeup: HubWakeup,
    base: Base,
    stream: StreamId,
}

/// The remote: a bare protomux with the wakeup topic (its peer is `0`), and what it received.
struct Remote {
    mux: Protomux,
    w: AutobaseWakeup<u8>,
    ch: Option<ChannelId>,
    opened: usize,
    rejected: usize,
    announces: u64,
}

impl Remote {
    fn open(&mut self) {
        let o = self.w.add_peer(0, false, HH).unwrap();
        self.ch = Some(self.mux.open(o).unwrap());
    }
}

/// Move frames both ways until quiet; our frames reach the remote only when `read`.
async fn pump(l: &mut Local, r: &mut Remote, read: bool) {
    let mut remote_base = Autobase::new(
        A,
        Box::new(|_: &[ApplyNode<'_>], _: &mut Views, _: &mut Host<'_>| {})
            as Box<dyn FnMut(&[ApplyNode<'_>], &mut Views, &mut Host<'_>)>,
    );
    for _ in 0..10_000 {
        let mut moved = false;
        if read {
            while let Some((_, f)) = l.hub.poll_transmit() {
                r.mux.handle_frame(&f).unwrap();
                moved = true;
            }
        }
        while let Some(ev) = r.mux.poll_event() {
            moved = true;
            match ev {
                MuxEvent::ChannelOpened { handshake, .. } => {
                    r.opened += 1;
                    r.w.handle_open(0, &handshake).unwrap();
                }
                MuxEvent::Message {
                    message_type,
                    payload,
                    ..
                } => r.w.handle_message(0, message_type, &payload).unwrap(),
                MuxEvent::ChannelRejected { .. } => {
                    r.rejected += 1;
                    r.w.handle_closed(0);
                }
                MuxEvent::ChannelClosed { .. } => r.w.handle_closed(0),
                MuxEvent::PairRequest { .. } => r.open(),
            }
        }
        r.w.handle_events(&mut remote_base);
        r.announces = r.w.session().stats().announce_rx;
        while let Some(o) = r.w.poll_output() {
            if let (
                Output::Send {
                    message_type,
                    payload,
                    ..
                },
                Some(ch),
            ) = (o, r.ch)
            {
                r.mux.send(ch, message_type, &payload).unwrap();
            }
        }
        while let Some(f) = r.mux.poll_transmit() {
            l.hub.handle_frame(0, l.stream, &f).await.unwrap();
            moved = true;
        }
        while let Some(ev) = l.hub.poll_event() {
            moved = true;
            l.wakeup
                .handle_hub_event(0, &mut l.hub, &mut l.base, &ev)
                .await
                .unwrap();
        }
        if !moved {
            return;
        }
    }
    panic!("never quiet");
}

fn setup() -> (Local, Remote) {
    let mut hub = ReplicationHub::new();
    let wakeup = HubWakeup::new(A);
    wakeup.attach(&mut hub);
    let stream = hub.add_stream(true, HH).unwrap();
    let mut mux = Protomux::new();
    mux.pair(PROTOCOL, None);
    let l = Local {
        hub,
        wakeup,
        base: base(),
        stream,
    };
    let r = Remote {
        mux,
        w: AutobaseWakeup::new(A),
        ch: None,
        opened: 0,
        rejected: 0,
        announces: 0,
    };
    (l, r)
}

/// A peer sends 1,000 lookups and never reads (its transport holds [`HIGH_WATER`] bytes
/// unwritten): the stream is congested and the lookups wait as one; what we queue grows by at
/// most one announce, not 1,000. Once it drained, the waiting lookup is answered
/// (once). Before the fix each lookup queued an announce.
#[test]
fn lookups_from_a_peer_that_never_reads_stay_bounded() {
    block_on(async {
        let (mut l, mut r) = setup();
        pump(&mut l, &mut r, true).await;
        assert!(r.w.session().is_open(0), "the channel opened");
        let told = r.announces;
        assert_eq!(told, 1, "announced when the peer became active");
        // the peer stops reading: its transport's backlog is at the high-water mark
        l.hub.set_backlog(0, l.stream, HIGH_WATER).await.unwrap();
        let before = l.hub.unsent(l.stream).unwrap();
        for _ in 0..1_000 {
            r.w.broadcast_lookup();
            pump(&mut l, &mut r, false).await;
        }
        let queued = l.hub.unsent(l.stream).unwrap() - before;
        assert!(queued < 200, "at most one announce queued: {queued} bytes");
        assert_eq!(l.wakeup.wakeup().deferred_lookups(), 1);
        // it drains (reads): the waiting lookup is answered, once
        l.hub.set_backlog(0, l.stream, 0).await.unwrap();
        l.wakeup.refresh(&mut l.hub, &l.base);
        pump(&mut l, &mut r, true).await;
        assert_eq!(l.wakeup.wakeup().deferred_lookups(), 0);
        assert_eq!(r.announces, told + 1, "the waiting lookup answered once");
    });
}

/// The remote closes its wakeup channel and opens it again on the same connection (a JS peer
/// that closes and reopens its Autobase): we open ours anew and it is told our writers
/// (protomux-wakeup `_onpair` for a known topic). Before the fix the second open was rejected.
#[test]
fn a_wakeup_channel_the_remote_reopens_is_accepted() {
    block_on(async {
        let (mut l, mut r) = setup();
        pump(&mut l, &mut r, true).await;
        assert_eq!(r.opened, 1);
        assert_eq!(r.announces, 1);
        r.mux.close(r.ch.take().unwrap()).unwrap();
        r.w.handle_closed(0);
        r.mux.unpair(PROTOCOL, None);
        pump(&mut l, &mut r, true).await;
        assert_eq!(
            l.wakeup.wakeup().session().peers().count(),
            0,
            "closed here too"
        );
        r.open();
        pump(&mut l, &mut r, true).await;
        assert_eq!(r.rejected, 0, "not rejected");
        assert_eq!(r.opened, 2, "opened again");
        assert!(r.w.session().is_open(0) && l.wakeup.wakeup().session().is_open(l.stream));
        assert_eq!(r.announces, 2, "told our writers again");
        // an open of another topic is still rejected
        let o = AutobaseWakeup::<u8>::new([0x99; 32])
            .add_peer(0, false, HH)
            .unwrap();
        r.mux.open(o).unwrap();
        pump(&mut l, &mut r, true).await;
        assert_eq!(r.rejected, 1);
    });
}
