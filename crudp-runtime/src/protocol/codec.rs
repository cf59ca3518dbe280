//! Encoding and bounded decoding of batches and results.
//!
//! Decoding reads the item count first and checks it against both the configured maximum and
//! the bytes that are left, so a hostile length prefix can never make it allocate more than a
//! small multiple of the input it was given (a decoded packet is larger than its encoding).

use serde::de::DeserializeOwned;

use super::{Batch, ClientId, PROTOCOL_VERSION, Packet, PacketResult, Results};

/// The smallest encoding of a [`Packet`]: seq, handler, action and an empty args length, one byte each.
const MIN_PACKET_LEN: usize = 4;
/// The smallest encoding of a [`PacketResult`]: seq and the `Expired` tag.
const MIN_RESULT_LEN: usize = 2;

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
    #[error("unsupported protocol version {0}: this side speaks version {PROTOCOL_VERSION}")]
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

/// Encodes a batch of `client` from borrowed packets, without copying them into a [`Batch`].
pub fn encode_packets<'a>(
    client: ClientId,
    packets: impl ExactSizeIterator<Item = &'a Packet>,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + packets.len() * 16);
    out.push(PROTOCOL_VERSION);
    let header = (client, packets.len());
    out = postcard::to_extend(&header, out).expect("writing to a Vec cannot fail");
    for packet in packets {
        out = postcard::to_extend(packet, out).expect("writing to a Vec cannot fail");
    }
    out
}

/// Encodes a result set, version byte first.
pub fn encode_results(results: &Results) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + results.results.len() * 8);
    out.push(PROTOCOL_VERSION);
    postcard::to_io(&results.results, &mut out).expect("writing to a Vec cannot fail");
    out
}

/// Encodes the results of one client's batch for its event stream: version byte, the client,
/// then the results. A stream that carries several clients (the tabs of one browser) tells
/// them apart by it.
pub fn encode_client_results(client: ClientId, results: &Results) -> Vec<u8> {
    let mut out = Vec::with_capacity(24 + results.results.len() * 8);
    out.push(PROTOCOL_VERSION);
    out = postcard::to_extend(&client.0, out).expect("writing to a Vec cannot fail");
    postcard::to_io(&results.results, &mut out).expect("writing to a Vec cannot fail");
    out
}

/// The client that results encoded by [`encode_client_results`] are for, without decoding
/// the results.
pub fn client_of_results(bytes: &[u8]) -> Result<ClientId, DecodeError> {
    let mut reader = Reader::new(bytes)?;
    Ok(ClientId(reader.take(|| "the client ID".to_owned())?))
}

/// Decodes what [`encode_client_results`] encodes, refusing more than `max_results` results.
pub fn decode_client_results(
    bytes: &[u8],
    max_results: usize,
) -> Result<(ClientId, Results), DecodeError> {
    let mut reader = Reader::new(bytes)?;
    let client = ClientId(reader.take(|| "the client ID".to_owned())?);
    let results =
        reader.take_seq::<PacketResult>("results", "result", max_results, MIN_RESULT_LEN)?;
    reader.finish()?;
    Ok((client, Results { results }))
}

/// Decodes a batch, refusing more than `max_packets` packets.
pub fn decode_batch(bytes: &[u8], max_packets: usize) -> Result<Batch, DecodeError> {
    let mut reader = Reader::new(bytes)?;
    let client = ClientId(reader.take(|| "the client ID".to_owned())?);
    let packets = reader.take_seq::<Packet>("batch", "packet", max_packets, MIN_PACKET_LEN)?;
    reader.finish()?;
    Ok(Batch {
        version: PROTOCOL_VERSION,
        client,
        packets,
    })
}

/// Decodes a result set, refusing more than `max_results` results.
pub fn decode_results(bytes: &[u8], max_results: usize) -> Result<Results, DecodeError> {
    let mut reader = Reader::new(bytes)?;
    let results =
        reader.take_seq::<PacketResult>("results", "result", max_results, MIN_RESULT_LEN)?;
    reader.finish()?;
    Ok(Results { results })
}

struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        match bytes.split_first() {
            None => Err(DecodeError::Empty),
            Some((&PROTOCOL_VERSION, rest)) => Ok(Self { rest }),
            Some((&other, _)) => Err(DecodeError::Version(other)),
        }
    }

    /// Decodes the next value; `part` names it in the error, and is only called then.
    fn take<T: DeserializeOwned>(
        &mut self,
        part: impl FnOnce() -> String,
    ) -> Result<T, DecodeError> {
        match postcard::take_from_bytes(self.rest) {
            Ok((value, rest)) => {
                self.rest = rest;
                Ok(value)
            }
            Err(e) => Err(DecodeError::Malformed {
                part: part(),
                reason: e.to_string(),
            }),
        }
    }

    fn take_seq<T: DeserializeOwned>(
        &mut self,
        what: &'static str,
        item: &str,
        max: usize,
        min_item_len: usize,
    ) -> Result<Vec<T>, DecodeError> {
        let count: u64 = self.take(|| format!("the {item} count"))?;
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
        let count = count as usize;
        let mut items = Vec::with_capacity(count);
        for index in 0..count {
            items.push(self.take(|| format!("{item} {index}"))?);
        }
        Ok(items)
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
                outcome: Outcome::Ok(vec![9]),
            }],
        };
        let bytes = encode_client_results(ClientId(42), &results);
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
                    args: vec![1, 2, 3],
                },
                Packet {
                    seq: 2,
                    handler: 7,
                    action: Action::Delete,
                    args: vec![],
                },
            ],
        }
    }

    #[test]
    fn batch_round_trips_with_the_version_first() {
        let bytes = encode_batch(&sample());
        assert_eq!(bytes[0], PROTOCOL_VERSION);
        assert_eq!(decode_batch(&bytes, 10).unwrap(), sample());
    }

    #[test]
    fn results_round_trip() {
        let results = Results {
            results: vec![
                PacketResult {
                    seq: 1,
                    outcome: Outcome::Ok(vec![9]),
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
        assert_eq!(decode_results(&bytes, 10).unwrap(), results);
    }

    #[test]
    fn the_packet_limit_is_enforced() {
        let bytes = encode_batch(&sample());
        assert_eq!(
            decode_batch(&bytes, 1).unwrap_err(),
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
                decode_batch(&bytes[..len], 10).is_err(),
                "prefix of {len} bytes decoded"
            );
        }
    }

    #[test]
    fn trailing_bytes_are_refused() {
        let mut bytes = encode_batch(&sample());
        bytes.extend_from_slice(&[0, 0]);
        assert_eq!(
            decode_batch(&bytes, 10).unwrap_err(),
            DecodeError::Trailing(2)
        );
    }

    #[test]
    fn an_unknown_version_is_named() {
        let mut bytes = encode_batch(&sample());
        bytes[0] = 9;
        let err = decode_batch(&bytes, 10).unwrap_err();
        assert_eq!(err, DecodeError::Version(9));
        assert!(err.to_string().contains("version 9"));
    }
}
