//! Answers that depend on live state alone (no parameters, no caller): rendered to
//! JSON once per live-state version and shared by every request until the state
//! changes. Under load most requests are then a copy of bytes instead of a walk over
//! every segment and a serialisation (issue 8, figure (d)); the WebSocket channels
//! are cached the same way (`ws::EntryCache`).

use axum::body::Bytes;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use parking_lot::Mutex;
use serde::Serialize;
use std::collections::HashMap;

/// The answers, by endpoint, each with the live-state version it was rendered at.
pub struct AnswerCache {
    answers: Mutex<HashMap<&'static str, (u64, Bytes)>>,
    /// Off, every request renders its own answer: `egret bench`'s baseline.
    enabled: bool,
}

impl AnswerCache {
    pub fn new(enabled: bool) -> Self {
        AnswerCache { answers: Mutex::default(), enabled }
    }

    /// The JSON answer of `endpoint` at live-state `version`, rendered by `render`
    /// unless this version's is already there. Take `version` *before* the snapshot
    /// `render` reads: an answer is then never older than the version it is filed
    /// under (at worst newer, and rendered again at the next version).
    pub fn json<T: Serialize>(&self, endpoint: &'static str, version: u64, render: impl FnOnce() -> T) -> Response {
        let body = if self.enabled {
            // Held while rendering: requests that arrive together after a change wait
            // for one render instead of each doing their own.
            let mut cache = self.answers.lock();
            match cache.get(endpoint) {
                Some((at, body)) if *at == version => Ok(body.clone()),
                _ => to_json(endpoint, render).inspect(|body| {
                    cache.insert(endpoint, (version, body.clone()));
                }),
            }
        } else {
            to_json(endpoint, render)
        };
        match body {
            Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
            Err(e) => e.into_response(),
        }
    }
}

/// `render`'s answer as JSON bytes, or a 500 saying which endpoint failed.
fn to_json<T: Serialize>(endpoint: &str, render: impl FnOnce() -> T) -> Result<Bytes, crate::ApiError> {
    serde_json::to_vec(&render()).map(Bytes::from).map_err(|e| crate::ApiError::internal(format!("rendering {endpoint}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[test]
    fn an_answer_is_rendered_once_per_version() {
        let cache = AnswerCache::new(true);
        let renders = Cell::new(0);
        let render = |n: u32| {
            renders.set(renders.get() + 1);
            serde_json::json!({ "n": n })
        };
        for _ in 0..3 {
            cache.json("/a", 1, || render(1));
        }
        assert_eq!(renders.get(), 1, "three requests at one version, one render");
        cache.json("/a", 2, || render(2));
        cache.json("/b", 2, || render(2));
        assert_eq!(renders.get(), 3, "a new version, or another endpoint, renders again");
    }

    #[tokio::test]
    async fn switched_off_every_request_renders_and_gets_the_same_answer() {
        let (cached, uncached) = (AnswerCache::new(true), AnswerCache::new(false));
        let renders = Cell::new(0);
        let render = || {
            renders.set(renders.get() + 1);
            serde_json::json!({ "n": 1 })
        };
        for _ in 0..3 {
            uncached.json("/a", 1, render);
        }
        assert_eq!(renders.get(), 3, "no cache: one render per request");
        let (a, b) = (cached.json("/a", 1, render), uncached.json("/a", 1, render));
        let a = axum::body::to_bytes(a.into_body(), usize::MAX).await.expect("body");
        let b = axum::body::to_bytes(b.into_body(), usize::MAX).await.expect("body");
        assert_eq!(a, b, "the same bytes with or without the cache");
    }
}
