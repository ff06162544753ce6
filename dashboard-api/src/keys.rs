//! The deployment's two secrets: the key that signs bearer tokens and the key of
//! the plate pseudonyms. Each comes from an environment variable (how a cluster
//! hands out secrets) or else from a file in the state directory, created with
//! random bytes on first use, so a fresh `egret demo` is secure without set-up and
//! `egret token` run beside it signs with the same key.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::path::{Path, PathBuf};

/// Environment variable holding the token-signing secret.
pub const TOKEN_KEY_ENV: &str = "EGRET_TOKEN_KEY";
/// Environment variable holding the pseudonym secret.
pub const PSEUDONYM_KEY_ENV: &str = "EGRET_PSEUDONYM_KEY";
/// Secrets shorter than this are refused: HS256 wants at least 256 bits.
pub const MIN_SECRET_BYTES: usize = 32;

/// Loads a secret from `env`, else from `<state_dir>/<file>`, creating the file
/// (mode 0600) with 32 random bytes in hex when it does not exist.
pub fn load_or_create(env: &str, state_dir: &Path, file: &str) -> std::io::Result<Vec<u8>> {
    if let Ok(value) = std::env::var(env) {
        return check_length(value.into_bytes(), env);
    }
    let path: PathBuf = state_dir.join(file);
    match std::fs::read_to_string(&path) {
        Ok(text) => check_length(text.trim().as_bytes().to_vec(), &path.display().to_string()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(state_dir)?;
            let mut bytes = [0u8; 32];
            getrandom::fill(&mut bytes).map_err(|e| std::io::Error::other(format!("no randomness for a new key: {e}")))?;
            let secret = hex::encode(bytes);
            write_private(&path, secret.as_bytes())?;
            Ok(secret.into_bytes())
        }
        Err(e) => Err(std::io::Error::new(e.kind(), format!("reading {}: {e}", path.display()))),
    }
}

fn check_length(secret: Vec<u8>, from: &str) -> std::io::Result<Vec<u8>> {
    if secret.len() < MIN_SECRET_BYTES {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("the secret in {from} is {} bytes; at least {MIN_SECRET_BYTES} are needed", secret.len()),
        ));
    }
    Ok(secret)
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Keyed pseudonyms of plates: the same plate always maps to the same pseudonym
/// under one key, so outputs can still be joined, but without the key nobody can
/// test a guessed plate against it (a plain hash of the ~10^8 plates could be
/// reversed by enumeration).
#[derive(Clone)]
pub struct Pseudonymizer {
    mac: Hmac<Sha256>,
}

impl std::fmt::Debug for Pseudonymizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pseudonymizer(..)")
    }
}

impl Pseudonymizer {
    pub fn new(secret: &[u8]) -> Self {
        // HMAC takes keys of any length.
        let mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
        Pseudonymizer { mac }
    }

    /// `anon-` and 16 hex digits (64 bits: no collisions among a country's plates
    /// in practice). Normalises the plate first, so `闽d12345` and `闽D12345` agree.
    pub fn pseudonym(&self, plate: &str) -> String {
        let normal = egret_model::Plate::parse(plate).map(|p| p.to_string()).unwrap_or_else(|_| plate.to_owned());
        let mut mac = self.mac.clone();
        mac.update(normal.as_bytes());
        let digest = mac.finalize().into_bytes();
        format!("anon-{}", hex::encode(&digest[..8]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_file_is_created_once_and_read_back() {
        let dir = std::env::temp_dir().join(format!("egret-keys-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let first = load_or_create("EGRET_TEST_UNSET_KEY", &dir, "token.key").expect("created");
        let second = load_or_create("EGRET_TEST_UNSET_KEY", &dir, "token.key").expect("read");
        assert_eq!(first, second);
        assert_eq!(first.len(), 64);
        std::fs::write(dir.join("short.key"), "too short").expect("write");
        assert!(load_or_create("EGRET_TEST_UNSET_KEY", &dir, "short.key").is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn pseudonyms_are_stable_per_key_and_hide_the_plate() {
        let a = Pseudonymizer::new(b"key one, at least thirty-two bytes long");
        let b = Pseudonymizer::new(b"key two, at least thirty-two bytes long");
        assert_eq!(a.pseudonym("闽D12345"), a.pseudonym("闽d12345"));
        assert_ne!(a.pseudonym("闽D12345"), a.pseudonym("闽D12346"));
        assert_ne!(a.pseudonym("闽D12345"), b.pseudonym("闽D12345"));
        assert!(!a.pseudonym("闽D12345").contains("12345"));
    }
}
