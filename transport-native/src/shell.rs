//! hypershell natively: the effects around [`hyperpunch_core::shell`]'s wire. A process in a
//! pseudo-terminal ([`Pty`]), the local terminal in raw mode ([`RawMode`]) and its size, and
//! the tar streams of copies: [`pack`] reads a file or folder into tar-fs's stream, and
//! [`Extractor`] writes one out, every file through a temporary file renamed into place, so
//! a copy cut short (a peer killed mid-copy) never leaves a half-written file under its name.

use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Component, Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::UNIX_EPOCH;

use hyperpunch_core::shell::tar::{self, Entry, EntryKind, TarEvent, TarReader};

fn os_err() -> io::Error {
    io::Error::last_os_error()
}

fn winsize(width: u64, height: u64) -> libc::winsize {
    libc::winsize {
        ws_row: height.clamp(1, u64::from(u16::MAX)) as u16,
        ws_col: width.clamp(1, u64::from(u16::MAX)) as u16,
        ws_xpixel: 0,
        ws_ypixel: 0,
    }
}

/// A process running in a pseudo-terminal (hypershell's tt-native `PTY.spawn`).
pub struct Pty {
    master: File,
    child: Child,
}

impl Pty {
    /// Spawns `command ARGS` in a new session whose controlling terminal is a fresh PTY of
    /// `width`x`height`, in `cwd`, with this process's environment.
    pub fn spawn(
        command: &str,
        args: &[String],
        width: u64,
        height: u64,
        cwd: &Path,
    ) -> io::Result<Pty> {
        let (mut m, mut s): (libc::c_int, libc::c_int) = (-1, -1);
        let ws = winsize(width, height);
        // SAFETY: openpty writes two fds; the name and termios pointers may be null.
        let r =
            unsafe { libc::openpty(&mut m, &mut s, std::ptr::null_mut(), std::ptr::null(), &ws) };
        if r != 0 {
            return Err(os_err());
        }
        // SAFETY: both fds were just opened and are owned by nobody else.
        let (master, slave) = unsafe { (OwnedFd::from_raw_fd(m), OwnedFd::from_raw_fd(s)) };
        // SAFETY: plain fcntl on an fd we own.
        unsafe {
            libc::fcntl(master.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC);
            libc::fcntl(slave.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC);
        }
        let mut cmd = Command::new(command);
        cmd.args(args)
            .current_dir(cwd)
            .stdin(Stdio::from(slave.try_clone()?))
            .stdout(Stdio::from(slave.try_clone()?))
            .stderr(Stdio::from(slave));
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() < 0 {
                    return Err(io::Error::last_os_error());
                }
                if libc::ioctl(0, libc::TIOCSCTTY as _, 0) < 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn()?;
        // The parent's copies of the slave close with `cmd`: the master reads EOF (EIO) once
        // every process holding the terminal has gone.
        drop(cmd);
        Ok(Pty {
            master: File::from(master),
            child,
        })
    }

    /// A handle reading what the terminal prints (blocking).
    pub fn reader(&self) -> io::Result<PtyReader> {
        Ok(PtyReader(self.master.try_clone()?))
    }

    /// A handle writing to the terminal (blocking) and resizing it.
    pub fn writer(&self) -> io::Result<PtyWriter> {
        Ok(PtyWriter(self.master.try_clone()?))
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for the process (blocking).
    pub fn wait(mut self) -> io::Result<ExitStatus> {
        self.child.wait()
    }
}

/// Reads the output of a [`Pty`].
pub struct PtyReader(File);

impl PtyReader {
    /// Reads some output; `Ok(0)` once no process holds the terminal any more (Linux reports
    /// that as EIO).
    pub fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.0.read(buf) {
            Err(e) if e.raw_os_error() == Some(libc::EIO) => Ok(0),
            r => r,
        }
    }
}

/// Writes to a [`Pty`] and resizes it.
pub struct PtyWriter(File);

impl PtyWriter {
    /// Writes all of `data` (what the user types).
    pub fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        self.0.write_all(data)
    }

    /// Sets the terminal size (the process gets SIGWINCH).
    pub fn resize(&self, width: u64, height: u64) -> io::Result<()> {
        let ws = winsize(width, height);
        // SAFETY: TIOCSWINSZ reads a winsize.
        if unsafe { libc::ioctl(self.0.as_raw_fd(), libc::TIOCSWINSZ as _, &ws) } < 0 {
            return Err(os_err());
        }
        Ok(())
    }
}

/// The exit code sent for a status: the code, or 128 + the signal that killed it (a shell's
/// convention; tt-native reports 0 for a killed process).
pub fn exit_code(status: ExitStatus) -> u64 {
    match (status.code(), status.signal()) {
        (Some(c), _) => u64::from(c as u8),
        (None, Some(s)) => 128 + s as u64,
        _ => 1,
    }
}

/// Sends SIGKILL to a process (a shell channel closed before its process exited).
pub fn kill(pid: u32) {
    // SAFETY: kill(2) with a pid we spawned.
    unsafe {
        libc::kill(pid as libc::pid_t, libc::SIGKILL);
    }
}

/// The size of the terminal on `fd`, if it is one.
pub fn terminal_size(fd: RawFd) -> Option<(u64, u64)> {
    let mut ws = winsize(80, 24);
    // SAFETY: TIOCGWINSZ writes a winsize.
    if unsafe { libc::ioctl(fd, libc::TIOCGWINSZ as _, &mut ws) } < 0 || ws.ws_col == 0 {
        return None;
    }
    Some((u64::from(ws.ws_col), u64::from(ws.ws_row)))
}

/// Whether `fd` is a terminal.
pub fn is_terminal(fd: RawFd) -> bool {
    // SAFETY: isatty on any fd.
    unsafe { libc::isatty(fd) == 1 }
}

/// The local terminal in raw mode until dropped (JS `setRawMode(true)`).
pub struct RawMode {
    fd: RawFd,
    saved: libc::termios,
}

impl RawMode {
    /// Puts the terminal on `fd` in raw mode.
    pub fn enable(fd: RawFd) -> io::Result<RawMode> {
        // SAFETY: termios is plain data; tcgetattr fills it.
        let mut t: libc::termios = unsafe { std::mem::zeroed() };
        if unsafe { libc::tcgetattr(fd, &mut t) } < 0 {
            return Err(os_err());
        }
        let saved = t;
        // SAFETY: cfmakeraw edits the struct; tcsetattr applies it.
        unsafe { libc::cfmakeraw(&mut t) };
        if unsafe { libc::tcsetattr(fd, libc::TCSANOW, &t) } < 0 {
            return Err(os_err());
        }
        Ok(RawMode { fd, saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        // SAFETY: restores what tcgetattr gave.
        unsafe {
            libc::tcsetattr(self.fd, libc::TCSANOW, &self.saved);
        }
    }
}

static WINCH: AtomicU64 = AtomicU64::new(0);

extern "C" fn on_winch(_: libc::c_int) {
    WINCH.fetch_add(1, Ordering::Relaxed);
}

/// Counts SIGWINCH (terminal size changes) from now on; [`winch_count`] reads the count.
pub fn watch_winch() {
    // SAFETY: the handler only touches an atomic.
    unsafe {
        libc::signal(
            libc::SIGWINCH,
            on_winch as extern "C" fn(libc::c_int) as libc::sighandler_t,
        );
    }
}

/// How many SIGWINCH arrived since [`watch_winch`].
pub fn winch_count() -> u64 {
    WINCH.load(Ordering::Relaxed)
}

/// Chunk size of [`pack`].
pub const CHUNK: usize = 64 * 1024;

fn mtime(m: &fs::Metadata) -> u64 {
    m.modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs())
}

/// Reads `path` (a file, or a folder and everything in it, symbolic links as links) into the
/// tar stream tar-fs `pack(path)` makes: the path itself is the entry `.`, what a folder holds
/// follows by relative path (in name order). `emit` gets chunks of about [`CHUNK`] bytes and
/// returns `false` to stop. Ends with the end marker.
pub fn pack(path: &Path, mut emit: impl FnMut(Vec<u8>) -> bool) -> io::Result<()> {
    let mut out = Vec::with_capacity(CHUNK * 2);
    let mut queue = vec![PathBuf::from(".")];
    let mut stopped = false;
    let mut flush = |out: &mut Vec<u8>, force: bool| -> bool {
        if out.len() >= CHUNK || (force && !out.is_empty()) {
            return emit(std::mem::take(out));
        }
        true
    };
    while let Some(rel) = queue.pop() {
        let abs = if rel == Path::new(".") {
            path.to_path_buf()
        } else {
            path.join(&rel)
        };
        let m = fs::symlink_metadata(&abs)?;
        let name = rel.to_string_lossy().into_owned();
        let mode = m.permissions().mode() & 0o7777;
        let ft = m.file_type();
        if ft.is_dir() {
            out.extend_from_slice(&tar::header(&Entry {
                path: name,
                kind: EntryKind::Directory,
                mode,
                size: 0,
                mtime: mtime(&m),
            }));
            let mut names: Vec<_> = fs::read_dir(&abs)?
                .map(|e| e.map(|e| e.file_name()))
                .collect::<Result<_, _>>()?;
            names.sort();
            // Depth-first in name order: push in reverse.
            for n in names.into_iter().rev() {
                queue.push(if rel == Path::new(".") {
                    PathBuf::from(&n)
                } else {
                    rel.join(&n)
                });
            }
        } else if ft.is_symlink() {
            let target = fs::read_link(&abs)?;
            out.extend_from_slice(&tar::header(&Entry {
                path: name,
                kind: EntryKind::Symlink(target.to_string_lossy().into_owned()),
                mode,
                size: 0,
                mtime: mtime(&m),
            }));
        } else if ft.is_file() {
            let mut f = File::open(&abs)?;
            let size = m.len();
            out.extend_from_slice(&tar::header(&Entry {
                path: name,
                kind: EntryKind::File,
                mode,
                size,
                mtime: mtime(&m),
            }));
            let mut left = size;
            let mut buf = vec![0u8; CHUNK];
            while left > 0 {
                let want = (left as usize).min(CHUNK);
                let n = f.read(&mut buf[..want])?;
                if n == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("{} shrank while being sent", abs.display()),
                    ));
                }
                out.extend_from_slice(&buf[..n]);
                left -= n as u64;
                if !flush(&mut out, false) {
                    stopped = true;
                    break;
                }
            }
            out.extend_from_slice(&tar::data_padding(size));
        } else {
            // Sockets, FIFOs, devices: tar-fs skips sockets and refuses the rest.
            continue;
        }
        if stopped || !flush(&mut out, false) {
            return Ok(());
        }
    }
    out.extend_from_slice(&tar::end());
    flush(&mut out, true);
    Ok(())
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A hidden temporary name next to `target` (`.NAME.hyperpunch-PID-N.tmp`).
pub fn temp_name(target: &Path) -> PathBuf {
    let name = target
        .file_name()
        .unwrap_or_else(|| OsStr::new("file"))
        .to_string_lossy();
    let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    target.with_file_name(format!(".{name}.hyperpunch-{}-{n}.tmp", std::process::id()))
}

struct Current {
    tmp: PathBuf,
    dest: PathBuf,
    file: File,
    mode: u32,
}

/// Writes a tar stream out as tar-fs `extract(dir, { map })` does for hypershell: into `dir`,
/// or, for a single file, under the name `single` (every entry renamed, as hypershell's `map`).
/// Each file is written to a hidden temporary file next to its destination and renamed into
/// place once complete (and synced); a stream that ends early leaves the destination as it was.
/// Paths that climb out of `dir` (`..`) are refused.
pub struct Extractor {
    reader: TarReader,
    dir: PathBuf,
    single: Option<String>,
    current: Option<Current>,
    files: u64,
    bytes: u64,
}

fn bad(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

impl Extractor {
    /// An extractor into `dir` (created if missing); `single`: the one file's name.
    pub fn new(dir: &Path, single: Option<String>) -> Extractor {
        Extractor {
            reader: TarReader::new(),
            dir: dir.to_path_buf(),
            single,
            current: None,
            files: 0,
            bytes: 0,
        }
    }

    /// Files written so far and their bytes.
    pub fn written(&self) -> (u64, u64) {
        (self.files, self.bytes)
    }

    fn dest(&self, name: &str) -> io::Result<PathBuf> {
        if let Some(s) = &self.single {
            return Ok(self.dir.join(s));
        }
        let mut p = self.dir.clone();
        for c in Path::new(name).components() {
            match c {
                Component::Normal(c) => p.push(c),
                Component::CurDir | Component::RootDir => {}
                Component::ParentDir | Component::Prefix(_) => {
                    return Err(bad(format!("refusing the path {name:?} (climbs out)")))
                }
            }
        }
        Ok(p)
    }

    /// More of the stream.
    pub fn push(&mut self, data: &[u8]) -> io::Result<()> {
        self.reader.push(data);
        while let Some(ev) = self.reader.next_event().map_err(|e| bad(e.to_string()))? {
            match ev {
                TarEvent::Entry(e) => self.entry(e)?,
                TarEvent::Data(d) => {
                    if let Some(c) = &mut self.current {
                        c.file.write_all(&d)?;
                        self.bytes += d.len() as u64;
                    }
                }
                TarEvent::EntryEnd => {
                    if let Some(c) = self.current.take() {
                        c.file.sync_all()?;
                        drop(c.file);
                        fs::set_permissions(&c.tmp, fs::Permissions::from_mode(c.mode))?;
                        fs::rename(&c.tmp, &c.dest)?;
                        self.files += 1;
                    }
                }
                TarEvent::End => {}
            }
        }
        Ok(())
    }

    fn entry(&mut self, e: Entry) -> io::Result<()> {
        let dest = self.dest(&e.path)?;
        match e.kind {
            EntryKind::Directory => {
                if self.single.is_none() {
                    fs::create_dir_all(&dest)?;
                }
            }
            EntryKind::File => {
                if let Some(parent) = dest.parent() {
                    fs::create_dir_all(parent)?;
                }
                let tmp = temp_name(&dest);
                let file = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&tmp)?;
                let mode = if e.mode == 0 { 0o644 } else { e.mode & 0o777 };
                self.current = Some(Current {
                    tmp,
                    dest,
                    file,
                    mode,
                });
                if e.size == 0 {
                    // EntryEnd follows at once.
                }
            }
            EntryKind::Symlink(target) => {
                if let Some(parent) = dest.parent() {
                    fs::create_dir_all(parent)?;
                }
                let tmp = temp_name(&dest);
                std::os::unix::fs::symlink(&target, &tmp)?;
                fs::rename(&tmp, &dest)?;
            }
            EntryKind::Other(_) => {}
        }
        Ok(())
    }

    /// The stream ended (the empty message): it must have ended between entries.
    pub fn finish(mut self) -> io::Result<(u64, u64)> {
        if self.current.is_some() || !self.reader.at_boundary() {
            return Err(bad("the tar stream ended inside an entry"));
        }
        self.current = None;
        Ok((self.files, self.bytes))
    }
}

impl Drop for Extractor {
    fn drop(&mut self) {
        if let Some(c) = self.current.take() {
            drop(c.file);
            let _ = fs::remove_file(&c.tmp);
        }
    }
}

/// Copies bytes both ways between a TCP connection and a tunnel stream (a
/// [`crate::dht::Connection`] over its own UDX stream: hypershell's `pump(socket,
/// secretStream, socket)`): each TCP read becomes one message, each message is written to
/// TCP. Either side's end is passed on (a half-close stays a half-close); it returns once
/// both directions ended, or one failed, after what was sent through the stream was
/// acknowledged (bounded). Returns the bytes carried (to the stream, from the stream).
pub async fn bridge_tcp(
    tcp: tokio::net::TcpStream,
    conn: crate::dht::Connection,
) -> io::Result<(u64, u64)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _ = tcp.set_nodelay(true);
    let (mut r, mut w) = tcp.into_split();
    let (tx, mut rx) = conn.split();
    let up = async {
        let mut n_up = 0u64;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = r.read(&mut buf).await?;
            if n == 0 {
                tx.end().await?;
                return Ok::<u64, io::Error>(n_up);
            }
            n_up += n as u64;
            tx.send(buf[..n].to_vec()).await?;
        }
    };
    let down = async {
        let mut n_down = 0u64;
        while let Some(m) = rx.recv().await {
            let m = m?;
            n_down += m.len() as u64;
            w.write_all(&m).await?;
        }
        // The peer ended: so do we, towards TCP.
        w.shutdown().await?;
        Ok::<u64, io::Error>(n_down)
    };
    let r = tokio::try_join!(up, down);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(30), tx.finished()).await;
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_then_extract_a_folder_and_a_file() {
        let t = std::env::temp_dir().join(format!("hp-shell-{}", std::process::id()));
        let src = t.join("src");
        fs::create_dir_all(src.join("sub/deeper")).unwrap();
        fs::write(src.join("a.txt"), b"hello").unwrap();
        fs::write(src.join("sub/deeper/big"), vec![5u8; 300_000]).unwrap();
        fs::write(src.join("empty"), b"").unwrap();
        std::os::unix::fs::symlink("a.txt", src.join("link")).unwrap();
        let mut stream = Vec::new();
        pack(&src, |c| {
            stream.extend_from_slice(&c);
            true
        })
        .unwrap();
        let dst = t.join("dst");
        let mut x = Extractor::new(&dst, None);
        for c in stream.chunks(1000) {
            x.push(c).unwrap();
        }
        assert_eq!(x.finish().unwrap().0, 3);
        assert_eq!(fs::read(dst.join("a.txt")).unwrap(), b"hello");
        assert_eq!(fs::read(dst.join("sub/deeper/big")).unwrap().len(), 300_000);
        assert_eq!(fs::read_link(dst.join("link")).unwrap(), Path::new("a.txt"));

        let mut stream = Vec::new();
        pack(&src.join("a.txt"), |c| {
            stream.extend_from_slice(&c);
            true
        })
        .unwrap();
        let mut x = Extractor::new(&t, Some("renamed".into()));
        // Cut short: nothing appears under the name.
        x.push(&stream[..514]).unwrap();
        drop(x);
        assert!(!t.join("renamed").exists());
        let mut x = Extractor::new(&t, Some("renamed".into()));
        x.push(&stream).unwrap();
        x.finish().unwrap();
        assert_eq!(fs::read(t.join("renamed")).unwrap(), b"hello");
        let leftovers: Vec<_> = fs::read_dir(&t)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty());
        fs::remove_dir_all(&t).unwrap();
    }
}
