//! The receive side of one stream: datagrams in, in-order delivery, the out-of-order buffer and
//! its SACK blocks, the advertised window, events out.

use super::*;

impl Stream {
    /// The next event, if any. Polling `Data` frees receive window; call
    /// [`Stream::poll_transmit`] afterwards, as a window update may be due.
    pub fn poll_event(&mut self) -> Option<Event> {
        let mut event = self.events.pop_front()?;
        if let Event::Data(bytes) = &mut event {
            // A chunk started with room for more that did not come (see `accept`).
            if bytes.capacity() > 2 * bytes.len() + 4096 {
                bytes.shrink_to_fit();
            }
        }
        if let Event::Message(bytes) = &event {
            self.queued_message_bytes -= bytes.len();
        }
        if let Event::Data(bytes) = &event {
            self.queued_bytes -= bytes.len();
            if self.window_closed && self.recv_window() as usize >= self.config.max_payload * 4 {
                self.window_closed = false;
                if !self.terminated && self.remote_end_seq.is_none() {
                    self.ack_pending = true;
                    let first = self
                        .srtt
                        .map_or(WINDOW_UPDATE_FIRST, |s| (s * 2).max(MIN_PERSIST));
                    self.window_update_backoff = first;
                    self.window_update_at = Some(self.now + first);
                }
            }
        }
        Some(event)
    }

    /// Bytes held out of order at most: twice the receive window. The window bounds what the
    /// sender has in flight, not what it has had selectively acknowledged, so a hole that
    /// takes a retransmission or two to fill leaves more than one window above it.
    pub(super) fn out_of_order_limit(&self) -> usize {
        2 * self.config.recv_window as usize
    }

    /// The advertised window: the receive buffer minus the bytes delivered and not yet taken
    /// by the owner. Out-of-order packets do not count (as in libudx): they sit in the
    /// sender's window already, and counting them would shrink the window by a whole
    /// bandwidth-delay product after every loss. They are bounded separately
    /// ([`Stream::out_of_order_limit`] bytes, [`MAX_OUT_OF_ORDER`] packets).
    pub(super) fn recv_window(&self) -> u32 {
        let used = self.queued_bytes.min(u32::MAX as usize) as u32;
        self.config.recv_window.saturating_sub(used)
    }

    /// Feeds one datagram addressed to this stream. Datagrams for another id are ignored;
    /// bytes that are not UDX are a typed error (the stream is unaffected).
    pub fn handle_datagram(&mut self, now: Duration, bytes: &[u8]) -> Result<(), DecodeError> {
        let packet = packet::decode(bytes)?;
        self.now = self.now.max(now);
        let now = self.now;
        let h = packet.header;
        if h.id != self.local_id || self.terminated {
            return Ok(());
        }
        if h.flags.contains(Flags::DESTROY) {
            if self.closed {
                self.clear();
                self.terminated = true;
                self.linger_until = None;
            } else {
                self.fail(StreamError::Reset);
            }
            return Ok(());
        }
        if self.closed {
            // Lingering: answer retransmissions so the peer can finish too.
            if h.flags.is_sequenced() || h.flags.contains(Flags::HEARTBEAT) {
                self.ack_pending = true;
                self.linger_until = Some(now + self.linger());
            }
            return Ok(());
        }
        self.remote_rwnd = h.rwnd;
        if h.rwnd > 0 {
            self.zero_window_probe = None;
            self.zero_window_backoff = self.persist_interval();
        }
        self.process_ack(now, h.ack, &packet.sacks);
        if self.terminated {
            return Ok(());
        }
        if !self.heard_from_peer {
            self.heard_from_peer = true;
            self.first_contact(now);
        }
        if h.flags.is_sequenced() {
            self.window_update_at = None;
            self.receive_sequenced(h.seq, h.flags, packet.payload);
            self.ack_pending = true;
        } else if h.flags.contains(Flags::MESSAGE)
            && self.queued_message_bytes + packet.payload.len() <= MAX_QUEUED_MESSAGE_BYTES
        {
            self.queued_message_bytes += packet.payload.len();
            self.events
                .push_back(Event::Message(packet.payload.to_vec()));
        }
        if h.flags.contains(Flags::HEARTBEAT) {
            self.ack_pending = true;
        }
        self.check_closed();
        Ok(())
    }

    pub(super) fn receive_sequenced(&mut self, seq: u32, flags: Flags, payload: &[u8]) {
        if let Some(end) = self.remote_end_seq {
            if seq_gt(seq, end) || seq == end {
                return;
            }
        }
        let offset = seq.wrapping_sub(self.ack);
        if offset >= 1 << 31 {
            return; // a duplicate of something already delivered
        }
        if offset == 0 {
            if payload.len() > self.config.recv_window as usize
                || self.queued_bytes > 2 * self.config.recv_window as usize
            {
                return; // the peer ignores our window: drop, it will retransmit
            }
            self.accept(seq, flags.contains(Flags::END), payload);
            // The run that starts here (if any) is delivered now, up to an END.
            self.out_of_order_runs.remove(&self.ack_ext);
            // Nothing is delivered past the END.
            while self.remote_end_seq.is_none() {
                let Some(next) = self.out_of_order.remove(&self.ack_ext) else {
                    break;
                };
                self.out_of_order_bytes -= next.payload.len();
                let seq = self.ack;
                self.accept(seq, next.end, &next.payload);
            }
            if self.remote_end_seq.is_some() {
                self.out_of_order.clear();
                self.out_of_order_runs.clear();
                self.out_of_order_bytes = 0;
            }
        } else if offset < MAX_OUT_OF_ORDER {
            let key = self.ack_ext + u64::from(offset);
            if !self.out_of_order.contains_key(&key)
                && self.out_of_order_bytes + payload.len() <= self.out_of_order_limit()
            {
                self.out_of_order_bytes += payload.len();
                self.last_arrival = Some(key);
                self.add_to_runs(key);
                self.out_of_order.insert(
                    key,
                    Received {
                        end: flags.contains(Flags::END),
                        payload: payload.to_vec(),
                    },
                );
            }
        }
        if (self.recv_window() as usize) < self.config.max_payload {
            self.window_closed = true;
        }
    }

    /// Delivers the payload of packet `seq` in order. Consecutive payloads join one `Data`
    /// event of up to [`DATA_CHUNK`] bytes while the owner has not polled it yet (one copy and
    /// no allocation per packet).
    pub(super) fn accept(&mut self, seq: u32, end: bool, payload: &[u8]) {
        self.ack = self.ack.wrapping_add(1);
        self.ack_ext += 1;
        if !payload.is_empty() {
            self.queued_bytes += payload.len();
            match self.events.back_mut() {
                Some(Event::Data(last)) if last.len() + payload.len() <= DATA_CHUNK => {
                    last.extend_from_slice(payload);
                }
                _ => {
                    // A full-size packet is likely followed by more: room for a whole chunk
                    // (`poll_event` gives back what stays unused).
                    let room = if payload.len() >= 1024 {
                        DATA_CHUNK
                    } else {
                        payload.len()
                    };
                    let mut data = Vec::with_capacity(room);
                    data.extend_from_slice(payload);
                    self.events.push_back(Event::Data(data));
                }
            }
        }
        if end {
            self.remote_end_seq = Some(seq);
            self.events.push_back(Event::Ended);
        }
    }

    /// SACK blocks above the cumulative ack: the block holding the most recent arrival first
    /// (so the sender always learns about what was just received, RFC 2018 style), then the
    /// rest from the lowest up, at most [`MAX_SACKS`].
    pub(super) fn sack_ranges(&self) -> Vec<SackRange> {
        let to_seq = |key: u64| self.ack.wrapping_add((key - self.ack_ext) as u32);
        let recent = self.last_arrival.and_then(|k| {
            self.out_of_order_runs
                .range(..=k)
                .next_back()
                .filter(|r| k < *r.1)
                .map(|(&a, &b)| (a, b))
        });
        let mut out = Vec::with_capacity(self.out_of_order_runs.len().min(MAX_SACKS));
        out.extend(recent);
        for (&a, &b) in &self.out_of_order_runs {
            if out.len() == MAX_SACKS {
                break;
            }
            if recent.is_none_or(|r| r.0 != a) {
                out.push((a, b));
            }
        }
        out.into_iter()
            .map(|(a, b)| SackRange {
                start: to_seq(a),
                end: to_seq(b),
            })
            .collect()
    }

    /// Adds `key` (not buffered before) to the runs, joining the runs either side.
    pub(super) fn add_to_runs(&mut self, key: u64) {
        let start = match self.out_of_order_runs.range(..key).next_back() {
            Some((&a, &b)) if b == key => a,
            _ => key,
        };
        let end = self.out_of_order_runs.remove(&(key + 1)).unwrap_or(key + 1);
        self.out_of_order_runs.insert(start, end);
    }
}
