//! Acknowledgements and loss recovery of one stream: cumulative and selective acks, RTT and RTO,
//! RACK loss detection, the tail-loss probe and the retransmission timeout, and the rate samples
//! BBR learns from.

use super::*;

impl Stream {
    /// Takes `inflight[i]` out of the pipe as lost. A lost probe is resent without its padding
    /// and counts as a failed probe. Returns whether it was a probe.
    pub(super) fn mark_lost(&mut self, i: usize) -> bool {
        let p = &mut self.inflight[i];
        p.lost = true;
        self.pipe -= 1;
        self.pipe_bytes -= u64::from(p.len);
        let probe = core::mem::take(&mut p.probe);
        if probe {
            self.mtu_probe_lost();
        }
        probe
    }

    pub(super) fn process_ack(&mut self, now: Duration, ack: u32, sacks: &[SackRange]) {
        let prior_inflight = self.pipe;
        let mut rs = RateSample {
            prior_inflight,
            ..RateSample::default()
        };
        // The newly delivered packet that was sent last.
        let mut newest: Option<SentInfo> = None;
        let advance = ack.wrapping_sub(self.remote_acked) as usize;
        let cumulative = if advance <= self.inflight.len() {
            advance
        } else {
            0
        };
        for _ in 0..cumulative {
            let Some(p) = self.inflight.pop_front() else {
                break;
            };
            self.remote_acked = self.remote_acked.wrapping_add(1);
            self.outstanding_bytes -= u64::from(p.len);
            if !p.sacked {
                self.on_delivered(now, p.info(), &mut rs, &mut newest);
            }
        }
        if cumulative > 0 {
            self.release_acked();
        }
        if let Some(from) = self.remote_changing {
            if !seq_gt(from, self.remote_acked) {
                // Everything sent to the old remote is acknowledged.
                self.remote_changing = None;
                self.remote_changed = true;
            }
        }
        let mut cache = core::mem::take(&mut self.sack_cache);
        let mut applied = Vec::with_capacity(sacks.len());
        for range in sacks {
            let len = self.inflight.len();
            let start = range.start.wrapping_sub(self.remote_acked) as usize;
            let end = range.end.wrapping_sub(self.remote_acked) as usize;
            let start = if start > (1 << 31) { 0 } else { start };
            if end > (1 << 31) {
                continue;
            }
            let end = end.min(len);
            if start >= end {
                continue;
            }
            let (from, to) = (
                self.remote_acked.wrapping_add(start as u32),
                self.remote_acked.wrapping_add(end as u32),
            );
            applied.push((from, to));
            // The part the previous acknowledgement already applied (the same block, grown at
            // its end by what arrived since) is skipped.
            let mut first = start;
            if let Some(&(_, done)) = cache.iter().find(|c| c.0 == from) {
                let done = done.wrapping_sub(self.remote_acked) as usize;
                if done <= end {
                    first = first.max(done);
                }
            }
            for i in first..end {
                if !self.inflight[i].sacked {
                    self.inflight[i].sacked = true;
                    let info = self.inflight[i].info();
                    self.on_delivered(now, info, &mut rs, &mut newest);
                }
            }
        }
        cache.clear();
        cache.extend(applied);
        self.sack_cache = cache;
        if rs.newly_acked == 0 {
            return;
        }
        self.delivered_time = now;
        if self.app_limited_until != 0 && self.delivered > self.app_limited_until {
            self.app_limited_until = 0;
        }
        if let Some(p) = newest {
            let p_delivered = p.delivered;
            rs.prior_delivered = p.delivered;
            rs.is_app_limited = p.app_limited;
            self.first_sent_time = p.sent_at;
            let send_elapsed = p.sent_at.saturating_sub(p.first_sent_time);
            let ack_elapsed = now.saturating_sub(p.delivered_time);
            let interval = send_elapsed.max(ack_elapsed);
            let min_rtt = self.bbr.min_rtt().unwrap_or(Duration::ZERO);
            if !interval.is_zero() && interval >= min_rtt {
                let bytes = self.delivered - p_delivered;
                rs.delivery_rate = (bytes as f64 / interval.as_secs_f64()) as u64;
            }
        }
        // Progress: reset the backoff and re-arm the tail-loss probe.
        self.timeouts = 0;
        self.rto = self.computed_rto();
        self.loss_timer = None;
        self.detect_lost(now, &mut rs);
        if self.ca != CaState::Open && !seq_gt(self.high_seq, self.remote_acked) {
            self.ca = CaState::Open;
            self.bbr.exit_recovery();
        }
        rs.inflight = self.pipe;
        self.bbr.on_ack(now, &rs, self.delivered);
        self.arm_loss_timer(now);
    }

    pub(super) fn on_delivered(
        &mut self,
        now: Duration,
        p: SentInfo,
        rs: &mut RateSample,
        newest: &mut Option<SentInfo>,
    ) {
        let (sent_at, tx, seq) = (p.sent_at, p.transmissions, p.seq);
        self.mtu_on_acked(p.probe);
        if !p.lost {
            self.pipe -= 1;
            self.pipe_bytes -= p.payload_len;
        }
        self.delivered += p.payload_len + HEADER_LEN as u64;
        rs.newly_acked += 1;
        let rtt = now.saturating_sub(sent_at);
        if tx == 1 {
            let sample = rtt.min(MAX_RTT_SAMPLE);
            rs.rtt = Some(rs.rtt.map_or(sample, |r: Duration| r.min(sample)));
            self.update_rtt(sample);
        }
        let ambiguous = tx > 1 && self.bbr.min_rtt().is_some_and(|m| rtt < m);
        if !ambiguous {
            let newer = match self.rack.xmit_ts {
                None => true,
                Some(ts) => sent_at > ts || (sent_at == ts && seq_gt(seq, self.rack.end_seq)),
            };
            if newer {
                self.rack = Rack {
                    xmit_ts: Some(sent_at),
                    end_seq: seq,
                    rtt,
                };
            }
        }
        if newest.is_none_or(|n| p.delivered >= n.delivered) {
            *newest = Some(p);
        }
    }

    pub(super) fn update_rtt(&mut self, sample: Duration) {
        match self.srtt {
            None => {
                self.srtt = Some(sample);
                self.rttvar = sample / 2;
            }
            Some(srtt) => {
                let diff = srtt.abs_diff(sample);
                self.rttvar = (self.rttvar * 3 + diff) / 4;
                self.srtt = Some((srtt * 7 + sample) / 8);
            }
        }
    }

    pub(super) fn computed_rto(&self) -> Duration {
        match self.srtt {
            None => INITIAL_RTO,
            Some(srtt) => (srtt + self.rttvar * 4).clamp(MIN_RTO, MAX_RTO),
        }
    }

    /// RACK: a packet sent before the most recently delivered one is lost once it is overdue by
    /// the RACK RTT plus a reordering window of min_rtt/4.
    pub(super) fn detect_lost(&mut self, now: Duration, rs: &mut RateSample) {
        self.rack_timer = None;
        let Some(rack_ts) = self.rack.xmit_ts else {
            self.drop_stale_sends();
            return;
        };
        let min_rtt = self.bbr.min_rtt().unwrap_or(self.rack.rtt);
        let reo_wnd = (min_rtt / 4).min(self.srtt.unwrap_or(min_rtt));
        let mut newly_lost = 0;
        let mut probes_lost = 0;
        // Oldest transmission first: deadlines grow with the send time, so the walk stops at
        // the first packet still in flight and not overdue, or sent after the newest delivery.
        loop {
            self.drop_stale_sends();
            let Some(&(sent_at, seq)) = self.sent_order.front() else {
                break;
            };
            if sent_at > rack_ts || (sent_at == rack_ts && !seq_gt(self.rack.end_seq, seq)) {
                break;
            }
            let deadline = sent_at + self.rack.rtt + reo_wnd;
            if now < deadline {
                self.rack_timer = Some(deadline);
                break;
            }
            self.sent_order.pop_front();
            if let Some(i) = self.index_of(seq) {
                if self.mark_lost(i) {
                    probes_lost += 1;
                }
                self.retransmit.push_back(seq);
                newly_lost += 1;
            }
        }
        rs.newly_lost += newly_lost;
        // Lost MTU probes say nothing about congestion (libudx `rack_detect_loss`).
        if newly_lost > probes_lost && self.ca == CaState::Open {
            self.ca = CaState::Recovery;
            self.high_seq = self.seq;
            self.bbr
                .enter_recovery(self.pipe, rs.newly_acked, self.delivered);
        }
    }

    /// Drops the transmissions at the front of `sent_order` that are no longer in flight:
    /// acknowledged, selectively acknowledged, marked lost, or sent again since.
    pub(super) fn drop_stale_sends(&mut self) {
        while let Some(&(sent_at, seq)) = self.sent_order.front() {
            let live = self.index_of(seq).is_some_and(|i| {
                let p = &self.inflight[i];
                !p.sacked && !p.lost && p.sent_at == sent_at
            });
            if live {
                break;
            }
            self.sent_order.pop_front();
        }
    }

    pub(super) fn arm_loss_timer(&mut self, now: Duration) {
        if self.inflight.is_empty() {
            self.loss_timer = None;
            return;
        }
        let pto = match self.srtt {
            Some(srtt) => {
                let extra = if self.pipe == 1 {
                    Duration::from_millis(2)
                } else {
                    Duration::ZERO
                };
                (srtt * 2 + extra).min(self.rto)
            }
            None => self.rto,
        };
        self.loss_timer = Some((now + pto, LossMode::Tlp));
    }

    /// Runs the timers that are due at `now`.
    pub fn handle_timeout(&mut self, now: Duration) {
        self.now = self.now.max(now);
        let now = self.now;
        if self.terminated {
            return;
        }
        if let Some(until) = self.linger_until {
            if now >= until {
                self.clear();
                self.terminated = true;
                self.linger_until = None;
            }
            return;
        }
        if self.rack_timer.is_some_and(|t| now >= t) {
            let mut rs = RateSample::default();
            self.detect_lost(now, &mut rs);
        }
        if let Some((deadline, mode)) = self.loss_timer {
            if now >= deadline {
                match mode {
                    LossMode::Tlp => self.fire_tlp(now),
                    LossMode::Rto => self.fire_rto(now),
                }
                if self.terminated {
                    return;
                }
            }
        }
        if self.window_update_at.is_some_and(|t| now >= t) {
            self.window_update_at = None;
            if !self.closed && self.remote_end_seq.is_none() && !self.window_closed {
                self.ack_pending = true;
                self.window_update_backoff *= 2;
                if self.window_update_backoff <= MAX_WINDOW_UPDATE {
                    self.window_update_at = Some(now + self.window_update_backoff);
                }
            }
        }
        if self.zero_window_probe.is_some_and(|t| now >= t) {
            self.heartbeat_pending = true;
            self.zero_window_backoff = (self.zero_window_backoff * 2).min(MAX_RTO);
            self.zero_window_probe = Some(now + self.zero_window_backoff);
        }
        if let Some(interval) = self.config.keepalive {
            if !self.closed && now >= self.last_send + interval {
                self.heartbeat_pending = true;
            }
        }
    }

    /// The first packet from the peer arrived and did not acknowledge what we have in flight,
    /// with no RTT measured yet: what we sent before the peer's socket existed (a receiver that
    /// half-closes at once, before its sender started) was most likely dropped, and waiting
    /// for the tail-loss probe would cost a whole initial RTO (1 s). Probe now instead, as the
    /// TLP would (the newest unacknowledged packet, no congestion response); if the packets
    /// only crossed the peer's in flight, this costs one duplicate packet.
    pub(super) fn first_contact(&mut self, now: Duration) {
        if self.srtt.is_none()
            && matches!(self.loss_timer, Some((_, LossMode::Tlp)))
            && self.inflight.iter().any(|p| !p.sacked && !p.lost)
        {
            self.fire_tlp(now);
        }
    }

    pub(super) fn fire_tlp(&mut self, now: Duration) {
        let has_new = self.unsent() > 0 && self.send_allowance() > 0;
        if !has_new {
            // Probe with the highest unacknowledged packet.
            if let Some(i) = self.inflight.iter().rposition(|p| !p.sacked && !p.lost) {
                let seq = self.inflight[i].seq;
                self.mark_lost(i);
                self.retransmit.push_front(seq);
            }
        }
        self.tlp_probe = true;
        self.loss_timer = Some((now + self.rto, LossMode::Rto));
    }

    pub(super) fn fire_rto(&mut self, now: Duration) {
        self.timeouts += 1;
        if self.timeouts > self.config.max_timeouts {
            self.fail(StreamError::Timeout);
            return;
        }
        self.rto = (self.rto * 2).min(MAX_RTO);
        let mut requeue = Vec::new();
        for i in 0..self.inflight.len() {
            let p = &self.inflight[i];
            if !p.sacked && !p.lost {
                requeue.push(p.seq);
                self.mark_lost(i);
            }
        }
        // Oldest first, ahead of anything RACK queued earlier.
        for seq in requeue.into_iter().rev() {
            self.retransmit.push_front(seq);
        }
        self.ca = CaState::Loss;
        self.high_seq = self.seq;
        self.bbr.on_rto();
        self.loss_timer = Some((now + self.rto, LossMode::Rto));
    }
}
