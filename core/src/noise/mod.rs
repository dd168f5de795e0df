//! The Noise handshake as noise-handshake 4.2.0 runs it for @hyperswarm/secret-stream and hyperdht:
//! `Noise_XX_Ed25519_ChaChaPoly_BLAKE2b` and `Noise_IK_Ed25519_ChaChaPoly_BLAKE2b`.
//!
//! - Static and ephemeral keys are Ed25519 key pairs ([`KeyPair`]); the Diffie-Hellman is
//!   noise-curve-ed's: the secret scalar (SHA-512 of the seed, clamped) times the remote Ed25519
//!   point, encoded as an Ed25519 point.
//! - Hash and HKDF are BLAKE2b-512 (HMAC with a 128-byte block), the cipher ChaCha20-Poly1305 with the
//!   counter as a u32 LE at offset 4 of the 12-byte nonce, and ciphertexts are capped at 65535 bytes.
//! - Every message carries a payload (possibly empty), encrypted as soon as a key exists.
//!
//! Sans-IO: the caller passes the ephemeral key pair (made from a seed it drew) to
//! [`Handshake::new`]; no randomness is read here.
//!
//! ```
//! use hyperpunch_core::crypto::KeyPair;
//! use hyperpunch_core::noise::{Handshake, Pattern};
//!
//! let (is, rs) = (KeyPair::from_seed(&[1; 32]), KeyPair::from_seed(&[2; 32]));
//! let mut i = Handshake::new(Pattern::XX, true, is, KeyPair::from_seed(&[3; 32]), &[], None).unwrap();
//! let mut r = Handshake::new(Pattern::XX, false, rs, KeyPair::from_seed(&[4; 32]), &[], None).unwrap();
//! let m1 = i.send(b"").unwrap();
//! r.recv(&m1).unwrap();
//! let m2 = r.send(b"").unwrap();
//! i.recv(&m2).unwrap();
//! let m3 = i.send(b"hi").unwrap();
//! assert_eq!(r.recv(&m3).unwrap(), b"hi");
//! let (a, b) = (i.finish().unwrap(), r.finish().unwrap());
//! assert_eq!((a.tx, a.rx, a.hash), (b.rx, b.tx, b.hash));
//! ```

mod symmetric;
#[cfg(test)]
pub(crate) mod tests;

use crate::crypto::KeyPair;
use symmetric::SymmetricState;

/// A Noise handshake pattern supported by noise-handshake and used by the Holepunch stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pattern {
    /// `XX`: both static keys are transmitted (secret-stream's default).
    XX,
    /// `IK`: the initiator knows the responder's static key in advance (hyperdht connections).
    IK,
}

impl Pattern {
    /// The protocol name hashed into the initial state, e.g. `Noise_XX_Ed25519_ChaChaPoly_BLAKE2b`.
    pub fn protocol_name(self) -> &'static str {
        match self {
            Pattern::XX => "Noise_XX_Ed25519_ChaChaPoly_BLAKE2b",
            Pattern::IK => "Noise_IK_Ed25519_ChaChaPoly_BLAKE2b",
        }
    }

    fn messages(self) -> &'static [&'static [Token]] {
        use Token::*;
        match self {
            Pattern::XX => &[&[E], &[E, EE, S, ES], &[S, SE]],
            Pattern::IK => &[&[E, ES, S, SS], &[E, EE, SE]],
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    E,
    S,
    EE,
    ES,
    SE,
    SS,
}

/// Why a handshake step failed. After any error the handshake is unusable ([`NoiseError::Failed`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoiseError {
    /// `send` was called when a message was expected from the peer, or `recv` the other way round.
    #[error("it is not this side's turn to {0}")]
    WrongTurn(&'static str),
    /// The handshake already finished.
    #[error("the handshake is already complete")]
    AlreadyComplete,
    /// [`Handshake::finish`] was called before the last message.
    #[error("the handshake is not complete")]
    NotComplete,
    /// An `IK` initiator needs the responder's static public key.
    #[error("the pattern needs the remote static public key")]
    MissingRemoteStatic,
    /// A received message is shorter than its keys and authentication tags.
    #[error("handshake message truncated: insufficient bytes")]
    Truncated,
    /// Authentication of an encrypted static key or payload failed.
    #[error("handshake message failed authentication")]
    Decrypt,
    /// A public key is not a valid prime-order Ed25519 point, or the shared secret is the identity.
    #[error("invalid public key for Diffie-Hellman")]
    InvalidPublicKey,
    /// A ciphertext exceeds the Noise maximum of 65535 bytes.
    #[error("ciphertext length of {len} exceeds maximum Noise message length of 65535")]
    MessageTooLong {
        /// The ciphertext length.
        len: usize,
    },
    /// The cipher nonce wrapped (cannot happen in a handshake of a few messages).
    #[error("cipher nonce exhausted")]
    NonceExhausted,
    /// An earlier step failed; the handshake cannot continue.
    #[error("the handshake failed earlier")]
    Failed,
}

/// The result of a completed handshake.
#[derive(Clone, PartialEq, Eq)]
pub struct Split {
    /// Key for what this side sends (`k1` for the initiator, `k2` for the responder).
    pub tx: [u8; 32],
    /// Key for what this side receives.
    pub rx: [u8; 32],
    /// The 64-byte handshake hash (`h` after the last message).
    pub hash: [u8; 64],
    /// This side's static public key.
    pub public_key: [u8; 32],
    /// The peer's static public key as authenticated by the handshake.
    pub remote_public_key: [u8; 32],
}

impl core::fmt::Debug for Split {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Split")
            .field("public_key", &hex32(&self.public_key))
            .field("remote_public_key", &hex32(&self.remote_public_key))
            .finish_non_exhaustive()
    }
}

fn hex32(b: &[u8; 32]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// One side of a Noise handshake. Messages alternate, the initiator sending first; call
/// [`send`](Self::send) when [`is_my_turn`](Self::is_my_turn), else [`recv`](Self::recv), until
/// [`is_complete`](Self::is_complete), then [`finish`](Self::finish).
#[derive(Clone)]
pub struct Handshake {
    pattern: Pattern,
    initiator: bool,
    state: SymmetricState,
    s: KeyPair,
    e: KeyPair,
    rs: Option<[u8; 32]>,
    re: Option<[u8; 32]>,
    step: usize,
    failed: bool,
    split: Option<Split>,
}

impl core::fmt::Debug for Handshake {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Handshake")
            .field("pattern", &self.pattern)
            .field("initiator", &self.initiator)
            .field("step", &self.step)
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

impl Handshake {
    /// Starts a handshake (noise-handshake's constructor plus `initialise(prologue, remoteStatic)`).
    ///
    /// `static_keypair` is this side's long-term Ed25519 key pair and `ephemeral` the one-time key
    /// pair it sends in its `e` token (make it with [`KeyPair::from_seed`] from fresh random bytes).
    /// `remote_static` is required for an `IK` initiator and ignored otherwise (as in JS).
    pub fn new(
        pattern: Pattern,
        initiator: bool,
        static_keypair: KeyPair,
        ephemeral: KeyPair,
        prologue: &[u8],
        remote_static: Option<[u8; 32]>,
    ) -> Result<Self, NoiseError> {
        let mut state = SymmetricState::new(pattern.protocol_name().as_bytes());
        state.mix_hash(prologue);
        let mut rs = None;
        if pattern == Pattern::IK {
            // Pre-message: the responder's static key.
            if initiator {
                let key = remote_static.ok_or(NoiseError::MissingRemoteStatic)?;
                state.mix_hash(&key);
                rs = Some(key);
            } else {
                state.mix_hash(&static_keypair.public_key);
            }
        }
        Ok(Handshake {
            pattern,
            initiator,
            state,
            s: static_keypair,
            e: ephemeral,
            rs,
            re: None,
            step: 0,
            failed: false,
            split: None,
        })
    }

    /// The pattern.
    pub fn pattern(&self) -> Pattern {
        self.pattern
    }

    /// Whether this side is the initiator.
    pub fn is_initiator(&self) -> bool {
        self.initiator
    }

    /// This side's static public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.s.public_key
    }

    /// Whether the handshake is complete (the last message was sent or received).
    pub fn is_complete(&self) -> bool {
        self.split.is_some()
    }

    /// Whether a step failed (the handshake is then unusable).
    pub fn is_failed(&self) -> bool {
        self.failed
    }

    /// Whether the next message is this side's to send.
    pub fn is_my_turn(&self) -> bool {
        !self.is_complete() && (self.step & 1 == 0) == self.initiator
    }

    /// The running handshake hash `h` (the final handshake hash once complete).
    pub fn handshake_hash(&self) -> [u8; 64] {
        match &self.split {
            Some(s) => s.hash,
            None => self.state.digest,
        }
    }

    /// The peer's static public key, once received (or given, for an `IK` initiator).
    pub fn remote_static(&self) -> Option<[u8; 32]> {
        self.rs
    }

    /// The result, once complete.
    pub fn split(&self) -> Option<&Split> {
        self.split.as_ref()
    }

    /// Consumes the completed handshake and returns its [`Split`].
    pub fn finish(self) -> Result<Split, NoiseError> {
        self.split.ok_or(NoiseError::NotComplete)
    }

    fn check(&self, sending: bool) -> Result<&'static [Token], NoiseError> {
        if self.failed {
            return Err(NoiseError::Failed);
        }
        if self.is_complete() {
            return Err(NoiseError::AlreadyComplete);
        }
        if self.is_my_turn() != sending {
            return Err(NoiseError::WrongTurn(if sending {
                "send"
            } else {
                "receive"
            }));
        }
        self.pattern
            .messages()
            .get(self.step)
            .copied()
            .ok_or(NoiseError::AlreadyComplete)
    }

    /// Writes this side's next handshake message carrying `payload`.
    pub fn send(&mut self, payload: &[u8]) -> Result<Vec<u8>, NoiseError> {
        let tokens = self.check(true)?;
        let mut work = self.clone();
        match work.write_message(tokens, payload) {
            Ok(msg) => {
                *self = work;
                Ok(msg)
            }
            Err(e) => {
                self.failed = true;
                Err(e)
            }
        }
    }

    /// Reads the peer's next handshake message and returns its payload.
    pub fn recv(&mut self, message: &[u8]) -> Result<Vec<u8>, NoiseError> {
        let tokens = self.check(false)?;
        let mut work = self.clone();
        match work.read_message(tokens, message) {
            Ok(payload) => {
                *self = work;
                Ok(payload)
            }
            Err(e) => {
                self.failed = true;
                Err(e)
            }
        }
    }

    fn dh_token(&mut self, token: Token) -> Result<(), NoiseError> {
        let (local_static, remote_static) = match token {
            Token::EE => (false, false),
            Token::ES => (!self.initiator, self.initiator),
            Token::SE => (self.initiator, !self.initiator),
            _ => (true, true), // SS
        };
        let local = if local_static { &self.s } else { &self.e };
        let remote = if remote_static { self.rs } else { self.re };
        let remote = remote.ok_or(NoiseError::MissingRemoteStatic)?;
        self.state.mix_key(&remote, local)
    }

    fn write_message(&mut self, tokens: &[Token], payload: &[u8]) -> Result<Vec<u8>, NoiseError> {
        let mut out = Vec::with_capacity(96 + payload.len());
        for &token in tokens {
            match token {
                Token::E => {
                    let pk = self.e.public_key;
                    self.state.mix_hash(&pk);
                    out.extend_from_slice(&pk);
                }
                Token::S => {
                    let pk = self.s.public_key;
                    out.extend_from_slice(&self.state.encrypt_and_hash(&pk)?);
                }
                dh => self.dh_token(dh)?,
            }
        }
        out.extend_from_slice(&self.state.encrypt_and_hash(payload)?);
        self.advance();
        Ok(out)
    }

    fn read_message(&mut self, tokens: &[Token], message: &[u8]) -> Result<Vec<u8>, NoiseError> {
        let mut rest = message;
        for &token in tokens {
            match token {
                Token::E => {
                    let mut re = [0u8; 32];
                    re.copy_from_slice(take(&mut rest, 32)?);
                    self.state.mix_hash(&re);
                    self.re = Some(re);
                }
                Token::S => {
                    let len = if self.state.has_key() { 48 } else { 32 };
                    let plain = self.state.decrypt_and_hash(take(&mut rest, len)?)?;
                    let mut rs = [0u8; 32];
                    rs.copy_from_slice(&plain);
                    self.rs = Some(rs);
                }
                dh => self.dh_token(dh)?,
            }
        }
        let payload = self.state.decrypt_and_hash(rest)?;
        self.advance();
        Ok(payload)
    }

    fn advance(&mut self) {
        self.step += 1;
        if self.step < self.pattern.messages().len() {
            return;
        }
        let (k1, k2) = self.state.split();
        let (tx, rx) = if self.initiator { (k1, k2) } else { (k2, k1) };
        // `rs` is always set by now: every pattern transmits or pre-shares it.
        let remote_public_key = self.rs.unwrap_or([0u8; 32]);
        self.split = Some(Split {
            tx,
            rx,
            hash: self.state.digest,
            public_key: self.s.public_key,
            remote_public_key,
        });
    }
}

/// Splits `n` bytes off the front of `rest`.
fn take<'a>(rest: &mut &'a [u8], n: usize) -> Result<&'a [u8], NoiseError> {
    if rest.len() < n {
        return Err(NoiseError::Truncated);
    }
    let (head, tail) = rest.split_at(n);
    *rest = tail;
    Ok(head)
}
