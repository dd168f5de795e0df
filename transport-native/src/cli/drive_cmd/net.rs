//! `drive serve` and `drive fetch`: replicating a drive's db and blobs cores over TCP or
//! hyperswarm.

use super::*;

/// `drive serve --tcp` / `--swarm`.
pub(super) async fn serve(
    dir: &Path,
    source: Source<'_>,
    which: &WhichDrive,
) -> Result<(), CliError> {
    let store = open_store(dir, false).await?;
    let (drive, _cores) = find_drive(&store, dir, which).await?;
    let key = drive.key().await;
    let addr = match source {
        Source::Tcp(addr) => addr,
        Source::Swarm(args) => {
            let swarm = start_swarm(args).await?;
            let dk = discovery_key(&key);
            let discovery = swarm
                .join(
                    dk,
                    JoinOptions {
                        client: false,
                        ..JoinOptions::default()
                    },
                )
                .await;
            let (_stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let serving = tokio::spawn(swarm_serve_loop(swarm, store.clone(), stopped));
            if !discovery.flushed().await {
                return Err(CliError::new(
                    "announcing the drive on the DHT failed: check --bootstrap and that the \
                     bootstrap nodes run",
                ));
            }
            eprintln!(
                "serving drive {} (version {})",
                hex::encode(key),
                drive.version().await
            );
            {
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "announced {}", hex::encode(dk)).and_then(|()| out.flush());
            }
            let why = match serving.await {
                Ok(Err(e)) => e,
                Ok(Ok(())) => "the swarm stopped".to_string(),
                Err(e) => e.to_string(),
            };
            drop(discovery);
            return Err(CliError::new(why));
        }
    };
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| CliError::new(format!("cannot listen on {addr}: {e}")))?;
    let local = listener
        .local_addr()
        .map_err(|e| CliError::new(format!("cannot listen on {addr}: {e}")))?;
    eprintln!(
        "serving drive {} (version {})",
        hex::encode(key),
        drive.version().await
    );
    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "listening on {local}").and_then(|()| out.flush());
    }
    let key_pair = KeyPair::from_seed(&random32()?);
    let opts = StreamOptions {
        timeout: IDLE_TIMEOUT_MS,
        keep_alive: IDLE_TIMEOUT_MS / 4,
        ..StreamOptions::default()
    };
    crate::cli::net_cmd::accept_loop(listener, store, key_pair, opts).await;
    Ok(())
}

/// `drive fetch --key --tcp` / `--swarm`: the whole drive, db and blobs, over one connection
/// per peer.
pub(super) async fn fetch(
    dir: &Path,
    key_hex: &str,
    source: Source<'_>,
    timeout: Duration,
) -> Result<(), CliError> {
    let key = parse_hex32("--key", key_hex)?;
    let store = open_store(dir, true).await?;
    timing::mark("storage opened");
    let (conn, what) = match source {
        Source::Tcp(addr) => {
            let socket = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
                .await
                .map_err(|_| CliError::new(format!("cannot connect to {addr}: timed out")))?
                .map_err(|e| CliError::new(format!("cannot connect to {addr}: {e}")))?;
            let _ = socket.set_nodelay(true);
            let key_pair = KeyPair::from_seed(&random32()?);
            let opts = StreamOptions {
                keep_alive: 1000,
                ..StreamOptions::default()
            };
            let store = store.clone();
            let conn = tokio::spawn(async move {
                replicate_with(socket, true, key_pair, opts, &store)
                    .await
                    .map_err(|e| e.to_string())
            });
            (conn, format!("the connection to {addr}"))
        }
        Source::Swarm(args) => {
            let swarm = start_swarm(args).await?;
            let discovery = swarm
                .join(
                    discovery_key(&key),
                    JoinOptions {
                        server: false,
                        ..JoinOptions::default()
                    },
                )
                .await;
            let store = store.clone();
            let conn = tokio::spawn(async move {
                let (_stop, stopped) = tokio::sync::oneshot::channel::<()>();
                let r = swarm_serve_loop(swarm, store, stopped).await;
                drop(discovery);
                r
            });
            (conn, "the swarm".to_string())
        }
    };
    let swarm = matches!(source, Source::Swarm(_));
    let work = fetch_all(&store, dir, key, timeout, swarm);
    tokio::pin!(work);
    let result = tokio::select! {
        r = &mut work => r,
        c = conn_ended(&conn) => Err(CliError::new(format!(
            "{what} ended before the drive was complete{}",
            c.map(|e| format!(": {e}")).unwrap_or_default()
        ))),
    };
    let summary = match result {
        Ok(s) => s,
        Err(e) => {
            conn.abort();
            return Err(e);
        }
    };
    store.end_all().await;
    timing::mark("ended");
    if matches!(source, Source::Tcp(_)) {
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, conn).await;
    } else {
        // The swarm's connections end with the process; `end_all` told the peers.
        conn.abort();
    }
    timing::mark("closed");
    eprintln!("{summary}");
    Ok(())
}

/// Resolves when the replication task has ended (with its error, if any).
pub(super) async fn conn_ended(
    conn: &tokio::task::JoinHandle<Result<(), String>>,
) -> Option<String> {
    loop {
        if conn.is_finished() {
            return Some("closed by the peer".to_string());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub(super) async fn fetch_all(
    store: &Store,
    dir: &Path,
    key: [u8; 32],
    timeout: Duration,
    swarm: bool,
) -> Result<String, CliError> {
    let opts = hyperpunch::drive::DriveOptions {
        block_timeout: Some(timeout),
        update_timeout: timeout,
    };
    let (drive, _cores) = hyperpunch::drive::open_remote_with(store, key, timeout, opts)
        .await
        .map_err(|e| match e {
            DriveOpenError::NotAvailable(_) if swarm => CliError::new(format!(
                "no peer sent the drive {} within {}s (is anyone on the DHT serving it? \
                 `drive serve --swarm`, or JS `drives seed`)",
                hex::encode(key),
                timeout.as_secs()
            )),
            DriveOpenError::NotAvailable(_) => CliError::new(format!(
                "the peer did not send the drive {} within {}s (does it serve this drive?)",
                hex::encode(key),
                timeout.as_secs()
            )),
            e => open_err(dir, e),
        })?;
    timing::mark("drive opened");
    let db = drive.db();
    let blobs = drive.blobs().core();
    BeeCore::update(db).await.map_err(|e| core_err(dir, e))?;
    let db_len = db.state().await.length;
    BlobCore::download(db, 0, db_len)
        .await
        .map_err(|e| core_err(dir, e))?;
    timing::mark("db downloaded");
    BeeCore::update(blobs).await.map_err(|e| core_err(dir, e))?;
    let blobs_len = blobs.state().await.length;
    let blobs_bytes = BlobCore::byte_length(blobs).await;
    let pb = Arc::new(if std::io::stderr().is_terminal() {
        let pb = ProgressBar::with_draw_target(Some(blobs_len), ProgressDrawTarget::stderr());
        if let Ok(style) = ProgressStyle::with_template(&format!(
            "{{spinner}} fetching [{{bar:30}}] {{pos}}/{{len}} blocks of {} ({{per_sec}}, eta {{eta}})",
            bytes(blobs_bytes)
        )) {
            pb.set_style(style.progress_chars("=> "));
        }
        pb
    } else {
        ProgressBar::hidden()
    });
    let ticker = tokio::spawn({
        let pb = pb.clone();
        let blobs = blobs.clone();
        async move {
            loop {
                if let Ok(n) = blobs.stored_blocks().await {
                    pb.set_position(n);
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    });
    let done = BlobCore::download(blobs, 0, blobs_len).await;
    ticker.abort();
    timing::mark("blobs downloaded");
    pb.finish_and_clear();
    done.map_err(|e| match e {
        HypercoreError::BlockNotAvailable(i) => CliError::new(format!(
            "no block arrived for {}s (block {i} of the blobs core is missing)",
            timeout.as_secs()
        )),
        e => core_err(dir, e),
    })?;
    let mut files = 0u64;
    let mut it = drive
        .list("/", ListOptions::default())
        .map_err(|e| drive_err(dir, e))?;
    while it.next().await.map_err(|e| drive_err(dir, e))?.is_some() {
        files += 1;
    }
    timing::mark("listed");
    Ok(format!(
        "fetched drive {}: version {}, {files} files, {} of contents",
        hex::encode(key),
        drive.version().await,
        bytes(blobs_bytes)
    ))
}
