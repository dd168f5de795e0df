//! The byte carrier under the browser replication pump: the [`Duplex`] trait, the in-page
//! [`memory_duplex`], and the pump's outgoing queue (which honours the carrier's buffer).
//!
//! Pure Rust (no JS), so it also builds and is unit-tested on native targets; the pump itself
//! (`replicate`, wasm32 only) re-exports the public items.
//!
//! Backpressure: a carrier reports the bytes it was given but has not passed on yet
//! ([`Duplex::buffered_amount`], WebSocket and `RTCDataChannel` `bufferedAmount`) and, if it
//! has a drain event, wakes the pump once that fell to a level ([`Duplex::poll_drained`];
//! without one the pump looks again on a short timer). The pump hands it chunks only
//! while it buffers less than [`CARRIER_HIGH_WATER`] and keeps the rest itself; the sum of both
//! is the backlog it tells the hub, which stops answering the peer's requests past its
//! high-water mark until the backlog drains.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

#[cfg(any(target_arch = "wasm32", test))]
use hyperpunch_core::replication::BACKLOG_REPORT_STEP;

/// The pump hands chunks to a [`Duplex`] only while the carrier buffers less than this many
/// bytes ([`Duplex::buffered_amount`]); the rest waits in the pump (and counts in the backlog
/// the hub sees). So a carrier buffers at most this plus one chunk.
pub const CARRIER_HIGH_WATER: usize = 1024 * 1024;

/// What [`memory_duplex`] buffers per direction at most (plus one chunk): as a WebRTC data
/// channel, whose `send` throws once its 16 MiB queue is full.
pub const MEMORY_DUPLEX_CAPACITY: usize = 16 * 1024 * 1024;

/// A byte pipe to one peer, carried in chunks: the transport under `replicate`.
///
/// Chunk boundaries carry no meaning (the secret stream does its own framing), so any ordered,
/// reliable carrier fits: the in-page [`memory_duplex`], a WebSocket to a relay, a
/// WebRTC data channel.
///
/// Backpressure: [`Duplex::send`] never waits, so a carrier says how much it still holds with
/// [`Duplex::buffered_amount`] and may wake the pump when that drops with
/// [`Duplex::poll_drained`]. The pump sends only while the carrier buffers less than
/// [`CARRIER_HIGH_WATER`] and reports the carrier's bytes with its own to the hub, which
/// holds back its answers to the peer while that backlog is high. Both have defaults:
///
/// - a carrier with no measure of its buffer keeps both; it is then given every chunk at once
///   and buffers whatever it is given, unseen by the hub;
/// - a WebSocket: `buffered_amount` returns `bufferedAmount`; `poll_drained` keeps its
///   default, as the WebSocket API has no drain event: the pump then looks at
///   `buffered_amount` on a timer of a few milliseconds while it waits for the buffer to drain;
/// - an `RTCDataChannel`: `buffered_amount` returns `bufferedAmount`; `poll_drained` is ready
///   when that is at most `low`, and otherwise sets `bufferedAmountLowThreshold = low` and
///   wakes the waker from `onbufferedamountlow`, which spares the pump its timer.
pub trait Duplex {
    /// The next chunk from the peer, registering `cx`'s waker when there is none yet;
    /// `Ready(None)` once the peer's side ended (cleanly or not) and no chunk follows.
    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Vec<u8>>>;
    /// Queue `chunk` for the peer, without waiting. May fail when the carrier is closed or its
    /// buffer is full (the pump keeps it below [`CARRIER_HIGH_WATER`] plus one chunk when the
    /// carrier reports [`Duplex::buffered_amount`]).
    fn send(&mut self, chunk: Vec<u8>) -> Result<(), DuplexError>;
    /// End our side: the peer sees the end after every chunk sent before.
    fn close(&mut self);
    /// Bytes given to [`Duplex::send`] that the carrier still holds (not yet passed to the
    /// network, or to the peer's reader): WebSocket and `RTCDataChannel` `bufferedAmount`.
    /// The default, 0, is for a carrier with no such measure.
    fn buffered_amount(&self) -> usize {
        0
    }
    /// Ready once [`Duplex::buffered_amount`] is at most `low` (at once if it already is, or
    /// once the carrier cannot drain any more, e.g. it closed); otherwise registers `cx`'s
    /// waker, to be woken when it fell that far (or later: the pump asks again). Only the
    /// latest registration needs to be woken.
    ///
    /// The default is always ready, telling nothing: a pump that finds the buffer still above
    /// `low` then stops asking and looks at [`Duplex::buffered_amount`] on a short timer
    /// instead (the way to serve a carrier without a drain event, as a WebSocket).
    fn poll_drained(&mut self, cx: &mut Context<'_>, low: usize) -> Poll<()> {
        let _ = (cx, low);
        Poll::Ready(())
    }
}

/// A [`Duplex`] could not send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DuplexError(pub String);

impl std::fmt::Display for DuplexError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DuplexError {}

/// One direction of a [`memory_duplex`].
struct Pipe {
    chunks: VecDeque<Vec<u8>>,
    /// Bytes in `chunks`.
    buffered: usize,
    capacity: usize,
    /// The sending end closed (or was dropped): once `chunks` is empty, nothing more comes.
    closed: bool,
    /// The receiving end was dropped: sending fails, what it held is gone.
    receiver_gone: bool,
    /// The receiver waits for a chunk.
    recv_waker: Option<Waker>,
    /// The sender waits for `buffered` to fall to this level.
    drain_waker: Option<(usize, Waker)>,
}

impl Pipe {
    fn new(capacity: usize) -> Rc<RefCell<Pipe>> {
        Rc::new(RefCell::new(Pipe {
            chunks: VecDeque::new(),
            buffered: 0,
            capacity,
            closed: false,
            receiver_gone: false,
            recv_waker: None,
            drain_waker: None,
        }))
    }

    /// Wake the waiting sender if `buffered` fell to its level.
    fn wake_drained(&mut self) {
        if self
            .drain_waker
            .as_ref()
            .is_some_and(|(low, _)| self.buffered <= *low || self.receiver_gone)
        {
            if let Some((_, w)) = self.drain_waker.take() {
                w.wake();
            }
        }
    }
}

/// One end of an in-memory [`Duplex`] (see [`memory_duplex`]).
pub struct MemoryDuplex {
    /// What we send.
    out: Rc<RefCell<Pipe>>,
    /// What we receive.
    inc: Rc<RefCell<Pipe>>,
}

impl std::fmt::Debug for MemoryDuplex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryDuplex")
            .field("buffered_amount", &self.out.borrow().buffered)
            .finish_non_exhaustive()
    }
}

/// Two connected in-memory [`Duplex`] ends: chunks sent on one arrive on the other, in order.
/// What one end sent and the other has not received yet is its
/// [`Duplex::buffered_amount`], so a peer that does not read makes it grow and reading drains
/// it; `send` fails once it reached [`MEMORY_DUPLEX_CAPACITY`]. Dropping an end closes its
/// side.
pub fn memory_duplex() -> (MemoryDuplex, MemoryDuplex) {
    memory_duplex_with_capacity(MEMORY_DUPLEX_CAPACITY)
}

/// [`memory_duplex`] whose `send` fails once `capacity` bytes wait in one direction (a chunk
/// is accepted while fewer do, so a direction holds at most `capacity` plus one chunk).
pub fn memory_duplex_with_capacity(capacity: usize) -> (MemoryDuplex, MemoryDuplex) {
    let (ab, ba) = (Pipe::new(capacity), Pipe::new(capacity));
    (
        MemoryDuplex {
            out: ab.clone(),
            inc: ba.clone(),
        },
        MemoryDuplex { out: ba, inc: ab },
    )
}

impl Duplex for MemoryDuplex {
    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Vec<u8>>> {
        let mut p = self.inc.borrow_mut();
        if let Some(chunk) = p.chunks.pop_front() {
            p.buffered -= chunk.len();
            p.wake_drained();
            return Poll::Ready(Some(chunk));
        }
        if p.closed {
            return Poll::Ready(None);
        }
        p.recv_waker = Some(cx.waker().clone());
        Poll::Pending
    }

    fn send(&mut self, chunk: Vec<u8>) -> Result<(), DuplexError> {
        let mut p = self.out.borrow_mut();
        if p.receiver_gone {
            return Err(DuplexError(
                "the other end of the in-memory duplex is gone".into(),
            ));
        }
        if p.closed {
            return Err(DuplexError("the in-memory duplex was closed".into()));
        }
        if p.buffered >= p.capacity {
            return Err(DuplexError(format!(
                "the in-memory duplex is full ({} bytes buffered)",
                p.buffered
            )));
        }
        p.buffered += chunk.len();
        p.chunks.push_back(chunk);
        if let Some(w) = p.recv_waker.take() {
            w.wake();
        }
        Ok(())
    }

    fn close(&mut self) {
        let mut p = self.out.borrow_mut();
        p.closed = true;
        if let Some(w) = p.recv_waker.take() {
            w.wake();
        }
    }

    fn buffered_amount(&self) -> usize {
        self.out.borrow().buffered
    }

    fn poll_drained(&mut self, cx: &mut Context<'_>, low: usize) -> Poll<()> {
        let mut p = self.out.borrow_mut();
        if p.buffered <= low || p.receiver_gone {
            p.drain_waker = None;
            return Poll::Ready(());
        }
        p.drain_waker = Some((low, cx.waker().clone()));
        Poll::Pending
    }
}

impl Drop for MemoryDuplex {
    fn drop(&mut self) {
        self.close();
        let mut p = self.inc.borrow_mut();
        p.receiver_gone = true;
        p.chunks.clear();
        p.buffered = 0;
        p.wake_drained();
    }
}

/// The pump's encrypted chunks not yet handed to the carrier.
#[cfg(any(target_arch = "wasm32", test))]
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    chunks: VecDeque<Vec<u8>>,
    /// Bytes in `chunks`.
    queued: usize,
}

#[cfg(any(target_arch = "wasm32", test))]
impl Outbox {
    /// Queue `chunk` (empty ones are dropped).
    pub(crate) fn push(&mut self, chunk: Vec<u8>) {
        if !chunk.is_empty() {
            self.queued += chunk.len();
            self.chunks.push_back(chunk);
        }
    }

    /// Whether every chunk went to the carrier.
    pub(crate) fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    /// Hand chunks to `io` while it buffers less than [`CARRIER_HIGH_WATER`].
    pub(crate) fn flush(&mut self, io: &mut impl Duplex) -> Result<(), DuplexError> {
        while io.buffered_amount() < CARRIER_HIGH_WATER {
            let Some(chunk) = self.chunks.pop_front() else {
                break;
            };
            self.queued -= chunk.len();
            io.send(chunk)?;
        }
        Ok(())
    }

    /// Bytes not written yet: ours and what the carrier still buffers.
    pub(crate) fn backlog(&self, io: &impl Duplex) -> usize {
        self.queued + io.buffered_amount()
    }

    /// The carrier level to wait for (with [`Duplex::poll_drained`]) before looking again:
    /// while chunks wait for room or the hub was last told of a backlog (`reported`), the
    /// carrier's buffer one [`BACKLOG_REPORT_STEP`] lower (or empty), so room is used and the
    /// shrinking backlog is told as it drains. `None`: nothing to wait for.
    pub(crate) fn drain_target(&self, io: &impl Duplex, reported: usize) -> Option<usize> {
        let buffered = io.buffered_amount();
        if buffered == 0 || (self.is_empty() && reported == 0) {
            return None;
        }
        Some(buffered.saturating_sub(BACKLOG_REPORT_STEP))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::Wake;

    /// A waker that counts its wake-ups.
    #[derive(Default)]
    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn counting() -> (Arc<Count>, Waker) {
        let c = Arc::new(Count::default());
        (c.clone(), Waker::from(c))
    }

    fn recv(d: &mut MemoryDuplex) -> Poll<Option<Vec<u8>>> {
        d.poll_recv(&mut Context::from_waker(Waker::noop()))
    }

    #[test]
    fn memory_duplex_accounts_what_the_peer_has_not_read() {
        let (mut a, mut b) = memory_duplex();
        assert_eq!(a.buffered_amount(), 0);
        a.send(vec![1; 100]).unwrap();
        a.send(vec![2; 50]).unwrap();
        assert_eq!(a.buffered_amount(), 150);
        assert_eq!(b.buffered_amount(), 0, "per direction");
        b.send(vec![3; 7]).unwrap();
        assert_eq!(b.buffered_amount(), 7);
        assert_eq!(recv(&mut b), Poll::Ready(Some(vec![1; 100])));
        assert_eq!(a.buffered_amount(), 50);
        assert_eq!(recv(&mut b), Poll::Ready(Some(vec![2; 50])));
        assert_eq!(a.buffered_amount(), 0);
        assert_eq!(recv(&mut b), Poll::Pending);
        a.close();
        assert_eq!(recv(&mut b), Poll::Ready(None));
        assert!(a.send(vec![4]).is_err(), "closed");
        assert_eq!(recv(&mut a), Poll::Ready(Some(vec![3; 7])));
    }

    #[test]
    fn drained_wakes_once_the_reader_read_down_to_the_level() {
        let (mut a, mut b) = memory_duplex();
        for _ in 0..4 {
            a.send(vec![0; 100]).unwrap();
        }
        let (count, waker) = counting();
        let mut cx = Context::from_waker(&waker);
        assert_eq!(
            a.poll_drained(&mut cx, 400),
            Poll::Ready(()),
            "level reached"
        );
        assert_eq!(a.poll_drained(&mut cx, 150), Poll::Pending);
        assert!(recv(&mut b).is_ready());
        assert!(recv(&mut b).is_ready());
        assert_eq!(
            count.0.load(Ordering::Relaxed),
            0,
            "200 bytes left > 150: not yet"
        );
        assert!(recv(&mut b).is_ready());
        assert_eq!(count.0.load(Ordering::Relaxed), 1, "100 bytes left: woken");
        assert_eq!(a.poll_drained(&mut cx, 150), Poll::Ready(()));
        // The peer going away drains everything (and wakes a waiting sender).
        assert_eq!(a.poll_drained(&mut cx, 0), Poll::Pending);
        drop(b);
        assert_eq!(count.0.load(Ordering::Relaxed), 2);
        assert_eq!(a.buffered_amount(), 0);
        assert_eq!(a.poll_drained(&mut cx, 0), Poll::Ready(()));
        assert!(a.send(vec![1]).is_err(), "nobody reads");
    }

    #[test]
    fn memory_duplex_refuses_to_buffer_past_its_capacity() {
        let (mut a, mut b) = memory_duplex_with_capacity(1000);
        a.send(vec![0; 999]).unwrap();
        a.send(vec![0; 500]).unwrap();
        let e = a.send(vec![0; 1]).unwrap_err();
        assert!(e.0.contains("full"), "{e}");
        assert_eq!(a.buffered_amount(), 1499);
        assert!(recv(&mut b).is_ready());
        a.send(vec![0; 1]).unwrap();
        assert_eq!(a.buffered_amount(), 501);
    }

    /// A carrier without a measure: the defaults.
    struct Blind(Vec<Vec<u8>>);

    impl Duplex for Blind {
        fn poll_recv(&mut self, _: &mut Context<'_>) -> Poll<Option<Vec<u8>>> {
            Poll::Pending
        }
        fn send(&mut self, chunk: Vec<u8>) -> Result<(), DuplexError> {
            self.0.push(chunk);
            Ok(())
        }
        fn close(&mut self) {}
    }

    #[test]
    fn outbox_keeps_what_the_carrier_has_no_room_for() {
        let (mut a, mut b) = memory_duplex_with_capacity(CARRIER_HIGH_WATER + 64 * 1024);
        let mut out = Outbox::default();
        let chunk = 48 * 1024;
        for i in 0..100u8 {
            out.push(vec![i; chunk]);
        }
        out.push(Vec::new());
        assert_eq!(out.backlog(&a), 100 * chunk);
        out.flush(&mut a).unwrap();
        // Sent while the carrier held less than the mark: 22 chunks (21 * 48 KiB < 1 MiB).
        let sent = CARRIER_HIGH_WATER.div_ceil(chunk);
        assert_eq!(a.buffered_amount(), sent * chunk);
        assert!(!out.is_empty());
        assert_eq!(out.backlog(&a), 100 * chunk, "the backlog counts both");
        // Waits for the carrier to drain one step before it looks again.
        assert_eq!(
            out.drain_target(&a, 0),
            Some(sent * chunk - BACKLOG_REPORT_STEP)
        );
        assert_eq!(recv(&mut b), Poll::Ready(Some(vec![0; chunk])));
        out.flush(&mut a).unwrap();
        assert_eq!(
            a.buffered_amount(),
            sent * chunk,
            "one chunk of room, one chunk sent"
        );
        // Everything arrives, in order.
        let mut next = 1u8;
        loop {
            out.flush(&mut a).unwrap();
            match recv(&mut b) {
                Poll::Ready(Some(c)) => {
                    assert_eq!(c, vec![next; chunk]);
                    next += 1;
                }
                _ => break,
            }
        }
        assert_eq!(next, 100);
        assert!(out.is_empty());
        assert_eq!(out.backlog(&a), 0);
        assert_eq!(out.drain_target(&a, 5000), None, "nothing left to drain");
    }

    #[test]
    fn outbox_over_a_carrier_without_a_measure_sends_everything() {
        let mut io = Blind(Vec::new());
        let mut out = Outbox::default();
        for i in 0..100u8 {
            out.push(vec![i; 64 * 1024]);
        }
        out.flush(&mut io).unwrap();
        assert!(out.is_empty());
        assert_eq!(io.0.len(), 100);
        assert_eq!(out.backlog(&io), 0);
        assert_eq!(out.drain_target(&io, 0), None);
        let mut cx = Context::from_waker(Waker::noop());
        assert_eq!(io.poll_drained(&mut cx, 0), Poll::Ready(()));
    }

    #[test]
    fn drain_target_follows_a_reported_backlog_down_to_empty() {
        let (mut a, _b) = memory_duplex();
        let out = Outbox::default();
        a.send(vec![0; 200 * 1024]).unwrap();
        assert_eq!(out.drain_target(&a, 0), None, "the hub was told nothing");
        assert_eq!(out.drain_target(&a, 200 * 1024), Some(136 * 1024));
        let (mut c, _d) = memory_duplex();
        c.send(vec![0; 10]).unwrap();
        assert_eq!(out.drain_target(&c, 100 * 1024), Some(0), "to empty");
    }
}
