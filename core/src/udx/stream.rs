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

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use thiserror::Error;

use super::bbr::{Bbr, BbrState, RateSample};
use super::packet::{self, DecodeError, Flags, Header, SackRange, HEADER_LEN, MAX_SACKS};

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
/// RTT samples above this are clamped.
const MAX_RTT_SAMPLE: Duration = Duration::from_secs(5);
/// Most packets buffered out of order (seq distance ahead of the cumulative ack).
const MAX_OUT_OF_ORDER: u32 = 8192;
/// How far ahead of its pacing schedule a sender may run (absorbs coarse timers).
const PACING_BURST: Duration = Duration::from_millis(1);
/// How far behind its pacing schedule a sender may be and still catch up.
const PACING_CATCH_UP: Duration = Duration::from_millis(2);
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
    /// In-order stream bytes.
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
    payload: Vec<u8>,
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
            payload_len: self.payload.len() as u64,
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
    send_buf: VecDeque<u8>,
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
        self.send_buf.len()
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

    /// Back to the base MTU with the search not started (libudx
    /// `reset_mtu_state_machine`): at creation and when the remote changes.
    fn reset_mtu(&mut self) {
        self.mtu = MTU_BASE;
        self.mtu_probe_count = 0;
        self.mtu_probe_wanted = false;
        // The first probe confirms the base size itself.
        self.mtu_probe_size = MTU_BASE;
        self.mtu_state = if self.config.mtu_max <= MTU_BASE {
            MtuState::SearchComplete
        } else {
            MtuState::Base
        };
        self.bbr.set_mss(self.max_payload() + HEADER_LEN);
    }

    /// The `data_offset` padding that makes a DATA packet with `payload_len` bytes exactly the
    /// probe size on the wire, if it fits in one byte. Headers below the payload take
    /// `MTU_BASE - max_payload` bytes (IP, UDP and UDX).
    fn probe_padding(&self, payload_len: usize) -> Option<u8> {
        let headers = i64::from(MTU_BASE) - self.config.max_payload as i64;
        let padding = i64::from(self.mtu_probe_size) - (payload_len as i64 + headers);
        u8::try_from(padding).ok()
    }

    /// An acknowledged packet: the first one starts the search; an acknowledged probe raises
    /// the MTU to its size and asks for the next, larger probe.
    fn mtu_on_acked(&mut self, probe: bool) {
        if self.mtu_state == MtuState::Search && self.mtu_probe_count > 0 && probe {
            self.mtu_probe_count = 0;
            self.mtu = self.mtu_probe_size;
            self.bbr.set_mss(self.max_payload() + HEADER_LEN);
            let max = self.config.mtu_max.min(MTU_MAX);
            if self.mtu_probe_size >= max {
                self.mtu_state = MtuState::SearchComplete;
            } else {
                self.mtu_probe_size = (self.mtu_probe_size + MTU_STEP).min(max);
                self.mtu_probe_wanted = true;
            }
        }
        if self.mtu_state == MtuState::Base {
            self.mtu_state = MtuState::Search;
            self.mtu_probe_wanted = true;
        }
    }

    /// A probe was declared lost: try the same size again, or settle after
    /// [`MTU_MAX_PROBES`] failures.
    fn mtu_probe_lost(&mut self) {
        if self.mtu_state == MtuState::Search {
            if self.mtu_probe_count >= MTU_MAX_PROBES {
                self.mtu_state = MtuState::SearchComplete;
                self.mtu_probe_wanted = false;
            } else {
                self.mtu_probe_wanted = true;
            }
        }
    }

    /// Takes `inflight[i]` out of the pipe as lost. A lost probe is resent without its padding
    /// and counts as a failed probe. Returns whether it was a probe.
    fn mark_lost(&mut self, i: usize) -> bool {
        let p = &mut self.inflight[i];
        p.lost = true;
        self.pipe -= 1;
        self.pipe_bytes -= p.payload.len() as u64;
        let probe = core::mem::take(&mut p.probe);
        if probe {
            self.mtu_probe_lost();
        }
        probe
    }

    /// Both sides ended and everything was acknowledged (the stream may still be lingering).
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Nothing more will happen: closed and done lingering, failed, or destroyed and sent.
    pub fn is_finished(&self) -> bool {
        self.terminated && !self.destroy_pending
    }

    /// The next event, if any. Polling `Data` frees receive window; call
    /// [`Stream::poll_transmit`] afterwards, as a window update may be due.
    pub fn poll_event(&mut self) -> Option<Event> {
        let event = self.events.pop_front()?;
        if let Event::Message(bytes) = &event {
            self.queued_message_bytes -= bytes.len();
        }
        if let Event::Data(bytes) = &event {
            self.queued_bytes -= bytes.len();
            if self.window_closed && self.recv_window() as usize >= self.config.max_payload * 4 {
                self.window_closed = false;
                if !self.terminated && self.remote_end_seq.is_none() {
                    self.ack_pending = true;
                }
            }
        }
        Some(event)
    }

    fn linger(&self) -> Duration {
        self.config.linger.unwrap_or_else(|| {
            (0..=self.config.max_timeouts.min(64))
                .map(|k| (INITIAL_RTO * 2u32.saturating_pow(k.min(10))).min(MAX_RTO))
                .sum::<Duration>()
                + MAX_RTO
        })
    }

    /// Bytes held out of order at most: twice the receive window. The window bounds what the
    /// sender has in flight, not what it has had selectively acknowledged, so a hole that
    /// takes a retransmission or two to fill leaves more than one window above it.
    fn out_of_order_limit(&self) -> usize {
        2 * self.config.recv_window as usize
    }

    /// The advertised window: the receive buffer minus the bytes delivered and not yet taken
    /// by the owner. Out-of-order packets do not count (as in libudx): they sit in the
    /// sender's window already, and counting them would shrink the window by a whole
    /// bandwidth-delay product after every loss. They are bounded separately
    /// ([`Stream::out_of_order_limit`] bytes, [`MAX_OUT_OF_ORDER`] packets).
    fn recv_window(&self) -> u32 {
        let used = self.queued_bytes.min(u32::MAX as usize) as u32;
        self.config.recv_window.saturating_sub(used)
    }

    fn clear(&mut self) {
        self.send_buf = VecDeque::new();
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
            self.zero_window_backoff = self.rto;
        }
        self.process_ack(now, h.ack, &packet.sacks);
        if self.terminated {
            return Ok(());
        }
        if h.flags.is_sequenced() {
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

    fn receive_sequenced(&mut self, seq: u32, flags: Flags, payload: &[u8]) {
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
            self.accept(seq, flags.contains(Flags::END), payload.to_vec());
            // The run that starts here (if any) is delivered now, up to an END.
            self.out_of_order_runs.remove(&self.ack_ext);
            // Nothing is delivered past the END.
            while self.remote_end_seq.is_none() {
                let Some(next) = self.out_of_order.remove(&self.ack_ext) else {
                    break;
                };
                self.out_of_order_bytes -= next.payload.len();
                let seq = self.ack;
                self.accept(seq, next.end, next.payload);
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

    fn accept(&mut self, seq: u32, end: bool, payload: Vec<u8>) {
        self.ack = self.ack.wrapping_add(1);
        self.ack_ext += 1;
        if !payload.is_empty() {
            self.queued_bytes += payload.len();
            self.events.push_back(Event::Data(payload));
        }
        if end {
            self.remote_end_seq = Some(seq);
            self.events.push_back(Event::Ended);
        }
    }

    /// SACK blocks above the cumulative ack: the block holding the most recent arrival first
    /// (so the sender always learns about what was just received, RFC 2018 style), then the
    /// rest from the lowest up, at most [`MAX_SACKS`].
    fn sack_ranges(&self) -> Vec<SackRange> {
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
    fn add_to_runs(&mut self, key: u64) {
        let start = match self.out_of_order_runs.range(..key).next_back() {
            Some((&a, &b)) if b == key => a,
            _ => key,
        };
        let end = self.out_of_order_runs.remove(&(key + 1)).unwrap_or(key + 1);
        self.out_of_order_runs.insert(start, end);
    }

    fn process_ack(&mut self, now: Duration, ack: u32, sacks: &[SackRange]) {
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
            self.outstanding_bytes -= p.payload.len() as u64;
            if !p.sacked {
                self.on_delivered(now, p.info(), &mut rs, &mut newest);
            }
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

    fn on_delivered(
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

    fn update_rtt(&mut self, sample: Duration) {
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

    fn computed_rto(&self) -> Duration {
        match self.srtt {
            None => INITIAL_RTO,
            Some(srtt) => (srtt + self.rttvar * 4).clamp(MIN_RTO, MAX_RTO),
        }
    }

    /// RACK: a packet sent before the most recently delivered one is lost once it is overdue by
    /// the RACK RTT plus a reordering window of min_rtt/4.
    fn detect_lost(&mut self, now: Duration, rs: &mut RateSample) {
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
    fn drop_stale_sends(&mut self) {
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

    fn arm_loss_timer(&mut self, now: Duration) {
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

    fn check_closed(&mut self) {
        if self.closed || self.terminated {
            return;
        }
        let end_acked = self
            .end_seq
            .is_some_and(|e| self.inflight.is_empty() && seq_gt(self.remote_acked, e));
        if end_acked && self.remote_end_seq.is_some() {
            self.closed = true;
            let send_buf_empty = self.send_buf.is_empty();
            debug_assert!(send_buf_empty);
            self.loss_timer = None;
            self.rack_timer = None;
            self.zero_window_probe = None;
            self.retransmit.clear();
            self.linger_until = Some(self.now + self.linger());
            self.events.push_back(Event::Closed);
        }
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

    fn fire_tlp(&mut self, now: Duration) {
        let has_new = !self.send_buf.is_empty() && self.send_allowance() > 0;
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

    fn fire_rto(&mut self, now: Duration) {
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

    fn has_reliable_work(&self) -> bool {
        self.retransmit
            .iter()
            .any(|&s| self.index_of(s).is_some_and(|i| self.inflight[i].lost))
            || (!self.send_buf.is_empty() && self.send_allowance() > 0)
            || (self.end_requested && self.end_seq.is_none() && self.send_buf.is_empty())
    }

    /// Bytes of new data the windows allow now. The peer's window bounds what is in the pipe
    /// (as in libudx); everything not cumulatively acknowledged stays within twice that window
    /// and [`MAX_OUT_OF_ORDER`] packets, what a receiver holds out of order: more would only be
    /// dropped there (after a burst of losses it would be most of what is sent).
    fn send_allowance(&self) -> u64 {
        if self.inflight.len() >= MAX_OUT_OF_ORDER as usize {
            return 0;
        }
        let rwnd = u64::from(self.remote_rwnd);
        rwnd.saturating_sub(self.pipe_bytes)
            .min((2 * rwnd).saturating_sub(self.outstanding_bytes))
    }

    fn index_of(&self, seq: u32) -> Option<usize> {
        let i = seq.wrapping_sub(self.remote_acked) as usize;
        (i < self.inflight.len()).then_some(i)
    }

    fn header(&self, flags: Flags) -> Header {
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
        self.now = self.now.max(now);
        let now = self.now;
        if self.destroy_pending {
            self.destroy_pending = false;
            let bytes = packet::encode(&self.header(Flags::DESTROY), &[], &[]);
            self.seq = self.seq.wrapping_add(1);
            self.events.push_back(Event::Closed);
            return Some(bytes);
        }
        if self.terminated {
            return None;
        }
        if self.ack_pending {
            self.ack_pending = false;
            let sacks = self.sack_ranges();
            let flags = if sacks.is_empty() {
                Flags::ACK
            } else {
                Flags::SACK
            };
            return Some(self.sent_now(packet::encode(&self.header(flags), &sacks, &[])));
        }
        if let Some(message) = self.messages.pop_front() {
            let bytes = packet::encode(&self.header(Flags::MESSAGE), &[], &message);
            return Some(self.sent_now(bytes));
        }
        if self.heartbeat_pending {
            self.heartbeat_pending = false;
            let bytes = packet::encode(&self.header(Flags::HEARTBEAT), &[], &[]);
            return Some(self.sent_now(bytes));
        }
        if self.closed {
            return None;
        }
        let probe = self.tlp_probe;
        if !probe && (self.pipe >= self.bbr.cwnd() || self.pacing_next > now + PACING_BURST) {
            return None;
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
            let bytes = packet::encode(&header, &[], &self.inflight[i].payload);
            self.snapshot_send(i, now);
            let p = &mut self.inflight[i];
            p.lost = false;
            p.transmissions += 1;
            return Some(self.sent_reliable(bytes, false));
        }
        if !self.send_buf.is_empty() {
            let allowed = self.send_allowance();
            let len = (self.max_payload() as u64)
                .min(allowed)
                .min(self.send_buf.len() as u64) as usize;
            if len == 0 {
                if self.pipe == 0 && self.zero_window_probe.is_none() {
                    self.zero_window_probe = Some(now + self.zero_window_backoff);
                }
                return None;
            }
            let mut payload = Vec::with_capacity(len);
            let (front, back) = self.send_buf.as_slices();
            let from_front = len.min(front.len());
            payload.extend_from_slice(&front[..from_front]);
            payload.extend_from_slice(&back[..len - from_front]);
            self.send_buf.drain(..len);
            return Some(self.send_new(now, false, payload));
        }
        if self.end_requested && self.end_seq.is_none() {
            self.end_seq = Some(self.seq);
            return Some(self.send_new(now, true, Vec::new()));
        }
        // Nothing to send though the window is open: the application is the bottleneck.
        if self.pipe < self.bbr.cwnd() {
            self.app_limited_until = (self.delivered + self.pipe_bytes).max(1);
        }
        self.tlp_probe = false;
        None
    }

    fn send_new(&mut self, now: Duration, end: bool, payload: Vec<u8>) -> Vec<u8> {
        let flags = if end { Flags::END } else { Flags::DATA };
        let mut header = self.header(flags);
        // One probe at a time, never as a tail-loss probe (libudx `_send_new_packet`).
        let padding = (self.mtu_probe_wanted
            && !end
            && !payload.is_empty()
            && !self.tlp_probe
            && self.remote_changing.is_none())
        .then(|| self.probe_padding(payload.len()))
        .flatten();
        if let Some(padding) = padding {
            header.data_offset = padding;
            self.mtu_probe_count += 1;
            self.mtu_probe_wanted = false;
        }
        let bytes = packet::encode(&header, &[], &payload);
        self.outstanding_bytes += payload.len() as u64;
        self.inflight.push_back(Sent {
            seq: self.seq,
            end,
            payload,
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
        self.sent_reliable(bytes, true)
    }

    /// Records the delivery-rate state a packet carries from this transmission.
    fn snapshot_send(&mut self, i: usize, now: Duration) {
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
        self.pipe_bytes += p.payload.len() as u64;
    }

    fn sent_reliable(&mut self, bytes: Vec<u8>, new_data: bool) -> Vec<u8> {
        let now = self.now;
        let rate = self.bbr.pacing_rate().max(1);
        let gap = Duration::from_nanos((bytes.len() as u64 * 1_000_000_000) / rate);
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
        self.sent_now(bytes)
    }

    fn sent_now(&mut self, bytes: Vec<u8>) -> Vec<u8> {
        self.last_send = self.now;
        bytes
    }
}
