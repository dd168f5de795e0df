//! Single-threaded async plumbing for the wasm driver: an unbounded queue and a wake flag.
//!
//! The browser runs every task of a page on one thread, so these are plain `Rc`/`RefCell`
//! structures; a waiting receiver is woken through its [`Waker`].

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::poll_fn;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

struct Shared<T> {
    queue: VecDeque<T>,
    /// The sender closed (or was dropped): once `queue` is empty, nothing more comes.
    closed: bool,
    /// The receiver was dropped: sending fails.
    receiver_gone: bool,
    waker: Option<Waker>,
}

/// The sending half of [`channel`].
pub(crate) struct Sender<T>(Rc<RefCell<Shared<T>>>);

/// The receiving half of [`channel`].
pub(crate) struct Receiver<T>(Rc<RefCell<Shared<T>>>);

/// An unbounded queue with one sender and one receiver.
pub(crate) fn channel<T>() -> (Sender<T>, Receiver<T>) {
    let shared = Rc::new(RefCell::new(Shared {
        queue: VecDeque::new(),
        closed: false,
        receiver_gone: false,
        waker: None,
    }));
    (Sender(shared.clone()), Receiver(shared))
}

impl<T> Sender<T> {
    /// Queue `value`; gives it back when the receiver is gone or this sender was closed.
    pub(crate) fn send(&self, value: T) -> Result<(), T> {
        let mut s = self.0.borrow_mut();
        if s.receiver_gone || s.closed {
            return Err(value);
        }
        s.queue.push_back(value);
        if let Some(w) = s.waker.take() {
            w.wake();
        }
        Ok(())
    }

    /// Whether sending would fail (the receiver is gone, or this sender was closed).
    pub(crate) fn is_gone(&self) -> bool {
        let s = self.0.borrow();
        s.receiver_gone || s.closed
    }

    /// No more values: the receiver gets `None` after the queued ones.
    pub(crate) fn close(&self) {
        let mut s = self.0.borrow_mut();
        s.closed = true;
        if let Some(w) = s.waker.take() {
            w.wake();
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        self.close();
    }
}

impl<T> Receiver<T> {
    /// The next value, `Ready(None)` once the sender closed and the queue is drained.
    pub(crate) fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let mut s = self.0.borrow_mut();
        if let Some(v) = s.queue.pop_front() {
            return Poll::Ready(Some(v));
        }
        if s.closed {
            return Poll::Ready(None);
        }
        s.waker = Some(cx.waker().clone());
        Poll::Pending
    }

    /// The next value, `None` once the sender closed and the queue is drained.
    pub(crate) async fn recv(&mut self) -> Option<T> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        let mut s = self.0.borrow_mut();
        s.receiver_gone = true;
        s.queue.clear();
    }
}

/// A wake-up flag: [`WakeFlag::notify`] makes the next [`WakeFlag::poll_notified`] ready.
#[derive(Default)]
pub(crate) struct WakeFlag {
    state: RefCell<(bool, Option<Waker>)>,
}

impl WakeFlag {
    /// Set the flag and wake the waiting task, if any.
    pub(crate) fn notify(&self) {
        let mut s = self.state.borrow_mut();
        s.0 = true;
        if let Some(w) = s.1.take() {
            w.wake();
        }
    }

    /// Ready (and cleared) if notified since the last time, otherwise registers the waker.
    pub(crate) fn poll_notified(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut s = self.state.borrow_mut();
        if std::mem::take(&mut s.0) {
            return Poll::Ready(());
        }
        s.1 = Some(cx.waker().clone());
        Poll::Pending
    }
}

/// A stop signal shared by a watcher and its pending waits: once [`Stop::stop`] is called,
/// every future run through [`Stop::or`] ends with `None` (JS `watcher.close()`).
#[derive(Clone, Default)]
pub(crate) struct Stop(Rc<RefCell<(bool, Vec<Waker>)>>);

impl Stop {
    /// Stop: pending and later [`Stop::or`] calls give `None`.
    pub(crate) fn stop(&self) {
        let wakers = {
            let mut s = self.0.borrow_mut();
            s.0 = true;
            std::mem::take(&mut s.1)
        };
        for w in wakers {
            w.wake();
        }
    }

    /// Whether [`Stop::stop`] was called.
    pub(crate) fn is_stopped(&self) -> bool {
        self.0.borrow().0
    }

    /// `f`'s output, or `None` if stopped first (then `f` is dropped).
    pub(crate) async fn or<F: std::future::Future>(&self, f: F) -> Option<F::Output> {
        let mut f = std::pin::pin!(f);
        poll_fn(|cx| {
            if self.is_stopped() {
                return Poll::Ready(None);
            }
            if let Poll::Ready(v) = f.as_mut().poll(cx) {
                // This task's waker is not needed any more: each `next()` of a watcher is a
                // task of its own, so a kept waker would pile up until `stop`.
                self.0.borrow_mut().1.retain(|w| !w.will_wake(cx.waker()));
                return Poll::Ready(Some(v));
            }
            let mut s = self.0.borrow_mut();
            if !s.1.iter().any(|w| w.will_wake(cx.waker())) {
                s.1.push(cx.waker().clone());
            }
            Poll::Pending
        })
        .await
    }
}
