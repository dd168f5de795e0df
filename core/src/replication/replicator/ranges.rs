//! What peers have and want: their `range`/`bitfield` announcements, our `range` broadcasts
//! (JS `broadcastRange`), answers to their `want`s and our own `want`s.

use crate::hypercore::messages::{Bitfield as WireBitfield, Message, Range, Want};
use crate::storage::Storage;

use super::{PeerId, Replicator, LAST_BLOCKS, WANT_BATCH};

impl<S: Storage> Replicator<S> {
    pub(super) fn on_want(&mut self, peer: PeerId, w: Want) {
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        if !p.remote_wants.add(w.start, w.length, w.any) || p.paused {
            return;
        }
        let length = self.core.length();
        let contig = self.core.contiguous_length().min(length);
        let end = w.start.saturating_add(w.length);
        if end < contig || length == contig || (w.any && w.start < contig) {
            self.transmits.push_back((
                peer,
                Message::Range(Range {
                    drop: false,
                    start: 0,
                    length: contig,
                }),
            ));
            return;
        }
        let len = w.length.min(length.saturating_sub(w.start));
        if w.any {
            if let Some(bit) = self.core.bitfield().first_set(w.start) {
                if bit < w.start + len {
                    self.transmits.push_back((
                        peer,
                        Message::Range(Range {
                            drop: false,
                            start: bit,
                            length: 1,
                        }),
                    ));
                }
            }
            return;
        }
        for (start, bitfield) in self.core.bitfield().want(w.start, len) {
            self.transmits
                .push_back((peer, Message::Bitfield(WireBitfield { start, bitfield })));
        }
    }

    pub(super) fn on_bitfield(&mut self, peer: PeerId, b: WireBitfield) {
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        if !b.start.is_multiple_of(32) {
            return;
        }
        if b.start < p.remote_contig {
            p.remote_contig = b.start;
        }
        p.remote_bitfield.insert(b.start, &b.bitfield);
    }

    pub(super) fn on_range(&mut self, peer: PeerId, r: Range) {
        let local_len = self.core.length();
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        let has = !r.drop;
        if r.drop && r.start < p.remote_contig {
            p.remote_contig = r.start;
        }
        if r.start == 0 && has {
            p.remote_contig = p.remote_contig.max(r.length);
        } else if r.length == 1 {
            p.remote_bitfield.set(r.start, has);
        } else {
            let mut end = r.start.saturating_add(r.length);
            if has {
                // Bound what a peer can make us allocate to the lengths in play.
                end = end.min(p.remote_length.max(local_len));
            }
            p.remote_bitfield.set_range(r.start, end, has);
        }
    }

    /// JS `broadcastRange`: ranges ending more than [`LAST_BLOCKS`] before our length go only to
    /// peers that want them, unless we hold every block.
    pub(super) fn broadcast_range(
        &mut self,
        peer: PeerId,
        mut start: u64,
        mut length: u64,
        drop: bool,
    ) {
        let (len, contig) = (self.core.length(), self.core.contiguous_length());
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        if p.paused {
            return;
        }
        let fully = contig == len;
        if !drop
            && !fully
            && start.saturating_add(LAST_BLOCKS) < len
            && !p.remote_wants.has_range(start, length)
        {
            return;
        }
        let mut force = false;
        if fully && !drop {
            start = 0;
            length = len;
            if p.fully_signaled < length {
                p.fully_signaled = length;
                force = true;
            }
        }
        if !force && !drop {
            if p.remote_contig >= start.saturating_add(length) {
                return;
            }
            let end = start.saturating_add(length);
            if p.remote_bitfield.find_first(false, start, end).is_none() {
                return;
            }
        }
        self.transmits.push_back((
            peer,
            Message::Range(Range {
                drop,
                start,
                length,
            }),
        ));
    }

    /// Ask peers that do not advertise block `index` whether they have its batch (`want`).
    pub(super) fn maybe_want(&mut self, index: u64) {
        let batch = index / WANT_BATCH;
        let mut out = Vec::new();
        for (&id, p) in self.peers.iter_mut() {
            if p.paused || !p.synced || index < p.remote_contig || p.has_block(index) {
                continue;
            }
            if p.wants_sent.insert(batch) {
                out.push((
                    id,
                    Message::Want(Want {
                        start: batch * WANT_BATCH,
                        length: WANT_BATCH,
                        any: false,
                    }),
                ));
            }
        }
        self.transmits.extend(out);
    }
}
