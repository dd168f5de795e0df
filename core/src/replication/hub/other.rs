//! Channels of other protocols on the hub's streams (e.g. protomux-wakeup beside the cores, as
//! JS opens them on the muxer of `corestore.replicate`'s stream): the owner pairs its protocol
//! ([`ReplicationHub::pair_protocol`]), hears of each stream ([`HubEvent::StreamAdded`]), opens
//! its channel there ([`ReplicationHub::open_other`]), sends on it
//! ([`ReplicationHub::send_other`]) and receives its open, messages and close as
//! [`HubEvent::Other`]. The hub makes no decision about them.

use super::*;

impl<S: Storage> ReplicationHub<S> {
    /// Pair `protocol` on every stream, present and future: the remote's opens of it come out as
    /// [`HubEvent::Other`] pair requests, and every new stream as [`HubEvent::StreamAdded`].
    /// The streams already there are reported as added now.
    pub fn pair_protocol(&mut self, protocol: &str) {
        if !self.protocols.insert(protocol.to_string()) {
            return;
        }
        for (sid, s) in &mut self.streams {
            s.mux.pair(protocol, None);
            self.events.push_back(HubEvent::StreamAdded {
                stream: *sid,
                is_initiator: s.is_initiator,
                handshake_hash: s.handshake_hash,
            });
        }
    }

    /// Whether the core's channel is open on `stream` at both ends (JS core-coupler's
    /// `_hasMuxer`: the remote replicates the core with us there).
    pub fn is_core_open(&self, stream: StreamId, discovery_key: &[u8; 32]) -> bool {
        self.streams.get(&stream).is_some_and(|s| {
            s.channels
                .values()
                .any(|c| c.dk == *discovery_key && c.peer.is_some())
        })
    }

    /// Open a channel of another protocol on `stream` (or answer the remote's waiting open of
    /// the same protocol and id). Its events come out as [`HubEvent::Other`].
    pub async fn open_other(
        &mut self,
        now: u64,
        stream: StreamId,
        options: ChannelOptions,
    ) -> Result<ChannelId, ReplicationError> {
        let s = self
            .streams
            .get_mut(&stream)
            .ok_or(ReplicationError::UnknownStream)?;
        let ch = s.mux.open(options)?;
        s.other.insert(ch);
        self.drain_mux(now, stream).await?;
        self.flush();
        Ok(ch)
    }

    /// Refuse the remote's waiting open of `(protocol, id)` on `stream`.
    pub fn reject_other(
        &mut self,
        stream: StreamId,
        protocol: &str,
        id: Option<&[u8]>,
    ) -> Result<(), ReplicationError> {
        let s = self
            .streams
            .get_mut(&stream)
            .ok_or(ReplicationError::UnknownStream)?;
        s.mux.reject(protocol, id)?;
        self.flush();
        Ok(())
    }

    /// Send a message on a channel [`ReplicationHub::open_other`] opened.
    pub fn send_other(
        &mut self,
        stream: StreamId,
        channel: ChannelId,
        message_type: u64,
        payload: &[u8],
    ) -> Result<(), ReplicationError> {
        let s = self
            .streams
            .get_mut(&stream)
            .ok_or(ReplicationError::UnknownStream)?;
        if !s.other.contains(&channel) {
            return Err(crate::protomux::ChannelError::UnknownChannel.into());
        }
        s.mux.send(channel, message_type, payload)?;
        self.flush();
        Ok(())
    }

    /// Close a channel [`ReplicationHub::open_other`] opened (its close event follows).
    pub fn close_other(
        &mut self,
        stream: StreamId,
        channel: ChannelId,
    ) -> Result<(), ReplicationError> {
        let s = self
            .streams
            .get_mut(&stream)
            .ok_or(ReplicationError::UnknownStream)?;
        if !s.other.contains(&channel) {
            return Err(crate::protomux::ChannelError::UnknownChannel.into());
        }
        s.mux.close(channel)?;
        self.flush();
        Ok(())
    }
}
