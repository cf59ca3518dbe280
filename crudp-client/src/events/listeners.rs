//! Typed listeners of an action's results: `{Trait}Client::on_<action>`.

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
