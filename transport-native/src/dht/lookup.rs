//! Futures of the record layer: a running [`Lookup`] and a kept-alive announcement
//! ([`AnnounceHandle`]).

use std::future::Future;
use std::net::SocketAddrV4;
use std::pin::Pin;
use std::task::{Context, Poll};

use hyperpunch_core::dht::{LookupResult, OpError, OpOutput};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::DhtError;

/// A running lookup: replies as they come ([`Lookup::next`] or [`futures_core::Stream`]),
/// then the end.
pub struct Lookup {
    replies: mpsc::Receiver<LookupResult>,
    done: Option<oneshot::Receiver<Result<OpOutput, OpError>>>,
    result: Option<Result<Vec<SocketAddrV4>, DhtError>>,
}

impl Lookup {
    pub(crate) fn new(
        replies: mpsc::Receiver<LookupResult>,
        done: Option<oneshot::Receiver<Result<OpOutput, OpError>>>,
    ) -> Self {
        Lookup {
            replies,
            done,
            result: None,
        }
    }

    /// The next reply with records; `None` when the lookup is over.
    pub async fn next(&mut self) -> Option<LookupResult> {
        std::future::poll_fn(|cx| Pin::new(&mut *self).poll_next_reply(cx)).await
    }

    /// How the lookup ended, once [`Lookup::next`] returned `None`: the closest nodes, or why
    /// it failed.
    pub fn result(&mut self) -> Option<Result<Vec<SocketAddrV4>, DhtError>> {
        self.result.take()
    }

    fn poll_next_reply(&mut self, cx: &mut Context<'_>) -> Poll<Option<LookupResult>> {
        // The driver drops the sender right after reporting the end, so a closed, drained
        // channel means the result is there.
        match self.replies.poll_recv(cx) {
            Poll::Ready(Some(r)) => return Poll::Ready(Some(r)),
            Poll::Pending => return Poll::Pending,
            Poll::Ready(None) => {}
        }
        let Some(done) = self.done.as_mut() else {
            return Poll::Ready(None);
        };
        match Pin::new(done).poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(r) => {
                self.done = None;
                self.result = Some(match r {
                    Ok(Ok(
                        OpOutput::Lookup { closest_nodes } | OpOutput::Announce { closest_nodes },
                    )) => Ok(closest_nodes),
                    Ok(Ok(_)) => Ok(Vec::new()),
                    Ok(Err(e)) => Err(e.into()),
                    Err(_) => Err(DhtError::Closed),
                });
                Poll::Ready(None)
            }
        }
    }
}

impl futures_core::Stream for Lookup {
    type Item = LookupResult;
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<LookupResult>> {
        self.get_mut().poll_next_reply(cx)
    }
}

/// Keeps an announcement alive ([`Dht::announce_forever`](super::Dht::announce_forever));
/// dropping it stops re-announcing.
pub struct AnnounceHandle {
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl AnnounceHandle {
    pub(crate) fn new(stop: oneshot::Sender<()>, task: JoinHandle<()>) -> Self {
        AnnounceHandle {
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Stop re-announcing (the records expire on their own; call
    /// [`Dht::unannounce`](super::Dht::unannounce) to remove them at once).
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

impl Drop for AnnounceHandle {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}
