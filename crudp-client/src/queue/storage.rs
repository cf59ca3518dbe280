//! Where the queue survives a reload: a key-value [`Storage`] (the browser's `localStorage` by
//! default there), and the lease that keeps two tabs from sharing a client ID.
//!
//! Each client keeps its unanswered packets under `crudp:<url>:<user>queue:<client>` and a
//! lease under `crudp:<url>:<user>lease:<client>`: who holds it, when it last said so, and
//! whether it let it go. A client starting up takes, in order: its own previous ID if its lease
//! was let go (a reload of the same tab), an ID whose lease was let go or went stale and whose
//! queue still holds packets (a closed tab's queue is not lost), or a new random ID.
//!
//! `<user>` keeps the state of different users of one browser apart: it is `u` and a digest of
//! the user the server last named (in a token grant), kept under `crudp:<url>:user`, then `:`;
//! empty while no server has named one. A client opens the place of the last user named; once
//! the server names the user, a client of the unnamed place moves it (and every queue in it) to
//! that user's, and a client of another user's place stops: it never sends or adopts what
//! another user left. The client key (`crudp:<url>:key`) is the browser's, shared by its tabs.
//!
//! Two tabs starting at the same instant could both take the same queue that way, since
//! nothing in a key-value store is atomic. Where the browser has Web Locks, the lease is
//! decided by them instead (see `leases`): a client takes its previous ID only if that ID left
//! no queue behind, else a new one, and queues left behind are adopted by whichever tab gets
//! their lock.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex, PoisonError},
};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use crudp_runtime::{ClientId, Packet};
use serde::{Deserialize, Serialize};

use crate::transport::MaybeSendSync;

/// A lease not renewed for this long belongs to a tab that is gone.
pub(crate) const LEASE_TTL_MS: u64 = 10_000;
/// How often a live client renews its lease.
pub(crate) const LEASE_RENEW_MS: u64 = 2_000;

/// A string key-value store that outlives the page: `localStorage` in the browser.
pub trait Storage: MaybeSendSync + 'static {
    /// The value under `key`.
    fn get(&self, key: &str) -> Option<String>;
    /// Stores `value` under `key`.
    fn set(&self, key: &str, value: &str);
    /// Removes `key`.
    fn remove(&self, key: &str);
    /// Every key.
    fn keys(&self) -> Vec<String>;
}

/// A [`Storage`] in memory, shared by its clones: for tests, and for native clients that
/// hand their queue over within one process.
#[derive(Debug, Clone, Default)]
pub struct MemoryStorage {
    entries: Arc<Mutex<BTreeMap<String, String>>>,
}

impl MemoryStorage {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Storage for MemoryStorage {
    fn get(&self, key: &str) -> Option<String> {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key)
            .cloned()
    }

    fn set(&self, key: &str, value: &str) {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key.to_owned(), value.to_owned());
    }

    fn remove(&self, key: &str) {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(key);
    }

    fn keys(&self) -> Vec<String> {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .keys()
            .cloned()
            .collect()
    }
}

/// The browser's `localStorage`.
#[cfg(target_arch = "wasm32")]
#[derive(Debug, Clone, Copy, Default)]
pub struct LocalStorage;

#[cfg(target_arch = "wasm32")]
impl LocalStorage {
    fn storage() -> Option<web_sys::Storage> {
        web_sys::window()?.local_storage().ok().flatten()
    }
}

#[cfg(target_arch = "wasm32")]
impl Storage for LocalStorage {
    fn get(&self, key: &str) -> Option<String> {
        Self::storage()?.get_item(key).ok().flatten()
    }

    fn set(&self, key: &str, value: &str) {
        if let Some(storage) = Self::storage()
            && let Err(e) = storage.set_item(key, value)
        {
            tracing::warn!("the queue could not be saved: {e:?}");
        }
    }

    fn remove(&self, key: &str) {
        if let Some(storage) = Self::storage() {
            let _ = storage.remove_item(key);
        }
    }

    fn keys(&self) -> Vec<String> {
        let Some(storage) = Self::storage() else {
            return Vec::new();
        };
        let n = storage.length().unwrap_or(0);
        (0..n)
            .filter_map(|i| storage.key(i).ok().flatten())
            .collect()
    }
}

/// What is saved of a queue.
#[derive(Serialize, Deserialize, Debug, Default, PartialEq, Eq)]
pub(crate) struct Saved {
    pub(crate) next_seq: u64,
    pub(crate) packets: Vec<Packet>,
}

#[derive(Debug, PartialEq, Eq)]
struct Lease {
    holder: u64,
    renewed_ms: u64,
    released: bool,
}

impl Lease {
    fn parse(value: &str) -> Option<Self> {
        let mut parts = value.split(':');
        let lease = Lease {
            holder: parts.next()?.parse().ok()?,
            renewed_ms: parts.next()?.parse().ok()?,
            released: parts.next()? == "1",
        };
        Some(lease)
    }

    fn free(&self, now_ms: u64) -> bool {
        self.released || now_ms.saturating_sub(self.renewed_ms) > LEASE_TTL_MS
    }
}

/// The place of the user named `user`: `u`, 16 hex digits of a digest of the name, `:`.
fn place_of(user: &str) -> String {
    format!("u{:016x}:", crate::rt::digest(user))
}

/// The browser's record of the user last named, and its client key.
fn user_key(url: &str) -> String {
    format!("crudp:{url}:user")
}

fn client_key_key(url: &str) -> String {
    format!("crudp:{url}:key")
}

/// The client key kept in `storage` for `url`, made now if there is none.
pub(crate) fn client_key(
    storage: &dyn Storage,
    url: &str,
    fresh: impl FnOnce() -> String,
) -> String {
    let at = client_key_key(url);
    if let Some(key) = storage.get(&at) {
        return key;
    }
    let key = fresh();
    storage.set(&at, &key);
    key
}

/// Why a client may not go on with its saved state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stale {
    /// The server names another user than the one whose place the client opened: someone
    /// signed in as someone else.
    OtherUser,
    /// The client signed out: it names nobody any more.
    SignedOut,
}

/// One client's place in a [`Storage`].
pub(crate) struct Persistence {
    storage: Arc<dyn Storage>,
    url: String,
    /// The user's place (see the module docs); empty while no user was named.
    place: Mutex<String>,
    client: ClientId,
    holder: u64,
    /// Whether the lease in storage decides who holds the ID (no Web Locks decide it): then
    /// the client never writes over another holder's lease.
    decides: bool,
    /// Whether the client took over calls saved before (its own after a reload, or a closed
    /// page's): those are the saved-for user's alone.
    restored: std::sync::atomic::AtomicBool,
    /// Held by every write of this client's state and by [`sign_out`](Self::sign_out), which
    /// sets it for good: a save racing a sign-out on another thread either lands before the
    /// sign-out removes it, or is not made.
    signed_out: Mutex<bool>,
}

impl Persistence {
    /// Picks this client's ID (see the module docs), takes its lease, and loads its queue.
    /// `previous` is the ID this tab used before a reload, if the platform remembers one.
    /// With `adopt`, a queue left behind may become this client's; without, the client takes
    /// an ID that left no queue behind, and the queues are for [`orphans`](Self::orphans).
    pub(crate) fn open(
        storage: Arc<dyn Storage>,
        url: &str,
        previous: Option<ClientId>,
        holder: u64,
        fresh: ClientId,
        now_ms: u64,
        adopt: bool,
    ) -> (Self, Saved) {
        let place = storage.get(&user_key(url)).unwrap_or_default();
        let prefix = format!("crudp:{url}:{place}");
        let lease_of = |client: ClientId| {
            storage
                .get(&format!("{prefix}lease:{client}"))
                .and_then(|v| Lease::parse(&v))
        };
        let has_queue =
            |client: ClientId| storage.get(&format!("{prefix}queue:{client}")).is_some();
        // Only a lease this storage knows and that was let go or went stale: another client of the
        // same page may share the remembered ID but keep its lease elsewhere.
        let reusable = previous
            .filter(|c| lease_of(*c).is_some_and(|l| l.free(now_ms)))
            .filter(|c| adopt || !has_queue(*c));
        let orphan = || {
            queued(storage.as_ref(), &prefix)
                .into_iter()
                .filter(|client| lease_of(*client).is_none_or(|l| l.free(now_ms)))
                .min()
        };
        let client = reusable
            .or_else(|| adopt.then(orphan).flatten())
            .unwrap_or(fresh);
        // The leases of clients that are gone and left no queue are of no more use (but a
        // tab's own, for its reload).
        let leases = format!("{prefix}lease:");
        for key in storage.keys() {
            let Some(other) = key
                .strip_prefix(&leases)
                .and_then(|id| u64::from_str_radix(id, 16).ok())
                .map(ClientId)
            else {
                continue;
            };
            let gone = lease_of(other).is_none_or(|l| l.free(now_ms));
            if gone && other != client && Some(other) != previous && !has_queue(other) {
                storage.remove(&key);
                storage.remove(&format!("{prefix}seq:{other}"));
            }
        }
        let (persistence, mut saved) = Self::open_as(storage, url, client, holder, now_ms, adopt);
        if client != fresh && saved.next_seq == 0 {
            saved.next_seq = seq_floor(now_ms);
        }
        (persistence, saved)
    }

    /// Takes the lease of `client` in the place of the user last named and loads its queue;
    /// the lease `decides` who holds the ID where no Web Locks do.
    pub(crate) fn open_as(
        storage: Arc<dyn Storage>,
        url: &str,
        client: ClientId,
        holder: u64,
        now_ms: u64,
        decides: bool,
    ) -> (Self, Saved) {
        let place = storage.get(&user_key(url)).unwrap_or_default();
        let persistence = Self {
            storage,
            url: url.to_owned(),
            place: Mutex::new(place),
            client,
            holder,
            decides,
            restored: std::sync::atomic::AtomicBool::new(false),
            signed_out: Mutex::new(false),
        };
        persistence.write_lease(now_ms, false);
        let saved = persistence.load().unwrap_or_default();
        persistence.restored.store(
            !saved.packets.is_empty(),
            std::sync::atomic::Ordering::Release,
        );
        (persistence, saved)
    }

    /// The other clients of this user that left a queue in this storage.
    #[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
    pub(crate) fn orphans(&self) -> Vec<ClientId> {
        let mut clients = queued(self.storage.as_ref(), &self.prefix());
        clients.retain(|c| *c != self.client);
        clients
    }

    fn prefix(&self) -> String {
        let place = self.place.lock().unwrap_or_else(PoisonError::into_inner);
        format!("crudp:{}:{place}", self.url)
    }

    /// The server names `user` (`None`: as the browser's record says, which another tab's
    /// client wrote). A client of the unnamed place moves it, every queue in it, to the user's.
    /// A client of another user's place moves its own state to the user's, unless it took over
    /// calls saved there: then it is [stale](Stale). Once signed out, it names nobody.
    pub(crate) fn name(&self, user: Option<&str>) -> Result<(), Stale> {
        let Some(_writing) = self.writing() else {
            return Err(Stale::SignedOut);
        };
        let record = user_key(&self.url);
        let named = match user {
            Some(user) => {
                let named = place_of(user);
                self.storage.set(&record, &named);
                named
            }
            None => self.storage.get(&record).unwrap_or_default(),
        };
        let mut place = self.place.lock().unwrap_or_else(PoisonError::into_inner);
        if *place == named {
            return Ok(());
        }
        let everything = place.is_empty();
        if !everything && self.restored.load(std::sync::atomic::Ordering::Acquire) {
            return Err(Stale::OtherUser);
        }
        let (from, to) = (
            format!("crudp:{}:{place}", self.url),
            format!("crudp:{}:{named}", self.url),
        );
        let own = [
            format!("queue:{}", self.client),
            format!("lease:{}", self.client),
        ];
        for key in self.storage.keys() {
            let Some(rest) = key.strip_prefix(&from) else {
                continue;
            };
            let moves = if everything {
                rest.starts_with("queue:") || rest.starts_with("lease:")
            } else {
                own.iter().any(|own| own == rest)
            };
            if moves {
                if let Some(value) = self.storage.get(&key) {
                    self.storage.set(&format!("{to}{rest}"), &value);
                }
                self.storage.remove(&key);
            }
        }
        *place = named;
        Ok(())
    }

    /// Whether the browser's record still names this client's user: after a sign-out
    /// elsewhere, or a sign-in as someone else, it does not, and nothing more is saved here.
    fn current(&self) -> bool {
        let place = self.place.lock().unwrap_or_else(PoisonError::into_inner);
        place.is_empty() || self.storage.get(&user_key(&self.url)).as_ref() == Some(&*place)
    }

    /// Removes everything this user's clients saved: their queues and leases, the record of
    /// the user and the client key, so that nothing of it is sent or kept.
    pub(crate) fn sign_out(&self) {
        *self
            .signed_out
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = true;
        let prefix = self.prefix();
        let unnamed = format!("crudp:{}:", self.url);
        let (record, key) = (user_key(&self.url), client_key_key(&self.url));
        for stored in self.storage.keys() {
            let unnamed_state = stored.strip_prefix(&unnamed).is_some_and(|rest| {
                ["queue:", "lease:", "seq:"]
                    .iter()
                    .any(|kind| rest.starts_with(kind))
            });
            if stored.starts_with(&prefix) || unnamed_state || stored == record || stored == key {
                self.storage.remove(&stored);
            }
        }
    }

    /// Forgets which user the browser's state is for: the server refused this client to the
    /// user signed in now, so the last user named is not the one using the page.
    pub(crate) fn forget_user(&self) {
        // Once signed out, the record may be the next user's.
        let Some(_writing) = self.writing() else {
            return;
        };
        self.storage.remove(&user_key(&self.url));
    }

    /// The storage, to open another client's place in it.
    #[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
    pub(crate) fn storage(&self) -> Arc<dyn Storage> {
        Arc::clone(&self.storage)
    }

    pub(crate) fn client(&self) -> ClientId {
        self.client
    }

    fn queue_key(&self) -> String {
        self.queue_key_of(self.client)
    }

    fn queue_key_of(&self, client: ClientId) -> String {
        format!("{}queue:{client}", self.prefix())
    }

    fn lease_key(&self) -> String {
        format!("{}lease:{}", self.prefix(), self.client)
    }

    /// Where the sequence numbers of a client that left no calls unsent go on from: its ID may
    /// be taken up again (a reload), and the server answers a number it has seen from its
    /// outcomes, never running the call.
    fn seq_key(&self) -> String {
        format!("{}seq:{}", self.prefix(), self.client)
    }

    fn load(&self) -> Option<Saved> {
        let Some(text) = self.storage.get(&self.queue_key()) else {
            let next_seq = self.storage.get(&self.seq_key())?.parse().ok()?;
            return Some(Saved {
                next_seq,
                packets: Vec::new(),
            });
        };
        decode(&text)
    }

    /// How many calls the queue that `client` left in this user's place holds.
    #[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
    pub(crate) fn saved_calls(&self, client: ClientId) -> usize {
        self.storage
            .get(&self.queue_key_of(client))
            .and_then(|text| decode(&text))
            .map_or(0, |saved| saved.packets.len())
    }

    /// Saves the queue; an empty queue removes the key and keeps only the next sequence number.
    /// Nothing is saved once the browser's record names another user (or none, after a
    /// sign-out), nor, where the lease decides, once another page holds the ID
    /// ([`Renewal::Taken`]: the queue saved is that page's now). Says what it found of the
    /// lease, as [`renew`](Self::renew) does.
    #[must_use = "a client whose ID was taken over must stop"]
    pub(crate) fn save(&self, saved: &Saved, now_ms: u64) -> Renewal {
        let found = self.found(now_ms);
        let Some(_writing) = self.writing() else {
            return found;
        };
        if !self.current() || found == Renewal::Taken {
            return found;
        }
        if found != Renewal::Held {
            // The lease too, so that the next renewal does not find it cleared again.
            self.set_lease(now_ms, false);
        }
        if saved.packets.is_empty() {
            self.storage.remove(&self.queue_key());
            self.storage
                .set(&self.seq_key(), &saved.next_seq.to_string());
            return found;
        }
        let bytes = postcard::to_stdvec(saved).expect("a queue always encodes");
        self.storage
            .set(&self.queue_key(), &URL_SAFE_NO_PAD.encode(bytes));
        found
    }

    /// Says that this client still holds its ID, and what it found: where the lease decides,
    /// another client may have taken the ID over meanwhile (this one let it go, or went quiet
    /// past the lease's time), and its lease then stays.
    #[must_use = "a client whose ID was taken over must stop"]
    pub(crate) fn renew(&self, now_ms: u64) -> Renewal {
        let found = self.found(now_ms);
        if found != Renewal::Taken {
            self.write_lease(now_ms, false);
        }
        found
    }

    /// What the lease in storage says of this client's hold on its ID.
    fn found(&self, now_ms: u64) -> Renewal {
        if !self.decides {
            return Renewal::Held;
        }
        if self.place_is_empty() {
            // Another client of the browser had the user named since: this place's state,
            // this ID's lease with it, moved to the user's, and this client goes there too.
            let _ = self.name(None);
        }
        match self.lease() {
            Some(lease) if lease.holder != self.holder => Renewal::Taken,
            Some(_) => Renewal::Held,
            // Cleared by a page that opened while it was free: another may have held it
            // between.
            None if self.current() => Renewal::Cleared(seq_floor(now_ms)),
            None => Renewal::Held,
        }
    }

    fn place_is_empty(&self) -> bool {
        self.place
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_empty()
    }

    fn lease(&self) -> Option<Lease> {
        self.storage
            .get(&self.lease_key())
            .and_then(|v| Lease::parse(&v))
    }

    /// Lets the ID go: the next load of this tab, or another tab, may take it and its queue.
    pub(crate) fn release(&self, now_ms: u64) {
        if self.found(now_ms) != Renewal::Taken {
            self.write_lease(now_ms, true);
        }
    }

    fn write_lease(&self, now_ms: u64, released: bool) {
        let Some(_writing) = self.writing() else {
            return;
        };
        if self.current() {
            self.set_lease(now_ms, released);
        }
    }

    /// Holds off a sign-out while this client writes its state; `None` once signed out.
    fn writing(&self) -> Option<std::sync::MutexGuard<'_, bool>> {
        let signed_out = self
            .signed_out
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        (!*signed_out).then_some(signed_out)
    }

    fn set_lease(&self, now_ms: u64, released: bool) {
        let value = format!("{}:{now_ms}:{}", self.holder, u8::from(released));
        self.storage.set(&self.lease_key(), &value);
    }
}

/// What [`Persistence::renew`] found of the client's lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Renewal {
    /// Still this client's.
    Held,
    /// Gone from storage: renewed, but another page may have held the ID meanwhile and used
    /// sequence numbers below this one, where the client's go on from.
    Cleared(u64),
    /// Another page's now: not renewed.
    Taken,
}

/// Where the sequence numbers of an ID taken up again go on from when nothing saved says where
/// they stopped (a tab opening at the same instant cleared it, say): the clock in 2^-16 ms,
/// past any number the ID reached before, since no client makes 65,536 calls a millisecond.
/// A number reused would be answered with another call's outcome.
fn seq_floor(now_ms: u64) -> u64 {
    // Far below the largest the server takes, 2^63 - 1.
    now_ms.saturating_mul(1 << 16).clamp(1, 1 << 62)
}

/// A saved queue, from its text in storage.
fn decode(text: &str) -> Option<Saved> {
    let bytes = URL_SAFE_NO_PAD.decode(text).ok()?;
    postcard::from_bytes(&bytes).ok()
}

/// The clients with a queue under `prefix`.
fn queued(storage: &dyn Storage, prefix: &str) -> Vec<ClientId> {
    let queues = format!("{prefix}queue:");
    storage
        .keys()
        .into_iter()
        .filter_map(|key| {
            u64::from_str_radix(key.strip_prefix(&queues)?, 16)
                .ok()
                .map(ClientId)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use crudp_runtime::Action;

    use super::*;

    fn open(
        storage: &MemoryStorage,
        previous: Option<u64>,
        fresh: u64,
        now: u64,
    ) -> (Persistence, Saved) {
        Persistence::open(
            Arc::new(storage.clone()),
            "u",
            previous.map(ClientId),
            fresh,
            ClientId(fresh),
            now,
            true,
        )
    }

    fn queue(p: &Persistence, seqs: &[u64]) {
        let packets = seqs
            .iter()
            .map(|&seq| Packet {
                seq,
                handler: 1,
                action: Action::Create,
                args: Default::default(),
            })
            .collect();
        let saved = Saved {
            next_seq: seqs.last().map_or(1, |s| s + 1),
            packets,
        };
        assert_eq!(p.save(&saved, 0), Renewal::Held);
    }

    #[test]
    fn a_reload_keeps_its_id_and_queue_but_a_duplicated_tab_does_not() {
        let storage = MemoryStorage::new();
        let (first, _) = open(&storage, None, 1, 0);
        queue(&first, &[1, 2]);

        // A duplicated tab remembers the same ID while the first tab still holds it.
        let (duplicate, saved) = open(&storage, Some(1), 2, 1000);
        assert_eq!((duplicate.client(), saved), (ClientId(2), Saved::default()));

        // The first tab reloads: it let its ID go on the way out and takes it back.
        first.release(2000);
        let (reloaded, saved) = open(&storage, Some(1), 3, 2000);
        assert_eq!(reloaded.client(), ClientId(1));
        assert_eq!(saved.packets.len(), 2);
        assert_eq!(saved.next_seq, 3);
    }

    #[test]
    fn a_client_whose_id_another_took_over_does_not_take_it_back() {
        let storage = MemoryStorage::new();
        let (first, _) = open(&storage, None, 1, 0);
        queue(&first, &[1]);
        assert_eq!(first.renew(1000), Renewal::Held);
        // Away past its lease (asleep, or in the back/forward cache having let it go), its ID
        // and queue go to a new tab.
        first.release(2000);
        let (second, saved) = open(&storage, None, 2, 3000);
        assert_eq!((second.client(), saved.packets.len()), (ClientId(1), 1));
        assert_eq!(first.renew(4000), Renewal::Taken, "the other tab's now");
        assert_eq!(
            first.save(&Saved::default(), 4000),
            Renewal::Taken,
            "nor does it save over its queue"
        );
        // Nor, letting go, over its lease.
        first.release(4000);
        assert_eq!(second.renew(4000), Renewal::Held);
        assert_eq!(second.renew(4000), Renewal::Held);
        // Even once that tab let it go too: the calls it made are not the first one's.
        second.release(5000);
        assert_eq!(first.renew(6000), Renewal::Taken);
        // Cleared by a tab that opened meanwhile, the lease is renewed, and the numbers go on
        // past any that tab may have used.
        storage.remove(&second.lease_key());
        assert_eq!(second.renew(7000), Renewal::Cleared(7000 << 16));
        assert_eq!(second.renew(7001), Renewal::Held);
        // Where Web Locks decide, the lock holder renews whatever the lease says.
        let (locked, _) =
            Persistence::open_as(Arc::new(storage.clone()), "u", ClientId(1), 9, 7000, false);
        storage.set(&locked.lease_key(), "2:7500:0");
        assert_eq!(locked.renew(8000), Renewal::Held);
    }

    #[test]
    fn a_client_whose_id_another_took_over_sees_it_after_that_one_had_the_user_named() {
        let storage = MemoryStorage::new();
        // No user named yet (the server was out of reach): both open the unnamed place.
        let (first, _) = open(&storage, None, 1, 0);
        queue(&first, &[1]);
        first.release(1000);
        let (second, _) = open(&storage, Some(1), 2, 2000);
        assert_eq!(second.client(), ClientId(1));
        // The second is named, which moves the place's state, its lease with it, to the user's.
        second.name(Some("ann")).unwrap();
        assert_eq!(first.renew(3000), Renewal::Taken);
        assert_eq!(second.renew(3000), Renewal::Held);
    }

    #[test]
    fn an_id_taken_up_again_without_its_next_number_goes_on_past_any_it_used() {
        let storage = MemoryStorage::new();
        let (first, saved) = open(&storage, None, 1, 0);
        assert_eq!(saved.next_seq, 0, "a new ID starts from the start");
        queue(&first, &[1, 2]);
        let saved = Saved {
            next_seq: 3,
            packets: Vec::new(),
        };
        assert_eq!(first.save(&saved, 0), Renewal::Held);
        first.release(1000);
        let (reloaded, saved) = open(&storage, Some(1), 2, 2000);
        assert_eq!((reloaded.client(), saved.next_seq), (ClientId(1), 3));
        // Another tab, opening at that instant, took its record for one of a tab long gone.
        reloaded.release(3000);
        storage.remove(&reloaded.seq_key());
        let (again, saved) = open(&storage, Some(1), 3, 4000);
        assert_eq!(again.client(), ClientId(1));
        assert_eq!(saved.next_seq, 4000 << 16);
    }

    #[test]
    fn a_closed_tabs_queue_is_adopted_by_a_new_tab_and_a_stale_lease_counts_as_closed() {
        let storage = MemoryStorage::new();
        let (closed, _) = open(&storage, None, 1, 0);
        queue(&closed, &[5]);
        let (busy, _) = open(&storage, None, 2, 0);
        queue(&busy, &[9]);

        // Both leases are fresh: a new tab gets a new ID.
        let (new_tab, saved) = open(&storage, None, 3, 1000);
        assert_eq!((new_tab.client(), saved.packets.len()), (ClientId(3), 0));

        // Long after, nobody renewed: the oldest orphan is adopted.
        let (late, saved) = open(&storage, None, 4, 1000 + LEASE_TTL_MS + 1);
        assert_eq!(late.client(), ClientId(1));
        assert_eq!(saved.packets[0].seq, 5);
    }

    #[test]
    fn with_web_locks_a_queue_left_behind_is_adopted_not_taken_as_the_id() {
        let storage = MemoryStorage::new();
        let open = |previous: Option<u64>, fresh: u64, now: u64| {
            Persistence::open(
                Arc::new(storage.clone()),
                "u",
                previous.map(ClientId),
                fresh,
                ClientId(fresh),
                now,
                false,
            )
        };
        let (reloaded, _) = open(None, 1, 0);
        queue(&reloaded, &[1]);
        reloaded.release(10);
        // The reload left a call unsent: a new ID, and the queue is an orphan to adopt.
        let (next, saved) = open(Some(1), 2, 20);
        assert_eq!((next.client(), saved), (ClientId(2), Saved::default()));
        assert_eq!(next.orphans(), [ClientId(1)]);
        // Without a queue, a reload keeps its ID.
        next.release(30);
        let (again, _) = open(Some(2), 3, 40);
        assert_eq!(again.client(), ClientId(2));
    }

    #[test]
    fn the_leases_of_clients_gone_without_a_queue_are_removed() {
        let storage = MemoryStorage::new();
        let tabs: Vec<_> = (1..=3).map(|id| open(&storage, None, id, 0).0).collect();
        for tab in &tabs {
            tab.release(1);
        }
        // A reload of the tab of 2, then a new tab.
        let (reloaded, _) = open(&storage, Some(2), 5, 2);
        let (held, _) = open(&storage, None, 4, 3);
        let leases: Vec<String> = storage
            .keys()
            .into_iter()
            .filter(|k| k.contains("lease"))
            .collect();
        // 1 and 3 are gone; 2 is the reload's (taken again), 4 the new tab's.
        let lease = |id: u64| format!("crudp:u:lease:{}", ClientId(id));
        assert_eq!(leases, [lease(2), lease(4)]);
        assert_eq!(
            (reloaded.client(), held.client()),
            (ClientId(2), ClientId(4))
        );
    }

    #[test]
    fn a_reload_with_no_call_unsent_keeps_its_id_and_goes_on_from_its_sequence_number() {
        let storage = MemoryStorage::new();
        let (first, _) = open(&storage, None, 1, 0);
        queue(&first, &[1, 2]);
        // Both answered: nothing left to send, seven calls made in all.
        let saved = Saved {
            next_seq: 8,
            packets: Vec::new(),
        };
        assert_eq!(first.save(&saved, 0), Renewal::Held);
        first.release(10);
        let (reloaded, saved) = open(&storage, Some(1), 2, 20);
        assert_eq!(reloaded.client(), ClientId(1));
        assert_eq!(
            saved,
            Saved {
                next_seq: 8,
                packets: Vec::new()
            }
        );
        // Gone for good (another tab opens and the lease is let go): nothing is left of it.
        reloaded.release(30);
        let (_other, _) = open(&storage, None, 3, 40);
        let seq = format!("seq:{}", ClientId(1));
        assert!(storage.keys().iter().all(|k| !k.ends_with(&seq)));
    }

    #[test]
    fn an_empty_queue_leaves_nothing_behind() {
        let storage = MemoryStorage::new();
        let (p, _) = open(&storage, None, 1, 0);
        queue(&p, &[1]);
        queue(&p, &[]);
        assert!(storage.keys().iter().all(|k| !k.contains("queue")));
    }

    fn queues(storage: &MemoryStorage) -> Vec<String> {
        storage
            .keys()
            .into_iter()
            .filter(|k| k.contains("queue:"))
            .collect()
    }

    #[test]
    fn the_first_user_named_takes_the_unnamed_place_and_later_users_get_their_own() {
        let storage = MemoryStorage::new();
        // Offline before any server named a user: the queue is in the unnamed place.
        let (first, _) = open(&storage, None, 1, 0);
        queue(&first, &[1]);
        assert_eq!(queues(&storage), ["crudp:u:queue:0000000000000001"]);
        first.name(Some("ann")).unwrap();
        let ann = format!("crudp:u:{}", place_of("ann"));
        assert_eq!(queues(&storage), [format!("{ann}queue:0000000000000001")]);
        queue(&first, &[1, 2]);
        assert_eq!(queues(&storage).len(), 1, "saved in ann's place now");

        // Someone else signs in: a new client opens ann's place (the last named), with a
        // queue of its own; named bob, it moves only that to bob's place.
        first.release(10);
        let (second, saved) = Persistence::open(
            Arc::new(storage.clone()),
            "u",
            None,
            2,
            ClientId(2),
            LEASE_TTL_MS * 10,
            false,
        );
        assert!(saved.packets.is_empty());
        queue(&second, &[1]);
        second.name(Some("bob")).unwrap();
        let bob = format!("crudp:u:{}", place_of("bob"));
        let mut expected = vec![
            format!("{ann}queue:0000000000000001"),
            format!("{bob}queue:0000000000000002"),
        ];
        expected.sort();
        assert_eq!(queues(&storage), expected);
        assert!(
            second.orphans().is_empty(),
            "ann's queue is not bob's to adopt"
        );

        // A client that took over ann's queue is stale once bob is named.
        storage.set("crudp:u:user", &place_of("ann"));
        let (adopter, saved) = open(&storage, None, 3, LEASE_TTL_MS * 20);
        assert_eq!((adopter.client(), saved.packets.len()), (ClientId(1), 2));
        assert_eq!(adopter.name(Some("bob")), Err(Stale::OtherUser));
        queue(&adopter, &[9]);
        assert_eq!(
            adopter.load().unwrap().packets.len(),
            2,
            "nothing more is saved in ann's place once bob is named"
        );
    }

    #[test]
    fn signing_out_removes_the_users_state_and_key_and_leaves_other_users() {
        let storage = MemoryStorage::new();
        storage.set("crudp:u:user", &place_of("bob"));
        let (bob, _) = open(&storage, None, 1, 0);
        queue(&bob, &[1]);
        let key = client_key(&storage, "u", || "k1".into());
        assert_eq!(client_key(&storage, "u", || "k2".into()), key, "kept");
        storage.set(
            &format!("crudp:u:{}queue:0000000000000007", place_of("ann")),
            "x",
        );
        bob.sign_out();
        assert_eq!(
            storage.keys(),
            [format!("crudp:u:{}queue:0000000000000007", place_of("ann"))]
        );
        queue(&bob, &[2]);
        assert_eq!(bob.renew(5), Renewal::Held);
        assert_eq!(
            storage.keys().len(),
            1,
            "nothing is saved after signing out"
        );
        assert_eq!(client_key(&storage, "u", || "k2".into()), "k2", "a new key");
    }

    /// A storage that, at its first write of a queue, first lets a sign-out run on another
    /// thread for a while (natively: the race needs threads).
    #[cfg(not(target_arch = "wasm32"))]
    #[derive(Default)]
    struct SignOutMidSave {
        inner: MemoryStorage,
        signing_out: Mutex<Option<Arc<Persistence>>>,
        signed_out: Mutex<Option<std::thread::JoinHandle<()>>>,
    }

    #[cfg(not(target_arch = "wasm32"))]
    impl Storage for SignOutMidSave {
        fn get(&self, key: &str) -> Option<String> {
            self.inner.get(key)
        }
        fn set(&self, key: &str, value: &str) {
            let signing_out = self.signing_out.lock().expect("not poisoned").take();
            if let Some(persistence) = signing_out.filter(|_| key.contains("queue:")) {
                let thread = std::thread::spawn(move || persistence.sign_out());
                // The sign-out runs meanwhile, unless the save holds it off.
                std::thread::sleep(std::time::Duration::from_millis(100));
                *self.signed_out.lock().expect("not poisoned") = Some(thread);
            }
            self.inner.set(key, value);
        }
        fn remove(&self, key: &str) {
            self.inner.remove(key);
        }
        fn keys(&self) -> Vec<String> {
            self.inner.keys()
        }
    }

    #[cfg(not(target_arch = "wasm32"))]
    #[test]
    fn a_save_racing_a_sign_out_does_not_put_the_queue_back() {
        let storage = Arc::new(SignOutMidSave::default());
        let (anonymous, _) = Persistence::open_as(storage.clone(), "u", ClientId(1), 1, 0, true);
        let anonymous = Arc::new(anonymous);
        *storage.signing_out.lock().expect("not poisoned") = Some(Arc::clone(&anonymous));
        queue(&anonymous, &[1, 2]);
        let thread = storage.signed_out.lock().expect("not poisoned").take();
        thread
            .expect("the save wrote a queue")
            .join()
            .expect("signed out");
        assert_eq!(storage.keys(), Vec::<String>::new(), "nothing left");
        let _ = anonymous.save(
            &Saved {
                next_seq: 4,
                packets: Vec::new(),
            },
            1,
        );
        assert_eq!(
            storage.keys(),
            Vec::<String>::new(),
            "nothing is saved after signing out"
        );
        // The next user signs in with another client; a late answer to this one changes
        // nothing of theirs.
        storage.set("crudp:u:user", &place_of("ann"));
        assert_eq!(anonymous.name(Some("bob")), Err(Stale::SignedOut));
        anonymous.forget_user();
        assert_eq!(storage.get("crudp:u:user"), Some(place_of("ann")));
    }
}
