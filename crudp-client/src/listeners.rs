//! Who hears of results and changes: typed listeners of an action's results
//! (`{Trait}Client::on_<action>`), and the status and reset watchers.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
};

use crudp_runtime::Action;

/// A listener of an action's encoded `Ok` values.
#[cfg(not(target_arch = "wasm32"))]
pub(crate) type ListenerFn = dyn Fn(&[u8]) + Send + Sync;
/// A listener of an action's encoded `Ok` values.
#[cfg(target_arch = "wasm32")]
pub(crate) type ListenerFn = dyn Fn(&[u8]);

type ByAction = HashMap<(u32, Action), Vec<(u64, Arc<ListenerFn>)>>;

#[derive(Default)]
pub(crate) struct Listeners {
    next_id: Mutex<u64>,
    by_action: Mutex<ByAction>,
}

impl Listeners {
    fn map(&self) -> MutexGuard<'_, ByAction> {
        self.by_action
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn add(&self, handler: u32, action: Action, listener: Arc<ListenerFn>) -> u64 {
        let id = {
            let mut next = self.next_id.lock().unwrap_or_else(PoisonError::into_inner);
            *next += 1;
            *next
        };
        self.map()
            .entry((handler, action))
            .or_default()
            .push((id, listener));
        id
    }

    pub(crate) fn remove(&self, handler: u32, action: Action, id: u64) {
        if let Some(listeners) = self.map().get_mut(&(handler, action)) {
            listeners.retain(|(i, _)| *i != id);
        }
    }

    /// How many listeners are registered.
    pub(crate) fn count(&self) -> usize {
        self.map().values().map(Vec::len).sum()
    }

    /// Calls every listener of `action` of `handler` with `value`, outside the lock, so a
    /// listener may add or remove listeners.
    pub(crate) fn notify(&self, handler: u32, action: Action, value: &[u8]) {
        let listeners: Vec<_> = match self.map().get(&(handler, action)) {
            Some(listeners) => listeners.iter().map(|(_, l)| Arc::clone(l)).collect(),
            None => return,
        };
        for listener in listeners {
            listener(value);
        }
    }
}

/// A watcher of the client's status.
#[cfg(not(target_arch = "wasm32"))]
pub(crate) type StatusFn = dyn Fn(crate::Status) + Send + Sync;
/// A watcher of the client's status.
#[cfg(target_arch = "wasm32")]
pub(crate) type StatusFn = dyn Fn(crate::Status);

/// A watcher of resets: the event stream may have missed events.
#[cfg(not(target_arch = "wasm32"))]
pub(crate) type ResetFn = dyn Fn() + Send + Sync;
/// A watcher of resets: the event stream may have missed events.
#[cfg(target_arch = "wasm32")]
pub(crate) type ResetFn = dyn Fn();

/// The status and reset watchers: `Client::on_status`, `Client::on_reset`.
#[derive(Default)]
pub(crate) struct Watchers {
    inner: Mutex<WatcherLists>,
}

#[derive(Default)]
struct WatcherLists {
    next_id: u64,
    status: Vec<(u64, Arc<StatusFn>)>,
    resets: Vec<(u64, Arc<ResetFn>)>,
}

impl Watchers {
    fn lists(&self) -> MutexGuard<'_, WatcherLists> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn add_status(&self, watcher: Arc<StatusFn>) -> u64 {
        let mut lists = self.lists();
        lists.next_id += 1;
        let id = lists.next_id;
        lists.status.push((id, watcher));
        id
    }

    pub(crate) fn add_reset(&self, watcher: Arc<ResetFn>) -> u64 {
        let mut lists = self.lists();
        lists.next_id += 1;
        let id = lists.next_id;
        lists.resets.push((id, watcher));
        id
    }

    /// Removes the watcher with this ID, of either kind.
    pub(crate) fn remove(&self, id: u64) {
        let mut lists = self.lists();
        lists.status.retain(|(i, _)| *i != id);
        lists.resets.retain(|(i, _)| *i != id);
    }

    /// How many watchers of either kind are registered.
    pub(crate) fn count(&self) -> usize {
        let lists = self.lists();
        lists.status.len() + lists.resets.len()
    }

    /// Calls the status watchers, outside the lock.
    pub(crate) fn status(&self, status: crate::Status) {
        let watchers: Vec<_> = self
            .lists()
            .status
            .iter()
            .map(|(_, w)| Arc::clone(w))
            .collect();
        for watcher in watchers {
            watcher(status);
        }
    }

    /// Calls the reset watchers, outside the lock.
    pub(crate) fn reset(&self) {
        let watchers: Vec<_> = self
            .lists()
            .resets
            .iter()
            .map(|(_, w)| Arc::clone(w))
            .collect();
        for watcher in watchers {
            watcher();
        }
    }
}
