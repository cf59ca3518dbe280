//! Encoding and bounded decoding of batches and results (protocol version 3).
//!
//! Decoding reads the item count first and checks it against both the configured maximum and
//! the bytes that are left, so a hostile length prefix can never make it allocate more than a
//! small multiple of the input it was given (a decoded packet is larger than its encoding).

use super::{
    Action, Batch, Bytes, ClientId, Outcome, PROTOCOL_VERSION, Packet, PacketResult, RejectCode,
    Results,
};

/// The smallest encoding of a [`Packet`]: a short head (see [`SHORT`]) for empty arguments.
const MIN_PACKET_LEN: usize = 1;
/// The smallest encoding of a [`PacketResult`]: its head (an `Expired` one, or a short one
/// for an empty value).
const MIN_RESULT_LEN: usize = 1;
/// Heads below this are short: the item goes on from the one before it (the next sequence
/// number; for a packet, the same module and action; for a result, `Ok`), and the head is
/// its length, its bytes right after. Any other head is this plus the item's step and the rest.
const SHORT: u64 = 64;

/// Why a message could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Nothing was sent.
    #[error(
        "empty body: expected a postcard-encoded message starting with protocol version {PROTOCOL_VERSION}"
    )]
    Empty,
    /// The first byte is not a version this side speaks.
    #[error(
        "unsupported protocol version {0}: this side speaks version {PROTOCOL_VERSION}; the client \
         and the server must speak the same version (a page left open across a deploy: reload it)"
    )]
    Version(u8),
    /// The message claims more items than allowed.
    #[error("{what} holds {count} items but at most {max} are allowed")]
    TooMany {
        /// `batch` or `results`.
        what: &'static str,
        /// The count the message claims.
        count: u64,
        /// The configured limit.
        max: usize,
    },
    /// The message claims more items than the remaining bytes could hold.
    #[error(
        "{what} claims {count} items but only {remaining} bytes follow: the message is truncated or corrupt"
    )]
    Truncated {
        /// `batch` or `results`.
        what: &'static str,
        /// The count the message claims.
        count: u64,
        /// The bytes left after the count.
        remaining: usize,
    },
    /// A part of the message is not valid postcard for its type.
    #[error("{part} is malformed: {reason}")]
    Malformed {
        /// Which part, e.g. `the client ID` or `packet 3`.
        part: String,
        /// The decoder's explanation.
        reason: String,
    },
    /// Bytes follow the end of the message.
    #[error("{0} unexpected bytes after the end of the message")]
    Trailing(usize),
}

/// Encodes a batch. The caller sets [`Batch::version`]; it should be [`PROTOCOL_VERSION`].
pub fn encode_batch(batch: &Batch) -> Vec<u8> {
    let mut out = encode_packets(batch.client, batch.packets.iter());
    out[0] = batch.version;
    out
}

/// Encodes a batch of `client` from borrowed packets, without copying them into a [`Batch`]:
/// [`encode_packets_after`] with no earlier call to follow.
pub fn encode_packets<'a>(
    client: ClientId,
    packets: impl ExactSizeIterator<Item = &'a Packet> + Clone,
) -> Vec<u8> {
    encode_packets_after(client, 0, packets)
}

/// Encodes a batch of `client` from borrowed packets whose calls run only after call `after`
/// of the client (`0`: none); see [`decode_batch_after`].
///
/// The layout (version 3): the version byte; the client ID; the batch's module IDs, each once;
/// the packet count; the first packet's sequence number; then per packet one varint, the
/// *head*, then the arguments' bytes; last, if it is not `0`, `after`. A packet that goes on
/// from the one before it (the next sequence number, the same module and action) with
/// arguments shorter than 64 bytes has a short head, the arguments' length; any other head
/// holds 64 plus the step from the previous sequence number, the module's index in the
/// table and the action, and the arguments' length follows it. A run of calls of one action of
/// one module spends one byte per packet besides its arguments, a mixed batch two.
///
/// # Panics
///
/// If `after` is not `0` and not below the batch's highest sequence number: such a batch
/// would never run.
pub fn encode_packets_after<'a>(
    client: ClientId,
    after: u64,
    packets: impl ExactSizeIterator<Item = &'a Packet> + Clone,
) -> Vec<u8> {
    let mut modules: Vec<u32> = Vec::new();
    let mut args = 0;
    let mut highest = 0;
    for packet in packets.clone() {
        if !modules.contains(&packet.handler) {
            modules.push(packet.handler);
        }
        args += packet.args.len();
        highest = highest.max(packet.seq);
    }
    assert!(
        after == 0 || after < highest,
        "a batch follows a call before its highest, {highest}; not call {after}"
    );
    let mut out = Vec::with_capacity(16 + modules.len() * 5 + packets.len() * 4 + args);
    out.push(PROTOCOL_VERSION);
    put(&mut out, client.0);
    put(&mut out, modules.len() as u64);
    for &module in &modules {
        put(&mut out, u64::from(module));
    }
    put(&mut out, packets.len() as u64);
    let radix = modules.len() as u64 * ACTIONS;
    let mut previous = None;
    let mut previous_rest = None;
    for packet in packets {
        let index = modules
            .iter()
            .position(|&m| m == packet.handler)
            .unwrap_or(0) as u64;
        let rest = index * ACTIONS + packet.action as u64;
        let same = previous_rest.replace(rest) == Some(rest);
        put_item(
            &mut out,
            &mut previous,
            packet.seq,
            same,
            &packet.args,
            (radix, rest),
        );
    }
    if after != 0 {
        put(&mut out, after);
    }
    out
}

/// Encodes a result set, version byte first: the count, the first result's sequence number,
/// then per result one varint, its head, and the outcome's contents. An `Ok` result that goes
/// on from the one before it (the next sequence number, or the first result) with a value
/// shorter than 64 bytes has a short head, the value's length; any other head holds
/// 64 plus the step from the previous sequence number and the outcome's kind.
pub fn encode_results(results: &Results) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + results_len(results));
    out.push(PROTOCOL_VERSION);
    put_results(&mut out, results);
    out
}

/// Encodes the results of one client's batch for its event stream: version byte, the client,
/// then the results as [`encode_results`] has them. A stream that carries several clients
/// (the tabs of one browser) tells them apart by it.
pub fn encode_client_results(client: ClientId, results: &Results) -> Vec<u8> {
    let mut out = Vec::with_capacity(24 + results_len(results));
    out.push(PROTOCOL_VERSION);
    put(&mut out, client.0);
    put_results(&mut out, results);
    out
}

/// The client that results encoded by [`encode_client_results`] are for, without decoding
/// the results.
pub fn client_of_results(bytes: &[u8]) -> Result<ClientId, DecodeError> {
    let mut reader = Reader::new(bytes, None)?;
    Ok(ClientId(reader.varint(|| "the client ID".to_owned())?))
}

/// Decodes what [`encode_client_results`] encodes, refusing more than `max_results` results.
pub fn decode_client_results(
    bytes: &Bytes,
    max_results: usize,
) -> Result<(ClientId, Results), DecodeError> {
    let mut reader = Reader::new(bytes, Some(bytes))?;
    let client = ClientId(reader.varint(|| "the client ID".to_owned())?);
    let results = reader.results(max_results)?;
    reader.finish()?;
    Ok((client, results))
}

/// Decodes a batch, refusing more than `max_packets` packets. The packets' arguments are
/// slices of `bytes`, not copies. The batch's `after`, if any, is checked and left out: see
/// [`decode_batch_after`].
pub fn decode_batch(bytes: &Bytes, max_packets: usize) -> Result<Batch, DecodeError> {
    decode_batch_after(bytes, max_packets).map(|(batch, _)| batch)
}

/// Decodes a batch as [`decode_batch`] does, and its `after`: a call sent earlier that its
/// client still waited for when it sent the batch (CRUDP's client names the latest one below
/// the batch's first call), which the batch's calls must not run before (`0`: none). It is
/// below the batch's highest sequence number. A call the client no longer waits for is never
/// `after`: the client gave up on it.
pub fn decode_batch_after(bytes: &Bytes, max_packets: usize) -> Result<(Batch, u64), DecodeError> {
    let mut reader = Reader::new(bytes, Some(bytes))?;
    let client = ClientId(reader.varint(|| "the client ID".to_owned())?);
    let count = reader.varint(|| "the module count".to_owned())?;
    // Each module ID takes at least a byte.
    let count = reader.count("modules", count, usize::MAX, 1)?;
    let mut modules = Vec::with_capacity(count);
    for index in 0..count {
        let id = reader.varint(|| format!("module ID {index}"))?;
        let id =
            u32::try_from(id).map_err(|_| malformed(format!("module ID {index}"), "above 2^32"))?;
        modules.push(id);
    }
    let count = reader.varint(|| "the packet count".to_owned())?;
    let count = reader.count("batch", count, max_packets, MIN_PACKET_LEN)?;
    let mut packets = Vec::with_capacity(count);
    if count > 0 && modules.is_empty() {
        return Err(malformed(
            "the module table".into(),
            "empty, but packets follow",
        ));
    }
    let radix = u128::from(modules.len() as u64 * ACTIONS);
    let mut seq = 0;
    let mut previous: Option<(u32, Action)> = None;
    for index in 0..count {
        let part = || format!("packet {index}");
        let (handler, action, args) = match reader.head(index, &mut seq, radix, part)? {
            Head::Short(args) => {
                let Some((handler, action)) = previous else {
                    return Err(malformed(
                        part(),
                        "a short head goes on from a packet before it, and there is none",
                    ));
                };
                (handler, action, reader.share(args))
            }
            Head::Long(rest) => {
                let rest = rest as u64;
                let handler = modules[(rest / ACTIONS) as usize];
                let action = Action::ALL[(rest % ACTIONS) as usize];
                (handler, action, reader.shared(part)?)
            }
        };
        previous = Some((handler, action));
        packets.push(Packet {
            seq,
            handler,
            action,
            args,
        });
    }
    // Whatever follows the packets is one varint, `after`, or bytes that do not belong.
    let after = match reader.rest.len() {
        0 => 0,
        trailing => match reader.varint(String::new) {
            Ok(after) if reader.rest.is_empty() => {
                let highest = packets.iter().map(|p| p.seq).max().unwrap_or(0);
                if after == 0 || after >= highest {
                    return Err(malformed(
                        "after".into(),
                        &format!(
                            "{after}: the call a batch follows must be above 0 and below \
                             its highest sequence number ({highest})"
                        ),
                    ));
                }
                after
            }
            _ => return Err(DecodeError::Trailing(trailing)),
        },
    };
    let batch = Batch {
        version: PROTOCOL_VERSION,
        client,
        packets,
    };
    Ok((batch, after))
}

/// Decodes a result set, refusing more than `max_results` results. The outcomes' values are
/// slices of `bytes`, not copies.
pub fn decode_results(bytes: &Bytes, max_results: usize) -> Result<Results, DecodeError> {
    let mut reader = Reader::new(bytes, Some(bytes))?;
    let results = reader.results(max_results)?;
    reader.finish()?;
    Ok(results)
}

/// The actions a packet's head tells apart.
const ACTIONS: u64 = Action::ALL.len() as u64;
/// The outcome kinds a result's head tells apart.
const KINDS: u64 = 5;

/// About the bytes the results take.
fn results_len(results: &Results) -> usize {
    results
        .results
        .iter()
        .map(|r| {
            4 + match &r.outcome {
                Outcome::Ok(bytes) | Outcome::AppError(bytes) => bytes.len(),
                Outcome::Rejected { message, .. } | Outcome::Unavailable { message } => {
                    message.len() + 2
                }
                Outcome::Expired => 0,
            }
        })
        .sum()
}

fn put_results(out: &mut Vec<u8>, results: &Results) {
    put(out, results.results.len() as u64);
    let mut previous = None;
    for result in &results.results {
        let seq = result.seq;
        match &result.outcome {
            Outcome::Ok(value) => put_item(out, &mut previous, seq, true, value, (KINDS, 0)),
            Outcome::AppError(error) => {
                put_item(out, &mut previous, seq, false, error, (KINDS, 1));
            }
            Outcome::Rejected { code, message } => {
                put_head(out, &mut previous, seq, KINDS, 2);
                put(out, *code as u64);
                put(out, message.len() as u64);
                out.extend_from_slice(message.as_bytes());
            }
            Outcome::Unavailable { message } => {
                put_head(out, &mut previous, seq, KINDS, 3);
                put(out, message.len() as u64);
                out.extend_from_slice(message.as_bytes());
            }
            Outcome::Expired => put_head(out, &mut previous, seq, KINDS, 4),
        }
    }
}

/// An item with `bytes`: a short head if it may have one (it goes on from the `previous`
/// sequence number, and is `same` as the item before as its kind goes), else the long head of
/// `(radix, rest)` and the bytes' length; then the bytes.
fn put_item(
    out: &mut Vec<u8>,
    previous: &mut Option<u64>,
    seq: u64,
    same: bool,
    bytes: &[u8],
    (radix, rest): (u64, u64),
) {
    let next = match *previous {
        // The first item's step is 0 from its own sequence number.
        None => true,
        Some(previous) => previous.checked_add(1) == Some(seq),
    };
    if same && next && (bytes.len() as u64) < SHORT {
        if previous.replace(seq).is_none() {
            put(out, seq);
        }
    } else {
        put_head(out, previous, seq, radix, rest);
    }
    // The short head, or the length after the long one.
    put(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// An item's long head: the first item's sequence number goes before it; then [`SHORT`] plus
/// the step from the `previous` sequence number, times `radix`, plus `rest` (below `radix`).
fn put_head(out: &mut Vec<u8>, previous: &mut Option<u64>, seq: u64, radix: u64, rest: u64) {
    let step = match previous.replace(seq) {
        None => {
            put(out, seq);
            0
        }
        Some(previous) => zigzag(i128::from(seq) - i128::from(previous) - 1),
    };
    put_wide(
        out,
        u128::from(SHORT) + step * u128::from(radix) + u128::from(rest),
    );
}

/// A signed step as an unsigned number: 0, -1, 1, -2, … become 0, 1, 2, 3, … (Steps between
/// 64-bit sequence numbers take at most 66 bits.)
fn zigzag(step: i128) -> u128 {
    ((step << 1) ^ (step >> 127)) as u128
}

fn unzigzag(value: u128) -> i128 {
    ((value >> 1) as i128) ^ -((value & 1) as i128)
}

/// Appends `value` as a LEB128 varint, as postcard writes integers.
fn put(out: &mut Vec<u8>, value: u64) {
    put_wide(out, u128::from(value));
}

fn put_wide(out: &mut Vec<u8>, mut value: u128) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn malformed(part: String, reason: &str) -> DecodeError {
    DecodeError::Malformed {
        part,
        reason: reason.to_owned(),
    }
}

/// What an item's head holds.
enum Head<'a> {
    /// A short head: the item's bytes, which it was the length of.
    Short(&'a [u8]),
    /// The rest of a long head (below its radix); the item's contents follow.
    Long(u128),
}

struct Reader<'a> {
    /// What holds the message, if the values read may be slices of it.
    owner: Option<&'a Bytes>,
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8], owner: Option<&'a Bytes>) -> Result<Self, DecodeError> {
        match bytes.split_first() {
            None => Err(DecodeError::Empty),
            Some((&PROTOCOL_VERSION, rest)) => Ok(Self { owner, rest }),
            Some((&other, _)) => Err(DecodeError::Version(other)),
        }
    }

    /// The next varint of up to 128 bits; `part` names it in the error, and is only called
    /// then.
    fn wide(&mut self, part: impl FnOnce() -> String) -> Result<u128, DecodeError> {
        let mut value = 0u128;
        for (i, &byte) in self.rest.iter().enumerate().take(19) {
            if i == 18 && byte > 0x03 {
                // Bits above the 128th.
                break;
            }
            value |= u128::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                self.rest = &self.rest[i + 1..];
                return Ok(value);
            }
        }
        Err(malformed(part(), "a number is truncated or too long"))
    }

    /// The next varint of up to 64 bits.
    fn varint(&mut self, part: impl Fn() -> String) -> Result<u64, DecodeError> {
        u64::try_from(self.wide(&part)?).map_err(|_| malformed(part(), "a number above 2^64"))
    }

    /// A length, then as many bytes.
    fn bytes(&mut self, part: impl Fn() -> String) -> Result<&'a [u8], DecodeError> {
        let len = self.varint(&part)?;
        self.take(usize::try_from(len).unwrap_or(usize::MAX), part)
    }

    /// The next `len` bytes.
    fn take(&mut self, len: usize, part: impl Fn() -> String) -> Result<&'a [u8], DecodeError> {
        if len > self.rest.len() {
            return Err(malformed(part(), "its length runs past the end"));
        }
        let (bytes, rest) = self.rest.split_at(len);
        self.rest = rest;
        Ok(bytes)
    }

    /// A length, then as many bytes, shared with the message where it has an owner.
    fn shared(&mut self, part: impl Fn() -> String) -> Result<Bytes, DecodeError> {
        let bytes = self.bytes(part)?;
        Ok(self.share(bytes))
    }

    /// `bytes`, of the message, shared with it where it has an owner.
    fn share(&self, bytes: &[u8]) -> Bytes {
        match self.owner {
            Some(owner) => owner.slice_ref(bytes),
            None => Bytes::copy_from_slice(bytes),
        }
    }

    fn text(&mut self, part: impl Fn() -> String) -> Result<String, DecodeError> {
        let bytes = self.bytes(&part)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| malformed(part(), "a message is not UTF-8"))
    }

    /// A count of items of at least `min_item_len` bytes each, checked against `max` and
    /// against the bytes left.
    fn count(
        &self,
        what: &'static str,
        count: u64,
        max: usize,
        min_item_len: usize,
    ) -> Result<usize, DecodeError> {
        if count > max as u64 {
            return Err(DecodeError::TooMany { what, count, max });
        }
        if count > (self.rest.len() / min_item_len) as u64 {
            return Err(DecodeError::Truncated {
                what,
                count,
                remaining: self.rest.len(),
            });
        }
        Ok(count as usize)
    }

    /// The head of item `index`, after the first sequence number for the first item: moves
    /// `seq` to the item's and says what the head holds.
    fn head(
        &mut self,
        index: usize,
        seq: &mut u64,
        radix: u128,
        part: impl Fn() -> String,
    ) -> Result<Head<'a>, DecodeError> {
        if index == 0 {
            *seq = self.varint(|| "the first sequence number".to_owned())?;
        }
        let head = self.wide(&part)?;
        let long = head.checked_sub(u128::from(SHORT));
        let step = long.map_or(0, |long| unzigzag(long / radix));
        if index > 0 {
            *seq = i128::from(*seq)
                .checked_add(step)
                .and_then(|s| s.checked_add(1))
                .and_then(|s| u64::try_from(s).ok())
                .ok_or_else(|| malformed(part(), "its sequence number is out of range"))?;
        }
        match long {
            None => Ok(Head::Short(self.take(head as usize, part)?)),
            Some(long) => Ok(Head::Long(long % radix)),
        }
    }

    fn results(&mut self, max: usize) -> Result<Results, DecodeError> {
        let count = self.varint(|| "the result count".to_owned())?;
        let count = self.count("results", count, max, MIN_RESULT_LEN)?;
        let mut results = Vec::with_capacity(count);
        let mut seq = 0;
        for index in 0..count {
            let part = || format!("result {index}");
            let kind = match self.head(index, &mut seq, u128::from(KINDS), part)? {
                Head::Short(value) => {
                    let outcome = Outcome::Ok(self.share(value));
                    results.push(PacketResult { seq, outcome });
                    continue;
                }
                Head::Long(kind) => kind,
            };
            let outcome = match kind {
                0 => Outcome::Ok(self.shared(part)?),
                1 => Outcome::AppError(self.shared(part)?),
                2 => {
                    let code = self.varint(part)?;
                    let code = RejectCode::ALL
                        .get(code as usize)
                        .copied()
                        .ok_or_else(|| malformed(part(), "an unknown rejection code"))?;
                    Outcome::Rejected {
                        code,
                        message: self.text(part)?,
                    }
                }
                3 => Outcome::Unavailable {
                    message: self.text(part)?,
                },
                _ => Outcome::Expired,
            };
            results.push(PacketResult { seq, outcome });
        }
        Ok(Results { results })
    }

    fn finish(self) -> Result<(), DecodeError> {
        match self.rest.len() {
            0 => Ok(()),
            n => Err(DecodeError::Trailing(n)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Action, Outcome, RejectCode};

    #[test]
    fn results_name_their_client_before_the_results_are_decoded() {
        let results = Results {
            results: vec![PacketResult {
                seq: 3,
                outcome: Outcome::Ok(vec![9].into()),
            }],
        };
        let bytes = Bytes::from(encode_client_results(ClientId(42), &results));
        assert_eq!(client_of_results(&bytes), Ok(ClientId(42)));
        assert_eq!(
            decode_client_results(&bytes, 10),
            Ok((ClientId(42), results))
        );
        assert!(client_of_results(&[]).is_err());
    }

    fn sample() -> Batch {
        Batch {
            version: PROTOCOL_VERSION,
            client: ClientId(0xdead_beef),
            packets: vec![
                Packet {
                    seq: 1,
                    handler: 7,
                    action: Action::Create,
                    args: vec![1, 2, 3].into(),
                },
                Packet {
                    seq: 2,
                    handler: 7,
                    action: Action::Delete,
                    args: vec![].into(),
                },
            ],
        }
    }

    #[test]
    fn batch_round_trips_with_the_version_first() {
        let bytes = encode_batch(&sample());
        assert_eq!(bytes[0], PROTOCOL_VERSION);
        assert_eq!(decode_batch(&bytes.into(), 10).unwrap(), sample());
    }

    #[test]
    fn a_batch_names_the_call_it_follows_last_and_only_if_it_has_one() {
        let batch = sample();
        let plain = encode_packets(batch.client, batch.packets.iter());
        let after = encode_packets_after(batch.client, 1, batch.packets.iter());
        assert_eq!(after.len(), plain.len() + 1);
        assert_eq!(
            decode_batch_after(&plain.into(), 10).unwrap(),
            (sample(), 0)
        );
        let decoded = decode_batch_after(&after.clone().into(), 10).unwrap();
        assert_eq!(decoded, (sample(), 1));
        assert_eq!(decode_batch(&after.clone().into(), 10).unwrap(), sample());
        // Not below the highest call, or written though it is none, it is refused.
        for bad in [0, 2, 3] {
            let mut bytes = encode_packets(batch.client, batch.packets.iter());
            put(&mut bytes, bad);
            let err = decode_batch_after(&bytes.into(), 10).unwrap_err();
            assert!(err.to_string().contains("after is malformed"), "{err}");
        }
        let mut bytes = encode_packets(batch.client, [].iter());
        put(&mut bytes, 1);
        assert!(decode_batch_after(&bytes.into(), 10).is_err());
    }

    #[test]
    fn results_round_trip() {
        let results = Results {
            results: vec![
                PacketResult {
                    seq: 1,
                    outcome: Outcome::Ok(vec![9].into()),
                },
                PacketResult {
                    seq: 2,
                    outcome: Outcome::Expired,
                },
                PacketResult {
                    seq: 3,
                    outcome: Outcome::Rejected {
                        code: RejectCode::Forbidden,
                        message: "no".into(),
                    },
                },
            ],
        };
        let bytes = encode_results(&results);
        assert_eq!(bytes[0], PROTOCOL_VERSION);
        assert_eq!(decode_results(&bytes.into(), 10).unwrap(), results);
    }

    #[test]
    fn any_order_of_sequence_numbers_and_modules_round_trips_compactly() {
        let packets: Vec<Packet> = [
            (5, 7, Action::Create),
            (6, 9, Action::Read),
            (7, 7, Action::Update),
            (3, 1 << 31, Action::Delete),
            (u64::MAX, 9, Action::Create),
            (0, 7, Action::Read),
        ]
        .into_iter()
        .map(|(seq, handler, action)| Packet {
            seq,
            handler,
            action,
            args: vec![seq as u8].into(),
        })
        .collect();
        let batch = Batch {
            version: PROTOCOL_VERSION,
            client: ClientId(1),
            packets,
        };
        let bytes = encode_batch(&batch);
        assert_eq!(decode_batch(&bytes.into(), 10).unwrap(), batch);

        // Consecutive calls of one action: one byte per packet besides the arguments; a
        // change of action costs a long head and a length, two bytes.
        let consecutive = |n: u64| Batch {
            version: PROTOCOL_VERSION,
            client: ClientId(1),
            packets: (1000..1000 + n)
                .map(|seq| Packet {
                    seq,
                    handler: 0xdead_beef,
                    action: Action::Create,
                    args: vec![].into(),
                })
                .collect(),
        };
        let (ten, eleven) = (
            encode_batch(&consecutive(10)),
            encode_batch(&consecutive(11)),
        );
        assert_eq!(eleven.len() - ten.len(), 1);
        let mut mixed = consecutive(11);
        mixed.packets[10].action = Action::Read;
        assert_eq!(encode_batch(&mixed).len() - ten.len(), 2);
        assert_eq!(decode_batch(&encode_batch(&mixed).into(), 20), Ok(mixed));
        // Arguments too long for a short head, a skipped number, a step back: long heads.
        let mut long = consecutive(4);
        long.packets[1].args = vec![7; SHORT as usize].into();
        long.packets[2].seq += 1;
        long.packets[3].seq = 900;
        let bytes = encode_batch(&long);
        assert_eq!(decode_batch(&bytes.into(), 10), Ok(long));
        // The numbers wrap around: 0 is not the next after the highest, so its head is long.
        let mut wrap = consecutive(2);
        wrap.packets[0].seq = u64::MAX;
        wrap.packets[1].seq = 0;
        let bytes = encode_batch(&wrap);
        // The first number takes 8 bytes more, the second head 9 more, and its length 1.
        assert_eq!(bytes.len(), encode_batch(&consecutive(2)).len() + 8 + 9 + 1);
        assert_eq!(decode_batch(&bytes.into(), 10), Ok(wrap));
        // A short head after the highest number is refused, not wrapped.
        let mut max = vec![PROTOCOL_VERSION, 1, 1, 7, 2];
        put(&mut max, u64::MAX);
        max.extend_from_slice(&[SHORT as u8, 0, 0]);
        let err = decode_batch(&max.into(), 10).unwrap_err();
        assert!(err.to_string().contains("out of range"), "{err}");

        let codes = RejectCode::ALL
            .iter()
            .enumerate()
            .map(|(i, &code)| PacketResult {
                seq: 40 - i as u64,
                outcome: Outcome::Rejected {
                    code,
                    message: code.to_string(),
                },
            });
        let results = Results {
            results: codes.collect(),
        };
        assert_eq!(
            decode_results(&encode_results(&results).into(), 10),
            Ok(results)
        );
    }

    #[test]
    fn a_run_of_ok_results_spends_one_byte_each_besides_the_values() {
        let run = |n: u64| Results {
            results: (7..7 + n)
                .map(|seq| PacketResult {
                    seq,
                    outcome: Outcome::Ok(vec![seq as u8; 3].into()),
                })
                .collect(),
        };
        let (ten, eleven) = (encode_results(&run(10)), encode_results(&run(11)));
        assert_eq!(eleven.len() - ten.len(), 4);
        // The first too, right after its sequence number: version, count, 7, head, value.
        assert_eq!(
            encode_results(&run(1)),
            [PROTOCOL_VERSION, 1, 7, 3, 7, 7, 7]
        );
        let mut mixed = run(6);
        mixed.results[1].outcome = Outcome::AppError(vec![1].into());
        mixed.results[3].outcome = Outcome::Ok(vec![2; SHORT as usize].into());
        mixed.results[4].seq = 3;
        mixed.results[5].seq = u64::MAX;
        let bytes = encode_results(&mixed);
        // Version and count 2; then 7, a short head and 3 bytes (5); the error's long head,
        // its length and byte (3); after it, an `Ok` with a short head again (4); a value of
        // 64 bytes behind a long head and its length (66); a step back (2-byte head, 6); a
        // step of nearly 2^64 (a 10-byte head, 14).
        assert_eq!(bytes.len(), 2 + 5 + 3 + 4 + 66 + 6 + 14);
        assert_eq!(decode_results(&bytes.into(), 10), Ok(mixed));
    }

    #[test]
    fn a_short_head_needs_a_packet_before_it() {
        // Version, client 1, one module (7), one packet: number 5, a short head, no arguments.
        let bytes = Bytes::from(vec![PROTOCOL_VERSION, 1, 1, 7, 1, 5, 0]);
        let err = decode_batch(&bytes, 10).unwrap_err();
        assert!(err.to_string().contains("packet 0"), "{err}");
        assert!(err.to_string().contains("short head"), "{err}");
        // With a long head first (SHORT + action 0), the short one goes on from it.
        let bytes = Bytes::from(vec![PROTOCOL_VERSION, 1, 1, 7, 2, 5, SHORT as u8, 0, 1, 9]);
        let batch = decode_batch(&bytes, 10).unwrap();
        assert_eq!(
            batch
                .packets
                .iter()
                .map(|p| (p.seq, p.handler, p.action))
                .collect::<Vec<_>>(),
            [(5, 7, Action::Create), (6, 7, Action::Create)]
        );
        assert_eq!(&batch.packets[1].args[..], [9]);
    }

    #[test]
    fn the_packet_limit_is_enforced() {
        let bytes = encode_batch(&sample());
        assert_eq!(
            decode_batch(&bytes.into(), 1).unwrap_err(),
            DecodeError::TooMany {
                what: "batch",
                count: 2,
                max: 1
            }
        );
    }

    #[test]
    fn every_truncation_is_an_error() {
        let bytes = encode_batch(&sample());
        for len in 0..bytes.len() {
            assert!(
                decode_batch(&Bytes::copy_from_slice(&bytes[..len]), 10).is_err(),
                "prefix of {len} bytes decoded"
            );
        }
    }

    #[test]
    fn trailing_bytes_are_refused() {
        let mut bytes = encode_batch(&sample());
        bytes.extend_from_slice(&[0, 0]);
        assert_eq!(
            decode_batch(&bytes.into(), 10).unwrap_err(),
            DecodeError::Trailing(2)
        );
    }

    #[test]
    fn an_unknown_version_is_named() {
        let mut bytes = encode_batch(&sample());
        bytes[0] = 9;
        let err = decode_batch(&bytes.into(), 10).unwrap_err();
        assert_eq!(err, DecodeError::Version(9));
        assert!(err.to_string().contains("version 9"));
    }
}
