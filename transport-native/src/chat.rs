//! The apply function of `hyperpunch chat`'s rooms, shared by the CLI and the autobase benchmark
//! (and mirrored by `tests/interop/autobase-chat.js` for JS members): `{"type":"add","key":HEX}`
//! (with `"indexer":true` for an indexer) adds a writer, `{"type":"message","text":T}` appends
//! `{"from":HEX,"text":T}` to the view `messages`; anything else is ignored.

use crate::core::autobase::{ApplyNode, Host, Views};
use serde_json::{json, Value};

/// The room's apply: adds writers and appends messages to the view `messages`.
pub fn apply(nodes: &[ApplyNode<'_>], views: &mut Views, host: &mut Host<'_>) {
    let view = views.open("messages");
    for n in nodes {
        let Ok(v) = serde_json::from_slice::<Value>(n.value) else {
            continue;
        };
        match v["type"].as_str() {
            Some("add") => {
                let key = v["key"]
                    .as_str()
                    .and_then(|k| hex::decode(k).ok())
                    .and_then(|k| <[u8; 32]>::try_from(k).ok());
                if let Some(k) = key {
                    host.add_writer(&k, v["indexer"].as_bool() == Some(true));
                }
            }
            Some("message") => {
                let text = v["text"].as_str().unwrap_or("");
                let entry = json!({ "from": hex::encode(n.from), "text": text });
                views.append(view, entry.to_string().into_bytes());
            }
            _ => {}
        }
    }
}
