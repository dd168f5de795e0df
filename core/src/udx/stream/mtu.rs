//! The path-MTU search of one stream (libudx `mtu_probeify_packet`, `ack_packet`): probe sizes,
//! padding, and what an acknowledged or lost probe changes.

use super::*;

impl Stream {
    /// Back to the base MTU with the search not started (libudx
    /// `reset_mtu_state_machine`): at creation and when the remote changes.
    pub(super) fn reset_mtu(&mut self) {
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
    pub(super) fn probe_padding(&self, payload_len: usize) -> Option<u8> {
        let headers = i64::from(MTU_BASE) - self.config.max_payload as i64;
        let padding = i64::from(self.mtu_probe_size) - (payload_len as i64 + headers);
        u8::try_from(padding).ok()
    }

    /// An acknowledged packet: the first one starts the search; an acknowledged probe raises
    /// the MTU to its size and asks for the next, larger probe.
    pub(super) fn mtu_on_acked(&mut self, probe: bool) {
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
    pub(super) fn mtu_probe_lost(&mut self) {
        if self.mtu_state == MtuState::Search {
            if self.mtu_probe_count >= MTU_MAX_PROBES {
                self.mtu_state = MtuState::SearchComplete;
                self.mtu_probe_wanted = false;
            } else {
                self.mtu_probe_wanted = true;
            }
        }
    }
}
