//! The swarm's firewall (JS `_handleFirewall`), shared between the swarm engine (before it
//! dials) and the DHT server (before it answers a handshake), which may run elsewhere (the
//! native driver runs them on two tasks).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

/// The application's firewall: `true` refuses the peer (and bans it).
pub type PeerFirewall = Box<dyn FnMut(&[u8; 32]) -> bool + Send>;

struct State {
    own: [u8; 32],
    banned: HashSet<[u8; 32]>,
    user: Option<PeerFirewall>,
    /// Peers the application's firewall refused since the swarm last looked.
    newly_banned: Vec<[u8; 32]>,
}

/// A cheap handle on the firewall state (clone it into a server's firewall callback).
#[derive(Clone)]
pub struct SwarmFirewall(Arc<Mutex<State>>);

impl core::fmt::Debug for SwarmFirewall {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("SwarmFirewall")
    }
}

impl SwarmFirewall {
    pub(crate) fn new(own: [u8; 32], user: Option<PeerFirewall>) -> Self {
        SwarmFirewall(Arc::new(Mutex::new(State {
            own,
            banned: HashSet::new(),
            user,
            newly_banned: Vec::new(),
        })))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether to refuse `remote`: our own key, a banned peer, or one the application's
    /// firewall refuses (which bans it).
    pub fn refuses(&self, remote: &[u8; 32]) -> bool {
        let mut s = self.lock();
        if *remote == s.own || s.banned.contains(remote) {
            return true;
        }
        let refused = s.user.as_mut().is_some_and(|f| f(remote));
        if refused {
            s.banned.insert(*remote);
            s.newly_banned.push(*remote);
        }
        refused
    }

    pub(crate) fn set_banned(&self, key: [u8; 32], banned: bool) {
        let mut s = self.lock();
        if banned {
            s.banned.insert(key);
        } else {
            s.banned.remove(&key);
        }
    }

    pub(crate) fn take_newly_banned(&self) -> Vec<[u8; 32]> {
        std::mem::take(&mut self.lock().newly_banned)
    }
}
