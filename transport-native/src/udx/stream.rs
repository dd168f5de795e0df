//! The handle side of a UDX stream: [`UdxStream`]'s calls (they become commands to the driver),
//! its events, and bytes through [`AsyncRead`]/[`AsyncWrite`].

use super::*;

impl UdxStream {
    /// Our stream id.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// A handle for elsewhere: byte counters and `destroy`.
    pub fn handle(&self) -> StreamHandle {
        StreamHandle {
            id: self.id,
            commands: self.commands.clone(),
            traffic: self.traffic.clone(),
        }
    }

    /// Queues an owned buffer; waits while more than 1 MiB is waiting to be sent. (The
    /// [`AsyncWrite`] methods do the same for borrowed slices.)
    pub async fn write_owned(&self, bytes: Vec<u8>) -> io::Result<()> {
        self.write_queued(bytes)?.await
    }

    /// Queues `bytes` at once, as [`UdxStream::write_owned`] does, and returns what resolves
    /// when the stream holds less than its high-water mark unsent again. The stream stays free
    /// meanwhile: a caller carrying both directions keeps reading while it waits for room,
    /// which it must (two peers that each wait for room without reading fill each other's
    /// receive windows and wait for good).
    pub fn write_queued(
        &self,
        bytes: Vec<u8>,
    ) -> io::Result<impl std::future::Future<Output = io::Result<()>> + Send + 'static> {
        let (done, rx) = oneshot::channel();
        self.traffic
            .written
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        self.commands
            .send(Command::Write {
                id: self.id,
                bytes,
                done,
            })
            .map_err(|_| gone())?;
        Ok(async move { rx.await.map_err(|_| gone())?.map_err(usage) })
    }

    /// Ends the write side: END follows the written bytes (the peer reads EOF).
    pub fn end(&self) -> io::Result<()> {
        self.ended.store(true, Ordering::Relaxed);
        self.commands
            .send(Command::End(self.id))
            .map_err(|_| gone())
    }

    /// Sends an unreliable MESSAGE datagram (at most one packet's payload, 1152 bytes by
    /// default).
    pub fn send_message(&self, bytes: Vec<u8>) -> io::Result<()> {
        if bytes.len() > self.max_payload {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                UsageError::MessageTooLarge {
                    len: bytes.len(),
                    max: self.max_payload,
                },
            ));
        }
        self.commands
            .send(Command::Message(self.id, bytes))
            .map_err(|_| gone())
    }

    /// Moves the stream to the peer's stream `remote_id` at `remote` mid-flight (libudx
    /// `udx_stream_change_remote`; hyperdht upgrades a relayed connection to a direct path
    /// this way). Everything sent from now on goes there, retransmissions of earlier packets
    /// included; sequence numbers continue, so no byte is lost or delivered twice. Datagrams
    /// from the previous address are still accepted (a stream takes its packets from any
    /// address, as in libudx). This resolves when the change completes: once every
    /// packet sent before it was acknowledged (as udx-native's `changeRemote` promise). Fails if a change is still pending
    /// ([`UsageError::RemoteChanging`]) or the stream closed first.
    pub async fn change_remote(&self, remote_id: u32, remote: SocketAddr) -> io::Result<()> {
        let (done, rx) = oneshot::channel();
        self.commands
            .send(Command::ChangeRemote {
                id: self.id,
                remote_id,
                remote,
                done,
            })
            .map_err(|_| gone())?;
        rx.await
            .map_err(|_| {
                io::Error::new(
                    io::ErrorKind::BrokenPipe,
                    "the stream finished before its remote change completed",
                )
            })?
            .map_err(usage)
    }

    /// Moves the stream, live, to socket `to`, and there to the peer's stream `remote_id` at
    /// `remote`: see [`UdxSocket::move_stream`]. The handle keeps working as before (its calls
    /// follow the stream).
    pub async fn move_to(
        &self,
        to: &UdxSocket,
        remote_id: u32,
        remote: SocketAddr,
    ) -> io::Result<()> {
        move_via(&self.commands, self.id, to, remote_id, remote).await
    }

    /// Destroys the stream (the peer sees a reset).
    pub fn destroy(&self) -> io::Result<()> {
        self.commands
            .send(Command::Destroy(self.id))
            .map_err(|_| gone())
    }

    /// The engine's counters for this stream; fails once the stream is gone.
    pub async fn stats(&self) -> io::Result<StreamStats> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Stats(self.id, tx))
            .map_err(|_| gone())?;
        rx.await
            .map_err(|_| gone())?
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotConnected, "the stream has finished"))
    }

    /// The next event; `None` once the stream finished and its events were drained. Do not mix
    /// with reading through [`AsyncRead`] (whichever takes an event consumes it).
    pub async fn next_event(&mut self) -> Option<Event> {
        let event = self.events.recv().await?;
        self.took(&event);
        Some(event)
    }

    /// Waits until the stream has closed: both sides ended and everything was acknowledged
    /// (or this side destroyed it). Data and messages still arriving are discarded; a reset or
    /// timeout is an error.
    pub async fn closed(&mut self) -> io::Result<()> {
        loop {
            match self.next_event().await {
                Some(Event::Closed) | None => return Ok(()),
                Some(Event::Error(e)) => return Err(stream_failed(&e)),
                Some(_) => {}
            }
        }
    }

    /// A MESSAGE datagram that arrived while bytes were being read through [`AsyncRead`].
    pub fn take_message(&mut self) -> Option<Vec<u8>> {
        self.messages.pop_front()
    }

    /// Gives back the buffer of a [`Event::Data`] taken with [`UdxStream::next_event`] once
    /// done with it: the engine fills it again instead of allocating a new one (optional).
    pub fn recycle(&mut self, buf: Vec<u8>) {
        if self.spare.len() < 4 {
            self.spare.push(buf);
        }
    }

    fn took(&mut self, event: &Event) {
        if let Event::Data(d) = event {
            self.traffic
                .read
                .fetch_add(d.len() as u64, Ordering::Relaxed);
        }
        if let Event::Data(d) | Event::Message(d) = event {
            self.unreported += d.len();
            if self.unreported >= CONSUMED_BATCH {
                let n = std::mem::take(&mut self.unreported);
                let spare = std::mem::take(&mut self.spare);
                let _ = self.commands.send(Command::Consumed(self.id, n, spare));
            }
        }
    }

    fn poll_pending_write(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(rx) = &mut self.pending_write {
            let result = ready!(Pin::new(rx).poll(cx));
            self.pending_write = None;
            result.map_err(|_| gone())?.map_err(usage)?;
        }
        Poll::Ready(Ok(()))
    }
}

impl Drop for UdxStream {
    fn drop(&mut self) {
        let _ = self.commands.send(Command::Dropped {
            id: self.id,
            graceful: self.ended.load(Ordering::Relaxed),
        });
    }
}

impl AsyncRead for UdxStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.read_pos < this.read_buf.len() {
                let n = buf.remaining().min(this.read_buf.len() - this.read_pos);
                buf.put_slice(&this.read_buf[this.read_pos..this.read_pos + n]);
                this.read_pos += n;
                return Poll::Ready(Ok(()));
            }
            match &this.read_end {
                Some(Ok(())) => return Poll::Ready(Ok(())),
                Some(Err(e)) => return Poll::Ready(Err(stream_failed(e))),
                None => {}
            }
            let event = ready!(this.events.poll_recv(cx));
            if let Some(event) = &event {
                this.took(event);
            }
            match event {
                Some(Event::Data(d)) => {
                    this.read_buf = d;
                    this.read_pos = 0;
                }
                Some(Event::Message(m)) => {
                    if this.messages.len() == MESSAGE_QUEUE {
                        this.messages.pop_front();
                    }
                    this.messages.push_back(m);
                }
                Some(Event::Ended | Event::Closed) => this.read_end = Some(Ok(())),
                Some(Event::Error(e)) => this.read_end = Some(Err(e)),
                None => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::BrokenPipe,
                        "the UDX stream is gone (finished, or its socket driver stopped)",
                    )))
                }
            }
        }
    }
}

impl AsyncWrite for UdxStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_pending_write(cx))?;
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let n = buf.len().min(WRITE_CHUNK);
        this.traffic.written.fetch_add(n as u64, Ordering::Relaxed);
        let (done, rx) = oneshot::channel();
        this.commands
            .send(Command::Write {
                id: this.id,
                bytes: buf[..n].to_vec(),
                done,
            })
            .map_err(|_| gone())?;
        this.pending_write = Some(rx);
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().poll_pending_write(cx)
    }

    /// Sends END after everything written (it does not wait for the peer's acknowledgement).
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_pending_write(cx))?;
        if !this.ended.load(Ordering::Relaxed) {
            this.end()?;
        }
        Poll::Ready(Ok(()))
    }
}
