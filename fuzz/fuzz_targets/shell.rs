//! Fuzz hypershell's decoders: its messages (`shell::messages`), the tar stream of copies
//! (`shell::tar::TarReader`, fed in chunks), the allow list and key file, and the server and
//! client halves fed protomux frames from a peer. The first byte picks. Nothing may panic;
//! messages that decode re-encode to bytes that decode to the same value.
#![no_main]

use hyperpunch_core::encoding::{Decode, Encode};
use hyperpunch_core::protomux::Protomux;
use hyperpunch_core::shell::tar::{TarEvent, TarReader};
use hyperpunch_core::shell::{
    AllowList, Download, DownloadHeader, Kind, RemoteError, Resize, ShellClient, ShellServer,
    Spawn, Upload,
};
use libfuzzer_sys::fuzz_target;

fn round_trip<T: for<'a> Decode<'a> + Encode + PartialEq + std::fmt::Debug>(b: &[u8]) {
    if let Ok(v) = T::from_bytes(b) {
        assert_eq!(T::from_bytes(&v.to_bytes()).unwrap(), v);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else { return };
    match pick % 6 {
        0 => {
            round_trip::<Spawn>(rest);
            round_trip::<Upload>(rest);
            round_trip::<Download>(rest);
            round_trip::<DownloadHeader>(rest);
            round_trip::<RemoteError>(rest);
            round_trip::<Resize>(rest);
        }
        1 | 2 => {
            let step = usize::from(pick / 6).max(1);
            let mut r = TarReader::new();
            let mut total = 0u64;
            'outer: for chunk in rest.chunks(step) {
                r.push(chunk);
                loop {
                    match r.next_event() {
                        Ok(Some(TarEvent::Data(d))) => total += d.len() as u64,
                        Ok(Some(_)) => {}
                        Ok(None) => break,
                        Err(_) => break 'outer,
                    }
                }
            }
            assert!(total <= rest.len() as u64);
        }
        3 => {
            let s = String::from_utf8_lossy(rest);
            let _ = AllowList::parse(&s);
            let _ = hyperpunch_core::shell::parse_key_file(&s);
        }
        _ => {
            // Frames from a peer: a length byte then that many bytes, repeated.
            let mut mux = Protomux::new();
            let mut server = (pick % 6 == 4)
                .then(|| ShellServer::new(&mut mux, &[Kind::Shell, Kind::Upload, Kind::Download]));
            let mut client = ShellClient::new();
            if server.is_none() {
                let _ = client.open_shell(&mut mux, &Spawn::default());
                let _ = client.open_download(&mut mux, &Download { source: "x".into() });
            }
            let mut rest = rest;
            while let Some((&n, tail)) = rest.split_first() {
                let n = usize::from(n).min(tail.len());
                let (frame, tail) = tail.split_at(n);
                rest = tail;
                if mux.handle_frame(frame).is_err() {
                    break;
                }
                while let Some(e) = mux.poll_event() {
                    let ok = match &mut server {
                        Some(s) => s.handle_event(&mut mux, e).is_ok(),
                        None => client.handle_event(e).is_ok(),
                    };
                    if !ok {
                        return;
                    }
                }
                while mux.poll_transmit().is_some() {}
            }
        }
    }
});
