//! Fuzz hypershell's decoders: its messages (`shell::messages`), the tar stream of copies
//! (`shell::tar::TarReader`, fed in chunks), the allow list and key file, the tunnel's JSON
//! handshake and message, `-L` and `--tunnel-port` parsing, and the server (with and without a
//! tunnel policy) and client halves fed protomux frames from a peer. The first byte picks. Nothing may panic;
//! messages that decode re-encode to bytes that decode to the same value.
#![no_main]

use hyperpunch_core::encoding::{Decode, Encode};
use hyperpunch_core::protomux::Protomux;
use hyperpunch_core::shell::tar::{TarEvent, TarReader};
use hyperpunch_core::shell::{
    AllowList, Download, DownloadHeader, Kind, LocalForward, PortRange, RemoteError, Resize,
    ShellClient, ShellServer, Spawn, StreamIds, TunnelPolicy, TunnelTarget, Upload,
};
use libfuzzer_sys::fuzz_target;

fn round_trip<T: for<'a> Decode<'a> + Encode + PartialEq + std::fmt::Debug>(b: &[u8]) {
    if let Ok(v) = T::from_bytes(b) {
        assert_eq!(T::from_bytes(&v.to_bytes()).unwrap(), v);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else { return };
    match pick % 8 {
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
        6 => {
            if let Ok(Some(t)) = TunnelTarget::from_handshake(rest) {
                assert_eq!(TunnelTarget::from_handshake(&t.to_handshake()).unwrap(), Some(t));
            }
            if let Ok(ids) = StreamIds::from_bytes(rest) {
                assert_eq!(StreamIds::from_bytes(&ids.to_bytes()).unwrap(), ids);
            }
        }
        7 => {
            let s = String::from_utf8_lossy(rest);
            if let Ok(f) = LocalForward::parse(&s) {
                assert!(s.contains(&f.remote.host));
            }
            let _ = PortRange::parse(&s);
        }
        _ => {
            // Frames from a peer: a length byte then that many bytes, repeated.
            let mut mux = Protomux::new();
            let all = [Kind::Shell, Kind::Upload, Kind::Download, Kind::Tunnel];
            let mut server = (pick % 8 == 4).then(|| {
                let policy = if pick & 0x80 != 0 {
                    TunnelPolicy {
                        hosts: Some(vec!["127.0.0.1".into()]),
                        ports: Some(vec![PortRange { start: 1, end: 100 }]),
                    }
                } else {
                    TunnelPolicy::default()
                };
                ShellServer::new(&mut mux, &all).with_tunnel_policy(policy)
            });
            let mut client = ShellClient::new();
            if server.is_none() {
                let _ = client.open_shell(&mut mux, &Spawn::default());
                let _ = client.open_download(&mut mux, &Download { source: "x".into() });
                let target = TunnelTarget { host: "h".into(), port: 1 };
                if let Ok(ch) = client.open_tunnel(&mut mux, &target) {
                    let _ = client.tunnel_connect(&mut mux, ch, 1);
                }
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
