//! The stable keyed hash: SipHash-1-3 under a key derived from a fixed label and an optional
//! secret, so that the same key material gives the same key in every process.

use std::fmt;
use std::hash::Hasher;
use std::net::IpAddr;

use sha2::{Digest, Sha256};

/// What every key derivation starts from; a new version of the key encoding changes it, so keys of
/// two encodings can never be confused.
const KEY_LABEL: &[u8] = b"tower-webhooks keyed state v1\0";

/// Turns key material into the `u64` keys of keyed state: SipHash-1-3 under a 128-bit key.
///
/// The key is derived from a fixed label and a secret (SHA-256 of both, first 16 bytes), so:
///
/// - two hashers built with the same secret give the same key for the same material, in every
///   process and on every platform (the material is written in a fixed byte encoding, see
///   [`KeyMaterial`]): replicas sharing state (SPEC §7) agree on keys without agreeing on a seed;
/// - the [`Default`] hasher uses the empty secret. Its keys are predictable by anyone who reads this
///   crate, which costs nothing for counting (a client cannot pick its own IP, and steering keys into
///   one shard only spends the client's own budget faster) but is why a deployment sharing state
///   between replicas may set a secret of its own with [`with_secret`](Self::with_secret).
///
/// SipHash-1-3 is what `std`'s `RandomState` runs, so a limiter costs what it did with a random
/// seed; only the seed's origin changed.
///
/// ```
/// use tower_webhooks::keyed::KeyHasher;
/// let a = KeyHasher::default();
/// let b = KeyHasher::default();
/// let key = |hasher: &KeyHasher| {
///     let mut material = hasher.material();
///     material.str("/plugins/webhooks/zapier");
///     material.ip("203.0.113.7".parse().unwrap());
///     material.finish()
/// };
/// assert_eq!(key(&a), key(&b));
/// assert_ne!(key(&a), key(&KeyHasher::with_secret(b"replicas' own secret")));
/// ```
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct KeyHasher {
    k0: u64,
    k1: u64,
}

impl Default for KeyHasher {
    fn default() -> Self {
        Self::with_secret(b"")
    }
}

impl fmt::Debug for KeyHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The key is as good as a secret when one was set.
        f.debug_struct("KeyHasher").finish_non_exhaustive()
    }
}

impl KeyHasher {
    /// A hasher whose key is derived from `secret`; the same secret gives the same keys everywhere.
    pub fn with_secret(secret: &[u8]) -> Self {
        let digest = Sha256::new()
            .chain_update(KEY_LABEL)
            .chain_update(secret)
            .finalize();
        let word = |range: std::ops::Range<usize>| {
            let mut bytes = [0; 8];
            bytes.copy_from_slice(&digest[range]);
            u64::from_le_bytes(bytes)
        };
        Self {
            k0: word(0..8),
            k1: word(8..16),
        }
    }

    /// Starts the key of one piece of material.
    pub fn material(&self) -> KeyMaterial {
        KeyMaterial {
            state: Sip::new(self.k0, self.k1),
        }
    }

    /// The key of `bytes` written as one field ([`KeyMaterial::bytes`]).
    pub fn hash_bytes(&self, bytes: &[u8]) -> u64 {
        let mut material = self.material();
        material.bytes(bytes);
        material.finish()
    }
}

/// The material of one key, written field by field in a fixed encoding, then [`finish`]ed into
/// its `u64` key.
///
/// Every field is self-delimiting (a byte string carries its length, an IP address its family), so
/// two different sequences of fields never write the same bytes. The encoding is the same on every
/// platform and in every version of this crate that keeps [`KeyHasher`]'s label.
///
/// It is also a [`Hasher`], so any `Hash` value can be written into it
/// ([`FixedWindowLimiter::hash`](crate::rate_limit::FixedWindowLimiter::hash)); `Hash` encodings are `std`'s
/// and may differ between platforms or Rust versions, so keys that replicas share should use the
/// methods here.
///
/// [`finish`]: KeyMaterial::finish
#[derive(Clone, Copy)]
pub struct KeyMaterial {
    state: Sip<1, 3>,
}

impl fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyMaterial").finish_non_exhaustive()
    }
}

impl KeyMaterial {
    /// Writes a byte string, length first.
    pub fn bytes(&mut self, bytes: &[u8]) {
        self.state.write(&(bytes.len() as u64).to_le_bytes());
        self.state.write(bytes);
    }

    /// Writes a string as its UTF-8 bytes ([`bytes`](Self::bytes)).
    pub fn str(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }

    /// Writes an IP address: its family (4 or 6), then its octets. IPv4-mapped IPv6 addresses are
    /// written as the IPv4 address they map, as the limiters count them.
    pub fn ip(&mut self, ip: IpAddr) {
        match ip.to_canonical() {
            IpAddr::V4(v4) => {
                let [a, b, c, d] = v4.octets();
                self.state.write(&[4, a, b, c, d]);
            }
            IpAddr::V6(v6) => {
                self.state.write(&[6]);
                self.state.write(&v6.octets());
            }
        }
    }

    /// Writes an integer, little-endian.
    pub fn u64(&mut self, n: u64) {
        self.state.write(&n.to_le_bytes());
    }

    /// The key.
    pub fn finish(&self) -> u64 {
        self.state.finish()
    }
}

impl Hasher for KeyMaterial {
    fn finish(&self) -> u64 {
        self.state.finish()
    }

    fn write(&mut self, bytes: &[u8]) {
        self.state.write(bytes);
    }
}

/// SipHash-c-d (Aumasson and Bernstein), streaming: `C` compression and `D` finalisation rounds.
/// The keys use 1-3; the tests run 2-4 against `std`'s reference implementation.
#[derive(Clone, Copy)]
pub(crate) struct Sip<const C: usize, const D: usize> {
    v0: u64,
    v1: u64,
    v2: u64,
    v3: u64,
    /// Bytes written but not yet compressed, little-endian in the low `ntail` bytes.
    tail: u64,
    ntail: usize,
    length: usize,
}

impl<const C: usize, const D: usize> Sip<C, D> {
    pub(crate) const fn new(k0: u64, k1: u64) -> Self {
        Self {
            v0: k0 ^ 0x736f_6d65_7073_6575,
            v1: k1 ^ 0x646f_7261_6e64_6f6d,
            v2: k0 ^ 0x6c79_6765_6e65_7261,
            v3: k1 ^ 0x7465_6462_7974_6573,
            tail: 0,
            ntail: 0,
            length: 0,
        }
    }

    #[inline(always)]
    fn round(&mut self) {
        self.v0 = self.v0.wrapping_add(self.v1);
        self.v1 = self.v1.rotate_left(13) ^ self.v0;
        self.v0 = self.v0.rotate_left(32);
        self.v2 = self.v2.wrapping_add(self.v3);
        self.v3 = self.v3.rotate_left(16) ^ self.v2;
        self.v0 = self.v0.wrapping_add(self.v3);
        self.v3 = self.v3.rotate_left(21) ^ self.v0;
        self.v2 = self.v2.wrapping_add(self.v1);
        self.v1 = self.v1.rotate_left(17) ^ self.v2;
        self.v2 = self.v2.rotate_left(32);
    }

    #[inline(always)]
    fn compress(&mut self, word: u64) {
        self.v3 ^= word;
        for _ in 0..C {
            self.round();
        }
        self.v0 ^= word;
    }

    #[inline]
    pub(crate) fn write(&mut self, mut bytes: &[u8]) {
        self.length = self.length.wrapping_add(bytes.len());
        if self.ntail != 0 {
            let needed = 8 - self.ntail;
            let take = needed.min(bytes.len());
            self.tail |= load_le(&bytes[..take]) << (8 * self.ntail);
            if take < needed {
                self.ntail += take;
                return;
            }
            let word = self.tail;
            self.compress(word);
            self.ntail = 0;
            self.tail = 0;
            bytes = &bytes[take..];
        }
        let mut words = bytes.chunks_exact(8);
        for word in &mut words {
            let mut le = [0; 8];
            le.copy_from_slice(word);
            self.compress(u64::from_le_bytes(le));
        }
        let rest = words.remainder();
        self.tail = load_le(rest);
        self.ntail = rest.len();
    }

    pub(crate) fn finish(&self) -> u64 {
        let mut state = *self;
        let last = ((self.length as u64 & 0xff) << 56) | self.tail;
        state.compress(last);
        state.v2 ^= 0xff;
        for _ in 0..D {
            state.round();
        }
        state.v0 ^ state.v1 ^ state.v2 ^ state.v3
    }
}

/// Fewer than eight bytes as a little-endian integer, read as at most one 4-, one 2- and one
/// 1-byte load: a variable-length copy into a buffer would call `memcpy` for every field.
#[inline(always)]
fn load_le(bytes: &[u8]) -> u64 {
    debug_assert!(bytes.len() < 8);
    let mut word = 0;
    let mut at = 0;
    if let Some(four) = bytes.first_chunk::<4>() {
        word = u64::from(u32::from_le_bytes(*four));
        at = 4;
    }
    if let Some(two) = bytes[at..].first_chunk::<2>() {
        word |= u64::from(u16::from_le_bytes(*two)) << (8 * at);
        at += 2;
    }
    if let Some(&one) = bytes.get(at) {
        word |= u64::from(one) << (8 * at);
    }
    word
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `std`'s `SipHasher` is SipHash-2-4 with the reference algorithm; ours with the same rounds
    /// must agree for every length and however the input is split into writes.
    #[test]
    #[allow(deprecated)]
    fn sip_2_4_agrees_with_std_for_every_length_and_split() {
        let input: Vec<u8> = (0..64u8).map(|i| i.wrapping_mul(37) ^ 0x5a).collect();
        let (k0, k1) = (0x0706_0504_0302_0100, 0x0f0e_0d0c_0b0a_0908);
        for len in 0..=input.len() {
            let message = &input[..len];
            let mut reference = std::hash::SipHasher::new_with_keys(k0, k1);
            reference.write(message);
            let expected = reference.finish();
            for split in 0..=len {
                for second_split in split..=len {
                    let mut ours = Sip::<2, 4>::new(k0, k1);
                    ours.write(&message[..split]);
                    ours.write(&message[split..second_split]);
                    ours.write(&message[second_split..]);
                    assert_eq!(
                        ours.finish(),
                        expected,
                        "len {len}, splits {split} {second_split}"
                    );
                }
            }
        }
    }

    /// The SipHash paper's first test vector (key 00..0f, empty message), for 2-4.
    #[test]
    fn sip_2_4_paper_vector() {
        let sip = Sip::<2, 4>::new(0x0706_0504_0302_0100, 0x0f0e_0d0c_0b0a_0908);
        assert_eq!(sip.finish(), 0x726f_db47_dd0e_0e31);
    }
}
