//! The history stream (JS `createHistoryStream`, `iterators/history.js`): every put and delete
//! in block order, optionally bounded by seq, reversed, limited, or following the core live.

use super::encodings::Codec;
use super::error::BeeError;
use super::read::{BlockView, ReadCtx};
use super::source::BeeCore;
use super::Hyperbee;

/// Bounds of a history stream (JS `createHistoryStream(opts)`), in block seqs. Negative values
/// count back from the version (`gte: Some(-3)`: the last three blocks). As in JS, `gt`, `gte`
/// and `lte` of 0 mean "not given", and `lt`/`lte` of 0 give nothing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HistoryOptions {
    /// Blocks after this seq.
    pub gt: Option<i64>,
    /// Blocks from this seq (default 1, the first after the header).
    pub gte: Option<i64>,
    /// Blocks before this seq (default: the version).
    pub lt: Option<i64>,
    /// Blocks up to this seq.
    pub lte: Option<i64>,
    /// Newest first.
    pub reverse: bool,
    /// At most this many.
    pub limit: Option<u64>,
    /// Keep following the core as it grows (not with `reverse`).
    pub live: bool,
}

/// Whether a history entry put or deleted its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistoryType {
    /// A put.
    Put,
    /// A deletion.
    Del,
}

/// One block of the history (JS `{ type, seq, key, value }`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEntry<K, V> {
    /// Put or delete.
    pub kind: HistoryType,
    /// The block.
    pub seq: u64,
    /// The key (sub prefix stripped: a sub's history lists every block of the bee, as in JS).
    pub key: K,
    /// The value (`None` for a deletion).
    pub value: Option<V>,
}

/// The history stream; made by [`Hyperbee::create_history_stream`].
pub struct HistoryIter<C: BeeCore, K: Codec, V: Codec> {
    bee: Hyperbee<C, K, V>,
    opts: HistoryOptions,
    ctx: Option<ReadCtx<C>>,
    gte: i64,
    lt: i64,
    limit: i64,
}

fn start(o: &HistoryOptions, version: i64) -> i64 {
    if let Some(gt) = o.gt.filter(|&g| g != 0) {
        return (if gt < 0 { gt + version } else { gt }) + 1;
    }
    let gte = o.gte.filter(|&g| g != 0).unwrap_or(1);
    if gte < 0 {
        gte + version
    } else {
        gte
    }
}

fn end(o: &HistoryOptions, version: i64) -> i64 {
    if o.lte == Some(0) || o.lt == Some(0) {
        return 0;
    }
    if let Some(lte) = o.lte {
        return (if lte < 0 { lte + version } else { lte }) + 1;
    }
    let lt = o.lt.unwrap_or(version);
    if lt < 0 {
        lt + version
    } else {
        lt
    }
}

impl<C: BeeCore, K: Codec, V: Codec> Hyperbee<C, K, V> {
    /// Every put and delete in block order (JS `createHistoryStream`).
    pub fn create_history_stream(
        &self,
        opts: HistoryOptions,
    ) -> Result<HistoryIter<C, K, V>, BeeError> {
        if opts.live && opts.reverse {
            return Err(BeeError::InvalidArgument(
                "cannot have both live and reverse enabled",
            ));
        }
        Ok(HistoryIter {
            bee: self.clone(),
            opts,
            ctx: None,
            gte: 0,
            lt: 0,
            limit: opts.limit.map_or(-1, |l| l.min(i64::MAX as u64) as i64),
        })
    }
}

impl<C: BeeCore, K: Codec, V: Codec> HistoryIter<C, K, V> {
    /// The next entry; `None` at the end (a live stream waits for the core to grow instead).
    pub async fn next(&mut self) -> Result<Option<HistoryEntry<K::Owned, V::Owned>>, BeeError> {
        if self.ctx.is_none() {
            let ctx = if self.opts.live {
                let core = self.bee.shared.core.clone();
                let st = core.state().await;
                ReadCtx::new(
                    core,
                    self.bee.shared.cache.clone(),
                    st.length.max(1),
                    st.length,
                    st.fork,
                )
            } else {
                self.bee.read_ctx().await?
            };
            let version = i64::try_from(ctx.version).unwrap_or(i64::MAX);
            self.gte = start(&self.opts, version);
            self.lt = if self.opts.live {
                i64::MAX
            } else {
                end(&self.opts, version)
            };
            self.ctx = Some(ctx);
        }
        if self.limit == 0 {
            return Ok(None);
        }
        if self.limit > 0 {
            self.limit -= 1;
        }
        if self.gte >= self.lt {
            return Ok(None);
        }
        let seq = if self.opts.reverse {
            if self.lt <= 1 {
                return Ok(None);
            }
            self.lt -= 1;
            self.lt
        } else {
            self.gte += 1;
            self.gte - 1
        };
        let seq = u64::try_from(seq)
            .map_err(|_| BeeError::InvalidArgument("a history bound before the first block"))?;
        let ctx = self.ctx.as_mut().expect("opened above");
        if self.opts.live {
            while seq >= ctx.length {
                ctx.core.wait_change(ctx.length, ctx.fork).await;
                let st = ctx.core.state().await;
                ctx.length = st.length;
                ctx.version = st.length;
                ctx.fork = st.fork;
            }
        }
        let b = ctx.block(seq).await?;
        let kind = if b.is_deletion()? {
            HistoryType::Del
        } else {
            HistoryType::Put
        };
        let e = self.bee.entry_of(&BlockView::Committed(b))?;
        Ok(Some(HistoryEntry {
            kind,
            seq: e.seq,
            key: e.key,
            value: e.value,
        }))
    }

    /// Every remaining entry (not for a live stream, which never ends).
    pub async fn collect(mut self) -> Result<Vec<HistoryEntry<K::Owned, V::Owned>>, BeeError> {
        if self.opts.live {
            return Err(BeeError::InvalidArgument(
                "a live history stream never ends",
            ));
        }
        let mut out = Vec::new();
        while let Some(e) = self.next().await? {
            out.push(e);
        }
        Ok(out)
    }
}
