//! A WebSocket as a [`Duplex`] carrier (binary messages as chunks, `bufferedAmount` as the
//! carrier's buffer), and [`RelaySession`]: the dht-relay [`Client`] engine driven over one.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use hyperpunch_core::relay::dht_relay::{Client, ClientError, ClientEvent};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{BinaryType, CloseEvent, MessageEvent, WebSocket};

use crate::duplex::{Duplex, DuplexError};

#[derive(Default)]
struct Inbox {
    chunks: VecDeque<Vec<u8>>,
    open: bool,
    /// The socket closed: its close code and reason (1006 with no reason when it failed).
    closed: Option<(u16, String)>,
    waker: Option<Waker>,
}

impl Inbox {
    fn wake(&mut self) {
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }
}

/// A WebSocket carrying binary messages.
pub struct WsCarrier {
    ws: WebSocket,
    inbox: Rc<RefCell<Inbox>>,
    _on_message: Closure<dyn FnMut(MessageEvent)>,
    _on_close: Closure<dyn FnMut(CloseEvent)>,
    _on_open: Closure<dyn FnMut()>,
}

impl WsCarrier {
    /// Opens `url` (`ws://` or `wss://`) and waits until it is open.
    pub async fn connect(url: &str) -> Result<WsCarrier, DuplexError> {
        let ws = WebSocket::new(url).map_err(|e| DuplexError(format!("{url}: {e:?}")))?;
        ws.set_binary_type(BinaryType::Arraybuffer);
        let inbox = Rc::new(RefCell::new(Inbox::default()));
        let i = inbox.clone();
        let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |e: MessageEvent| {
            if let Ok(buf) = e.data().dyn_into::<js_sys::ArrayBuffer>() {
                let mut i = i.borrow_mut();
                i.chunks.push_back(js_sys::Uint8Array::new(&buf).to_vec());
                i.wake();
            }
        });
        let i = inbox.clone();
        let on_close = Closure::<dyn FnMut(CloseEvent)>::new(move |e: CloseEvent| {
            let mut i = i.borrow_mut();
            i.closed = Some((e.code(), e.reason()));
            i.wake();
        });
        let i = inbox.clone();
        let on_open = Closure::<dyn FnMut()>::new(move || {
            let mut i = i.borrow_mut();
            i.open = true;
            i.wake();
        });
        ws.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        ws.set_onclose(Some(on_close.as_ref().unchecked_ref()));
        ws.set_onopen(Some(on_open.as_ref().unchecked_ref()));
        let carrier = WsCarrier {
            ws,
            inbox,
            _on_message: on_message,
            _on_close: on_close,
            _on_open: on_open,
        };
        std::future::poll_fn(|cx| {
            let mut i = carrier.inbox.borrow_mut();
            if i.open {
                return Poll::Ready(Ok(()));
            }
            if let Some((code, reason)) = &i.closed {
                return Poll::Ready(Err(DuplexError(format!(
                    "{url}: the WebSocket closed ({code} {reason})"
                ))));
            }
            i.waker = Some(cx.waker().clone());
            Poll::Pending
        })
        .await?;
        Ok(carrier)
    }

    /// The close code and reason, once the socket closed.
    pub fn close_info(&self) -> Option<(u16, String)> {
        self.inbox.borrow().closed.clone()
    }
}

impl Duplex for WsCarrier {
    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Vec<u8>>> {
        let mut i = self.inbox.borrow_mut();
        if let Some(c) = i.chunks.pop_front() {
            return Poll::Ready(Some(c));
        }
        if i.closed.is_some() {
            return Poll::Ready(None);
        }
        i.waker = Some(cx.waker().clone());
        Poll::Pending
    }

    fn send(&mut self, chunk: Vec<u8>) -> Result<(), DuplexError> {
        self.ws
            .send_with_u8_array(&chunk)
            .map_err(|e| DuplexError(format!("WebSocket send: {e:?}")))
    }

    fn close(&mut self) {
        let _ = self.ws.close();
    }

    fn buffered_amount(&self) -> usize {
        self.ws.buffered_amount() as usize
    }
}

impl Drop for WsCarrier {
    fn drop(&mut self) {
        self.ws.set_onmessage(None);
        self.ws.set_onclose(None);
        self.ws.set_onopen(None);
        let _ = self.ws.close();
    }
}

/// Why a relay session stopped.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// The WebSocket failed or closed.
    #[error("{0}")]
    Carrier(#[from] DuplexError),
    /// The relay broke the protocol.
    #[error("{0}")]
    Protocol(#[from] ClientError),
    /// The relay closed the session.
    #[error("the relay closed the session ({0} {1})")]
    Closed(u16, String),
}

/// The dht-relay [`Client`] over a [`WsCarrier`]: call the client's methods through
/// [`RelaySession::client`], then [`RelaySession::next_event`] sends what they queued and
/// waits for what happens.
pub struct RelaySession {
    carrier: WsCarrier,
    client: Client,
}

impl RelaySession {
    /// Opens the relay at `url` for `client`.
    pub async fn open(url: &str, client: Client) -> Result<RelaySession, RelayError> {
        let carrier = WsCarrier::connect(url).await?;
        let mut s = RelaySession { carrier, client };
        s.flush()?;
        Ok(s)
    }

    /// The client engine.
    pub fn client(&mut self) -> &mut Client {
        &mut self.client
    }

    fn flush(&mut self) -> Result<(), RelayError> {
        while let Some(f) = self.client.poll_transmit() {
            self.carrier.send(f)?;
        }
        Ok(())
    }

    /// Sends what the client queued, then waits for its next event.
    pub async fn next_event(&mut self) -> Result<ClientEvent, RelayError> {
        loop {
            self.flush()?;
            if let Some(e) = self.client.poll_event() {
                self.flush()?;
                return Ok(e);
            }
            let chunk = std::future::poll_fn(|cx| self.carrier.poll_recv(cx)).await;
            match chunk {
                Some(frame) => self.client.handle_frame(&frame)?,
                None => {
                    let (code, reason) = self.carrier.close_info().unwrap_or((1006, String::new()));
                    return Err(RelayError::Closed(code, reason));
                }
            }
        }
    }
}
