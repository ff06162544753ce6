//! Hotlist management for the police: read, replace and delete named watch lists.
//! An edit goes on the live hotlist board, which the pipeline follows between two
//! batches, and is saved (written whole to a temporary file, then renamed) so it
//! survives a restart. Every read and edit is audited.

use crate::auth::Caller;
use crate::violations::{POLICE, audited};
use crate::{ApiError, AppState};
use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use egret_pipeline::enforce::hotlist::HotlistEntry;
use egret_pipeline::hotlist_board::HotlistBoard;
use crate::error::ErrorBody;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use std::collections::BTreeMap;

/// Entries one list may hold: far above any real list, far below what hurts.
pub const MAX_ENTRIES: usize = 100_000;

#[derive(Serialize, ToSchema)]
pub struct ListSummary {
    pub name: String,
    pub entries: usize,
    pub version: u64,
}

#[derive(Serialize, ToSchema)]
pub struct Lists {
    pub hotlists: Vec<ListSummary>,
}

#[derive(Serialize, ToSchema)]
pub struct List {
    pub name: String,
    pub entries: Vec<HotlistEntry>,
    pub version: u64,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutList {
    pub entries: Vec<HotlistEntry>,
}

fn check_name(name: &str) -> Result<(), ApiError> {
    crate::input::check_list_name(name).map_err(ApiError::bad_request)
}

/// The hotlists, by name.
#[utoipa::path(get, path = "/api/v1/hotlists", tag = "police", security(("bearer" = [])),
    responses((status = 200, body = Lists), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn all(State(state): State<AppState>, caller: Caller) -> Result<Json<Lists>, ApiError> {
    let result = caller.require(POLICE).map(|_| {
        let hotlists: Vec<ListSummary> =
            state.live.hotlists().all().into_iter().map(|(name, l)| ListSummary { name, entries: l.entries.len(), version: l.version }).collect();
        let rows = hotlists.len() as u64;
        (Lists { hotlists }, rows)
    });
    audited(&state, &caller, "GET /api/v1/hotlists", String::new(), result).map(Json)
}

/// One hotlist with its entries.
#[utoipa::path(get, path = "/api/v1/hotlists/{name}", tag = "police", params(("name" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = List), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get(State(state): State<AppState>, caller: Caller, name: Result<Path<String>, PathRejection>) -> Result<Json<List>, ApiError> {
    let detail = name.as_ref().map(|Path(n)| format!("name={n}")).unwrap_or_default();
    let result = (|| {
        caller.require(POLICE)?;
        let Path(name) = name?;
        let list = state.live.hotlists().get(&name).ok_or_else(|| ApiError::not_found(format!("no hotlist {name}")))?;
        let rows = list.entries.len() as u64;
        Ok((List { name, entries: list.entries, version: list.version }, rows))
    })();
    audited(&state, &caller, "GET /api/v1/hotlists/{name}", detail, result).map(Json)
}

/// Creates or replaces a hotlist; the pipeline checks sightings against it from its next batch.
#[utoipa::path(put, path = "/api/v1/hotlists/{name}", tag = "police", params(("name" = String, Path)), request_body = PutList, security(("bearer" = [])),
    responses((status = 200, body = List), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn put(
    State(state): State<AppState>,
    caller: Caller,
    name: Result<Path<String>, PathRejection>,
    body: Result<Json<PutList>, JsonRejection>,
) -> Result<Json<List>, ApiError> {
    let detail = name.as_ref().map(|Path(n)| format!("name={n}")).unwrap_or_default();
    let result = (|| {
        caller.require(POLICE)?;
        let Path(name) = name?;
        check_name(&name)?;
        let Json(body) = body?;
        if body.entries.len() > MAX_ENTRIES {
            return Err(ApiError::bad_request(format!("{} entries; a list holds at most {MAX_ENTRIES}", body.entries.len())));
        }
        let mut entries = body.entries;
        let mut bad = Vec::new();
        for (i, e) in entries.iter_mut().enumerate() {
            match egret_model::Plate::parse(&e.plate) {
                // Stored normalised, so the list reads back as the pipeline matches it.
                Ok(p) => e.plate = p.to_string(),
                Err(err) => bad.push(format!("entry {i}: {err}")),
            }
            if e.reason.trim().is_empty() {
                bad.push(format!("entry {i}: a reason is needed"));
            }
        }
        if !bad.is_empty() {
            bad.truncate(20);
            return Err(ApiError::bad_request(format!("nothing changed: {}", bad.join("; "))));
        }
        let board = state.live.hotlists();
        board.put(&name, entries);
        save(&state, board)?;
        let list = board.get(&name).ok_or_else(|| ApiError::not_found(format!("hotlist {name} was deleted meanwhile")))?;
        let rows = list.entries.len() as u64;
        Ok((List { name, entries: list.entries, version: list.version }, rows))
    })();
    audited(&state, &caller, "PUT /api/v1/hotlists/{name}", detail, result).map(Json)
}

/// Deletes a hotlist.
#[utoipa::path(delete, path = "/api/v1/hotlists/{name}", tag = "police", params(("name" = String, Path)), security(("bearer" = [])),
    responses((status = 204, description = "deleted"), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete(State(state): State<AppState>, caller: Caller, name: Result<Path<String>, PathRejection>) -> Result<StatusCode, ApiError> {
    let detail = name.as_ref().map(|Path(n)| format!("name={n}")).unwrap_or_default();
    let result = (|| {
        caller.require(POLICE)?;
        let Path(name) = name?;
        let board = state.live.hotlists();
        if !board.delete(&name) {
            return Err(ApiError::not_found(format!("no hotlist {name}")));
        }
        save(&state, board)?;
        Ok((StatusCode::NO_CONTENT, 0))
    })();
    audited(&state, &caller, "DELETE /api/v1/hotlists/{name}", detail, result)
}

/// The board in the `--hotlists` file format.
fn to_file_format(board: &HotlistBoard) -> BTreeMap<String, Vec<HotlistEntry>> {
    board.all().into_iter().map(|(name, l)| (name, l.entries)).collect()
}

fn save(state: &AppState, board: &HotlistBoard) -> Result<(), ApiError> {
    let Some(path) = &state.security.hotlists_path else { return Ok(()) };
    // A panic mid-save leaves nothing half-done that the next save would not redo.
    let _saving = state.security.hotlists_saving.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let text = serde_json::to_vec_pretty(&to_file_format(board)).unwrap_or_default();
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, text).and_then(|_| std::fs::rename(&tmp, path)).map_err(|e| {
        tracing::error!("saving hotlists to {}: {e}", path.display());
        ApiError::unavailable(format!("the edit is live but could not be saved: {e}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ApiConfig, LiveState};
    use std::sync::Arc;

    /// Edits saved from many threads at once all succeed, and the file ends up
    /// whole and holding every list: the saves once shared a temporary file, so one
    /// rename found it gone and a reader could see two boards written into it.
    #[test]
    fn concurrent_saves_all_land_whole() {
        let data = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../data");
        let live = Arc::new(LiveState::new(Arc::new(egret_model::CityModel::load(&data).expect("city data"))));
        let dir = std::env::temp_dir().join(format!("egret-hotlists-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("hotlists.json");
        let config = ApiConfig { hotlists_path: Some(path.clone()), ..ApiConfig::ephemeral() };
        let state = AppState::with_config(live, None, config, None).expect("state");
        std::thread::scope(|s| {
            for t in 0..6 {
                let state = &state;
                s.spawn(move || {
                    for i in 0..40 {
                        let entry = HotlistEntry { plate: format!("闽D{t}{i:04}"), reason: "test".into(), expires_ms: None };
                        state.live.hotlists().put(&format!("list-{t}"), vec![entry]);
                        save(state, state.live.hotlists()).expect("saved");
                    }
                });
            }
        });
        let saved: BTreeMap<String, Vec<HotlistEntry>> = serde_json::from_slice(&std::fs::read(&path).expect("file")).expect("whole JSON");
        assert_eq!(saved.len(), 6);
        assert!(saved.values().all(|l| l[0].plate.ends_with("0039")), "the last edit of every list is saved: {saved:?}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
