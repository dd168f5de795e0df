//! One UDX stream as a sans-IO state machine.
//!
//! Input: [`Stream::handle_datagram`] (a datagram addressed to this stream) and
//! [`Stream::handle_timeout`]. Output: [`Stream::poll_transmit`] (datagrams to send to the
//! remote), [`Stream::poll_event`] and [`Stream::poll_timeout`]. Time is a [`Duration`] since an
//! epoch the caller picks; the engine never reads a clock.
//!
//! Semantics follow libudx (net-protocols §3.2-3.4): one seq per DATA/END packet, cumulative acks
//! plus SACK ranges, an ACK for every received DATA/END/HEARTBEAT, RACK-TLP loss detection, RTO
//! with exponential backoff (6 timeouts fail the stream with [`StreamError::Timeout`]), BBR with
//! pacing, a byte receive window, END half-close, DESTROY, keepalive heartbeats, zero-window
//! probes and unordered MESSAGE datagrams.
//!
//! Path-MTU search as libudx designs it (udx.c `mtu_probeify_packet`, `ack_packet`; RFC 8899
//! style): a stream starts at [`MTU_BASE`] (1200). The first acknowledgement starts the search;
//! then one new full DATA packet at a time is padded with `data_offset` zero bytes to the probe
//! size (first the base itself, then +[`MTU_STEP`] per success, up to `min(mtu_max, MTU_MAX)`).
//! An acknowledged probe raises the MTU, and with it the payload per packet; a
//! lost probe is resent without padding, does not count as congestion, and after
//! [`MTU_MAX_PROBES`] losses the search settles. Probes are ordinary padded DATA packets, which
//! every libudx receiver skips over. (The libudx 1.21 build refuses every probe because of a
//! size check, so udx-native itself stays at 1200; the probes it would send look the same.)
//!
//! After both sides ended and everything is acknowledged the stream emits [`Event::Closed`] and
//! then *lingers* (for [`Config::linger`]), still acknowledging retransmitted packets so the peer
//! can close too, before [`Stream::is_finished`] turns true.
//!
//! This file holds the types, the lifecycle and the owner's calls; the siblings hold the rest by
//! concern: `send` (what goes out and when), `recv` (datagrams in, delivery, SACK blocks),
//! `recovery` (acks, RTT/RTO, RACK-TLP, rate samples) and `mtu` (the path-MTU search).

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use thiserror::Error;

use crate::udx::bbr::{Bbr, BbrState, RateSample};
use crate::udx::packet::{self, DecodeError, Flags, Header, SackRange, HEADER_LEN, MAX_SACKS};

mod mtu;
mod recovery;
mod recv;
mod send;

/// Payload bytes per packet at the 1200-byte base MTU over IPv4: 1200 − 20 − 8 − 20.
pub const DEFAULT_MAX_PAYLOAD: usize = 1152;
/// The MTU every stream starts with and falls back to (libudx `UDX_MTU_BASE`).
pub const MTU_BASE: u16 = 1200;
/// The largest MTU the search may reach (libudx `UDX_MTU_MAX`).
pub const MTU_MAX: u16 = 1500;
/// How much each successful probe raises the probed size (libudx `UDX_MTU_STEP`).
pub const MTU_STEP: u16 = 32;
/// Failed probes of one size before the search settles (libudx `UDX_MTU_MAX_PROBES`).
pub const MTU_MAX_PROBES: u32 = 3;
/// The receive window libudx advertises when nothing is buffered.
pub const DEFAULT_RECV_WINDOW: u32 = 4 * 1024 * 1024;
/// RTO before the first RTT sample.
const INITIAL_RTO: Duration = Duration::from_secs(1);
/// Smallest RTO.
const MIN_RTO: Duration = Duration::from_secs(1);
/// Largest RTO.
const MAX_RTO: Duration = Duration::from_secs(30);
/// Shortest interval between zero-window probes. The probes start at twice the smoothed RTT
/// (not at the RTO, a second at least): a window update the receiver sent when its reader
/// caught up may be lost, and the probe is what finds the open window then.
const MIN_PERSIST: Duration = Duration::from_millis(10);
/// A receiver repeats a window update (doubling the interval from twice its smoothed RTT, or
/// this when it has none) until data arrives or the interval passes [`MAX_WINDOW_UPDATE`].
const WINDOW_UPDATE_FIRST: Duration = Duration::from_millis(25);
const MAX_WINDOW_UPDATE: Duration = Duration::from_secs(2);
/// RTT samples above this are clamped.
const MAX_RTT_SAMPLE: Duration = Duration::from_secs(5);
/// Most packets buffered out of order (seq distance ahead of the cumulative ack).
const MAX_OUT_OF_ORDER: u32 = 8192;
/// How far ahead of its pacing schedule a sender may run (absorbs coarse timers).
const PACING_BURST: Duration = Duration::from_millis(1);
/// How far behind its pacing schedule a sender may be and still catch up.
const PACING_CATCH_UP: Duration = Duration::from_millis(2);
/// In-order payloads of consecutive packets join one [`Event::Data`] of up to this many bytes
/// while the owner has not polled it.
pub const DATA_CHUNK: usize = 256 * 1024;
/// MESSAGE payload bytes queued as events at most; later MESSAGEs are dropped until the owner
/// polls (they are unreliable, and a peer must not grow our memory without bound).
const MAX_QUEUED_MESSAGE_BYTES: usize = 1 << 20;

/// Stream parameters.
#[derive(Clone, Debug)]
pub struct Config {
    /// Payload bytes per DATA packet at the 1200-byte base MTU (and the largest MESSAGE
    /// payload): 1152 over IPv4, 1132 over IPv6. Each byte the MTU search adds above the base
    /// adds one byte of payload.
    pub max_payload: usize,
    /// The largest MTU (IP packet bytes) the path-MTU search may reach: libudx uses
    /// `min(1500, the OS's link MTU)`. At or below [`MTU_BASE`] the search is off; values above
    /// [`MTU_MAX`] count as [`MTU_MAX`].
    pub mtu_max: u16,
    /// Receive buffer, advertised as `rwnd` minus the bytes delivered and not yet polled.
    /// Out-of-order packets are held apart, up to twice as many bytes.
    pub recv_window: u32,
    /// Retransmission timeouts in a row without progress that the stream survives, resending
    /// each time; the next one fails it with [`StreamError::Timeout`] (libudx
    /// `UDX_MAX_RTO_TIMEOUTS`, 6).
    pub max_timeouts: u32,
    /// Send a HEARTBEAT after this long without sending anything (libudx keepalive).
    pub keepalive: Option<Duration>,
    /// How long a closed stream keeps acknowledging the peer's retransmissions after the last
    /// one arrived. `None` (the default) covers a peer's whole retransmission budget with the
    /// same `max_timeouts` (121 s for 6), so a peer whose final ACK was lost can still finish;
    /// libudx forgets the stream at once.
    pub linger: Option<Duration>,
    /// Seeds BBR's PROBE_BW starting phase.
    pub seed: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_payload: DEFAULT_MAX_PAYLOAD,
            mtu_max: MTU_MAX,
            recv_window: DEFAULT_RECV_WINDOW,
            max_timeouts: 6,
            keepalive: None,
            linger: None,
            seed: 0,
        }
    }
}

/// Why a stream failed.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum StreamError {
    /// The peer sent DESTROY (ECONNRESET).
    #[error("stream reset by peer")]
    Reset,
    /// A packet went unacknowledged through every retransmission timeout (ETIMEDOUT).
    #[error("stream timed out: the peer stopped acknowledging")]
    Timeout,
}

/// Why a call was refused.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum UsageError {
    /// `write` after `end`.
    #[error("the write side was already ended")]
    Ended,
    /// The stream is closed, failed or destroyed.
    #[error("the stream is closed")]
    Closed,
    /// [`super::Socket::relay_to`] on a stream that already relays.
    #[error("the stream already relays to another stream")]
    AlreadyRelaying,
    /// [`Stream::change_remote`] while an earlier change is still waiting for its acks.
    #[error("the remote is already changing")]
    RemoteChanging,
    /// A MESSAGE larger than one packet's payload.
    #[error("message of {len} bytes exceeds the {max}-byte packet payload")]
    MessageTooLarge {
        /// The message length.
        len: usize,
        /// The largest allowed.
        max: usize,
    },
}

/// What the stream reports to its owner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// In-order stream bytes: the payloads of one or more consecutive packets (up to
    /// [`DATA_CHUNK`] bytes), as many as arrived before the owner polled.
    Data(Vec<u8>),
    /// An unordered, unreliable MESSAGE datagram.
    Message(Vec<u8>),
    /// The peer ended its write side; no more `Data` follows.
    Ended,
    /// Both sides ended and everything was acknowledged, or this side destroyed the stream.
    Closed,
    /// The stream failed; nothing more happens.
    Error(StreamError),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LossMode {
    /// Tail loss probe pending.
    Tlp,
    /// Retransmission timeout pending.
    Rto,
}

/// Where the path-MTU search stands (libudx `UDX_MTU_STATE_*`, after RFC 8899 §5.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MtuState {
    /// Nothing acknowledged yet: the stream runs at [`MTU_BASE`].
    Base,
    /// Probing: full DATA packets are padded (`data_offset`) to the next probe size, one at a
    /// time; an acknowledged probe raises the MTU, a lost one is resent without padding.
    Search,
    /// Done: the largest size reached, or [`MTU_MAX_PROBES`] probes of one size were lost.
    SearchComplete,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CaState {
    Open,
    Recovery,
    Loss,
}

/// A DATA or END packet that is not cumulatively acknowledged yet.
#[derive(Debug)]
struct Sent {
    seq: u32,
    end: bool,
    /// Where the payload starts in the stream's bytes (it stays in the send buffer until it is
    /// cumulatively acknowledged).
    offset: u64,
    /// Payload bytes (0 for END).
    len: u32,
    sent_at: Duration,
    transmissions: u32,
    sacked: bool,
    /// Marked lost and queued for retransmission (not in the pipe).
    lost: bool,
    /// Delivery-rate snapshot at the last transmission.
    delivered: u64,
    delivered_time: Duration,
    first_sent_time: Duration,
    app_limited: bool,
    /// This transmission is an MTU probe (padded to the probe size).
    probe: bool,
}

/// The per-transmission facts an acknowledgement needs, copied out of a [`Sent`].
#[derive(Clone, Copy, Debug)]
struct SentInfo {
    seq: u32,
    sent_at: Duration,
    transmissions: u32,
    lost: bool,
    payload_len: u64,
    delivered: u64,
    delivered_time: Duration,
    first_sent_time: Duration,
    app_limited: bool,
    probe: bool,
}

impl Sent {
    fn info(&self) -> SentInfo {
        SentInfo {
            seq: self.seq,
            sent_at: self.sent_at,
            transmissions: self.transmissions,
            lost: self.lost,
            payload_len: u64::from(self.len),
            delivered: self.delivered,
            delivered_time: self.delivered_time,
            first_sent_time: self.first_sent_time,
            app_limited: self.app_limited,
            probe: self.probe,
        }
    }
}

#[derive(Debug)]
struct Received {
    end: bool,
    payload: Vec<u8>,
}

#[derive(Debug, Default)]
struct Rack {
    xmit_ts: Option<Duration>,
    end_seq: u32,
    rtt: Duration,
}

/// A UDX stream endpoint.
#[derive(Debug)]
pub struct Stream {
    local_id: u32,
    remote_id: u32,
    config: Config,
    now: Duration,
    events: VecDeque<Event>,

    // Send side.
    seq: u32,
    remote_acked: u32,
    inflight: VecDeque<Sent>,
    /// The bytes written and not cumulatively acknowledged: those of the packets in flight
    /// (retransmissions read them here), then the unsent ones. Byte `i` is stream byte
    /// `send_base + i`.
    send_buf: VecDeque<u8>,
    send_base: u64,
    /// Stream offset of the first byte not sent yet.
    send_next: u64,
    /// Stream offset one past the last byte written.
    send_end: u64,
    end_requested: bool,
    end_seq: Option<u32>,
    remote_rwnd: u32,
    pipe: u32,
    pipe_bytes: u64,
    /// Payload bytes of every packet not cumulatively acknowledged (selectively acknowledged
    /// and lost ones included).
    outstanding_bytes: u64,
    retransmit: VecDeque<u32>,
    messages: VecDeque<Vec<u8>>,
    heartbeat_pending: bool,
    destroy_pending: bool,
    last_send: Duration,
    zero_window_probe: Option<Duration>,
    zero_window_backoff: Duration,

    // Timing and loss recovery.
    srtt: Option<Duration>,
    rttvar: Duration,
    rto: Duration,
    loss_timer: Option<(Duration, LossMode)>,
    rack: Rack,
    rack_timer: Option<Duration>,
    /// Transmissions `(sent_at, seq)` in the order they went out, for RACK; entries whose
    /// packet has since been acknowledged, marked lost or resent are skipped and dropped from
    /// the front lazily.
    sent_order: VecDeque<(Duration, u32)>,
    /// The SACK blocks of the previous acknowledgement as far as they were applied, so
    /// repeated blocks cost nothing.
    sack_cache: Vec<(u32, u32)>,
    timeouts: u32,
    tlp_probe: bool,
    /// A packet from the peer has arrived (see [`Stream::first_contact`]).
    heard_from_peer: bool,
    ca: CaState,
    high_seq: u32,

    // Delivery-rate sampling and congestion control.
    delivered: u64,
    delivered_time: Duration,
    first_sent_time: Duration,
    app_limited_until: u64,
    bbr: Bbr,
    pacing_next: Duration,

    // Path-MTU search.
    mtu: u16,
    mtu_state: MtuState,
    mtu_probe_wanted: bool,
    mtu_probe_count: u32,
    mtu_probe_size: u16,

    // Remote change: the seq from which packets go to the new remote, while older ones are
    // unacknowledged, and whether a completed change is waiting to be polled.
    remote_changing: Option<u32>,
    remote_changed: bool,

    // Receive side.
    ack: u32,
    ack_ext: u64,
    out_of_order: BTreeMap<u64, Received>,
    /// The runs of keys in `out_of_order`, start → end (exclusive), kept as packets arrive so
    /// an acknowledgement's SACK blocks cost no walk over the buffer.
    out_of_order_runs: BTreeMap<u64, u64>,
    out_of_order_bytes: usize,
    /// Key of the most recent out-of-order arrival.
    last_arrival: Option<u64>,
    queued_bytes: usize,
    queued_message_bytes: usize,
    remote_end_seq: Option<u32>,
    ack_pending: bool,
    window_closed: bool,
    /// After the window reopened: when to repeat the window update if no data came since (a
    /// lost update would otherwise leave the sender to its zero-window probe, which in
    /// libudx waits a whole RTO), and the interval after that one.
    window_update_at: Option<Duration>,
    window_update_backoff: Duration,

    // Lifecycle.
    closed: bool,
    terminated: bool,
    linger_until: Option<Duration>,
}

/// `a` is after `b` in wrapping seq space.
fn seq_gt(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}

impl Stream {
    /// A connected stream: `local_id` is ours (incoming packets carry it), `remote_id` the
    /// peer's (written into everything we send). `now` starts the stream's clock.
    pub fn new(local_id: u32, remote_id: u32, now: Duration, config: Config) -> Self {
        let mss = config.max_payload + HEADER_LEN;
        let seed = config.seed;
        let mut stream = Stream {
            local_id,
            remote_id,
            config,
            now,
            events: VecDeque::new(),
            seq: 0,
            remote_acked: 0,
            inflight: VecDeque::new(),
            send_buf: VecDeque::new(),
            send_base: 0,
            send_next: 0,
            send_end: 0,
            end_requested: false,
            end_seq: None,
            remote_rwnd: DEFAULT_RECV_WINDOW,
            pipe: 0,
            pipe_bytes: 0,
            outstanding_bytes: 0,
            retransmit: VecDeque::new(),
            messages: VecDeque::new(),
            heartbeat_pending: false,
            destroy_pending: false,
            last_send: now,
            zero_window_probe: None,
            zero_window_backoff: INITIAL_RTO,
            srtt: None,
            rttvar: Duration::ZERO,
            rto: INITIAL_RTO,
            loss_timer: None,
            rack: Rack::default(),
            rack_timer: None,
            sent_order: VecDeque::new(),
            sack_cache: Vec::new(),
            timeouts: 0,
            tlp_probe: false,
            heard_from_peer: false,
            ca: CaState::Open,
            high_seq: 0,
            delivered: 0,
            delivered_time: now,
            first_sent_time: now,
            app_limited_until: 0,
            bbr: Bbr::new(now, mss, seed),
            pacing_next: now,
            mtu: MTU_BASE,
            mtu_state: MtuState::Base,
            mtu_probe_wanted: false,
            mtu_probe_count: 0,
            mtu_probe_size: MTU_BASE,
            remote_changing: None,
            remote_changed: false,
            ack: 0,
            ack_ext: 0,
            out_of_order: BTreeMap::new(),
            out_of_order_runs: BTreeMap::new(),
            out_of_order_bytes: 0,
            last_arrival: None,
            queued_bytes: 0,
            queued_message_bytes: 0,
            remote_end_seq: None,
            ack_pending: false,
            window_closed: false,
            window_update_at: None,
            window_update_backoff: Duration::ZERO,
            closed: false,
            terminated: false,
            linger_until: None,
        };
        stream.reset_mtu();
        stream
    }

    /// Our stream id.
    pub fn local_id(&self) -> u32 {
        self.local_id
    }

    /// The peer's stream id.
    pub fn remote_id(&self) -> u32 {
        self.remote_id
    }

    /// Moves the stream to another remote stream id mid-flight (libudx
    /// `udx_stream_change_remote`, used when a relayed connection upgrades to a direct path). The
    /// caller sends to the new address from now on ([`super::Socket::change_remote`] does both).
    ///
    /// Everything sent from now on, retransmissions of older packets included, carries the new
    /// id; sequence numbers simply continue. The change completes once every packet sent before
    /// it is acknowledged (at once if nothing is in flight): [`Stream::poll_remote_changed`] then
    /// reports it, once. The MTU search restarts from the base for the new path, and no probe
    /// goes out while the change is pending; packets already sent keep their size when resent,
    /// so a new path with a smaller MTU than the old one's can strand them (as in libudx).
    /// Returns whether the change completed at once.
    pub fn change_remote(&mut self, remote_id: u32) -> Result<bool, UsageError> {
        if self.terminated || self.closed {
            return Err(UsageError::Closed);
        }
        if self.remote_changing.is_some() {
            return Err(UsageError::RemoteChanging);
        }
        self.remote_id = remote_id;
        self.reset_mtu();
        if self.seq == self.remote_acked {
            self.remote_changed = true;
            Ok(true)
        } else {
            self.remote_changing = Some(self.seq);
            Ok(false)
        }
    }

    /// Whether a [`Stream::change_remote`] still waits for packets sent before it to be
    /// acknowledged.
    pub fn is_remote_changing(&self) -> bool {
        self.remote_changing.is_some()
    }

    /// True once after a [`Stream::change_remote`] completed (libudx `on_remote_changed`).
    pub fn poll_remote_changed(&mut self) -> bool {
        core::mem::take(&mut self.remote_changed)
    }

    /// Queues bytes for reliable, ordered delivery. The engine buffers everything it is given;
    /// callers apply backpressure with [`Stream::send_buffered`].
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), UsageError> {
        if self.terminated || self.closed {
            return Err(UsageError::Closed);
        }
        if self.end_requested {
            return Err(UsageError::Ended);
        }
        self.send_buf.extend(bytes);
        self.send_end += bytes.len() as u64;
        Ok(())
    }

    /// Ends the write side (half-close): an END packet follows the written bytes.
    pub fn end(&mut self) -> Result<(), UsageError> {
        if self.terminated || self.closed {
            return Err(UsageError::Closed);
        }
        self.end_requested = true;
        Ok(())
    }

    /// Sends an unordered, unreliable MESSAGE datagram on the stream.
    pub fn send_message(&mut self, bytes: &[u8]) -> Result<(), UsageError> {
        if self.terminated || self.closed {
            return Err(UsageError::Closed);
        }
        if bytes.len() > self.config.max_payload {
            return Err(UsageError::MessageTooLarge {
                len: bytes.len(),
                max: self.config.max_payload,
            });
        }
        self.messages.push_back(bytes.to_vec());
        Ok(())
    }

    /// Destroys the stream: one DESTROY packet is sent, then [`Event::Closed`]; buffered data is
    /// dropped. On a stream that already closed (and lingers) it only ends the lingering.
    pub fn destroy(&mut self) {
        if self.terminated {
            return;
        }
        self.clear();
        self.terminated = true;
        self.linger_until = None;
        // A stream that already closed cleanly only stops lingering: no DESTROY (which would
        // reset a peer that may still want its last ACK) and no second `Closed`.
        self.destroy_pending = !self.closed;
    }

    /// Sets (or clears) the keepalive interval.
    pub fn set_keepalive(&mut self, interval: Option<Duration>) {
        self.config.keepalive = interval;
    }

    /// Bytes written but not yet sent.
    pub fn send_buffered(&self) -> usize {
        self.unsent()
    }

    /// Packets sent and not yet cumulatively acknowledged.
    pub fn unacked_packets(&self) -> usize {
        self.inflight.len()
    }

    /// Bytes held on the receive side: out of order, or delivered as events not yet polled.
    pub fn recv_buffered(&self) -> usize {
        self.out_of_order_bytes + self.queued_bytes
    }

    /// The congestion window in packets.
    pub fn cwnd(&self) -> u32 {
        self.bbr.cwnd()
    }

    /// The BBR mode.
    pub fn bbr_state(&self) -> BbrState {
        self.bbr.state()
    }

    /// The pacing rate in bytes per second.
    pub fn pacing_rate(&self) -> u64 {
        self.bbr.pacing_rate()
    }

    /// The smoothed RTT, once sampled.
    pub fn rtt(&self) -> Option<Duration> {
        self.srtt
    }

    /// The current retransmission timeout.
    pub fn rto(&self) -> Duration {
        self.rto
    }

    /// The path MTU the stream currently sends with (IP packet bytes).
    pub fn mtu(&self) -> u16 {
        self.mtu
    }

    /// Where the path-MTU search stands.
    pub fn mtu_state(&self) -> MtuState {
        self.mtu_state
    }

    /// Payload bytes per new DATA packet at the current MTU.
    pub fn max_payload(&self) -> usize {
        self.config.max_payload + usize::from(self.mtu - MTU_BASE)
    }

    /// Both sides ended and everything was acknowledged (the stream may still be lingering).
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Nothing more will happen: closed and done lingering, failed, or destroyed and sent.
    pub fn is_finished(&self) -> bool {
        self.terminated && !self.destroy_pending
    }

    /// The first zero-window probe interval (doubling from there up to [`MAX_RTO`]).
    pub(super) fn persist_interval(&self) -> Duration {
        match self.srtt {
            Some(srtt) => (srtt * 2).max(MIN_PERSIST).min(self.rto),
            None => self.rto,
        }
    }

    fn linger(&self) -> Duration {
        self.config.linger.unwrap_or_else(|| {
            (0..=self.config.max_timeouts.min(64))
                .map(|k| (INITIAL_RTO * 2u32.saturating_pow(k.min(10))).min(MAX_RTO))
                .sum::<Duration>()
                + MAX_RTO
        })
    }

    fn clear(&mut self) {
        self.send_buf = VecDeque::new();
        self.send_base = self.send_end;
        self.send_next = self.send_end;
        self.inflight = VecDeque::new();
        self.retransmit = VecDeque::new();
        self.sent_order = VecDeque::new();
        self.sack_cache = Vec::new();
        self.messages = VecDeque::new();
        self.out_of_order = BTreeMap::new();
        self.out_of_order_runs = BTreeMap::new();
        self.out_of_order_bytes = 0;
        self.pipe = 0;
        self.pipe_bytes = 0;
        self.outstanding_bytes = 0;
        self.loss_timer = None;
        self.rack_timer = None;
        self.zero_window_probe = None;
        self.window_update_at = None;
        self.ack_pending = false;
        self.heartbeat_pending = false;
    }

    /// Ends the stream at once without a DESTROY packet: a relaying stream whose destination
    /// closed (libudx destroys those without writing anything).
    pub(crate) fn close_quietly(&mut self) {
        if self.terminated {
            return;
        }
        self.clear();
        self.terminated = true;
        self.linger_until = None;
        if !self.closed {
            self.events.push_back(Event::Closed);
        }
    }

    fn fail(&mut self, error: StreamError) {
        self.clear();
        self.terminated = true;
        self.linger_until = None;
        self.events.push_back(Event::Error(error));
    }

    fn check_closed(&mut self) {
        if self.closed || self.terminated {
            return;
        }
        let end_acked = self
            .end_seq
            .is_some_and(|e| self.inflight.is_empty() && seq_gt(self.remote_acked, e));
        if end_acked && self.remote_end_seq.is_some() {
            self.closed = true;
            let send_buf_empty = self.unsent() == 0;
            debug_assert!(send_buf_empty);
            self.loss_timer = None;
            self.rack_timer = None;
            self.zero_window_probe = None;
            self.retransmit.clear();
            self.linger_until = Some(self.now + self.linger());
            self.events.push_back(Event::Closed);
        }
    }
}
