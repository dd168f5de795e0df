//! The driver task of a [`UdxSocket`]: it owns the UDP socket and the sans-IO engine, applies
//! the handles' commands, routes received datagrams (batched with `recvmmsg`/GRO), sends what
//! the engines emit (GSO batches), forwards events within each handle's read allowance and
//! sleeps until the next deadline.

use super::*;

/// A stream on its way from one socket's driver to another's ([`Command::MoveIn`]).
pub(super) struct Moved {
    stream: Stream,
    slot: Slot,
    /// Writers waiting for room in the stream's send buffer.
    writers: Vec<oneshot::Sender<Result<(), UsageError>>>,
}

/// The driver's view of one stream.
struct Slot {
    remote: SocketAddr,
    /// Told when the pending remote change completes.
    changed: Option<oneshot::Sender<Result<(), UsageError>>>,
    events: mpsc::UnboundedSender<Event>,
    /// Data and message bytes handed to the handle and not taken yet.
    unread: usize,
    /// The handle is gone: events are discarded.
    detached: bool,
    /// Highest DATA/END seq sent, to count retransmissions.
    highest_seq: Option<u32>,
    packets_sent: u64,
    retransmits: u64,
    /// Told when the stream next takes a packet received on this socket from its remote.
    direct_watch: Option<oneshot::Sender<()>>,
    /// Where the latest packet this socket received for the stream came from.
    seen_from: Option<SocketAddr>,
}

impl Slot {
    fn count(&mut self, datagram: &[u8]) {
        self.packets_sent += 1;
        let Ok(p) = packet::decode(datagram) else {
            return;
        };
        let h = p.header;
        if !(h.flags.contains(Flags::DATA) || h.flags.contains(Flags::END)) {
            return;
        }
        match self.highest_seq {
            Some(top) if (h.seq.wrapping_sub(top) as i32) <= 0 => self.retransmits += 1,
            _ => self.highest_seq = Some(h.seq),
        }
    }
}

pub(super) struct Driver {
    udp: Arc<UdpSocket>,
    /// The socket is IPv6 (IPv4 peers are reached through mapped addresses).
    ipv6: bool,
    /// Batched I/O state; `None` for one datagram per syscall.
    state: Option<UdpSocketState>,
    engine: Socket,
    epoch: Instant,
    slots: HashMap<u32, Slot>,
    ids: Arc<Mutex<HashSet<u32>>>,
    writers: Vec<(u32, oneshot::Sender<Result<(), UsageError>>)>,
    datagrams: Option<mpsc::Sender<Datagram>>,
    /// Unknown-stream UDX datagrams go to `datagrams` too.
    firewall: bool,
    /// Datagrams to send: destination, start and length in `out_buf`.
    outgoing: Vec<(SocketAddr, usize, usize)>,
    out_buf: Vec<u8>,
    gso_buf: Vec<u8>,
    recv_bufs: Vec<Vec<u8>>,
    recv_meta: Vec<RecvMeta>,
    /// Streams moved to another socket: their handles' commands and the packets still
    /// reaching this socket for them go to that socket's driver.
    moved: HashMap<u32, mpsc::UnboundedSender<Command>>,
    /// Reserved stream ids not connected yet ([`super::UdxSocket::reserve`]): the packets that
    /// reach them early, handed to the stream once it connects.
    expected: HashMap<u32, Vec<Early>>,
}

/// A packet that reached a reserved stream id before its connect: where from (`None`: handed
/// over from another socket), and its bytes.
type Early = (Option<SocketAddr>, Vec<u8>);

/// Early packets kept per reserved stream id at most (more are dropped, and resent by the
/// peer as any lost packet).
const EXPECTED_MAX: usize = 64;

impl Driver {
    /// A driver for a freshly bound socket; [`Driver::run`] drives it.
    pub(super) fn new(
        udp: Arc<UdpSocket>,
        local_addr: SocketAddr,
        state: Option<UdpSocketState>,
        ids: Arc<Mutex<HashSet<u32>>>,
        batched: bool,
    ) -> Self {
        Driver {
            udp,
            ipv6: local_addr.is_ipv6(),
            state,
            engine: Socket::new(),
            epoch: epoch(),
            slots: HashMap::new(),
            ids,
            writers: Vec::new(),
            datagrams: None,
            firewall: false,
            outgoing: Vec::new(),
            out_buf: Vec::new(),
            gso_buf: Vec::new(),
            recv_bufs: vec![vec![0u8; RECV_BUF]; if batched { RECV_BATCH } else { 1 }],
            recv_meta: vec![RecvMeta::default(); RECV_BATCH],
            moved: HashMap::new(),
            expected: HashMap::new(),
        }
    }

    fn now(&self) -> Duration {
        self.epoch.elapsed()
    }

    fn apply(&mut self, command: Command) {
        if let Some(id) = command.stream_id() {
            if let Some(to) = self.moved.get(&id) {
                // The stream lives on another socket now: its handle's calls follow it.
                let last = matches!(command, Command::Dropped { .. });
                let _ = to.send(command);
                if last {
                    self.moved.remove(&id);
                    self.ids
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .remove(&id);
                }
                return;
            }
        }
        match command {
            Command::Connect {
                local_id,
                remote_id,
                config,
                remote,
                events,
            } => {
                let stream = Stream::new(local_id, remote_id, self.now(), *config);
                self.slots.insert(
                    local_id,
                    Slot {
                        // Compared with normalized sources.
                        remote: normalize(remote),
                        changed: None,
                        events,
                        unread: 0,
                        detached: false,
                        highest_seq: None,
                        packets_sent: 0,
                        retransmits: 0,
                        direct_watch: None,
                        seen_from: None,
                    },
                );
                self.engine.insert(stream);
                if let Some(early) = self.expected.remove(&local_id) {
                    let now = self.now();
                    for (from, d) in early {
                        match from {
                            Some(from) => self.route(now, from, &d),
                            // Handed over from another socket (`Deliver`).
                            None => {
                                let _ = self.engine.handle_datagram(now, &d);
                            }
                        }
                    }
                }
            }
            Command::Expect(id) => {
                self.expected.entry(id).or_default();
            }
            Command::Unexpect(id) => {
                self.expected.remove(&id);
            }
            Command::Write { id, bytes, done } => match self.engine.stream_mut(id) {
                None => {
                    let _ = done.send(Err(UsageError::Closed));
                }
                Some(stream) => match stream.write(&bytes) {
                    Err(e) => {
                        let _ = done.send(Err(e));
                    }
                    Ok(()) => self.writers.push((id, done)),
                },
            },
            Command::End(id) => {
                if let Some(s) = self.engine.stream_mut(id) {
                    let _ = s.end();
                }
            }
            Command::Message(id, bytes) => {
                if let Some(s) = self.engine.stream_mut(id) {
                    let _ = s.send_message(&bytes);
                }
            }
            Command::Destroy(id) => {
                if let Some(s) = self.engine.stream_mut(id) {
                    s.destroy();
                }
            }
            Command::Consumed(id, n, spare) => {
                if let Some(slot) = self.slots.get_mut(&id) {
                    slot.unread = slot.unread.saturating_sub(n);
                }
                for buf in spare {
                    self.engine.recycle(id, buf);
                }
            }
            Command::Dropped { id, graceful } => {
                if let Some(slot) = self.slots.get_mut(&id) {
                    slot.detached = true;
                    if !graceful {
                        if let Some(s) = self.engine.stream_mut(id) {
                            s.destroy();
                        }
                    }
                }
            }
            Command::SeenFrom(id, reply) => {
                let _ = reply.send(self.slots.get(&id).and_then(|s| s.seen_from));
            }
            Command::Stats(id, reply) => {
                let stats = self
                    .engine
                    .stream(id)
                    .zip(self.slots.get(&id))
                    .map(|(s, slot)| StreamStats {
                        rtt: s.rtt(),
                        cwnd: s.cwnd(),
                        pacing_rate: s.pacing_rate(),
                        packets_sent: slot.packets_sent,
                        retransmits: slot.retransmits,
                        send_buffered: s.send_buffered(),
                        unacked_packets: s.unacked_packets(),
                        recv_buffered: s.recv_buffered(),
                    });
                let _ = reply.send(stats);
            }
            Command::Datagrams(tx) => self.datagrams = Some(tx),
            Command::Firewall(on) => self.firewall = on,
            Command::Inject(from, bytes) => {
                let now = self.now();
                self.route(now, normalize(from), &bytes);
            }
            Command::Deliver(bytes) => {
                if let Some(to) = packet::stream_id(&bytes).and_then(|id| self.moved.get(&id)) {
                    let _ = to.send(Command::Deliver(bytes));
                    return;
                }
                // Only to a stream of ours: never back to the owner (no ping-pong between
                // sockets for a stream that is gone).
                let id = packet::stream_id(&bytes);
                if id.is_some_and(|id| self.slots.contains_key(&id)) {
                    let now = self.now();
                    self.engine.handle_datagram(now, &bytes);
                } else if let Some(early) = id.and_then(|id| self.expected.get_mut(&id)) {
                    if early.len() < EXPECTED_MAX {
                        early.push((None, bytes));
                    }
                }
            }
            Command::ChangeRemote {
                id,
                remote_id,
                remote,
                done,
            } => {
                let (Some(stream), Some(slot)) =
                    (self.engine.stream_mut(id), self.slots.get_mut(&id))
                else {
                    let _ = done.send(Err(UsageError::Closed));
                    return;
                };
                match stream.change_remote(remote_id) {
                    Err(e) => {
                        let _ = done.send(Err(e));
                    }
                    // Completion (even at once) is reported by `poll_remote_changed`.
                    Ok(_) => {
                        slot.remote = normalize(remote);
                        slot.changed = Some(done);
                    }
                }
            }
            Command::MoveOut {
                id,
                to,
                to_ids,
                remote_id,
                remote,
                done,
            } => {
                let release = |to_ids: &Arc<Mutex<HashSet<u32>>>| {
                    to_ids.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
                };
                let Some(stream) = self
                    .engine
                    .stream_mut(id)
                    .filter(|_| self.slots.contains_key(&id))
                else {
                    release(&to_ids);
                    let _ = done.send(Err(UsageError::Closed));
                    return;
                };
                if let Err(e) = stream.change_remote(remote_id) {
                    release(&to_ids);
                    let _ = done.send(Err(e));
                    return;
                }
                // The whole engine state goes, queued events and transmissions included: the
                // other driver sends what this one would have sent next.
                let stream = self.engine.remove(id).expect("checked");
                let mut slot = self.slots.remove(&id).expect("checked");
                slot.remote = normalize(remote);
                slot.changed = Some(done);
                let mut writers = Vec::new();
                let mut i = 0;
                while i < self.writers.len() {
                    if self.writers[i].0 == id {
                        writers.push(self.writers.swap_remove(i).1);
                    } else {
                        i += 1;
                    }
                }
                let moved = Box::new(Moved {
                    stream,
                    slot,
                    writers,
                });
                match to.send(Command::MoveIn(moved)) {
                    Ok(()) => {
                        // The id stays reserved here until the handle is dropped, so that
                        // its commands and stray packets are not taken for another stream.
                        self.moved.insert(id, to);
                    }
                    Err(mpsc::error::SendError(Command::MoveIn(back))) => {
                        // The other socket is gone: the stream stays, on its new remote.
                        release(&to_ids);
                        let Moved {
                            stream,
                            mut slot,
                            writers,
                        } = *back;
                        if let Some(done) = slot.changed.take() {
                            let _ = done.send(Err(UsageError::Closed));
                        }
                        self.engine.insert(stream);
                        self.slots.insert(id, slot);
                        self.writers.extend(writers.into_iter().map(|w| (id, w)));
                    }
                    Err(_) => {}
                }
            }
            Command::WatchDirect(id, tx) => {
                if let Some(slot) = self.slots.get_mut(&id) {
                    slot.direct_watch = Some(tx);
                }
            }
            Command::MoveIn(moved) => {
                let Moved {
                    stream,
                    slot,
                    writers,
                } = *moved;
                let id = stream.local_id();
                self.engine.insert(stream);
                self.slots.insert(id, slot);
                self.writers.extend(writers.into_iter().map(|w| (id, w)));
            }
        }
    }

    /// Forwards events (within each handle's read allowance), sends everything due, releases
    /// writers; repeats until quiet.
    async fn flush(&mut self) {
        loop {
            let mut progressed = false;
            let ids: Vec<u32> = self.engine.ids().collect();
            for id in ids {
                let (Some(slot), Some(stream)) =
                    (self.slots.get_mut(&id), self.engine.stream_mut(id))
                else {
                    continue;
                };
                if stream.poll_remote_changed() {
                    if let Some(done) = slot.changed.take() {
                        let _ = done.send(Ok(()));
                    }
                }
                // The engine joins consecutive DATA payloads into chunks of up to 256 KiB: one
                // channel message, one wakeup and one `Consumed` back per chunk instead of per
                // packet.
                while slot.detached || slot.unread < READ_HIGH_WATER {
                    let Some(event) = stream.poll_event() else {
                        break;
                    };
                    progressed = true;
                    if slot.detached {
                        continue;
                    }
                    if let Event::Data(d) | Event::Message(d) = &event {
                        slot.unread += d.len();
                    }
                    if slot.events.send(event).is_err() {
                        slot.detached = true;
                    }
                }
            }
            let now = self.now();
            // Every datagram due is encoded straight into one buffer (a DATA payload is copied
            // once, from the stream's send buffer); runs of them leave as GSO batches.
            loop {
                let start = self.out_buf.len();
                let Some((id, _)) = self.engine.poll_transmit_into(now, &mut self.out_buf) else {
                    break;
                };
                progressed = true;
                match self.slots.get_mut(&id) {
                    Some(slot) => {
                        slot.count(&self.out_buf[start..]);
                        let len = self.out_buf.len() - start;
                        self.outgoing.push((slot.remote, start, len));
                    }
                    None => self.out_buf.truncate(start),
                }
                if self.out_buf.len() >= OUT_BUF_MAX {
                    self.send_outgoing().await;
                }
            }
            self.send_outgoing().await;
            let engine = &self.engine;
            let mut i = 0;
            while i < self.writers.len() {
                let id = self.writers[i].0;
                let release = engine
                    .stream(id)
                    .is_none_or(|s| s.send_buffered() < WRITE_HIGH_WATER || s.is_finished());
                if release {
                    let (_, done) = self.writers.swap_remove(i);
                    let _ = done.send(Ok(()));
                } else {
                    i += 1;
                }
            }
            if !progressed {
                self.remove_finished();
                return;
            }
        }
    }

    /// Forgets finished streams whose events have all been handed over. Runs once `flush` is
    /// quiet, so a stream under its read allowance has an empty event queue; one over it may
    /// still hold data and its final event, and stays until its handle takes more.
    fn remove_finished(&mut self) {
        let done: Vec<u32> = self
            .engine
            .ids()
            .filter(|id| {
                self.engine.stream(*id).is_some_and(Stream::is_finished)
                    && self
                        .slots
                        .get(id)
                        .is_none_or(|s| s.detached || s.unread < READ_HIGH_WATER)
            })
            .collect();
        if done.is_empty() {
            return;
        }
        let mut ids = self.ids.lock().unwrap_or_else(|e| e.into_inner());
        for id in done {
            self.engine.remove(id);
            self.slots.remove(&id);
            ids.remove(&id);
        }
    }

    /// Sends the queued datagrams, runs of same-size datagrams to one peer as one GSO batch
    /// (straight from `out_buf` when they lie there one after the other, as they do for one
    /// stream).
    async fn send_outgoing(&mut self) {
        let mut batch = std::mem::take(&mut self.outgoing);
        // Streams take turns, so datagrams to different peers interleave: group them by peer
        // (stably, keeping each peer's order) so runs can form.
        if batch.windows(2).any(|w| w[0].0 != w[1].0) {
            batch.sort_by_key(|(dest, _, _)| *dest);
        }
        let state = self.state.as_ref();
        let max_segments = state.map_or(1, |s| s.max_gso_segments());
        let mut i = 0;
        while i < batch.len() {
            let (dest, first_start, first_len) = batch[i];
            let limit = max_segments.min(GSO_MAX_BYTES / first_len.max(1)).max(1);
            let mut j = i + 1;
            let mut contiguous = true;
            while j < batch.len() && j - i < limit && batch[j].0 == dest {
                let len = batch[j].2;
                if len > first_len {
                    break;
                }
                contiguous &= batch[j].1 == batch[j - 1].1 + batch[j - 1].2;
                j += 1;
                // Only the last segment of a GSO batch may be shorter.
                if len < first_len {
                    break;
                }
            }
            let dest = for_family(dest, self.ipv6);
            if j - i == 1 {
                let first = &self.out_buf[first_start..first_start + first_len];
                transmit(&self.udp, state, dest, first, None).await;
            } else if contiguous {
                let (last_start, last_len) = (batch[j - 1].1, batch[j - 1].2);
                let run = &self.out_buf[first_start..last_start + last_len];
                transmit(&self.udp, state, dest, run, Some(first_len)).await;
            } else {
                self.gso_buf.clear();
                for &(_, start, len) in &batch[i..j] {
                    self.gso_buf
                        .extend_from_slice(&self.out_buf[start..start + len]);
                }
                transmit(&self.udp, state, dest, &self.gso_buf, Some(first_len)).await;
            }
            i = j;
        }
        self.outgoing = batch;
        self.outgoing.clear();
        self.out_buf.clear();
    }

    /// Reads what the socket has queued (a bounded number of calls) and feeds it in.
    fn receive(&mut self) {
        for _ in 0..RECV_ROUNDS {
            let received = match &self.state {
                Some(state) => {
                    let mut slices: Vec<IoSliceMut<'_>> = self
                        .recv_bufs
                        .iter_mut()
                        .map(|b| IoSliceMut::new(b))
                        .collect();
                    let meta = &mut self.recv_meta;
                    self.udp.try_io(Interest::READABLE, || {
                        state.recv((&*self.udp).into(), &mut slices, meta)
                    })
                }
                None => self
                    .udp
                    .try_recv_from(&mut self.recv_bufs[0])
                    .map(|(len, addr)| {
                        let meta = &mut self.recv_meta[0];
                        meta.addr = addr;
                        meta.len = len;
                        meta.stride = len;
                        1
                    }),
            };
            let n = match received {
                Ok(n) => n,
                // WouldBlock: drained. Other errors (e.g. ICMP unreachable reported on the
                // socket) concern single datagrams: carry on.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(_) => continue,
            };
            let now = self.now();
            for k in 0..n {
                let meta = self.recv_meta[k];
                let from = normalize(meta.addr);
                let stride = meta.stride.max(1);
                let buf = std::mem::take(&mut self.recv_bufs[k]);
                for datagram in buf[..meta.len].chunks(stride) {
                    self.route(now, from, datagram);
                }
                self.recv_bufs[k] = buf;
            }
        }
    }

    /// One received datagram: to its stream, or to the owner.
    fn route(&mut self, now: Duration, from: SocketAddr, datagram: &[u8]) {
        let to_owner = |d: &mut Option<mpsc::Sender<Datagram>>| {
            if let Some(tx) = d {
                if let Err(mpsc::error::TrySendError::Closed(_)) =
                    tx.try_send((from, datagram.to_vec()))
                {
                    *d = None;
                }
            }
        };
        match packet::stream_id(datagram) {
            None => to_owner(&mut self.datagrams),
            Some(id) => {
                // As in libudx, a connected stream takes its packets from any address: the
                // peer may send from another of its sockets than the one we send to (a
                // hyperdht server that became reachable answers from its server socket while
                // the relays gave us its client socket), and the old path of a remote change
                // keeps delivering for a while. What the packets carry is authenticated above
                // UDX (secret-stream).
                if let Some(to) = self.moved.get(&id) {
                    // The old path of a stream that moved to another socket.
                    let _ = to.send(Command::Deliver(datagram.to_vec()));
                    return;
                }
                let Some(slot) = self.slots.get_mut(&id) else {
                    if let Some(early) = self.expected.get_mut(&id) {
                        if early.len() < EXPECTED_MAX {
                            early.push((Some(from), datagram.to_vec()));
                        }
                        return;
                    }
                    if self.firewall {
                        to_owner(&mut self.datagrams);
                    }
                    return;
                };
                // Only the peer on the new path confirms a move: not the relay's late packets,
                // nor anyone else who knows the stream id.
                if slot.direct_watch.is_some() && slot.remote == from {
                    if let Some(tx) = slot.direct_watch.take() {
                        let _ = tx.send(());
                    }
                }
                slot.seen_from = Some(from);
                self.engine.handle_datagram(now, datagram);
            }
        }
    }

    pub(super) async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        let mut open = true;
        loop {
            self.flush().await;
            if !open && self.engine.ids().next().is_none() {
                break;
            }
            let deadline = self.engine.poll_timeout().map(|t| self.epoch + t);
            let udp = self.udp.clone();
            tokio::select! {
                readable = udp.readable() => {
                    if readable.is_err() {
                        break;
                    }
                    // Commands queued before these datagrams go first: a stream connected
                    // just before its peer's first packet arrived must exist to take it.
                    if open {
                        for _ in 0..COMMAND_BATCH {
                            match commands.try_recv() {
                                Ok(c) => self.apply(c),
                                Err(_) => break,
                            }
                        }
                    }
                    self.receive();
                }
                command = commands.recv(), if open => match command {
                    Some(c) => {
                        self.apply(c);
                        for _ in 1..COMMAND_BATCH {
                            match commands.try_recv() {
                                Ok(c) => self.apply(c),
                                Err(_) => break,
                            }
                        }
                    }
                    None => open = false,
                },
                _ = async {
                    match deadline {
                        Some(at) => tokio::time::sleep_until(at).await,
                        None => std::future::pending().await,
                    }
                } => {
                    let now = self.now();
                    self.engine.handle_timeout(now);
                }
            }
        }
    }
}

/// Sends one datagram, or a GSO batch of `segment_size`-byte datagrams. A full or failing
/// socket is like a lost datagram, which UDX recovers from.
async fn transmit(
    udp: &UdpSocket,
    state: Option<&UdpSocketState>,
    dest: SocketAddr,
    contents: &[u8],
    segment_size: Option<usize>,
) {
    loop {
        let sent = match state {
            Some(state) => udp.try_io(Interest::WRITABLE, || {
                state.try_send(
                    udp.into(),
                    &Transmit {
                        destination: dest,
                        ecn: None,
                        contents,
                        segment_size,
                        src_ip: None,
                    },
                )
            }),
            None => udp.try_send_to(contents, dest).map(|_| ()),
        };
        match sent {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if udp.writable().await.is_err() {
                    return;
                }
            }
            _ => return,
        }
    }
}
