//! The configured secrets, as digests, and the handle that replaces them at runtime.

use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};

use sha2::{Digest, Sha256};
use subtle::{Choice, ConstantTimeEq};

use crate::secret::Secret;

type Sha256Digest = [u8; 32];

/// The secrets one route accepts, kept only as SHA-256 digests.
///
/// Comparing digests instead of raw bytes hides the secret's length: both sides are always 32 bytes,
/// so `subtle`'s early exit on a length mismatch never fires, and a timing probe learns nothing from
/// how far a guess got. Every candidate is compared and the results OR-ed, so how many secrets a
/// route has, and which one matched, does not show either. SHA-256 rather than a keyed hash because
/// the digests never leave the process and SHA-NI makes one block ~30 ns on current x86.
#[derive(Clone, Default)]
pub(crate) struct SecretDigests {
    digests: Box<[Sha256Digest]>,
}

impl SecretDigests {
    pub(crate) fn new(secrets: impl IntoIterator<Item = Secret>) -> Self {
        let digests = secrets
            .into_iter()
            .map(|secret| digest(secret.expose().as_bytes()))
            .collect();
        Self { digests }
    }

    pub(crate) fn len(&self) -> usize {
        self.digests.len()
    }

    /// Whether `presented` is one of the secrets: constant time in the presented value and in which
    /// candidate matches.
    pub(crate) fn matches(&self, presented: &[u8]) -> bool {
        let presented = digest(presented);
        let mut matched = Choice::from(0);
        for candidate in self.digests.iter() {
            matched |= candidate.ct_eq(&presented);
        }
        matched.into()
    }
}

fn digest(bytes: &[u8]) -> Sha256Digest {
    Sha256::digest(bytes).into()
}

/// Replaces the secrets of a [`SharedSecretAuth`](crate::SharedSecretAuth) layer at runtime.
///
/// Every clone of the layer and of the services it built sees the new set on its next request; no
/// stack is rebuilt. Get one from [`SharedSecretAuthLayer::secrets_handle`](crate::SharedSecretAuthLayer::secrets_handle).
#[derive(Clone)]
pub struct SecretsHandle {
    current: Arc<RwLock<SecretDigests>>,
}

impl SecretsHandle {
    pub(crate) fn new(digests: SecretDigests) -> Self {
        Self {
            current: Arc::new(RwLock::new(digests)),
        }
    }

    /// Accepts exactly `secrets` from now on. An empty set refuses everybody.
    pub fn replace(&self, secrets: impl IntoIterator<Item = Secret>) {
        let digests = SecretDigests::new(secrets);
        // Nothing panics while the lock is held, so a poisoned lock still holds a whole set.
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = digests;
    }

    /// How many secrets are accepted.
    pub fn len(&self) -> usize {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Whether no secret is accepted (every request is refused).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(crate) fn matches(&self, presented: &[u8]) -> bool {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .matches(presented)
    }
}

impl fmt::Debug for SecretsHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretsHandle")
            .field("secrets", &self.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(s: &str) -> Secret {
        Secret::new(s).unwrap()
    }

    #[test]
    fn any_candidate_matches_and_nothing_else_does() {
        let set = SecretDigests::new([secret("alpha-secret"), secret("beta")]);
        assert!(set.matches(b"alpha-secret"));
        assert!(set.matches(b"beta"));
        for wrong in [
            &b"alpha-secreT"[..],
            b"alpha-secret ",
            b"bet",
            b"",
            b"betaa",
            &[0xff; 64],
        ] {
            assert!(!set.matches(wrong), "{wrong:?}");
        }
        assert!(!SecretDigests::default().matches(b"anything"));
    }

    #[test]
    fn handle_replaces_for_every_clone() {
        let handle = SecretsHandle::new(SecretDigests::new([secret("old")]));
        let clone = handle.clone();
        handle.replace([secret("new"), secret("newer")]);
        assert!(!clone.matches(b"old"));
        assert!(clone.matches(b"newer"));
        assert_eq!(format!("{clone:?}"), "SecretsHandle { secrets: 2 }");
    }
}
