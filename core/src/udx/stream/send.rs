//! The send side of one stream: what may go out now (windows, pacing, retransmissions first),
//! new DATA/END packets, and the deadlines the owner must wake up for.

use super::*;

impl Stream {
    /// The earliest time [`Stream::handle_timeout`] (or [`Stream::poll_transmit`], when paced
    /// sends are waiting) needs calling; the last time seen when something can go out at once.
    pub fn poll_timeout(&self) -> Option<Duration> {
        if self.destroy_pending {
            return Some(self.now);
        }
        if self.terminated {
            return None;
        }
        if self.ack_pending || self.heartbeat_pending || !self.messages.is_empty() {
            return Some(self.now);
        }
        if let Some(until) = self.linger_until {
            return Some(until);
        }
        let mut next: Option<Duration> = None;
        let mut consider = |t: Option<Duration>| {
            if let Some(t) = t {
                next = Some(next.map_or(t, |n: Duration| n.min(t)));
            }
        };
        consider(self.loss_timer.map(|t| t.0));
        consider(self.rack_timer);
        consider(self.zero_window_probe);
        consider(self.window_update_at);
        if let Some(interval) = self.config.keepalive {
            consider(Some(self.last_send + interval));
        }
        if self.has_reliable_work() && (self.pipe < self.bbr.cwnd() || self.tlp_probe) {
            consider(Some(
                self.pacing_next.saturating_sub(PACING_BURST).max(self.now),
            ));
        }
        next
    }

    pub(super) fn has_reliable_work(&self) -> bool {
        self.retransmit
            .iter()
            .any(|&s| self.index_of(s).is_some_and(|i| self.inflight[i].lost))
            || (self.unsent() > 0 && self.send_allowance() > 0)
            || (self.end_requested && self.end_seq.is_none() && self.unsent() == 0)
    }

    /// Bytes of new data the windows allow now. The peer's window bounds what is in the pipe
    /// (as in libudx); everything not cumulatively acknowledged stays within twice that window
    /// and [`MAX_OUT_OF_ORDER`] packets, what a receiver holds out of order: more would only be
    /// dropped there (after a burst of losses it would be most of what is sent).
    pub(super) fn send_allowance(&self) -> u64 {
        if self.inflight.len() >= MAX_OUT_OF_ORDER as usize {
            return 0;
        }
        let rwnd = u64::from(self.remote_rwnd);
        rwnd.saturating_sub(self.pipe_bytes)
            .min((2 * rwnd).saturating_sub(self.outstanding_bytes))
    }

    pub(super) fn index_of(&self, seq: u32) -> Option<usize> {
        let i = seq.wrapping_sub(self.remote_acked) as usize;
        (i < self.inflight.len()).then_some(i)
    }

    pub(super) fn header(&self, flags: Flags) -> Header {
        Header {
            flags,
            data_offset: 0,
            id: self.remote_id,
            rwnd: self.recv_window(),
            seq: self.seq,
            ack: self.ack,
        }
    }

    /// The next datagram to send to the peer, if one may go out at `now`.
    pub fn poll_transmit(&mut self, now: Duration) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        self.poll_transmit_into(now, &mut out).then_some(out)
    }

    /// [`Stream::poll_transmit`] appending the datagram to `out` (where a batch of datagrams
    /// is gathered for one send): a DATA packet's payload is copied once, from the stream's
    /// send buffer to `out`. Returns whether a datagram was appended.
    pub fn poll_transmit_into(&mut self, now: Duration, out: &mut Vec<u8>) -> bool {
        self.now = self.now.max(now);
        let now = self.now;
        let start = out.len();
        if self.destroy_pending {
            self.destroy_pending = false;
            packet::encode_into(out, &self.header(Flags::DESTROY), &[], [&[], &[]]);
            self.seq = self.seq.wrapping_add(1);
            self.events.push_back(Event::Closed);
            return true;
        }
        if self.terminated {
            return false;
        }
        if self.ack_pending {
            self.ack_pending = false;
            let sacks = self.sack_ranges();
            let flags = if sacks.is_empty() {
                Flags::ACK
            } else {
                Flags::SACK
            };
            packet::encode_into(out, &self.header(flags), &sacks, [&[], &[]]);
            self.sent_now();
            return true;
        }
        if let Some(message) = self.messages.pop_front() {
            packet::encode_into(out, &self.header(Flags::MESSAGE), &[], [&message, &[]]);
            self.sent_now();
            return true;
        }
        if self.heartbeat_pending {
            self.heartbeat_pending = false;
            packet::encode_into(out, &self.header(Flags::HEARTBEAT), &[], [&[], &[]]);
            self.sent_now();
            return true;
        }
        if self.closed {
            return false;
        }
        let probe = self.tlp_probe;
        if !probe && (self.pipe >= self.bbr.cwnd() || self.pacing_next > now + PACING_BURST) {
            return false;
        }
        // Retransmissions first; they ignore the receive window.
        while let Some(seq) = self.retransmit.pop_front() {
            let Some(i) = self.index_of(seq) else {
                continue;
            };
            if !self.inflight[i].lost || self.inflight[i].sacked {
                continue;
            }
            let header = Header {
                flags: if self.inflight[i].end {
                    Flags::END
                } else {
                    Flags::DATA
                },
                seq,
                ..self.header(Flags::DATA)
            };
            let (offset, len) = (self.inflight[i].offset, self.inflight[i].len as usize);
            packet::encode_into(out, &header, &[], self.send_range(offset, len));
            self.snapshot_send(i, now);
            let p = &mut self.inflight[i];
            p.lost = false;
            p.transmissions += 1;
            self.sent_reliable(out.len() - start, false);
            return true;
        }
        let unsent = self.unsent();
        if unsent > 0 {
            let allowed = self.send_allowance();
            let len = (self.max_payload() as u64).min(allowed).min(unsent as u64) as usize;
            if len == 0 {
                if self.pipe == 0 && self.zero_window_probe.is_none() {
                    self.zero_window_probe = Some(now + self.zero_window_backoff);
                }
                return false;
            }
            self.send_new(now, false, len, out);
            return true;
        }
        if self.end_requested && self.end_seq.is_none() {
            self.end_seq = Some(self.seq);
            self.send_new(now, true, 0, out);
            return true;
        }
        // Nothing to send though the window is open: the application is the bottleneck.
        if self.pipe < self.bbr.cwnd() {
            self.app_limited_until = (self.delivered + self.pipe_bytes).max(1);
        }
        self.tlp_probe = false;
        false
    }

    /// Bytes written and not sent yet (the back of the send buffer).
    pub(super) fn unsent(&self) -> usize {
        (self.send_end - self.send_next) as usize
    }

    /// The `len` bytes at stream offset `offset` (sent and not acknowledged, or unsent), as the
    /// two pieces the send buffer's ring holds them in.
    pub(super) fn send_range(&self, offset: u64, len: usize) -> [&[u8]; 2] {
        let at = (offset - self.send_base) as usize;
        let (a, b) = self.send_buf.as_slices();
        if at >= a.len() {
            [&b[at - a.len()..at - a.len() + len], &[]]
        } else {
            let first = &a[at..(at + len).min(a.len())];
            [first, &b[..len - first.len()]]
        }
    }

    /// Drops the front of the send buffer that no packet in flight needs any more.
    pub(super) fn release_acked(&mut self) {
        let keep_from = self.inflight.front().map_or(self.send_next, |p| p.offset);
        let n = (keep_from - self.send_base) as usize;
        if n > 0 {
            self.send_buf.drain(..n);
            self.send_base = keep_from;
        }
    }

    /// Sends a new DATA packet with the next `len` unsent bytes (or an END when `end`),
    /// appending it to `out`.
    pub(super) fn send_new(&mut self, now: Duration, end: bool, len: usize, out: &mut Vec<u8>) {
        let start = out.len();
        let flags = if end { Flags::END } else { Flags::DATA };
        let mut header = self.header(flags);
        // One probe at a time, never as a tail-loss probe (libudx `_send_new_packet`).
        let padding = (self.mtu_probe_wanted
            && !end
            && len > 0
            && !self.tlp_probe
            && self.remote_changing.is_none())
        .then(|| self.probe_padding(len))
        .flatten();
        if let Some(padding) = padding {
            header.data_offset = padding;
            self.mtu_probe_count += 1;
            self.mtu_probe_wanted = false;
        }
        let offset = self.send_next;
        packet::encode_into(out, &header, &[], self.send_range(offset, len));
        self.send_next += len as u64;
        self.outstanding_bytes += len as u64;
        self.inflight.push_back(Sent {
            seq: self.seq,
            end,
            offset,
            len: len as u32,
            sent_at: now,
            transmissions: 1,
            sacked: false,
            lost: false,
            delivered: 0,
            delivered_time: now,
            first_sent_time: now,
            app_limited: false,
            probe: padding.is_some(),
        });
        self.seq = self.seq.wrapping_add(1);
        let i = self.inflight.len() - 1;
        self.snapshot_send(i, now);
        self.sent_reliable(out.len() - start, true);
    }

    /// Records the delivery-rate state a packet carries from this transmission.
    pub(super) fn snapshot_send(&mut self, i: usize, now: Duration) {
        if self.pipe == 0 {
            self.first_sent_time = now;
            self.delivered_time = now;
        }
        let (delivered, delivered_time, first_sent_time, app_limited) = (
            self.delivered,
            self.delivered_time,
            self.first_sent_time,
            self.app_limited_until != 0,
        );
        let p = &mut self.inflight[i];
        self.sent_order.push_back((now, p.seq));
        p.sent_at = now;
        p.delivered = delivered;
        p.delivered_time = delivered_time;
        p.first_sent_time = first_sent_time;
        p.app_limited = app_limited;
        self.pipe += 1;
        self.pipe_bytes += u64::from(p.len);
    }

    /// A DATA/END packet of `bytes` bytes went out: pacing and the loss timer.
    pub(super) fn sent_reliable(&mut self, bytes: usize, new_data: bool) {
        let now = self.now;
        let rate = self.bbr.pacing_rate().max(1);
        let gap = Duration::from_nanos((bytes as u64 * 1_000_000_000) / rate);
        // A sender woken late (coarse timers, a busy thread) may catch up on up to
        // PACING_CATCH_UP of schedule it missed, as libudx's token bucket refills for the time
        // that passed; a longer gap (idle, or a stall) is not made up for.
        self.pacing_next = self.pacing_next.max(now.saturating_sub(PACING_CATCH_UP)) + gap;
        self.tlp_probe = false;
        match self.loss_timer {
            Some((_, LossMode::Rto)) => {}
            Some(_) if !new_data => {}
            _ => self.arm_loss_timer(now),
        }
        self.sent_now();
    }

    pub(super) fn sent_now(&mut self) {
        self.last_send = self.now;
    }
}
