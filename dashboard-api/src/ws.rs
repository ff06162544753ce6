//! `GET /ws`: live state pushed over a WebSocket. A client subscribes to channels
//! (`segments`, `parking`, `incidents`, `buses` or `buses:<route_id>`, and
//! `violations` for the police), gets a snapshot of each, then deltas: the entries
//! that changed and the ids that went away.
//!
//! Nothing is queued per client. Each connection remembers what it last sent and,
//! when live state changes (a watch channel that only holds the newest version),
//! diffs the current state against it. A slow client therefore skips straight to
//! the latest state, its memory is bounded by the size of the state, and the
//! pipeline never waits for anyone. A client that cannot take a message within
//! `SEND_TIMEOUT` is disconnected.
//!
//! A channel's entries are rendered to JSON once per live-state version and shared
//! by every connection (`EntryCache`), so a push costs each client a comparison of
//! texts, not a serialisation of the whole state.
//!
//! Browsers cannot set headers on a WebSocket, so besides the upgrade's bearer
//! token a client may send `{"op":"auth","token":"…"}`.

use crate::audit::AuditEntry;
use crate::auth::{Caller, Role};
use crate::input::{Channel, ClientMessage, parse_client_message};
use crate::{AppState, parking, segments};
use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// Largest message a client may send.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// Channels one connection may hold.
pub const MAX_SUBSCRIPTIONS: usize = 32;
/// Pushes of the map channels (segments, lots, buses…) are at least this far apart,
/// however often the state changes: a burst of batches becomes one push, and each
/// push diffs every entry of the channel.
const MIN_PUSH_GAP: Duration = Duration::from_millis(25);
/// New tickets go out this soon after the batch that issued them: a ticket is the
/// one thing an officer acts on at once, and its delta is only the new tickets.
const TICKET_PUSH_GAP: Duration = Duration::from_millis(2);
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// New tickets pushed at once; beyond it the client is told how many it skipped.
const VIOLATIONS_PER_PUSH: usize = 1000;
/// Tickets in a `violations` snapshot.
const VIOLATIONS_IN_SNAPSHOT: usize = 100;

/// Who may read a channel: everyone, unless it lists roles.
impl Channel {
    fn roles(&self) -> Option<&'static [Role]> {
        match self {
            Channel::Violations => Some(crate::violations::POLICE),
            _ => None,
        }
    }
}

/// What a connection last sent on a channel.
enum Sent {
    /// Entry id → its JSON as sent.
    Entries(Entries),
    /// The arrival number of the newest ticket sent, and how many were sent.
    Violations { after: u64, pushed: u64 },
}

/// A channel's entries, id → JSON text, as of one live-state version.
type Entries = Arc<HashMap<String, Arc<str>>>;

/// The newest rendering of each channel's entries, shared by all connections.
#[derive(Default)]
pub(crate) struct EntryCache(Mutex<BTreeMap<Channel, (u64, Entries)>>);

pub async fn upgrade(State(state): State<AppState>, caller: Caller, ws: WebSocketUpgrade) -> Response {
    ws.max_message_size(MAX_MESSAGE_BYTES).max_frame_size(MAX_MESSAGE_BYTES).on_upgrade(move |socket| session(socket, state, caller))
}

struct Session {
    state: AppState,
    caller: Caller,
    subscriptions: BTreeMap<Channel, Sent>,
}

async fn session(mut socket: WebSocket, state: AppState, caller: Caller) {
    metrics::gauge!("egret_ws_clients").increment(1.0);
    let mut changes = state.live.subscribe();
    let mut session = Session { state, caller, subscriptions: BTreeMap::new() };
    let (mut last_push, mut last_ticket_push) = (tokio::time::Instant::now(), tokio::time::Instant::now());
    // A change the map channels have not been sent yet, held back by their gap.
    let mut owed = false;
    loop {
        let replies = tokio::select! {
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Text(text))) => vec![session.on_message(text.as_str()).to_string()],
                Some(Ok(Message::Binary(_))) => vec![error(None, "bad_request", "messages are JSON text").to_string()],
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => break,
            },
            changed = changes.changed() => {
                if changed.is_err() {
                    break;
                }
                tokio::time::sleep_until(last_ticket_push + TICKET_PUSH_GAP).await;
                // Whatever changed while waiting is in this one diff.
                changes.borrow_and_update();
                let now = tokio::time::Instant::now();
                last_ticket_push = now;
                let all = now >= last_push + MIN_PUSH_GAP;
                if all {
                    last_push = now;
                }
                owed = !all;
                if all || session.subscriptions.contains_key(&Channel::Violations) { session.deltas(all) } else { Vec::new() }
            }
            _ = tokio::time::sleep_until(last_push + MIN_PUSH_GAP), if owed => {
                owed = false;
                last_push = tokio::time::Instant::now();
                session.deltas(true)
            }
        };
        for reply in replies {
            let sent = tokio::time::timeout(SEND_TIMEOUT, socket.send(Message::Text(reply.into()))).await;
            if !matches!(sent, Ok(Ok(()))) {
                metrics::counter!("egret_ws_slow_clients_dropped_total").increment(u64::from(sent.is_err()));
                session.close();
                metrics::gauge!("egret_ws_clients").decrement(1.0);
                return;
            }
        }
    }
    session.close();
    metrics::gauge!("egret_ws_clients").decrement(1.0);
}

fn error(channel: Option<&str>, code: &str, message: impl Into<String>) -> Value {
    json!({"type": "error", "channel": channel, "code": code, "message": message.into()})
}

impl Session {
    fn on_message(&mut self, text: &str) -> Value {
        let message = match parse_client_message(text) {
            Ok(m) => m,
            Err(why) => return error(None, "bad_request", why),
        };
        match message {
            ClientMessage::Ping => json!({"type": "pong"}),
            ClientMessage::Auth { token } => match self.state.security.tokens.verify(&token) {
                Ok(claims) => {
                    let role = claims.role;
                    self.caller = Caller::Authenticated(claims);
                    // Channels the new role may not read are closed.
                    let caller = &self.caller;
                    self.subscriptions.retain(|c, _| c.roles().is_none_or(|roles| caller.require(roles).is_ok()));
                    json!({"type": "authenticated", "role": role})
                }
                Err(why) => error(None, "unauthorized", why),
            },
            ClientMessage::Unsubscribe { channel } => match Channel::parse(&channel, self.state.live.city()) {
                Ok(c) => {
                    if let Some(sent) = self.subscriptions.remove(&c) {
                        self.audit_end(&c, &sent);
                    }
                    json!({"type": "unsubscribed", "channel": channel})
                }
                Err(why) => error(Some(&channel), "bad_request", why),
            },
            ClientMessage::Subscribe { channel } => self.subscribe(&channel),
        }
    }

    fn subscribe(&mut self, name: &str) -> Value {
        let channel = match Channel::parse(name, self.state.live.city()) {
            Ok(c) => c,
            Err(why) => return error(Some(name), "bad_request", why),
        };
        if let Some(roles) = channel.roles()
            && let Err(e) = self.caller.require(roles)
        {
            self.audit(&channel, "subscribe", 0, e.code);
            return error(Some(name), e.code, e.message);
        }
        if !self.subscriptions.contains_key(&channel) && self.subscriptions.len() == MAX_SUBSCRIPTIONS {
            return error(Some(name), "bad_request", format!("at most {MAX_SUBSCRIPTIONS} channels per connection"));
        }
        let as_of_ms = self.state.live.snapshot().as_of_ms;
        let (items, sent) = match channel {
            Channel::Violations => {
                let newest = self.state.live.violations_after(0, usize::MAX, |_| true);
                let start = newest.len().saturating_sub(VIOLATIONS_IN_SNAPSHOT);
                let after = newest.last().map_or(0, |(seq, _)| *seq);
                let items: Vec<Value> = newest[start..].iter().map(|(_, v)| serde_json::to_value(v).unwrap_or_default()).collect();
                self.audit(&channel, "subscribe", items.len() as u64, "ok");
                (items, Sent::Violations { after, pushed: 0 })
            }
            _ => {
                let entries = self.entries(&channel);
                let items = entries.values().map(|json| serde_json::from_str(json).unwrap_or_default()).collect();
                (items, Sent::Entries(entries))
            }
        };
        self.subscriptions.insert(channel, sent);
        json!({"type": "snapshot", "channel": name, "as_of_ms": as_of_ms, "items": items})
    }

    /// The current entries of a (non-violations) channel, by id, as JSON text:
    /// rendered by the first connection to ask at this version, shared after.
    fn entries(&self, channel: &Channel) -> Entries {
        let live = &self.state.live;
        let version = live.version();
        // Held while rendering: connections woken by one change wait for one render.
        let mut cache = self.state.ws_entries.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((at, entries)) = cache.get(channel)
            && *at == version
        {
            return entries.clone();
        }
        let rendered: HashMap<String, Arc<str>> = match channel {
            Channel::Segments => segments::states(live.city(), &live.snapshot()).iter().map(|s| (s.segment_id.to_owned(), text(s))).collect(),
            Channel::Parking => parking::states(live.city(), &live.snapshot()).iter().map(|l| (l.lot_id.to_owned(), text(l))).collect(),
            Channel::Incidents => live.incidents().0.iter().map(|i| (i.incident_id.clone(), text(i))).collect(),
            Channel::Buses(route) => {
                live.buses().iter().filter(|b| route.as_ref().is_none_or(|r| *r == b.route_id)).map(|b| (b.bus_id.clone(), text(b))).collect()
            }
            Channel::Violations => HashMap::new(),
        };
        let rendered = Arc::new(rendered);
        cache.insert(channel.clone(), (version, rendered.clone()));
        rendered
    }

    /// One delta per channel that changed since the last push.
    /// What changed since the last push: in the ticket channel only, or with `all`
    /// in every channel.
    fn deltas(&mut self, all: bool) -> Vec<String> {
        let as_of_ms = self.state.live.as_of_ms();
        let channels: Vec<Channel> = self.subscriptions.keys().filter(|c| all || **c == Channel::Violations).cloned().collect();
        let mut out = Vec::new();
        for channel in channels {
            let delta = match self.subscriptions.get(&channel) {
                Some(Sent::Violations { after, pushed }) => {
                    let (after, pushed) = (*after, *pushed);
                    let new = self.state.live.violations_after(after, usize::MAX, |_| true);
                    let Some((newest, _)) = new.last() else { continue };
                    let newest = *newest;
                    let skipped = new.len().saturating_sub(VIOLATIONS_PER_PUSH);
                    let items: Vec<Value> = new[skipped..].iter().map(|(_, v)| serde_json::to_value(v).unwrap_or_default()).collect();
                    let count = items.len() as u64;
                    self.subscriptions.insert(channel.clone(), Sent::Violations { after: newest, pushed: pushed + count });
                    json!({"type": "delta", "channel": channel.name(), "as_of_ms": as_of_ms, "upserts": items, "removes": [], "skipped": skipped}).to_string()
                }
                Some(Sent::Entries(old)) => {
                    let now = self.entries(&channel);
                    if Arc::ptr_eq(old, &now) {
                        continue;
                    }
                    let upserts: Vec<&str> = now.iter().filter(|(id, json)| old.get(*id) != Some(*json)).map(|(_, json)| &**json).collect();
                    let removes: Vec<&String> = old.keys().filter(|id| !now.contains_key(*id)).collect();
                    if upserts.is_empty() && removes.is_empty() {
                        continue;
                    }
                    // The entries are JSON already: spliced in, not parsed and printed again.
                    let delta = format!(
                        r#"{{"type":"delta","channel":{},"as_of_ms":{as_of_ms},"upserts":[{}],"removes":{}}}"#,
                        Value::from(channel.name()),
                        upserts.join(","),
                        json!(removes)
                    );
                    self.subscriptions.insert(channel.clone(), Sent::Entries(now));
                    delta
                }
                None => continue,
            };
            out.push(delta);
        }
        out
    }

    fn audit(&self, channel: &Channel, what: &str, rows: u64, outcome: &str) {
        self.state.security.audit.record(AuditEntry {
            ts_ms: crate::now_ms(),
            subject: self.caller.subject().unwrap_or("anonymous").to_owned(),
            role: self.caller.role().as_str().to_owned(),
            action: format!("WS {what} {}", channel.name()),
            detail: String::new(),
            rows,
            outcome: outcome.to_owned(),
        });
    }

    /// Police channels are audited again when they end, with every row pushed.
    fn audit_end(&self, channel: &Channel, sent: &Sent) {
        if let Sent::Violations { pushed, .. } = sent {
            self.audit(channel, "end", *pushed, "ok");
        }
    }

    fn close(&mut self) {
        for (channel, sent) in std::mem::take(&mut self.subscriptions) {
            self.audit_end(&channel, &sent);
        }
    }
}

fn text<T: serde::Serialize>(value: &T) -> Arc<str> {
    serde_json::to_string(value).unwrap_or_default().into()
}
