//! Fuzz the dht-relay wire (`relay::dht_relay`): arbitrary bytes as every message type (a decoded
//! message must re-encode to bytes that decode to the same message) and as the payloads of
//! messages on an opened relay channel of a server [`Session`], after a client handshake, and of
//! a [`Client`] with a stream and a server. Nothing may panic; a session that failed must say
//! why with a close code.
//!
//! Input: `[type] [rest]`: the message type for the decoders, and the payload to send.
#![no_main]

use core::time::Duration;
use hyperpunch_core::protomux::{ChannelOptions, Protomux};
use hyperpunch_core::crypto::KeyPair;
use hyperpunch_core::relay::dht_relay::{
    Announcers, Client, Keys, Limits, Message, Session, PROTOCOL,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&t, rest)) = data.split_first() else {
        return;
    };
    let t = u64::from(t % 32);
    if let Ok(m) = Message::decode(t, rest) {
        assert_eq!(m.message_type(), t);
        assert_eq!(Message::decode(t, &m.encode()).as_ref(), Ok(&m));
    }
    if let Ok(a) = Announcers::decode(rest) {
        assert_eq!(Announcers::decode(&a.encode()), Ok(a));
    }

    let now = Duration::from_secs(1);
    let mut s = Session::new(now, Limits::default());
    let mut c = Protomux::new();
    let ch = c.open(ChannelOptions::new(PROTOCOL)).unwrap();
    let hs = Message::Handshake(Keys {
        public_key: [1; 32],
        secret_key: None,
    });
    c.send(ch, 0, &hs.encode()).unwrap();
    c.send(ch, t, rest).unwrap();
    while let Some(f) = c.poll_transmit() {
        s.handle_frame(now, &f);
    }
    // The same bytes as a raw frame.
    s.handle_frame(now, rest);
    while s.poll_request().is_some() {}
    while s.poll_transmit().is_some() {}
    if let Some(c) = s.close_reason() {
        assert!(c.code >= 1000 && c.reason.len() <= 123);
    }

    // The client side: the same bytes as a message of the relay channel, then as a raw frame.
    let kp = KeyPair::from_seed(&[2; 32]);
    let mut client = Client::new(&kp, t % 2 == 0, [3; 32]);
    let _ = client.connect([4; 32], kp.clone());
    let _ = client.listen(kp);
    let mut relay = Protomux::new();
    let rch = relay.open(ChannelOptions::new(PROTOCOL)).unwrap();
    relay.send(rch, t, rest).unwrap();
    while let Some(f) = relay.poll_transmit() {
        let _ = client.handle_frame(&f);
    }
    let _ = client.handle_frame(rest);
    while client.poll_event().is_some() {}
    while client.poll_transmit().is_some() {}
});
