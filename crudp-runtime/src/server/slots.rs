//! Places (connections, event streams) counted in all and per IP address, each given back
//! when its [`Slot`] is dropped.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
};

/// What limits per IP address count `ip` as: an IPv4 address as it is (also when it comes
/// IPv4-mapped), an IPv6 address by its /64 prefix, which one host or home usually holds
/// whole: counted one by one, the addresses of one /64 would each get the limits anew.
pub(super) fn network(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
        },
    }
}

#[derive(Default)]
pub(super) struct Slots {
    counts: Mutex<Counts>,
    /// Told the number of places taken whenever it changes (a metrics gauge).
    gauge: Option<fn(usize)>,
}

#[derive(Default)]
struct Counts {
    total: usize,
    per_address: HashMap<IpAddr, usize>,
}

/// Why no place was free.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Full {
    /// All places are taken: this many.
    Total(usize),
    /// The address holds this many places.
    Address(usize),
}

/// One place, held until dropped.
pub(super) struct Slot {
    slots: Arc<Slots>,
    address: Option<IpAddr>,
}

impl Slots {
    /// Places whose number taken `gauge` is told of.
    pub(super) fn gauged(gauge: fn(usize)) -> Self {
        Self {
            counts: Mutex::default(),
            gauge: Some(gauge),
        }
    }

    fn counts(&self) -> MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A place for `address` (uncounted per address if unknown), if fewer than `total` are
    /// taken in all and fewer than `per_address` by that address's [`network`].
    pub(super) fn take(
        self: &Arc<Self>,
        address: Option<IpAddr>,
        total: usize,
        per_address: usize,
    ) -> Result<Slot, Full> {
        let address = address.map(network);
        let mut counts = self.counts();
        if counts.total >= total {
            return Err(Full::Total(total));
        }
        if let Some(address) = address {
            // Looked at before it is counted: a refused address leaves no entry behind.
            if counts.per_address.get(&address).copied().unwrap_or(0) >= per_address {
                return Err(Full::Address(per_address));
            }
            *counts.per_address.entry(address).or_default() += 1;
        }
        counts.total += 1;
        if let Some(gauge) = self.gauge {
            gauge(counts.total);
        }
        Ok(Slot {
            slots: Arc::clone(self),
            address,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self.slots.counts();
        counts.total -= 1;
        if let Some(gauge) = self.slots.gauge {
            gauge(counts.total);
        }
        if let Some(address) = self.address
            && let Some(held) = counts.per_address.get_mut(&address)
        {
            *held -= 1;
            if *held == 0 {
                counts.per_address.remove(&address);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_are_counted_in_all_and_per_address_and_given_back() {
        let slots = Arc::new(Slots::default());
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let first = slots.take(Some(a), 3, 2).unwrap();
        let _second = slots.take(Some(a), 3, 2).unwrap();
        assert_eq!(slots.take(Some(a), 3, 2).err(), Some(Full::Address(2)));
        let _third = slots.take(Some(b), 3, 2).unwrap();
        assert_eq!(slots.take(None, 3, 2).err(), Some(Full::Total(3)));
        drop(first);
        assert!(slots.take(Some(a), 3, 2).is_ok(), "given back");
        assert!(slots.counts().per_address.len() <= 2);
    }

    #[test]
    fn the_addresses_of_one_ipv6_64_share_their_places() {
        let slots = Arc::new(Slots::default());
        let one: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let _held = slots.take(Some(one), 10, 1).unwrap();
        for other in ["2001:db8:1:2::2", "2001:db8:1:2:ffff:ffff:ffff:ffff"] {
            let other: IpAddr = other.parse().unwrap();
            assert_eq!(
                slots.take(Some(other), 10, 1).err(),
                Some(Full::Address(1)),
                "{other}"
            );
        }
        let next_network: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert!(slots.take(Some(next_network), 10, 1).is_ok());
        // An IPv4 address counts as itself, mapped into IPv6 or not.
        let v4: IpAddr = "192.0.2.7".parse().unwrap();
        let _v4 = slots.take(Some(v4), 10, 1).unwrap();
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(
            slots.take(Some(mapped), 10, 1).err(),
            Some(Full::Address(1))
        );
        assert!(
            slots
                .take(Some("192.0.2.8".parse().unwrap()), 10, 1)
                .is_ok()
        );
    }

    #[test]
    fn an_address_refused_outright_leaves_no_count_behind() {
        let slots = Arc::new(Slots::default());
        for last in 0..100u8 {
            let address = IpAddr::from([10, 0, 1, last]);
            assert_eq!(
                slots.take(Some(address), 10, 0).err(),
                Some(Full::Address(0))
            );
        }
        assert!(slots.counts().per_address.is_empty());
    }
}
