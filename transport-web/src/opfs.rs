//! The data files of [`IdbStorage`](crate::storage::IdbStorage): large values live in a file of
//! the Origin Private File System (OPFS), written through a `FileSystemSyncAccessHandle` in a
//! dedicated worker, and the IndexedDB record of such a value is only a pointer to it.
//!
//! Why: IndexedDB in Chromium costs about 1 ms of CPU per 64 KiB value (structured clone,
//! hand-off to the browser process, LevelDB, and a blob file of its own for every value whose
//! serialized form crosses 64 KiB, which every 64 KiB hypercore block record does), and tops out
//! near 45 MB/s on the bench machine however the values are packed (`bench/www/idb.html`); a sync
//! access handle writes the same bytes at 130 MB/s with a flush per MiB (BENCHMARKS.md).
//!
//! One worker per page (started from a `blob:` URL, so the npm package needs no extra file) holds
//! one access handle per store name and runs the requests in the order they were posted:
//! - `open`: the handle of `hp-<hex of the store name>.data` in the OPFS root (created if absent).
//!   An access handle is exclusive: while another tab (or a worker of a page being unloaded)
//!   holds it, the worker retries for up to 10 s, then the open fails and the store keeps its
//!   values in IndexedDB.
//! - `append`: the parts written one after the other at the end of the file, then `flush()`
//!   (so the bytes are on disk before the IndexedDB transaction that points at them commits);
//!   answers the offset of the first byte.
//! - `read`: the byte spans asked for, as transferred `ArrayBuffer`s.
//! - `close` (when the last store of that name in the page is dropped), `remove` (the file,
//!   with the database).
//!
//! The file is append-only: a value, once written, is never overwritten, so a pointer read from
//! a committed IndexedDB record always finds its bytes. Space of values deleted or overwritten
//! stays in the file until the database is deleted (no compaction yet).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use js_sys::{Array, ArrayBuffer, Function, Object, Promise, Reflect, Uint8Array};
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;

/// The worker's source. Requests run one at a time, in order (a promise chain), so an `open`
/// that waits for the access handle holds back the requests behind it.
const WORKER_JS: &str = r#"
const files = new Map()
let gens = 0
let chain = Promise.resolve()
async function handleOf (m) {
  const dir = await navigator.storage.getDirectory()
  const fh = await dir.getFileHandle(m.file, { create: true })
  for (let tries = 0; ; tries++) {
    try {
      return await fh.createSyncAccessHandle()
    } catch (err) {
      if (err.name !== 'NoModificationAllowedError' || tries >= 100) throw err
      await new Promise((resolve) => setTimeout(resolve, 100))
    }
  }
}
async function run (m) {
  if (m.op === 'open') {
    let f = files.get(m.file)
    if (!f) {
      const h = await handleOf(m)
      f = { h, refs: 0, end: h.getSize(), gen: ++gens }
      files.set(m.file, f)
    }
    f.refs++
    return [f.gen, []]
  }
  if (m.op === 'remove') {
    const f = files.get(m.file)
    if (f) { f.h.close(); files.delete(m.file) }
    const dir = await navigator.storage.getDirectory()
    try { await dir.removeEntry(m.file) } catch (err) { if (err.name !== 'NotFoundError') throw err }
    return [0, []]
  }
  const f = files.get(m.file)
  // gen: the open this request belongs to (a file removed and opened again is another one)
  if (!f || f.gen !== m.gen) throw new Error(`OPFS file ${m.file} is not open (removed with its database?)`)
  if (m.op === 'append') {
    const start = f.end
    let at = start
    for (const p of m.parts) {
      const n = f.h.write(new Uint8Array(p), { at })
      if (n !== p.byteLength) throw new Error(`short write: ${n} of ${p.byteLength} bytes`)
      at += n
    }
    f.h.flush()
    f.end = at
    return [start, []]
  }
  if (m.op === 'read') {
    const out = []
    for (let i = 0; i < m.spans.length; i += 2) {
      const b = new Uint8Array(m.spans[i + 1])
      const n = f.h.read(b, { at: m.spans[i] })
      if (n !== b.length) throw new Error(`short read: ${n} of ${b.length} bytes at ${m.spans[i]}`)
      out.push(b.buffer)
    }
    return [out, out]
  }
  if (m.op === 'close') {
    if (--f.refs === 0) { f.h.close(); files.delete(m.file) }
    return [0, []]
  }
  throw new Error(`unknown request ${m.op}`)
}
self.onmessage = (e) => {
  const m = e.data
  chain = chain.then(() => run(m)).then(
    ([r, transfer]) => self.postMessage({ id: m.id, ok: true, r }, transfer),
    (err) => self.postMessage({ id: m.id, ok: false, error: `${err && err.name ? err.name + ': ' : ''}${err && err.message ? err.message : err}` }))
}
"#;

/// A failed request (the worker's error name and message), or no worker.
#[derive(Debug, Clone)]
pub(crate) struct OpfsError(pub String);

impl std::fmt::Display for OpfsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The page's worker and the requests waiting for an answer.
struct Worker {
    worker: web_sys::Worker,
    next_id: Cell<u32>,
    pending: Rc<RefCell<HashMap<u32, (Function, Function)>>>,
    _on_message: Closure<dyn FnMut(web_sys::MessageEvent)>,
    _on_error: Closure<dyn FnMut(web_sys::Event)>,
}

thread_local! {
    /// `None` before the first store opens; `Some(Err)` when no worker could be started (then
    /// every store keeps its values in IndexedDB).
    static WORKER: RefCell<Option<Result<Rc<Worker>, OpfsError>>> = const { RefCell::new(None) };
}

fn js_err(what: &str, e: JsValue) -> OpfsError {
    OpfsError(format!("{what}: {}", js_message(&e)))
}

fn js_message(e: &JsValue) -> String {
    if let Some(s) = e.as_string() {
        return s;
    }
    if let Some(err) = e.dyn_ref::<js_sys::Error>() {
        return format!(
            "{}: {}",
            String::from(err.name()),
            String::from(err.message())
        );
    }
    format!("{e:?}")
}

fn start_worker() -> Result<Rc<Worker>, OpfsError> {
    let parts = Array::of1(&JsValue::from_str(WORKER_JS));
    let opts = web_sys::BlobPropertyBag::new();
    opts.set_type("text/javascript");
    let blob = web_sys::Blob::new_with_str_sequence_and_options(&parts, &opts)
        .map_err(|e| js_err("worker source", e))?;
    let url = web_sys::Url::create_object_url_with_blob(&blob)
        .map_err(|e| js_err("worker source URL", e))?;
    let worker = web_sys::Worker::new(&url);
    let _ = web_sys::Url::revoke_object_url(&url);
    let worker = worker.map_err(|e| js_err("start the OPFS worker", e))?;
    let pending: Rc<RefCell<HashMap<u32, (Function, Function)>>> = Rc::default();
    let on_message = Closure::<dyn FnMut(web_sys::MessageEvent)>::new({
        let pending = pending.clone();
        move |ev: web_sys::MessageEvent| {
            let data = ev.data();
            let id = Reflect::get(&data, &"id".into())
                .ok()
                .and_then(|v| v.as_f64())
                .map(|v| v as u32);
            let Some((resolve, reject)) = id.and_then(|id| pending.borrow_mut().remove(&id)) else {
                return;
            };
            let ok = Reflect::get(&data, &"ok".into())
                .ok()
                .and_then(|v| v.as_bool())
                == Some(true);
            if ok {
                let r = Reflect::get(&data, &"r".into()).unwrap_or(JsValue::UNDEFINED);
                let _ = resolve.call1(&JsValue::NULL, &r);
            } else {
                let e = Reflect::get(&data, &"error".into()).unwrap_or(JsValue::UNDEFINED);
                let _ = reject.call1(&JsValue::NULL, &e);
            }
        }
    });
    worker.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    // A worker that failed to start (or threw at the top level) answers nothing: fail everything
    // waiting, so no store hangs on it.
    let on_error = Closure::<dyn FnMut(web_sys::Event)>::new({
        let pending = pending.clone();
        move |_ev: web_sys::Event| {
            let waiting: Vec<_> = pending.borrow_mut().drain().collect();
            for (_, (_, reject)) in waiting {
                let _ = reject.call1(&JsValue::NULL, &"the OPFS worker failed".into());
            }
        }
    });
    worker.set_onerror(Some(on_error.as_ref().unchecked_ref()));
    Ok(Rc::new(Worker {
        worker,
        next_id: Cell::new(0),
        pending,
        _on_message: on_message,
        _on_error: on_error,
    }))
}

fn worker() -> Result<Rc<Worker>, OpfsError> {
    WORKER.with(|w| {
        w.borrow_mut()
            .get_or_insert_with(start_worker)
            .as_ref()
            .map(Rc::clone)
            .map_err(Clone::clone)
    })
}

impl Worker {
    /// Posts `msg` (an object; `id` is set here) with `transfer`, and waits for its answer.
    /// The request is posted before this returns (not on first poll), so requests reach the
    /// worker in the order of the calls.
    fn request(
        &self,
        msg: &Object,
        transfer: &Array,
    ) -> Result<impl std::future::Future<Output = Result<JsValue, OpfsError>>, OpfsError> {
        let id = self.next_id.get();
        self.next_id.set(id.wrapping_add(1));
        Reflect::set(msg, &"id".into(), &JsValue::from(id)).map_err(|e| js_err("request", e))?;
        let pending = self.pending.clone();
        let promise = Promise::new(&mut |resolve, reject| {
            pending.borrow_mut().insert(id, (resolve, reject));
        });
        if let Err(e) = self.worker.post_message_with_transfer(msg, transfer) {
            self.pending.borrow_mut().remove(&id);
            return Err(js_err("post to the OPFS worker", e));
        }
        Ok(async move {
            JsFuture::from(promise)
                .await
                .map_err(|e| OpfsError(js_message(&e)))
        })
    }
}

fn message(op: &str, file: &str) -> Object {
    let m = Object::new();
    let _ = Reflect::set(&m, &"op".into(), &op.into());
    let _ = Reflect::set(&m, &"file".into(), &file.into());
    m
}

/// The OPFS file name of store `name`: its UTF-8 bytes in hex (any store name gives a valid,
/// distinct file name).
fn file_name(name: &str) -> String {
    let mut s = String::with_capacity(8 + 2 * name.len());
    s.push_str("hp-");
    for b in name.as_bytes() {
        s.push_str(&format!("{b:02x}"));
    }
    s.push_str(".data");
    s
}

/// The open data file of one store (see the module docs). Dropping it releases the access
/// handle once no other store of the same name in this page uses it.
#[derive(Debug)]
pub(crate) struct DataFile {
    file: String,
    /// Which open of the file in the worker this is.
    gen: f64,
}

impl DataFile {
    /// Opens (creating it) the data file of store `name`.
    pub(crate) async fn open(name: &str) -> Result<DataFile, OpfsError> {
        let w = worker()?;
        let file = file_name(name);
        let gen = w.request(&message("open", &file), &Array::new())?.await?;
        let gen = gen
            .as_f64()
            .ok_or_else(|| OpfsError(format!("open answered {gen:?}")))?;
        Ok(DataFile { file, gen })
    }

    /// Deletes the data file of store `name` (closing it if open in this page).
    pub(crate) async fn remove(name: &str) -> Result<(), OpfsError> {
        let w = worker()?;
        w.request(&message("remove", &file_name(name)), &Array::new())?
            .await
            .map(|_| ())
    }

    fn message(&self, op: &str) -> Object {
        let m = message(op, &self.file);
        let _ = Reflect::set(&m, &"gen".into(), &JsValue::from(self.gen));
        m
    }

    /// Appends the bytes of `buffer` (transferred to the worker: detached here) and flushes the
    /// file; resolves to the offset of the first byte. Posted at once (see [`Worker::request`]):
    /// appends land in the file in the order of the calls.
    pub(crate) fn append(
        &self,
        buffer: ArrayBuffer,
    ) -> Result<impl std::future::Future<Output = Result<u64, OpfsError>>, OpfsError> {
        let w = worker()?;
        let m = self.message("append");
        let bufs = Array::of1(&buffer);
        let _ = Reflect::set(&m, &"parts".into(), &bufs);
        let fut = w.request(&m, &bufs)?;
        Ok(async move {
            let r = fut.await?;
            r.as_f64()
                .map(|v| v as u64)
                .ok_or_else(|| OpfsError(format!("append answered {r:?}")))
        })
    }

    /// The bytes of `spans` (offset, length), in order.
    pub(crate) async fn read(&self, spans: &[(u64, u64)]) -> Result<Vec<Vec<u8>>, OpfsError> {
        if spans.is_empty() {
            return Ok(Vec::new());
        }
        let w = worker()?;
        let m = self.message("read");
        let flat = Array::new();
        for &(off, len) in spans {
            flat.push(&JsValue::from(off as f64));
            flat.push(&JsValue::from(len as f64));
        }
        let _ = Reflect::set(&m, &"spans".into(), &flat);
        let r = w.request(&m, &Array::new())?.await?;
        let r: Array = r
            .dyn_into()
            .map_err(|r| OpfsError(format!("read answered {r:?}")))?;
        if r.length() as usize != spans.len() {
            return Err(OpfsError(format!(
                "read answered {} spans for {}",
                r.length(),
                spans.len()
            )));
        }
        r.iter()
            .map(|b| {
                b.dyn_into::<ArrayBuffer>()
                    .map(|b| Uint8Array::new(&b).to_vec())
                    .map_err(|b| OpfsError(format!("read answered {b:?}")))
            })
            .collect()
    }
}

impl Drop for DataFile {
    fn drop(&mut self) {
        if let Ok(w) = worker() {
            // Nobody waits for the answer; the promise just settles.
            let _ = w.request(&self.message("close"), &Array::new());
        }
    }
}
