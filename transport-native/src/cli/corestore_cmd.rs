//! `hyperpunch store ...`: look into a corestore's storage folder (a [`Corestore`] on a
//! [`FileStorage`], as a program using the library or a drive leaves it).

use std::path::Path;

use futures_executor::block_on;
use hyperpunch::corestore::{Corestore, CorestoreError, GetOptions, PrimaryKey, StoredCore};
use hyperpunch::FileStorage;

use super::store::{core_err, open_existing_storage, storage_err};
use super::CliError;

fn store_err(dir: &Path, e: CorestoreError) -> CliError {
    match e {
        CorestoreError::Storage(s) => storage_err(dir, s),
        CorestoreError::Hypercore(h) => core_err(dir, h),
        CorestoreError::Corrupt(m) => CliError::corrupt(format!("corrupt corestore: {m}")),
        CorestoreError::NotFound(_) => CliError::new(format!(
            "no corestore in {} (a corestore is created by a program using the hyperpunch library)",
            dir.display()
        )),
        other => CliError::new(other.to_string()),
    }
}

/// One core of the listing.
struct Row {
    core: StoredCore,
    length: Option<u64>,
    byte_length: Option<u64>,
    writable: Option<bool>,
    error: Option<String>,
}

/// `store info`: every core of the store, with its name, key, length and writability.
pub fn info(dir: &Path, json: bool) -> Result<(), CliError> {
    if !dir.is_dir() {
        return Err(store_err(dir, CorestoreError::NotFound("no folder")));
    }
    let storage = open_existing_storage(dir)?;
    let mut store: Corestore<FileStorage> =
        block_on(Corestore::open(storage, PrimaryKey::Stored)).map_err(|e| store_err(dir, e))?;
    let mut cores = block_on(store.list()).map_err(|e| store_err(dir, e))?;
    cores.sort_by_key(|c| c.id);
    let mut rows = Vec::with_capacity(cores.len());
    for core in cores {
        // One broken core is reported in its row, the others still listed.
        let opened = block_on(store.get(GetOptions::from_discovery_key(core.discovery_key)));
        let row = match opened {
            Ok(h) => {
                let c = store.core(&h).map_err(|e| store_err(dir, e))?;
                let row = Row {
                    length: Some(c.length()),
                    byte_length: Some(c.byte_length()),
                    writable: Some(c.writable()),
                    error: None,
                    core,
                };
                store.close_core(h).map_err(|e| store_err(dir, e))?;
                row
            }
            Err(e) => Row {
                length: None,
                byte_length: None,
                writable: None,
                error: Some(e.to_string()),
                core,
            },
        };
        rows.push(row);
    }
    let name_of = |c: &StoredCore| {
        c.name
            .as_ref()
            .map(|(ns, n)| (hex::encode(ns.0), String::from_utf8_lossy(n).into_owned()))
    };
    if json {
        let list: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| {
                let (ns, name) = name_of(&r.core).unzip();
                serde_json::json!({
                    "key": hex::encode(r.core.key),
                    "discoveryKey": hex::encode(r.core.discovery_key),
                    "name": name,
                    "namespace": ns,
                    "length": r.length,
                    "byteLength": r.byte_length,
                    "writable": r.writable,
                    "error": r.error,
                })
            })
            .collect();
        println!("{}", serde_json::json!({ "cores": list }));
    } else {
        println!("{} core(s) in {}", rows.len(), dir.display());
        for r in &rows {
            println!();
            println!("key:            {}", hex::encode(r.core.key));
            println!("discovery key:  {}", hex::encode(r.core.discovery_key));
            if let Some((ns, name)) = name_of(&r.core) {
                if ns == hex::encode([0u8; 32]) {
                    println!("name:           {name}");
                } else {
                    println!("name:           {name} (namespace {ns})");
                }
            }
            match (&r.error, r.length, r.byte_length, r.writable) {
                (Some(e), ..) => println!("error:          {e}"),
                (None, Some(l), Some(b), Some(w)) => {
                    println!("length:         {l} blocks, {b} bytes");
                    println!("writable:       {}", if w { "yes" } else { "no" });
                }
                _ => {}
            }
        }
    }
    Ok(())
}
