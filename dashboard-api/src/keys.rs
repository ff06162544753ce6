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
            match create_private(&path, secret.as_bytes()) {
                Ok(()) => Ok(secret.into_bytes()),
                // Another process (an instance started beside this one) created it
                // first: its secret is the deployment's.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let text = std::fs::read_to_string(&path).map_err(|e| std::io::Error::new(e.kind(), format!("reading {}: {e}", path.display())))?;
                    check_length(text.trim().as_bytes().to_vec(), &path.display().to_string())
                }
                Err(e) => Err(e),
            }
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

/// Creates `path` holding `bytes`, whole or not at all: written to a file of its
/// own first, then linked into place, which fails if `path` exists. Two instances
/// starting at once in one state directory once raced here: one read the file the
/// other had created but not yet written, and refused a secret of 0 bytes.
fn create_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut suffix = [0u8; 8];
    getrandom::fill(&mut suffix).map_err(|e| std::io::Error::other(format!("no randomness for a file name: {e}")))?;
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{}.tmp", hex::encode(suffix)));
    let staged = path.with_file_name(name);
    write_private(&staged, bytes)?;
    let linked = std::fs::hard_link(&staged, path);
    let _ = std::fs::remove_file(&staged);
    linked.map_err(|e| if e.kind() == std::io::ErrorKind::AlreadyExists { e } else { std::io::Error::new(e.kind(), format!("creating {}: {e}", path.display())) })
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

    /// Instances started together in one state directory all get the one secret
    /// that ends up on disk, and none reads a file half written.
    #[test]
    fn instances_creating_a_key_at_once_agree_on_it() {
        for round in 0..20 {
            let dir = std::env::temp_dir().join(format!("egret-keys-race-{}-{round}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            let barrier = std::sync::Arc::new(std::sync::Barrier::new(6));
            let starts: Vec<_> = (0..6)
                .map(|_| {
                    let (dir, barrier) = (dir.clone(), barrier.clone());
                    std::thread::spawn(move || {
                        barrier.wait();
                        load_or_create("EGRET_TEST_UNSET_KEY", &dir, "pseudonym.key")
                    })
                })
                .collect();
            let secrets: Vec<Vec<u8>> = starts.into_iter().map(|t| t.join().expect("no panic").expect("every instance gets the key")).collect();
            let on_disk = std::fs::read(dir.join("pseudonym.key")).expect("the key file");
            assert!(secrets.iter().all(|s| *s == on_disk), "round {round}: an instance holds a secret other than the file's");
            let left: Vec<_> = std::fs::read_dir(&dir).expect("dir").filter_map(Result::ok).map(|e| e.file_name()).collect();
            assert_eq!(left.len(), 1, "round {round}: staged files left behind: {left:?}");
            let _ = std::fs::remove_dir_all(&dir);
        }
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
