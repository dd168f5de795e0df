//! Tests of `shell` (moved out of it to keep it under about 1,000 lines).

use super::*;

fn pump(a: &mut Protomux, b: &mut Protomux) {
    loop {
        let mut moved = false;
        while let Some(f) = a.poll_transmit() {
            b.handle_frame(&f).unwrap();
            moved = true;
        }
        while let Some(f) = b.poll_transmit() {
            a.handle_frame(&f).unwrap();
            moved = true;
        }
        if !moved {
            break;
        }
    }
}

#[test]
fn exec_exchange() {
    let (mut cm, mut sm) = (Protomux::new(), Protomux::new());
    let mut server = ShellServer::new(&mut sm, &[Kind::Shell, Kind::Upload, Kind::Download]);
    let mut client = ShellClient::new();
    let spawn = Spawn {
        command: "echo".into(),
        args: vec!["hi".into()],
        width: 80,
        height: 24,
    };
    let ch = client.open_shell(&mut cm, &spawn).unwrap();
    client.stdin(&mut cm, ch, b"typed").unwrap();
    pump(&mut cm, &mut sm);
    let mut got = Vec::new();
    while let Some(e) = sm.poll_event() {
        if let Some(e) = server.handle_event(&mut sm, e).unwrap() {
            got.push(e);
        }
    }
    pump(&mut cm, &mut sm);
    while let Some(e) = sm.poll_event() {
        if let Some(e) = server.handle_event(&mut sm, e).unwrap() {
            got.push(e);
        }
    }
    let sch = match &got[0] {
        ServerEvent::Spawn { channel, spawn: s } => {
            assert_eq!(s, &spawn);
            *channel
        }
        e => panic!("{e:?}"),
    };
    assert_eq!(
        got[1],
        ServerEvent::Stdin {
            channel: sch,
            data: b"typed".to_vec()
        }
    );
    server.stdout(&mut sm, sch, b"hi\r\n").unwrap();
    server.exit_code(&mut sm, sch, 3).unwrap();
    server.close(&mut sm, sch).unwrap();
    pump(&mut cm, &mut sm);
    let mut got = Vec::new();
    while let Some(e) = cm.poll_event() {
        if let Some(e) = client.handle_event(e).unwrap() {
            got.push(e);
        }
    }
    assert_eq!(
        got,
        vec![
            ClientEvent::Opened { channel: ch },
            ClientEvent::Stdout {
                channel: ch,
                data: b"hi\r\n".to_vec()
            },
            ClientEvent::ExitCode {
                channel: ch,
                code: 3
            },
            ClientEvent::Closed {
                channel: ch,
                rejected: false
            },
        ]
    );
}

#[test]
fn unserved_protocol_is_rejected() {
    let (mut cm, mut sm) = (Protomux::new(), Protomux::new());
    let mut server = ShellServer::new(&mut sm, &[Kind::Shell]);
    let mut client = ShellClient::new();
    let ch = client
        .open_upload(
            &mut cm,
            &Upload {
                target: "/x".into(),
                is_directory: false,
            },
        )
        .unwrap();
    pump(&mut cm, &mut sm);
    while let Some(e) = sm.poll_event() {
        assert_eq!(server.handle_event(&mut sm, e).unwrap(), None);
    }
    pump(&mut cm, &mut sm);
    let mut got = Vec::new();
    while let Some(e) = cm.poll_event() {
        got.extend(client.handle_event(e).unwrap());
    }
    assert_eq!(
        got,
        vec![ClientEvent::Closed {
            channel: ch,
            rejected: true
        }]
    );
}

#[test]
fn allow_list_and_key_file() {
    let k = [7u8; 32];
    let text = format!(
        "# <public key>\n\n{}  # laptop\n{}\n",
        crate::id_encoding::encode(&k),
        hex_of(&[9u8; 32])
    );
    let l = AllowList::parse(&text).unwrap();
    assert!(!l.refuses(&k));
    assert!(!l.refuses(&[9u8; 32]));
    assert!(l.refuses(&[1u8; 32]));
    assert_eq!(
        AllowList::parse("# x\nnot a key\n"),
        Err(BadAllowLine { line: 2 })
    );
    assert!(!AllowList::Anyone.refuses(&k));
    let known = format!(
        "# <name> <public key>\nlaptop {}\nbad line here\n",
        hex_of(&k)
    );
    assert_eq!(resolve_peer("laptop", &known).unwrap(), k);
    assert_eq!(
        resolve_peer(&hex_of(&[9u8; 32]), &known).unwrap(),
        [9u8; 32]
    );
    assert!(resolve_peer("desktop", &known).is_err());
    let seed = [3u8; 32];
    assert_eq!(parse_key_file(&key_file(&seed)), Some(seed));
    assert_eq!(parse_key_file("garbage"), None);
}

fn drain_server(sm: &mut Protomux, server: &mut ShellServer) -> Vec<ServerEvent> {
    let mut got = Vec::new();
    while let Some(e) = sm.poll_event() {
        got.extend(server.handle_event(sm, e).unwrap());
    }
    got
}

fn drain_client(cm: &mut Protomux, client: &mut ShellClient) -> Vec<ClientEvent> {
    let mut got = Vec::new();
    while let Some(e) = cm.poll_event() {
        got.extend(client.handle_event(e).unwrap());
    }
    got
}

#[test]
fn tunnel_exchange() {
    let (mut cm, mut sm) = (Protomux::new(), Protomux::new());
    let mut server = ShellServer::new(&mut sm, &[Kind::Shell, Kind::Tunnel]);
    let mut client = ShellClient::new();
    let target = TunnelTarget {
        host: "127.0.0.1".into(),
        port: 7000,
    };
    let ch = client.open_tunnel(&mut cm, &target).unwrap();
    // As JS's client: the stream request right behind the open.
    client.tunnel_connect(&mut cm, ch, 77).unwrap();
    pump(&mut cm, &mut sm);
    let got = drain_server(&mut sm, &mut server);
    let sch = match &got[..] {
        [ServerEvent::TunnelOpened { channel, target: t }, ServerEvent::TunnelConnect {
            channel: c2,
            client_id: 77,
            target: t2,
        }] if t == &target && t2 == &target && channel == c2 => *channel,
        other => panic!("{other:?}"),
    };
    server.tunnel_stream(&mut sm, sch, 77, 99).unwrap();
    pump(&mut cm, &mut sm);
    assert_eq!(
        drain_client(&mut cm, &mut client),
        vec![
            ClientEvent::Opened { channel: ch },
            ClientEvent::TunnelStream {
                channel: ch,
                client_id: 77,
                server_id: 99
            }
        ]
    );
    client.close(&mut cm, ch).unwrap();
    pump(&mut cm, &mut sm);
    assert_eq!(
        drain_server(&mut sm, &mut server),
        vec![ServerEvent::Closed {
            channel: sch,
            kind: Kind::Tunnel
        }]
    );
}

#[test]
fn tunnel_refused_by_policy_and_unserved() {
    let (mut cm, mut sm) = (Protomux::new(), Protomux::new());
    let policy = TunnelPolicy {
        hosts: Some(vec!["127.0.0.1".into()]),
        ports: Some(vec![PortRange::parse("7000-7001").unwrap()]),
    };
    let mut server = ShellServer::new(&mut sm, &[Kind::Tunnel]).with_tunnel_policy(policy);
    let mut client = ShellClient::new();
    let target = TunnelTarget {
        host: "127.0.0.1".into(),
        port: 22,
    };
    let ch = client.open_tunnel(&mut cm, &target).unwrap();
    client.tunnel_connect(&mut cm, ch, 5).unwrap();
    pump(&mut cm, &mut sm);
    let got = drain_server(&mut sm, &mut server);
    // Refused and closed; the stream request behind the open does nothing.
    assert!(matches!(
        &got[0],
        ServerEvent::TunnelRefused { target: Some(t), .. } if t == &target
    ));
    assert!(!got
        .iter()
        .any(|e| matches!(e, ServerEvent::TunnelConnect { .. })));
    pump(&mut cm, &mut sm);
    assert_eq!(
        drain_client(&mut cm, &mut client),
        vec![
            ClientEvent::Opened { channel: ch },
            ClientEvent::Closed {
                channel: ch,
                rejected: false
            }
        ]
    );

    // A server that does not serve tunnels rejects the open.
    let (mut cm, mut sm) = (Protomux::new(), Protomux::new());
    let mut server = ShellServer::new(&mut sm, &[Kind::Shell]);
    let mut client = ShellClient::new();
    let ch = client.open_tunnel(&mut cm, &target).unwrap();
    pump(&mut cm, &mut sm);
    assert!(drain_server(&mut sm, &mut server).is_empty());
    pump(&mut cm, &mut sm);
    assert_eq!(
        drain_client(&mut cm, &mut client),
        vec![ClientEvent::Closed {
            channel: ch,
            rejected: true
        }]
    );
}

fn hex_of(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
