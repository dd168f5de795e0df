//! hyperdht's Noise IK wrapper (lib/noise-wrap.js): `Noise_IK_Ed25519_ChaChaPoly_BLAKE2b` with the
//! prologue `NS.PEER_HANDSHAKE`, [`NoisePayload`]s as the plaintexts, and `final()` deriving the
//! holepunch secret and the secret-stream ids from the handshake hash.

use crate::crypto::{keyed_hash_batch, KeyPair};
use crate::dht::messages_connect::{ns_peer_handshake, ns_peer_holepunch, NoisePayload};
use crate::encoding::DecodeError;
use crate::noise::{Handshake, NoiseError, Pattern, Split};
use crate::secretstream::stream_id;

/// Why a wrapped handshake step failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoiseWrapError {
    /// The Noise layer refused the message (truncated, not authentic, wrong turn).
    #[error("noise: {0}")]
    Noise(#[from] NoiseError),
    /// The decrypted payload is not a `noisePayload`.
    #[error("bad noise payload: {0}")]
    Payload(#[from] DecodeError),
}

/// What a finished handshake hands to the connection (JS `NoiseWrap.final()`).
#[derive(Debug, Clone)]
pub struct HandshakeResult {
    /// Whether this side initiated (the client).
    pub is_initiator: bool,
    /// Keys and hash for secret-stream ([`SecretStream::from_handshake`](crate::secretstream::SecretStream::from_handshake)).
    pub split: Split,
    /// `H(NS.PEER_HOLEPUNCH, key = hash)`: keys [`SecurePayload`](crate::dht::holepunch::SecurePayload).
    pub holepunch_secret: [u8; 32],
    /// The stream id the remote side sends in its secret-stream header.
    pub remote_id: [u8; 32],
}

/// One side of hyperdht's IK handshake. The client is the initiator and knows the server's key.
pub struct NoiseWrap {
    handshake: Handshake,
}

impl NoiseWrap {
    /// The client side: `remote_public_key` is the server's Ed25519 key; `ephemeral` comes from a
    /// seed the caller drew.
    pub fn initiator(
        key_pair: KeyPair,
        remote_public_key: [u8; 32],
        ephemeral: KeyPair,
    ) -> Result<Self, NoiseError> {
        let handshake = Handshake::new(
            Pattern::IK,
            true,
            key_pair,
            ephemeral,
            &ns_peer_handshake(),
            Some(remote_public_key),
        )?;
        Ok(NoiseWrap { handshake })
    }

    /// The server side.
    pub fn responder(key_pair: KeyPair, ephemeral: KeyPair) -> Result<Self, NoiseError> {
        let handshake = Handshake::new(
            Pattern::IK,
            false,
            key_pair,
            ephemeral,
            &ns_peer_handshake(),
            None,
        )?;
        Ok(NoiseWrap { handshake })
    }

    /// Whether this side is the client.
    pub fn is_initiator(&self) -> bool {
        self.handshake.is_initiator()
    }

    /// Encrypts `payload` into the next handshake message.
    pub fn send(&mut self, payload: &NoisePayload) -> Result<Vec<u8>, NoiseError> {
        self.handshake.send(&payload.encode())
    }

    /// Reads the peer's handshake message.
    pub fn recv(&mut self, message: &[u8]) -> Result<NoisePayload, NoiseWrapError> {
        let plain = self.handshake.recv(message)?;
        Ok(NoisePayload::decode(&plain)?)
    }

    /// The peer's static key, once its message was read.
    pub fn remote_public_key(&self) -> Option<[u8; 32]> {
        self.handshake.remote_static()
    }

    /// Whether both messages went through.
    pub fn is_complete(&self) -> bool {
        self.handshake.is_complete()
    }

    /// JS `final()`.
    pub fn finish(self) -> Result<HandshakeResult, NoiseError> {
        let is_initiator = self.handshake.is_initiator();
        let split = self.handshake.finish()?;
        let holepunch_secret = keyed_hash_batch(&split.hash, &[&ns_peer_holepunch()]);
        let remote_id = stream_id(&split.hash, !is_initiator);
        Ok(HandshakeResult {
            is_initiator,
            split,
            holepunch_secret,
            remote_id,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dht::messages_connect::{HolepunchInfo, UdxInfo};

    fn seed(b: u8) -> KeyPair {
        KeyPair::from_seed(&[b; 32])
    }

    #[test]
    fn ik_exchange_is_byte_identical_to_js() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/vectors/net/vectors-static.json"
        );
        let j: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let ik = &j["noiseIK"];
        let h = |k: &str| ik[k].as_str().unwrap().to_string();
        let (server, client) = (seed(1), seed(2));
        let client_payload = NoisePayload {
            udx: Some(UdxInfo {
                version: 1,
                reusable_socket: false,
                id: 1,
                seq: 0,
            }),
            secret_stream: Some(1),
            ..Default::default()
        };
        let server_payload = NoisePayload {
            holepunch: Some(HolepunchInfo {
                id: 0,
                relays: vec![],
            }),
            udx: Some(UdxInfo {
                version: 1,
                reusable_socket: false,
                id: 2,
                seq: 0,
            }),
            secret_stream: Some(1),
            ..Default::default()
        };
        assert_eq!(
            hex::encode(client_payload.encode()),
            h("clientPayloadPlain")
        );
        assert_eq!(
            hex::encode(server_payload.encode()),
            h("serverPayloadPlain")
        );
        let mut c = NoiseWrap::initiator(client.clone(), server.public_key, seed(0x10)).unwrap();
        let mut s = NoiseWrap::responder(server.clone(), seed(0x11)).unwrap();
        let m1 = c.send(&client_payload).unwrap();
        assert_eq!(hex::encode(&m1), h("msg1"));
        let p1 = s.recv(&m1).unwrap();
        assert_eq!(p1.udx.unwrap().id, 1);
        assert_eq!(s.remote_public_key(), Some(client.public_key));
        let m2 = s.send(&server_payload).unwrap();
        assert_eq!(hex::encode(&m2), h("msg2"));
        assert_eq!(c.recv(&m2).unwrap().udx.unwrap().id, 2);
        let (a, b) = (c.finish().unwrap(), s.finish().unwrap());
        assert_eq!(hex::encode(a.split.hash), h("handshakeHash"));
        assert_eq!(hex::encode(a.split.tx), h("initiatorTx"));
        assert_eq!(hex::encode(b.split.tx), h("responderTx"));
        assert_eq!(hex::encode(a.holepunch_secret), h("holepunchSecret"));
        assert_eq!(a.holepunch_secret, b.holepunch_secret);
        assert_eq!(hex::encode(a.remote_id), h("streamIdResponder"));
        assert_eq!(hex::encode(b.remote_id), h("streamIdInitiator"));
    }

    #[test]
    fn garbage_is_an_error() {
        let mut s = NoiseWrap::responder(seed(1), seed(0x11)).unwrap();
        assert!(s.recv(&[0u8; 20]).is_err());
        let mut s = NoiseWrap::responder(seed(1), seed(0x11)).unwrap();
        assert!(s.recv(&[7u8; 200]).is_err());
    }
}
