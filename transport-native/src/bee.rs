//! Hyperbees on cores that are being replicated: [`HostCore`], a [`BeeCore`] over a core in a
//! [`SharedHost`]: a bare replication hub ([`HubCore`], on a [`crate::replicate::SharedHub`]) or a corestore
//! ([`StoreCore`], on a [`crate::replicate::SharedCorestore`]; the core must be open in it).
//! A read of a block the core does not hold asks the peers for that one block
//! (a bounded `download`) and waits for it, so a bee query downloads only the blocks it walks:
//! a `get` on a million-key bee fetches a few dozen blocks, not the core.
//!
//! ```no_run
//! # async fn demo(hub: hyperpunch::replicate::SharedHub<hyperpunch::FileStorage>, dk: [u8; 32]) -> Result<(), hyperpunch::core::hyperbee::BeeError> {
//! use hyperpunch::bee::HubCore;
//! use hyperpunch::core::hyperbee::{Hyperbee, Utf8};
//! // `hub` replicates the core with discovery key `dk` over some connection (`replicate`).
//! let db = Hyperbee::new(HubCore::new(hub, dk)).with_codecs(Utf8, Utf8);
//! let entry = db.get("some key").await?; // downloads the root-to-leaf path only
//! # Ok(()) }
//! ```
//!
//! The adapter is the core's ([`crate::core::hyperbee::HostCore`], shared with the browser
//! transport); this module hands it the tokio effects: the hub's lock, its clock, its
//! [`SharedHost::changed`] wake-ups and tokio timers. The bee in the core stays sans-IO and
//! only awaits the futures [`BeeCore`] returns.
//!
//! [`BeeCore`]: crate::core::hyperbee::BeeCore

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use tokio::sync::futures::Notified;

use crate::core::corestore::Corestore;
use crate::core::hyperbee::SharedCoreHost;
use crate::core::replication::ReplicationHub;
use crate::replicate::{HubGuard, SharedHost};

pub use crate::core::hyperbee::CoreHost;

/// A core of a [`SharedHost`] as a [`BeeCore`](crate::core::hyperbee::BeeCore); see the
/// module docs.
pub type HostCore<H> = crate::core::hyperbee::HostCore<SharedHost<H>>;

/// A core of a bare replication hub as a [`BeeCore`](crate::core::hyperbee::BeeCore).
pub type HubCore<S> = HostCore<ReplicationHub<S>>;

/// A core open in a corestore as a [`BeeCore`](crate::core::hyperbee::BeeCore) (hyperdrive's
/// db).
pub type StoreCore<S> = HostCore<Corestore<S>>;

/// How long [`BeeCore::update`](crate::core::hyperbee::BeeCore::update) waits for the peers to
/// sync, by default.
pub const UPDATE_TIMEOUT: Duration = Duration::from_secs(10);

impl<H: CoreHost> SharedCoreHost for SharedHost<H> {
    type Host = H;
    type Guard<'a> = HubGuard<'a, H>;
    type Changed<'a> = Notified<'a>;

    const UPDATE_TIMEOUT: Option<Duration> = Some(UPDATE_TIMEOUT);

    fn lock(&self) -> impl Future<Output = HubGuard<'_, H>> + Send {
        SharedHost::lock(self)
    }

    fn now(&self) -> u64 {
        SharedHost::now(self)
    }

    fn changed(&self) -> Notified<'_> {
        SharedHost::changed(self).notified()
    }

    fn arm(changed: Pin<&mut Notified<'_>>) {
        changed.enable();
    }

    fn notify_changed(&self) {
        SharedHost::changed(self).notify_waiters();
    }

    fn sleep_until(&self, at: u64) -> impl Future<Output = ()> + Send {
        tokio::time::sleep_until(self.deadline(at))
    }
}
