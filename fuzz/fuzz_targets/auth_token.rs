//! Fuzz target: bearer tokens, which every request's `Authorization` header and
//! every WebSocket `{"op":"auth"}` message hand to `token::bearer_token` and
//! `TokenKey::verify` before anything else. Neither may panic on any text. A
//! token issued for any subject, role and lifetime verifies to exactly its
//! claims; the same token with characters overwritten by the fuzzer never
//! verifies to other claims (the signature covers them); roles read back by name.
#![no_main]

use egret_fuzz::token::{Role, TokenKey, bearer_token};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

/// What a JWT is written in: base64url and the dots between its parts.
const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.";

fn key() -> &'static TokenKey {
    static KEY: OnceLock<TokenKey> = OnceLock::new();
    KEY.get_or_init(|| TokenKey::from_secret(b"fuzzing-secret-0123456789abcdef!"))
}

fn now_s() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

fuzz_target!(|bytes: &[u8]| {
    let text = String::from_utf8_lossy(bytes);
    // Any text as a header value, and as the token itself.
    if let Some(token) = bearer_token(&text) {
        assert_eq!(token, token.trim());
        let _ = key().verify(token);
    }
    let _ = key().verify(&text);
    if let Some(role) = Role::parse(&text) {
        assert_eq!(role.as_str(), text);
    }

    // A genuine token for a subject, role and lifetime taken from the input, then
    // edited at positions the rest of the input says.
    let [r, t0, t1, t2, n, rest @ ..] = bytes else { return };
    let role = Role::ALL[usize::from(*r) % Role::ALL.len()];
    let ttl_s = 60 + i64::from(u32::from_le_bytes([*t0, *t1, *t2, 0]));
    let (subject, edits) = rest.split_at(usize::from(*n).min(rest.len()));
    let subject = String::from_utf8_lossy(subject);
    let now = now_s();
    let token = key().issue(&subject, role, now, ttl_s);
    let claims = key().verify(&token).unwrap_or_else(|e| panic!("a token just issued for {subject:?} does not verify: {e}"));
    assert_eq!((claims.sub.as_str(), claims.role, claims.iat, claims.exp), (&*subject, role, now, now + ttl_s));
    assert_eq!(key().verify(&format!(" {token} ").trim().to_owned()).as_ref(), Ok(&claims));

    let mut edited = token.clone().into_bytes();
    for pair in edits.chunks_exact(3) {
        let at = usize::from(u16::from_le_bytes([pair[0], pair[1]])) % edited.len();
        edited[at] = ALPHABET[usize::from(pair[2]) % ALPHABET.len()];
    }
    let edited = String::from_utf8(edited).expect("the alphabet is ASCII");
    if let Ok(other) = key().verify(&edited) {
        assert_eq!(other, claims, "edited token {edited:?} verified to other claims than {token:?}");
    }
});
