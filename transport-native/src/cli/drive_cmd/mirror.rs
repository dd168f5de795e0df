//! `drive mirror` and `drive export`: mirroring between a folder and a drive, with progress
//! and the counts mirror-drive reports.

use super::*;

/// `1.5 MiB`-style sizes (as JS `tiny-byte-size`).
pub(super) fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// One change as `drives` prints it: `+ /key 12 B`, `- /key 3 B`, `~ /key 5 B (+2 B)`.
pub(super) fn format_op(op: &MirrorOp) -> String {
    match op.op {
        OpKind::Add => format!("+ {} {}", op.key, bytes(op.bytes_added)),
        OpKind::Remove => format!("- {} {}", op.key, bytes(op.bytes_removed)),
        OpKind::Change => {
            let d = op.bytes_added as i128 - op.bytes_removed as i128;
            let sign = if d > 0 {
                "+"
            } else if d < 0 {
                "-"
            } else {
                ""
            };
            format!(
                "~ {} {} ({sign}{})",
                op.key,
                bytes(op.bytes_added),
                bytes(d.unsigned_abs() as u64)
            )
        }
        OpKind::Equal => format!("= {}", op.key),
    }
}

pub(super) fn progress_bar(what: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(&format!(
        "{{spinner}} {what} [{{bar:30}}] {{pos}}/{{len}} files {{msg}}"
    )) {
        pb.set_style(style.progress_chars("=> "));
    }
    pb
}

/// Run a mirror with a progress bar (and `-v` lines) on stderr.
pub(super) async fn run_mirror<A: Drive, B: Drive>(
    src: &A,
    dst: &B,
    opts: MirrorOptions,
    verbose: bool,
    what: &str,
) -> Result<MirrorReport, MirrorError> {
    let pb = progress_bar(what);
    let mut copied = 0u64;
    let mut m = Mirror::new(src, dst, opts);
    let out = m
        .run(|e| match e {
            MirrorEvent::Listed { files } => pb.set_length(files),
            MirrorEvent::Op(op) => {
                if verbose {
                    pb.suspend(|| eprintln!("{}", format_op(&op)));
                }
            }
            MirrorEvent::Done { .. } => pb.inc(1),
            MirrorEvent::Copied(n) => {
                copied += n;
                pb.set_message(bytes(copied));
            }
        })
        .await;
    pb.finish_and_clear();
    out
}

pub(super) fn summary(r: &MirrorReport, dry_run: bool, tail: &str) {
    let c = r.count;
    eprintln!(
        "{} {} files compared (+{} -{} ~{}), {} added, {} removed{tail}{}",
        if dry_run { "(dry run)" } else { "done:" },
        c.files,
        c.add,
        c.remove,
        c.change,
        bytes(r.bytes_added),
        bytes(r.bytes_removed),
        if dry_run { "; nothing was written" } else { "" }
    );
}

pub(super) fn mirror_options(args: &MirrorArgs, prune: bool) -> MirrorOptions {
    MirrorOptions {
        prefix: if args.prefix.is_empty() {
            vec!["/".into()]
        } else {
            args.prefix.clone()
        },
        dry_run: args.dry_run,
        prune,
        ignore: args.ignore.clone(),
        ..MirrorOptions::default()
    }
}

/// `drive mirror DIR`: folder into the drive.
pub(super) async fn mirror_in(
    folder: &Path,
    dir: &Path,
    args: &MirrorArgs,
    prune: bool,
) -> Result<(), CliError> {
    if !folder.is_dir() {
        return Err(CliError::new(format!(
            "{} is not a folder",
            folder.display()
        )));
    }
    let store = open_store(dir, true).await?;
    let (has_local, stored) = {
        let g = store.lock().await;
        let names = g
            .list_names(&Namespace::ROOT)
            .await
            .map_err(|e| store_err(dir, e))?;
        let cores = g.list().await.map_err(|e| store_err(dir, e))?;
        (names.iter().any(|(n, _)| n == b"db"), !cores.is_empty())
    };
    let (drive, _cores) = if has_local || !stored {
        hyperpunch::drive::open_local_with(&store, hyperpunch::drive::DriveOptions::offline())
            .await
            .map_err(|e| open_err(dir, e))?
    } else {
        let (d, c) = find_drive(&store, dir, &WhichDrive { key: None }).await?;
        if !d.writable().await {
            return Err(CliError::new(format!(
                "the drive in {} was copied from a peer and cannot be written here",
                dir.display()
            )));
        }
        (d, c)
    };
    let local = Localdrive::new(folder)
        .map_err(|e| CliError::new(format!("cannot use {}: {e}", folder.display())))?;
    let mut opts = mirror_options(args, prune);
    // The storage folder inside the mirrored folder is not mirrored (it changes meanwhile).
    if let (Ok(f), Ok(s)) = (folder.canonicalize(), dir.canonicalize()) {
        if let Ok(rel) = s.strip_prefix(&f) {
            let rel = rel.to_string_lossy().replace('\\', "/");
            if !rel.is_empty() {
                opts.ignore.push(format!("/{rel}"));
            }
        }
    }
    let report = run_mirror(&local, &drive, opts, args.verbose, "mirroring")
        .await
        .map_err(|e| mirror_err(dir, e))?;
    let key = drive.key().await;
    let version = drive.version().await;
    summary(&report, args.dry_run, &format!("; drive version {version}"));
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", hex::encode(key));
    Ok(())
}

/// `drive export DIR`: the drive into a folder.
pub(super) async fn export(
    dir: &Path,
    folder: &Path,
    which: &WhichDrive,
    args: &MirrorArgs,
    prune: bool,
) -> Result<(), CliError> {
    let store = open_store(dir, false).await?;
    let (drive, _cores) = find_drive(&store, dir, which).await?;
    if folder.exists() && !folder.is_dir() {
        return Err(CliError::new(format!(
            "{} exists and is not a folder",
            folder.display()
        )));
    }
    if !args.dry_run {
        std::fs::create_dir_all(folder)
            .map_err(|e| CliError::new(format!("cannot create {}: {e}", folder.display())))?;
    }
    let local = Localdrive::new(folder)
        .map_err(|e| CliError::new(format!("cannot use {}: {e}", folder.display())))?;
    let report = run_mirror(
        &drive,
        &local,
        mirror_options(args, prune),
        args.verbose,
        "exporting",
    )
    .await
    .map_err(|e| mirror_err(dir, e))?;
    summary(&report, args.dry_run, "");
    Ok(())
}
