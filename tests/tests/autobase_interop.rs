//! autobase, live against the pinned JS autobase 7.28.1 (`tests/interop/autobase-scenario.js`):
//! JS members (a bootstrap and writers it adds) append concurrently while partitioned, heal and
//! converge; hyperpunch then reads every writer's oplog (the raw blocks JS wrote) and linearizes
//! and applies them with the same apply function. The view must be the JS view, block for block,
//! with the same indexed length, whatever order the blocks arrive in.

use std::time::Duration;

use hyperpunch_core::autobase::{ApplyNode, Autobase, Host, Views};
use hyperpunch_tests::node::run_script;
use serde_json::{json, Value};

fn key(s: &str) -> [u8; 32] {
    hex::decode(s).unwrap().try_into().unwrap()
}

/// The scenario's apply: `add:<key>:<0|1>`, `rm:<key>`, or a value for the view.
fn chat_apply(nodes: &[ApplyNode<'_>], views: &mut Views, host: &mut Host<'_>) {
    let view = views.open("view");
    for n in nodes {
        let s = String::from_utf8_lossy(n.value);
        if let Some(rest) = s.strip_prefix("add:") {
            let (k, idx) = rest.split_once(':').unwrap();
            host.add_writer(&key(k), idx == "1");
            continue;
        }
        if let Some(k) = s.strip_prefix("rm:") {
            host.remove_writer(&key(k)).unwrap();
            continue;
        }
        views.append(view, n.value.to_vec());
    }
}

struct Run {
    view: Vec<String>,
    indexed_view: usize,
    system_length: u64,
    reboots: u64,
}

/// Feed the blocks in the order `order` picks (writer index for each step), updating after
/// every `every` blocks.
fn replay(js: &Value, order: &[usize], every: usize) -> Run {
    let writers: Vec<([u8; 32], Vec<Vec<u8>>)> = js["writers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            let blocks = w["blocks"].as_array().unwrap();
            (
                key(w["key"].as_str().unwrap()),
                blocks
                    .iter()
                    .map(|b| hex::decode(b.as_str().unwrap()).unwrap())
                    .collect(),
            )
        })
        .collect();
    let mut base = Autobase::new(key(js["bootstrap"].as_str().unwrap()), chat_apply);
    let view = base.open_view("view");
    let mut next = vec![0usize; writers.len()];
    let mut fed = 0;
    for &w in order {
        let (k, blocks) = &writers[w];
        if next[w] < blocks.len() {
            base.handle_block(k, next[w] as u64, &blocks[next[w]])
                .unwrap();
            next[w] += 1;
            fed += 1;
            if fed % every == 0 {
                base.update();
            }
        }
    }
    base.update();
    if std::env::var("AB_DEBUG").is_ok() {
        for (k, o, l, ld, r, i) in base.writer_states() {
            eprintln!(
                "{} indexed {o} linearized {l} loaded {ld} removed {r} indexer {i} blocks {}",
                &hex::encode(k)[..8],
                base.oplog_len(&k)
            );
            if let Some((len, heads, deps)) = base.pending_node(&k) {
                let h: Vec<String> = heads
                    .iter()
                    .map(|h| format!("{}:{}", &hex::encode(h.key)[..8], h.length))
                    .collect();
                eprintln!("   pending {len} heads {h:?} resolved {deps}");
            }
        }
    }
    assert!(
        next.iter().zip(&writers).all(|(n, w)| *n == w.1.len()),
        "every block fed"
    );
    Run {
        view: base.views().blocks(view).iter().map(hex::encode).collect(),
        indexed_view: base.indexed_view_lengths()[view],
        system_length: base.system().length,
        reboots: base.reboots,
    }
}

fn orders(js: &Value) -> Vec<(String, Vec<usize>, usize)> {
    let lens: Vec<usize> = js["writers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["blocks"].as_array().unwrap().len())
        .collect();
    let total: usize = lens.iter().sum();
    let mut out = Vec::new();
    let seq: Vec<usize> = (0..lens.len())
        .flat_map(|w| std::iter::repeat_n(w, lens[w]))
        .collect();
    out.push(("writer by writer".to_string(), seq.clone(), total));
    let rev: Vec<usize> = (0..lens.len())
        .rev()
        .flat_map(|w| std::iter::repeat_n(w, lens[w]))
        .collect();
    out.push(("writer by writer, reversed".to_string(), rev, 1));
    let rr: Vec<usize> = (0..total).flat_map(|_| 0..lens.len()).collect();
    out.push(("round robin".to_string(), rr, 1));
    // seeded shuffles of the writers' turns
    for seed in 1..=4u64 {
        let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let mut turns = seq.clone();
        for i in (1..turns.len()).rev() {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            turns.swap(i, (s % (i as u64 + 1)) as usize);
        }
        out.push((format!("shuffle {seed}"), turns, 1 + seed as usize));
    }
    out
}

/// Runs the JS scenario and replays it in every order; returns the JS output and the most
/// linearizer restarts (indexer changes) a replay went through.
fn check(config: Value) -> (Value, u64) {
    let js = match std::env::var("AB_JS_FILE") {
        // replay a saved JS run (debugging)
        Ok(f) => serde_json::from_str(&std::fs::read_to_string(f).unwrap()).unwrap(),
        Err(_) => run_script("autobase-scenario.js", &config, Duration::from_secs(90)).unwrap(),
    };
    if let Ok(dir) = std::env::var("AB_SAVE_DIR") {
        let name = format!(
            "{dir}/{}.json",
            config.to_string().len() + js["writers"][0]["blocks"].as_array().unwrap().len()
        );
        std::fs::write(name, js.to_string()).unwrap();
    }
    let want: Vec<String> = js["view"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert!(!want.is_empty());
    let mut reboots = 0;
    for (name, order, every) in orders(&js) {
        let run = replay(&js, &order, every);
        assert_eq!(run.view, want, "{config} {name}: the view");
        assert_eq!(
            run.indexed_view as u64,
            js["viewIndexedLength"].as_u64().unwrap(),
            "{config} {name}: indexed length"
        );
        assert_eq!(
            run.system_length,
            js["systemLength"].as_u64().unwrap(),
            "{config} {name}: system length"
        );
        reboots = reboots.max(run.reboots);
    }
    (js, reboots)
}

#[test]
fn one_indexer_three_writers_partitioned() {
    check(json!({ "writers": 2, "indexers": "bootstrap", "rounds": 3, "perRound": 2 }));
}

#[test]
fn three_indexers_partitioned() {
    let (_, reboots) =
        check(json!({ "writers": 2, "indexers": "all", "rounds": 3, "perRound": 2 }));
    assert!(
        reboots > 0,
        "the indexers changed, so the linearizer restarted"
    );
}

#[test]
fn removed_writer_stops_counting() {
    let (js, _) = check(
        json!({ "writers": 2, "indexers": "bootstrap", "rounds": 2, "perRound": 1, "removeLast": true }),
    );
    let view: Vec<String> = js["view"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| String::from_utf8(hex::decode(v.as_str().unwrap()).unwrap()).unwrap())
        .collect();
    assert!(view.iter().any(|v| v == "after removal"), "{view:?}");
    assert!(
        !view
            .iter()
            .any(|v| v.ends_with("after removal") && v.starts_with('w')),
        "{view:?}"
    );
}
