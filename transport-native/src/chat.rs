//! The apply function of `hyperpunch chat`'s rooms, shared by the CLI and the autobase benchmark
//! (and mirrored by `tests/interop/autobase-chat.js` for JS members): `{"type":"add","key":HEX}`
//! (with `"indexer":true` for an indexer) adds a writer, `{"type":"message","text":T}` appends
//! `{"from":HEX,"text":T}` to the view `messages`; anything else is ignored.
//!
//! In an open room (`hyperpunch chat --optimistic`, JS autobase `optimistic: true`) a member that
//! was never added writes its messages as optimistic nodes; the engine hands such a node to apply
//! alone, flagged [`ApplyNode::optimistic`], and keeps it only if apply acks its writer. This apply
//! keeps an optimistic message by adding its writer (`host.addWriter(from, { indexer: false })`),
//! so that the writer is a member from then on; an optimistic node of any other kind (an `add`) is
//! ignored, which rolls it back: a non-member cannot add others. In a room that is not optimistic
//! the engine never hands apply an optimistic node, so the rule changes nothing there.

use crate::core::autobase::{ApplyNode, Host, Views};
use serde_json::{json, Value};

/// The room's apply: adds writers and appends messages to the view `messages`; an optimistic
/// message of a non-member (an open room) adds its writer first.
pub fn apply(nodes: &[ApplyNode<'_>], views: &mut Views, host: &mut Host<'_>) {
    let view = views.open("messages");
    for n in nodes {
        let Ok(v) = serde_json::from_slice::<Value>(n.value) else {
            continue;
        };
        match v["type"].as_str() {
            // a non-member's optimistic `add` is not acked: the engine rolls it back
            Some("add") if !n.optimistic => {
                let key = v["key"]
                    .as_str()
                    .and_then(|k| hex::decode(k).ok())
                    .and_then(|k| <[u8; 32]>::try_from(k).ok());
                if let Some(k) = key {
                    host.add_writer(&k, v["indexer"].as_bool() == Some(true));
                }
            }
            Some("message") => {
                if n.optimistic {
                    // keeps the node (the writer's member record moves) and makes it a writer
                    host.add_writer(n.from, false);
                }
                let text = v["text"].as_str().unwrap_or("");
                let entry = json!({ "from": hex::encode(n.from), "text": text });
                views.append(view, entry.to_string().into_bytes());
            }
            _ => {}
        }
    }
}
