//! BBR (v1-style) congestion control as libudx runs it (`udx_bbr.c`, net-protocols §3.3):
//! STARTUP at gain 2/ln2, DRAIN, PROBE_BW cycling pacing gains `[1.25, 0.75, 1 ×6]` with
//! `cwnd_gain = 2`, and PROBE_RTT (cwnd 4 for 200 ms) when the 10 s min-RTT sample expires.
//! The window is counted in packets; pacing is a rate in bytes per second that the stream turns
//! into "next send time" deadlines.

use core::time::Duration;

/// STARTUP/DRAIN gain, 2/ln 2.
const HIGH_GAIN: f64 = 2.885;
/// PROBE_BW pacing gains, one per min-RTT phase.
const PACING_GAINS: [f64; 8] = [1.25, 0.75, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0];
/// PROBE_BW window gain.
const CWND_GAIN: f64 = 2.0;
/// Smallest window, in packets.
pub const MIN_CWND: u32 = 4;
/// Initial window, in packets.
pub const INITIAL_CWND: u32 = 10;
/// Rounds the bottleneck-bandwidth max filter spans.
const BW_WINDOW_ROUNDS: u64 = 10;
/// How long a min-RTT sample stays valid.
const MIN_RTT_WINDOW: Duration = Duration::from_secs(10);
/// How long PROBE_RTT holds the window at [`MIN_CWND`].
const PROBE_RTT_DURATION: Duration = Duration::from_millis(200);
/// Rounds each of the two ack-aggregation maxima spans.
const EXTRA_ACKED_WIN_ROUNDS: u32 = 5;
/// The ack-aggregation allowance is at most this much time at the estimated bandwidth.
const EXTRA_ACKED_MAX: Duration = Duration::from_millis(100);
/// Pacing rate before the first bandwidth sample (bytes/s), as libudx starts.
pub const INITIAL_PACING_RATE: u64 = 25_000_000;

/// The BBR mode, as udx-native exposes it in `bbrState`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BbrState {
    /// Exponential search for the bottleneck bandwidth.
    Startup,
    /// Draining the queue STARTUP built.
    Drain,
    /// Steady state, cycling pacing gains.
    ProbeBw,
    /// Briefly shrinking the window to re-measure the minimum RTT.
    ProbeRtt,
}

/// A delivery-rate sample taken on one acknowledgement.
#[derive(Clone, Copy, Debug, Default)]
pub struct RateSample {
    /// Bytes delivered per second over the sample interval (0 if no valid sample).
    pub delivery_rate: u64,
    /// The connection's delivered count when the newest acked packet was sent.
    pub prior_delivered: u64,
    /// Whether that packet was sent while the application had nothing to send.
    pub is_app_limited: bool,
    /// An RTT sample from a never-retransmitted packet.
    pub rtt: Option<Duration>,
    /// Packets newly acknowledged (cumulatively or selectively).
    pub newly_acked: u32,
    /// Packets newly marked lost.
    pub newly_lost: u32,
    /// Packets in flight before this acknowledgement.
    pub prior_inflight: u32,
    /// Packets in flight after it.
    pub inflight: u32,
}

/// The BBR state machine.
#[derive(Debug)]
pub struct Bbr {
    state: BbrState,
    mss: u64,
    cwnd: u32,
    pacing_rate: u64,
    /// Per-round maxima `(round, bytes/s)` of the last [`BW_WINDOW_ROUNDS`] rounds.
    bw_samples: Vec<(u64, u64)>,
    min_rtt: Option<Duration>,
    min_rtt_stamp: Duration,
    round_count: u64,
    next_round_delivered: u64,
    round_start: bool,
    full_bw: u64,
    full_bw_count: u32,
    filled_pipe: bool,
    pacing_gain: f64,
    cwnd_gain: f64,
    cycle_index: usize,
    cycle_stamp: Duration,
    probe_rtt_done: Option<Duration>,
    probe_rtt_round_done: bool,
    prior_cwnd: u32,
    in_recovery: bool,
    packet_conservation: bool,
    cycle_seed: u32,
    /// Ack aggregation (libudx `bbr_update_ack_aggregation`, Linux BBR): packets acknowledged
    /// beyond what the bandwidth estimate predicts, maximum per window of rounds, two windows.
    extra_acked: [u32; 2],
    extra_acked_index: usize,
    extra_acked_rounds: u32,
    ack_epoch_start: Duration,
    ack_epoch_acked: u64,
}

impl Bbr {
    /// A fresh controller. `mss` is the wire size of a full packet; `cycle_seed` picks the
    /// PROBE_BW starting phase (randomness is an argument in the sans-IO core).
    pub fn new(now: Duration, mss: usize, cycle_seed: u32) -> Self {
        Bbr {
            state: BbrState::Startup,
            mss: mss.max(1) as u64,
            cwnd: INITIAL_CWND,
            pacing_rate: INITIAL_PACING_RATE,
            bw_samples: Vec::new(),
            min_rtt: None,
            min_rtt_stamp: now,
            round_count: 0,
            next_round_delivered: 0,
            round_start: false,
            full_bw: 0,
            full_bw_count: 0,
            filled_pipe: false,
            pacing_gain: HIGH_GAIN,
            cwnd_gain: HIGH_GAIN,
            cycle_index: 0,
            cycle_stamp: now,
            probe_rtt_done: None,
            probe_rtt_round_done: false,
            prior_cwnd: 0,
            in_recovery: false,
            packet_conservation: false,
            cycle_seed,
            extra_acked: [0; 2],
            extra_acked_index: 0,
            extra_acked_rounds: 0,
            ack_epoch_start: now,
            ack_epoch_acked: 0,
        }
    }

    /// Sets the wire size of a full packet (it grows with the path MTU).
    pub fn set_mss(&mut self, mss: usize) {
        self.mss = mss.max(1) as u64;
    }

    /// The congestion window in packets.
    pub fn cwnd(&self) -> u32 {
        self.cwnd
    }

    /// The pacing rate in bytes per second.
    pub fn pacing_rate(&self) -> u64 {
        self.pacing_rate
    }

    /// The current mode.
    pub fn state(&self) -> BbrState {
        self.state
    }

    /// The windowed minimum RTT, once measured.
    pub fn min_rtt(&self) -> Option<Duration> {
        self.min_rtt
    }

    /// The bottleneck-bandwidth estimate in bytes per second (0 before the first sample).
    pub fn btl_bw(&self) -> u64 {
        self.bw_samples.iter().map(|s| s.1).max().unwrap_or(0)
    }

    fn bdp_packets(&self, gain: f64) -> u32 {
        let (bw, Some(rtt)) = (self.btl_bw(), self.min_rtt) else {
            return INITIAL_CWND;
        };
        if bw == 0 {
            return INITIAL_CWND;
        }
        let bdp = bw as f64 * rtt.as_secs_f64() / self.mss as f64;
        (bdp * gain).ceil().min(u32::MAX as f64 / 2.0) as u32
    }

    fn target_cwnd(&self, gain: f64) -> u32 {
        // Three packets of quantization budget, as Linux BBR adds for TSO/ack aggregation.
        self.bdp_packets(gain)
            .saturating_add(self.ack_aggregation_packets())
            .saturating_add(3)
    }

    /// The window beyond the BDP that covers acknowledgements arriving in bursts (a receiver
    /// acknowledging a batch at once, a relay forwarding on timer ticks): the recent maximum of
    /// packets acknowledged beyond what the bandwidth predicts, at most 100 ms of bandwidth.
    /// Only once the pipe is full, as in libudx and Linux.
    fn ack_aggregation_packets(&self) -> u32 {
        if !self.filled_pipe {
            return 0;
        }
        let cap = self.btl_bw() as f64 * EXTRA_ACKED_MAX.as_secs_f64() / self.mss as f64;
        self.extra_acked[0]
            .max(self.extra_acked[1])
            .min(cap.min(u32::MAX as f64 / 4.0) as u32)
    }

    fn update_ack_aggregation(&mut self, now: Duration, rs: &RateSample) {
        if rs.newly_acked == 0 {
            return;
        }
        if self.round_start {
            self.extra_acked_rounds += 1;
            if self.extra_acked_rounds >= EXTRA_ACKED_WIN_ROUNDS {
                self.extra_acked_rounds = 0;
                self.extra_acked_index ^= 1;
                self.extra_acked[self.extra_acked_index] = 0;
            }
        }
        let epoch = now.saturating_sub(self.ack_epoch_start);
        let mut expected = (self.btl_bw() as f64 * epoch.as_secs_f64() / self.mss as f64) as u64;
        if self.ack_epoch_acked <= expected {
            // Acknowledgements came no faster than predicted: a new epoch.
            self.ack_epoch_acked = 0;
            self.ack_epoch_start = now;
            expected = 0;
        }
        self.ack_epoch_acked += u64::from(rs.newly_acked);
        let extra = (self.ack_epoch_acked - expected).min(u64::from(self.cwnd)) as u32;
        let slot = &mut self.extra_acked[self.extra_acked_index];
        *slot = (*slot).max(extra);
    }

    fn save_cwnd(&mut self) {
        self.prior_cwnd = if !self.in_recovery && self.state != BbrState::ProbeRtt {
            self.cwnd
        } else {
            self.prior_cwnd.max(self.cwnd)
        };
    }

    /// Loss was detected while not recovering: packet conservation for one round.
    pub fn enter_recovery(&mut self, inflight: u32, newly_acked: u32, delivered: u64) {
        self.save_cwnd();
        self.in_recovery = true;
        self.packet_conservation = true;
        self.next_round_delivered = delivered;
        self.cwnd = (inflight + newly_acked.max(1)).max(1);
    }

    /// Everything outstanding at the loss was acknowledged: restore the window.
    pub fn exit_recovery(&mut self) {
        self.in_recovery = false;
        self.packet_conservation = false;
        self.cwnd = self.cwnd.max(self.prior_cwnd);
    }

    /// A retransmission timeout: collapse the window to one packet (it regrows per ack).
    pub fn on_rto(&mut self) {
        self.save_cwnd();
        self.in_recovery = true;
        self.packet_conservation = false;
        self.cwnd = 1;
    }

    /// Runs the model on one acknowledgement; `delivered` is the connection's running total.
    pub fn on_ack(&mut self, now: Duration, rs: &RateSample, delivered: u64) {
        // Rounds.
        self.round_start = false;
        if rs.newly_acked > 0 && rs.prior_delivered >= self.next_round_delivered {
            self.next_round_delivered = delivered;
            self.round_count += 1;
            self.round_start = true;
            self.packet_conservation = false;
        }
        // Bottleneck bandwidth.
        if rs.delivery_rate > 0 && (!rs.is_app_limited || rs.delivery_rate >= self.btl_bw()) {
            let round = self.round_count;
            match self.bw_samples.last_mut() {
                Some(last) if last.0 == round => last.1 = last.1.max(rs.delivery_rate),
                _ => self.bw_samples.push((round, rs.delivery_rate)),
            }
            self.bw_samples.retain(|s| s.0 + BW_WINDOW_ROUNDS > round);
        }
        self.update_ack_aggregation(now, rs);
        // PROBE_BW gain cycling.
        if self.state == BbrState::ProbeBw && self.is_next_cycle_phase(now, rs) {
            self.cycle_index = (self.cycle_index + 1) % PACING_GAINS.len();
            self.cycle_stamp = now;
            self.pacing_gain = PACING_GAINS[self.cycle_index];
        }
        // Full pipe.
        if !self.filled_pipe && self.round_start && !rs.is_app_limited {
            let bw = self.btl_bw();
            if bw as f64 >= self.full_bw as f64 * 1.25 {
                self.full_bw = bw;
                self.full_bw_count = 0;
            } else {
                self.full_bw_count += 1;
                if self.full_bw_count >= 3 {
                    self.filled_pipe = true;
                }
            }
        }
        // Drain.
        if self.state == BbrState::Startup && self.filled_pipe {
            self.state = BbrState::Drain;
            self.pacing_gain = 1.0 / HIGH_GAIN;
            self.cwnd_gain = HIGH_GAIN;
        }
        if self.state == BbrState::Drain && rs.inflight <= self.bdp_packets(1.0) {
            self.enter_probe_bw(now);
        }
        self.update_min_rtt(now, rs, delivered);
        // Pacing rate: gain × bandwidth with a 1% margin; never lowered before the pipe fills.
        let bw = self.btl_bw();
        if bw > 0 {
            let rate = (self.pacing_gain * bw as f64 * 0.99) as u64;
            if self.filled_pipe || rate > self.pacing_rate {
                self.pacing_rate = rate.max(1);
            }
        }
        self.set_cwnd(rs, delivered);
    }

    fn enter_probe_bw(&mut self, now: Duration) {
        self.state = BbrState::ProbeBw;
        self.cwnd_gain = CWND_GAIN;
        // Any phase but the 0.75 one, chosen by the seed.
        let mut index = (self.cycle_seed % 7) as usize;
        if index >= 1 {
            index += 1;
        }
        self.cycle_index = index;
        self.cycle_stamp = now;
        self.pacing_gain = PACING_GAINS[index];
    }

    fn is_next_cycle_phase(&self, now: Duration, rs: &RateSample) -> bool {
        let full_length = match self.min_rtt {
            Some(rtt) => now.saturating_sub(self.cycle_stamp) > rtt,
            None => true,
        };
        if self.pacing_gain > 1.0 {
            full_length
                && (rs.newly_lost > 0 || rs.prior_inflight >= self.bdp_packets(self.pacing_gain))
        } else if self.pacing_gain < 1.0 {
            full_length || rs.prior_inflight <= self.bdp_packets(1.0)
        } else {
            full_length
        }
    }

    fn update_min_rtt(&mut self, now: Duration, rs: &RateSample, delivered: u64) {
        let expired = now > self.min_rtt_stamp + MIN_RTT_WINDOW;
        if let Some(rtt) = rs.rtt {
            if self.min_rtt.is_none_or(|m| rtt <= m) || expired {
                self.min_rtt = Some(rtt);
                self.min_rtt_stamp = now;
            }
        }
        if expired && self.state != BbrState::ProbeRtt {
            self.save_cwnd();
            self.state = BbrState::ProbeRtt;
            self.pacing_gain = 1.0;
            self.cwnd_gain = 1.0;
            self.probe_rtt_done = None;
        }
        if self.state == BbrState::ProbeRtt {
            match self.probe_rtt_done {
                None if rs.inflight <= MIN_CWND => {
                    self.probe_rtt_done = Some(now + PROBE_RTT_DURATION);
                    self.probe_rtt_round_done = false;
                    self.next_round_delivered = delivered;
                }
                None => {}
                Some(done) => {
                    if self.round_start {
                        self.probe_rtt_round_done = true;
                    }
                    if self.probe_rtt_round_done && now >= done {
                        self.min_rtt_stamp = now;
                        self.cwnd = self.cwnd.max(self.prior_cwnd);
                        if self.filled_pipe {
                            self.enter_probe_bw(now);
                        } else {
                            self.state = BbrState::Startup;
                            self.pacing_gain = HIGH_GAIN;
                            self.cwnd_gain = HIGH_GAIN;
                        }
                    }
                }
            }
        }
    }

    fn set_cwnd(&mut self, rs: &RateSample, delivered: u64) {
        if rs.newly_lost > 0 {
            self.cwnd = self.cwnd.saturating_sub(rs.newly_lost).max(1);
        }
        let acked = rs.newly_acked;
        let target = self.target_cwnd(self.cwnd_gain);
        if self.packet_conservation {
            self.cwnd = self.cwnd.max(rs.inflight + acked);
        } else if self.filled_pipe {
            self.cwnd = (self.cwnd + acked).min(target);
        } else if self.cwnd < target || delivered < u64::from(INITIAL_CWND) * self.mss {
            self.cwnd += acked;
        }
        self.cwnd = self.cwnd.max(MIN_CWND);
        if self.state == BbrState::ProbeRtt {
            self.cwnd = self.cwnd.min(MIN_CWND);
        }
    }
}
