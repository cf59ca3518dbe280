//! The event hub and the outcome store on Redis, with a real `redis-server` of the test's own:
//! events published on one instance reach the connections of the others, `Last-Event-ID`
//! resumes on any instance, a Redis restart loses nothing, and instances share one
//! exactly-once state.

#![cfg(not(target_arch = "wasm32"))]

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use crudp::{
    Client, ClientId, Outcome, User,
    protocol::EventKind,
    server::{
        Begin, BuildError, Channel, Claim, Crudp, Hub, HubError, Lease, MemoryHub, OutcomeLimits,
        OutcomeStore, Publication, Start, StoreError, Subscriber, Subscription,
    },
};
use crudp_redis::{RedisBackend, RedisHub, RedisOutcomes};
use crudp_tests::{
    Cluster, RedisServer, TodosClient, batch_after, batch_of, call_raw, creates, eventually,
    sync_raw, transport_as,
};

fn ann() -> Subscriber {
    Subscriber {
        user: User::new("ann", "guest"),
        clients: vec![ClientId(1)],
    }
}

fn event(channel: Channel, data: u8) -> Publication {
    Publication {
        channel,
        kind: EventKind::Broadcast,
        data: vec![data],
        except: None,
    }
}

async fn hub(redis: &RedisServer) -> RedisHub {
    RedisHub::new(&redis.client(), "crudp:", MemoryHub::default())
        .await
        .unwrap()
}

/// The IDs a connection replays and then receives live within `wait`.
async fn ids(mut subscription: Subscription, wait: Duration) -> Vec<u64> {
    let mut ids: Vec<u64> = match subscription.start {
        Start::Replay(frames) => frames.iter().map(|f| f.id).collect(),
        Start::Reset => panic!("a reset instead of a replay"),
    };
    while let Ok(Some(frame)) = tokio::time::timeout(wait, subscription.live.recv()).await {
        ids.push(frame.id);
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_published_on_one_instance_reaches_the_others_and_replays_on_any() {
    let redis = RedisServer::start().await;
    let (a, b) = (hub(&redis).await, hub(&redis).await);
    let mut on_b = b.subscribe(ann(), None).await.unwrap();
    let first = a.publish(event(Channel::All, 1)).await.unwrap();
    let frame = tokio::time::timeout(Duration::from_secs(5), on_b.live.recv())
        .await
        .expect("the event reaches the other instance")
        .unwrap();
    assert_eq!(frame.id, first);

    // Missed by a connection that left after `first`: ann's events only, on whichever
    // instance, from the local buffer or from Redis.
    let second = b.publish(event(Channel::All, 2)).await.unwrap();
    b.publish(event(Channel::User("bob".into()), 3))
        .await
        .unwrap();
    let ann_client = Channel::Client {
        client: ClientId(1),
        owner: "ann".into(),
    };
    let fourth = a.publish(event(ann_client, 4)).await.unwrap();
    let wait = Duration::from_millis(500);
    assert_eq!(
        ids(a.subscribe(ann(), Some(first)).await.unwrap(), wait).await,
        [second, fourth]
    );
    assert_eq!(
        ids(b.subscribe(ann(), Some(first)).await.unwrap(), wait).await,
        [second, fourth]
    );
    // A new instance has nothing buffered: it reads the missed events from Redis.
    let c = hub(&redis).await;
    assert_eq!(
        ids(c.subscribe(ann(), Some(first)).await.unwrap(), wait).await,
        [second, fourth]
    );
    // An ID from before the stream began, or from the future: reset.
    for unknown in [5, fourth + 100] {
        let subscription = c.subscribe(ann(), Some(unknown)).await.unwrap();
        assert!(matches!(subscription.start, Start::Reset), "{unknown}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_closes_the_streams_and_they_resume_with_nothing_lost() {
    let mut redis = RedisServer::start().await;
    let (a, b) = (hub(&redis).await, hub(&redis).await);
    let before = a.publish(event(Channel::All, 1)).await.unwrap();
    let mut on_b = b.subscribe(ann(), None).await.unwrap();

    redis.kill();
    assert!(matches!(
        a.publish(event(Channel::All, 2)).await,
        Err(HubError::Unavailable(_))
    ));
    // The streams close, so that their clients reconnect.
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        while on_b.live.recv().await.is_some() {}
    })
    .await;
    assert!(closed.is_ok(), "the stream on B closed");

    redis.restart().await;
    let mut after = None;
    for _ in 0..100 {
        if let Ok(id) = a.publish(event(Channel::All, 3)).await {
            after = Some(id);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let after = after.expect("publishing works again");
    assert!(
        after > before,
        "IDs go on from where they were (the append-only file)"
    );
    // Resuming after `before` on B replays exactly the event published since.
    let resumed = b.subscribe(ann(), Some(before)).await.unwrap();
    assert_eq!(ids(resumed, Duration::from_millis(500)).await, [after]);
}

/// A connection of its own to `redis`.
async fn connection(redis: &RedisServer) -> crudp_redis::redis::aio::MultiplexedConnection {
    redis
        .client()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// Gives out the next `n` event IDs as publishing does, without writing their events yet: what
/// the other instances see while the publisher's write is on its way to their readers.
async fn give_out(redis: &RedisServer, n: u64) -> u64 {
    let mut connection = connection(redis).await;
    crudp_redis::redis::cmd("INCRBY")
        .arg("crudp:events:id")
        .arg(n)
        .query_async(&mut connection)
        .await
        .unwrap()
}

/// Writes the event with ID `id` (given out before) to every instance's readers.
async fn write(redis: &RedisServer, id: u64) {
    let mut connection = connection(redis).await;
    let _: String = crudp_redis::redis::cmd("XADD")
        .arg("crudp:events")
        .arg(format!("{id}-0"))
        .arg(&[
            "c",
            &Channel::All.key(),
            "k",
            EventKind::Broadcast.as_str(),
            "d",
            "x",
            "x",
            "",
        ])
        .query_async(&mut connection)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resuming_on_an_instance_whose_reader_is_behind_waits_for_it_and_a_gap_closes_streams() {
    let redis = RedisServer::start().await;
    let (a, b) = (hub(&redis).await, hub(&redis).await);
    let mut on_b = b.subscribe(ann(), None).await.unwrap();
    let first = a.publish(event(Channel::All, 1)).await.unwrap();
    let frame = tokio::time::timeout(Duration::from_secs(5), on_b.live.recv()).await;
    assert_eq!(frame.unwrap().unwrap().id, first);

    // A client saw event `first + 1` through A; B's reader has not read it yet. Not `reset`
    // (which would also bring the event again): B waits for its reader, and if it does not
    // come, asks the client to retry.
    let second = give_out(&redis, 1).await;
    assert_eq!(second, first + 1);
    let waited = b.subscribe(ann(), Some(second)).await;
    assert!(
        matches!(waited, Err(HubError::Unavailable(ref e)) if e.contains("retry")),
        "{waited:?}"
    );
    let b = Arc::new(b);
    let resuming = tokio::spawn({
        let b = Arc::clone(&b);
        async move { b.subscribe(ann(), Some(second)).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!resuming.is_finished(), "it waits for the reader");
    write(&redis, second).await;
    let resumed = tokio::time::timeout(Duration::from_secs(5), resuming)
        .await
        .expect("the reader caught up")
        .unwrap()
        .unwrap();
    let third = a.publish(event(Channel::All, 3)).await.unwrap();
    assert_eq!(ids(resumed, Duration::from_millis(500)).await, [third]);
    let frames: Vec<u64> = std::iter::from_fn(|| on_b.live.try_recv().ok().map(|f| f.id)).collect();
    assert_eq!(frames, [second, third], "the stream open all along");

    // Events B's reader never saw (trimmed before it read them): its open streams missed
    // them, so they close, and resuming from before them resets.
    let fourth = give_out(&redis, 3).await;
    write(&redis, fourth).await;
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        let mut after = Vec::new();
        while let Some(frame) = on_b.live.recv().await {
            after.push(frame.id);
        }
        after
    })
    .await;
    assert_eq!(
        closed.ok(),
        Some(vec![]),
        "closed, not handed the event after the gap"
    );
    let subscription = b.subscribe(ann(), Some(third)).await.unwrap();
    assert!(matches!(subscription.start, Start::Reset));
}

/// How many `XREAD`s Redis has answered.
async fn xreads(redis: &RedisServer) -> u64 {
    calls(redis, "xread").await
}

/// How many times Redis has answered `command` (lower case).
async fn calls(redis: &RedisServer, command: &str) -> u64 {
    let mut connection = connection(redis).await;
    let info: String = crudp_redis::redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut connection)
        .await
        .unwrap();
    info.lines()
        .find_map(|line| line.strip_prefix(&format!("cmdstat_{command}:calls=")))
        .and_then(|rest| rest.split(',').next())
        .map_or(0, |calls| calls.parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_from_further_back_than_the_stream_keeps_resets_without_reading_it() {
    let redis = RedisServer::start().await;
    let a = hub(&redis).await;
    let mut published = Vec::new();
    for n in 0..20 {
        published.push(a.publish(event(Channel::All, n)).await.unwrap());
    }
    // A new instance holds none of them: a resume reads Redis, as far back as it keeps.
    let b = RedisHub::new(&redis.client(), "crudp:", MemoryHub::default())
        .await
        .unwrap()
        .replay_len(5);
    let before = calls(&redis, "xrange").await;
    let far = b.subscribe(ann(), Some(published[0])).await.unwrap();
    assert!(matches!(far.start, Start::Reset));
    assert_eq!(calls(&redis, "xrange").await, before, "not read");
    let near = b.subscribe(ann(), Some(published[16])).await.unwrap();
    assert_eq!(ids(near, Duration::from_millis(200)).await, published[17..]);
    assert_eq!(calls(&redis, "xrange").await, before + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_the_reader_cannot_decode_is_read_once() {
    let redis = RedisServer::start().await;
    let a = hub(&redis).await;
    let first = a.publish(event(Channel::All, 1)).await.unwrap();
    // Last in the stream, an entry of a kind this version does not know (a later version's,
    // during a rolling upgrade).
    let mut connection = connection(&redis).await;
    let _: String = crudp_redis::redis::cmd("XADD")
        .arg("crudp:events")
        .arg(format!("{}-0", first + 1))
        .arg(&["c", &Channel::All.key(), "k", "a-later-kind", "d", "x"])
        .query_async(&mut connection)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = xreads(&redis).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let reads = xreads(&redis).await - before;
    // The reader blocks for new entries, a read every two seconds: not the same entry again.
    assert!(reads <= 3, "{reads} reads in a second");
}

async fn store(redis: &RedisServer, limits: OutcomeLimits) -> RedisOutcomes {
    RedisOutcomes::new(&redis.client(), "crudp:", limits)
        .await
        .unwrap()
}

/// A store of an instance of its own, with the default limits.
async fn instance(redis: &RedisServer) -> RedisOutcomes {
    store(redis, OutcomeLimits::default()).await
}

fn ok(byte: u8) -> Outcome {
    Outcome::Ok(vec![byte].into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_ownership_reservations_and_outcomes() {
    let redis = RedisServer::start().await;
    let limits = OutcomeLimits::default().clients_per_user(2);
    let (a, b) = (
        store(&redis, limits.clone()).await,
        store(&redis, limits).await,
    );
    let client = ClientId(7);

    // Ownership: bound on first use, on every instance, for good; limited per user.
    assert_eq!(a.claim(client, "ann").await.unwrap(), Claim::Granted);
    assert_eq!(b.claim(client, "ann").await.unwrap(), Claim::Granted);
    assert_eq!(b.claim(client, "bob").await.unwrap(), Claim::Foreign);
    assert_eq!(b.claim(ClientId(8), "ann").await.unwrap(), Claim::Granted);
    assert!(matches!(
        a.claim(ClientId(9), "ann").await.unwrap(),
        Claim::Refused(_)
    ));
    assert!(matches!(
        a.begin(ClientId(10), 1).await,
        Err(StoreError::UnknownClient(_))
    ));
    // A user whose name looks like another's key takes nothing of that user's.
    assert_eq!(
        a.claim(ClientId(11), "bob:minute").await.unwrap(),
        Claim::Granted
    );
    assert_eq!(a.claim(ClientId(12), "bob").await.unwrap(), Claim::Granted);

    // One reservation at a time, whichever instance asks; the outcome is kept for both.
    let Begin::Run(lease) = a.begin(client, 1).await.unwrap() else {
        panic!("packet 1 runs");
    };
    assert_eq!(b.begin(client, 1).await.unwrap(), Begin::Busy(1));
    assert_eq!(b.begin(client, 2).await.unwrap(), Begin::Busy(1));
    assert!(matches!(
        b.finish(client, 1, Lease::new(lease.id() + 1), &ok(0))
            .await,
        Err(StoreError::LeaseLost { .. })
    ));
    a.finish(client, 1, lease, &ok(1)).await.unwrap();
    assert_eq!(b.begin(client, 1).await.unwrap(), Begin::Done(ok(1)));

    // A batch sent after a packet that has not run (it could not, or its batch waits on
    // another instance) waits for it, whichever instance it reaches.
    assert_eq!(
        a.begin_batch(client, &[3], 2).await.unwrap(),
        [Begin::Blocked(2)]
    );
    let Begin::Run(lease) = b.begin(client, 2).await.unwrap() else {
        panic!("packet 2 runs");
    };
    let unavailable = Outcome::Unavailable {
        message: "later".into(),
    };
    b.finish(client, 2, lease, &unavailable).await.unwrap();
    assert_eq!(
        a.begin_batch(client, &[3], 2).await.unwrap(),
        [Begin::Blocked(2)]
    );
    let Begin::Run(lease) = a.begin(client, 2).await.unwrap() else {
        panic!("packet 2 runs again");
    };
    a.finish(client, 2, lease, &ok(2)).await.unwrap();
    assert!(matches!(
        b.begin_batch(client, &[3], 2).await.unwrap()[..],
        [Begin::Run(_)]
    ));
    assert_eq!(a.begin(client, 2).await.unwrap(), Begin::Done(ok(2)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_is_reserved_and_recorded_in_one_step_each() {
    let redis = RedisServer::start().await;
    let (a, b) = (instance(&redis).await, instance(&redis).await);
    let client = ClientId(3);
    a.claim(client, "ann").await.unwrap();

    // The packets past the mark, ascending, under one lease; a packet out of order waits.
    let answers = a.begin_batch(client, &[1, 2, 3, 4, 2], 0).await.unwrap();
    assert_eq!(answers.len(), 4, "{answers:?}");
    let Begin::Run(lease) = answers[0] else {
        panic!("{answers:?}");
    };
    assert!(answers.iter().all(|a| *a == Begin::Run(lease)));
    assert_eq!(
        b.begin_batch(client, &[1, 2], 0).await.unwrap(),
        [Begin::Busy(1)]
    );

    // 1 and 2 ran, 3 could not, 4 was not run: the mark moves to 2.
    let unavailable = Outcome::Unavailable {
        message: "later".into(),
    };
    let ran = [(1, &ok(1)), (2, &ok(2)), (3, &unavailable)];
    a.finish_batch(client, lease, &ran).await.unwrap();
    // The answer to that lost (Redis slow to answer, say), the server finishes again: it was
    // recorded, so the batch's broadcasts may go out.
    b.finish_batch(client, lease, &ran).await.unwrap();
    let first = lease;
    let answers = b.begin_batch(client, &[1, 2, 3, 4], 0).await.unwrap();
    assert_eq!(answers[..2], [Begin::Done(ok(1)), Begin::Done(ok(2))]);
    assert_eq!(answers.len(), 4, "3 runs again, and 4 after it");
    let Begin::Run(lease) = answers[2] else {
        panic!("{answers:?}");
    };
    b.finish_batch(client, lease, &[(3, &ok(3)), (4, &ok(4))])
        .await
        .unwrap();
    // The first finish again, its retry late (the client's next batch ran meanwhile): its
    // lease finished, so it is taken.
    a.finish_batch(client, first, &ran).await.unwrap();
    assert_eq!(
        a.begin_batch(client, &[3, 4], 0).await.unwrap(),
        [Begin::Done(ok(3)), Begin::Done(ok(4))]
    );
    assert_eq!(a.begin_batch(client, &[5], 0).await.unwrap().len(), 1);

    // Only the latest outcomes are kept: older re-sent packets are `Expired`.
    let small = store(&redis, OutcomeLimits::default().outcomes_per_client(2)).await;
    let kept = ClientId(5);
    small.claim(kept, "ann").await.unwrap();
    let answers = small.begin_batch(kept, &[1, 2, 3, 4], 0).await.unwrap();
    let Begin::Run(lease) = answers[0] else {
        panic!("{answers:?}");
    };
    let outcomes: Vec<_> = (1..=4).map(|seq| (seq, ok(seq as u8))).collect();
    let ran: Vec<_> = outcomes.iter().map(|(seq, o)| (*seq, o)).collect();
    small.finish_batch(kept, lease, &ran).await.unwrap();
    assert_eq!(
        small.begin_batch(kept, &[1, 2, 3, 4], 0).await.unwrap(),
        [
            Begin::Expired,
            Begin::Expired,
            Begin::Done(ok(3)),
            Begin::Done(ok(4))
        ]
    );

    // Sequence numbers beyond 2^53, where Lua's numbers are not exact, compare exactly.
    let huge = ClientId(4);
    a.claim(huge, "ann").await.unwrap();
    let (low, high) = ((1 << 62) + 1, (1 << 62) + 2);
    let Begin::Run(lease) = a.begin(huge, high).await.unwrap() else {
        panic!("the first packet runs");
    };
    a.finish(huge, high, lease, &ok(9)).await.unwrap();
    assert_eq!(a.begin(huge, high).await.unwrap(), Begin::Done(ok(9)));
    assert_eq!(a.begin(huge, low).await.unwrap(), Begin::Expired);
    assert!(matches!(
        a.begin(huge, high + 1).await.unwrap(),
        Begin::Run(_)
    ));

    // A client whose sequence numbers skip further than the outcomes kept keeps only the
    // batches within them, beyond 2^53 too.
    let skipping = ClientId(6);
    small.claim(skipping, "ann").await.unwrap();
    let mut connection = connection(&redis).await;
    for seq in (1..=40u64).map(|n| (1 << 62) + n * 1_000) {
        let Begin::Run(lease) = small.begin(skipping, seq).await.unwrap() else {
            panic!("packet {seq} runs");
        };
        small.finish(skipping, seq, lease, &ok(1)).await.unwrap();
        let held: u64 = crudp_redis::redis::cmd("ZCARD")
            .arg(format!("crudp:done:{skipping}"))
            .query_async(&mut connection)
            .await
            .unwrap();
        assert_eq!(held, 1, "{held} batches held after {seq}");
    }
    let last = (1 << 62) + 40_000;
    assert_eq!(
        small.begin(skipping, last).await.unwrap(),
        Begin::Done(ok(1))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_outcomes_kept_per_client_are_bounded_in_bytes_too() {
    let redis = RedisServer::start().await;
    let store = store(&redis, OutcomeLimits::default().bytes_per_client(1_000)).await;
    let client = ClientId(22);
    store.claim(client, "ann").await.unwrap();
    let big = |byte: u8| Outcome::Ok(vec![byte; 400].into());
    let mut connection = connection(&redis).await;
    // Batches of two outcomes of 400 bytes: about 830 bytes each, so one batch at a time
    // stays, and the newest two of the batch of four.
    for (first, len) in [(1u64, 2u64), (3, 2), (5, 4)] {
        let seqs: Vec<u64> = (first..first + len).collect();
        let Begin::Run(lease) = store.begin_batch(client, &seqs, 0).await.unwrap()[0] else {
            panic!("batch {first} runs");
        };
        let outcomes: Vec<_> = seqs.iter().map(|&seq| (seq, big(seq as u8))).collect();
        let ran: Vec<_> = outcomes.iter().map(|(seq, o)| (*seq, o)).collect();
        store.finish_batch(client, lease, &ran).await.unwrap();
        let held: Vec<Vec<u8>> = crudp_redis::redis::cmd("ZRANGE")
            .arg(format!("crudp:done:{client}"))
            .arg(0)
            .arg(-1)
            .query_async(&mut connection)
            .await
            .unwrap();
        let bytes: usize = held.iter().map(Vec::len).sum();
        assert!(bytes <= 1_000, "{bytes} bytes held after batch {first}");
    }
    let answers = store
        .begin_batch(client, &[1, 2, 3, 4, 5, 6, 7, 8], 0)
        .await
        .unwrap();
    assert!(
        answers[..6].iter().all(|a| *a == Begin::Expired),
        "{answers:?}"
    );
    assert_eq!(answers[6..], [Begin::Done(big(7)), Begin::Done(big(8))]);
    // Re-sent out of order and again, each packet is answered from the batch that holds it.
    assert_eq!(
        store
            .begin_batch(client, &[8, 1, 7, 8, 6], 0)
            .await
            .unwrap(),
        [
            Begin::Done(big(8)),
            Begin::Expired,
            Begin::Done(big(7)),
            Begin::Done(big(8)),
            Begin::Expired
        ]
    );

    // An outcome larger than the budget alone is not kept; it still moves the mark.
    let Begin::Run(lease) = store.begin(client, 9).await.unwrap() else {
        panic!("packet 9 runs");
    };
    let huge = Outcome::Ok(vec![9; 2_000].into());
    store.finish(client, 9, lease, &huge).await.unwrap();
    assert_eq!(store.begin(client, 9).await.unwrap(), Begin::Expired);
    assert_eq!(store.begin(client, 8).await.unwrap(), Begin::Done(big(8)));
    // A batch whose outcomes are not all kept is not taken for the finish of another lease
    // (an instance that lost its reservation, whose run answered otherwise): only its own
    // lease finishing again is.
    let other = Lease::new(lease.id() + 1_000);
    assert!(matches!(
        store.finish(client, 9, other, &huge).await,
        Err(StoreError::LeaseLost { .. })
    ));
    store.finish(client, 9, lease, &huge).await.unwrap();

    // A finish retried after later batches pushed its outcomes out is still taken.
    let Begin::Run(pushed) = store.begin(client, 10).await.unwrap() else {
        panic!("packet 10 runs");
    };
    store.finish(client, 10, pushed, &big(10)).await.unwrap();
    for seq in 11..14 {
        let Begin::Run(lease) = store.begin(client, seq).await.unwrap() else {
            panic!("packet {seq} runs");
        };
        store
            .finish(client, seq, lease, &big(seq as u8))
            .await
            .unwrap();
    }
    assert_eq!(store.begin(client, 10).await.unwrap(), Begin::Expired);
    store.finish(client, 10, pushed, &big(10)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_known_again_after_its_record_expired_starts_with_no_outcomes_left() {
    let redis = RedisServer::start().await;
    let store = instance(&redis).await;
    let client = ClientId(24);
    store.claim(client, "ann").await.unwrap();
    let Begin::Run(lease) = store.begin(client, 1).await.unwrap() else {
        panic!("packet 1 runs");
    };
    store.finish(client, 1, lease, &ok(1)).await.unwrap();
    // Its record expires (ownership shorter than the idle time of its outcomes), and a new
    // instance, which remembers no claim, sees the client anew.
    let mut connection = connection(&redis).await;
    let _: () = crudp_redis::redis::cmd("DEL")
        .arg(format!("crudp:client:{client}"))
        .query_async(&mut connection)
        .await
        .unwrap();
    let fresh = instance(&redis).await;
    fresh.claim(client, "ann").await.unwrap();
    for key in ["done", "finished"] {
        let left: u64 = crudp_redis::redis::cmd("EXISTS")
            .arg(format!("crudp:{key}:{client}"))
            .query_async(&mut connection)
            .await
            .unwrap();
        assert_eq!(left, 0, "{key} left behind");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outcomes_an_earlier_version_kept_one_per_packet_still_answer_re_sends() {
    let redis = RedisServer::start().await;
    let store = instance(&redis).await;
    let client = ClientId(21);
    store.claim(client, "ann").await.unwrap();
    // As an earlier version left them: packets 1 and 2 ran, their outcomes one field each.
    let mut connection = connection(&redis).await;
    let _: () = crudp_redis::redis::cmd("HSET")
        .arg(format!("crudp:outcomes:{client}"))
        .arg(1)
        .arg(postcard::to_stdvec(&ok(1)).unwrap())
        .arg(2)
        .arg(postcard::to_stdvec(&ok(2)).unwrap())
        .query_async(&mut connection)
        .await
        .unwrap();
    let _: () = crudp_redis::redis::cmd("HSET")
        .arg(format!("crudp:client:{client}"))
        .arg("mark")
        .arg(2)
        .query_async(&mut connection)
        .await
        .unwrap();

    let answers = store.begin_batch(client, &[1, 2, 3, 4], 0).await.unwrap();
    assert_eq!(answers[..2], [Begin::Done(ok(1)), Begin::Done(ok(2))]);
    let Begin::Run(lease) = answers[2] else {
        panic!("{answers:?}");
    };
    assert_eq!(answers[3], Begin::Run(lease));
    store
        .finish_batch(client, lease, &[(3, &ok(3)), (4, &ok(4))])
        .await
        .unwrap();
    // Re-sent together, each is answered from where it was kept.
    assert_eq!(
        store.begin_batch(client, &[1, 2, 3, 4], 0).await.unwrap(),
        [
            Begin::Done(ok(1)),
            Begin::Done(ok(2)),
            Begin::Done(ok(3)),
            Begin::Done(ok(4))
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_abandoned_on_an_instance_frees_its_client_there_at_once() {
    let redis = RedisServer::start().await;
    let (a, b) = (instance(&redis).await, instance(&redis).await);
    let client = ClientId(23);
    a.claim(client, "ann").await.unwrap();
    let Begin::Run(lease) = a.begin(client, 1).await.unwrap() else {
        panic!("packet 1 runs");
    };
    // Its task dropped (the runtime shut down under it): no finish ever comes.
    a.abandon(client, lease, &[]);
    // Another instance still sees it held by a live one; the instance itself ends it.
    assert_eq!(b.begin(client, 1).await.unwrap(), Begin::Busy(1));
    assert!(matches!(a.begin(client, 1).await.unwrap(), Begin::Run(_)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reservation_of_an_instance_that_died_is_taken_over() {
    let redis = RedisServer::start().await;
    let survivor = instance(&redis).await;
    let client = ClientId(1);
    {
        let dying = instance(&redis).await;
        dying.claim(client, "ann").await.unwrap();
        assert!(matches!(
            dying.begin(client, 1).await.unwrap(),
            Begin::Run(_)
        ));
        // Dropped: it stops saying it is alive, as a killed instance does.
    }
    assert_eq!(survivor.begin(client, 1).await.unwrap(), Begin::Busy(1));
    let mut taken = false;
    for _ in 0..150 {
        if let Begin::Run(_) = survivor.begin(client, 1).await.unwrap() {
            taken = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(taken, "the reservation was taken over");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reservation_of_an_instance_alive_is_never_taken_over_by_itself() {
    let redis = RedisServer::start().await;
    let instance = instance(&redis).await;
    let client = ClientId(1);
    instance.claim(client, "ann").await.unwrap();
    let Begin::Run(_) = instance.begin(client, 1).await.unwrap() else {
        panic!("reserved");
    };
    // Its heartbeat key ran out (Redis was out of reach for longer than it lives) and is not
    // back yet: a re-send of the call it still runs is busy, not run a second time.
    let mut connection = connection(&redis).await;
    let alive: Vec<String> = crudp_redis::redis::cmd("KEYS")
        .arg("crudp:instance:*")
        .query_async(&mut connection)
        .await
        .unwrap();
    assert_eq!(alive.len(), 1);
    let _: () = crudp_redis::redis::cmd("DEL")
        .arg(&alive[0])
        .query_async(&mut connection)
        .await
        .unwrap();
    assert_eq!(instance.begin(client, 1).await.unwrap(), Begin::Busy(1));
}

/// 32 bytes, shared by the instances.
const SECRET: &[u8] = b"an instance-shared secret, 32+ b";

#[tokio::test]
async fn a_shared_backend_needs_a_shared_token_secret_of_32_bytes_and_its_own_hub_settings() {
    let redis = RedisServer::start().await;
    let url = redis.url();
    let backend = || RedisBackend::connect(&url);
    let missing = Crudp::builder()
        .backend(backend().await.unwrap())
        .try_build();
    assert_eq!(missing.err(), Some(BuildError::TokenSecret { len: None }));
    let short = Crudp::builder()
        .backend(backend().await.unwrap())
        .token_secret(b"short")
        .try_build();
    assert_eq!(short.err(), Some(BuildError::TokenSecret { len: Some(5) }));
    // The secret being rotated out signs nothing new but still verifies: as strong, or
    // refused (an empty one would let anyone sign tokens).
    for previous in [&b""[..], b"short"] {
        let weak = Crudp::builder()
            .token_secret(SECRET)
            .previous_token_secret(previous)
            .try_build();
        let len = Some(previous.len());
        assert_eq!(weak.err(), Some(BuildError::TokenSecret { len }));
    }
    let message = BuildError::TokenSecret { len: None }.to_string();
    assert!(message.contains("token_secret"), "{message}");
    assert!(
        Crudp::builder()
            .backend(backend().await.unwrap())
            .token_secret(SECRET)
            .try_build()
            .is_ok()
    );
    // A setting of the default hub, which the backend's hub would not take, is an error.
    let ignored = Crudp::builder()
        .connections_per_user(1000)
        .backend(backend().await.unwrap())
        .token_secret(SECRET)
        .try_build();
    let Some(e @ BuildError::HubSetting { setting }) = ignored.err() else {
        panic!("a hub setting with a backend builds");
    };
    assert_eq!(setting, "connections_per_user");
    assert!(e.to_string().contains("RedisHub::new"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_behind_a_round_robin_proxy_act_as_one() {
    let cluster = Cluster::start(2, |b| b).await;
    let client_of = |user: &str| {
        Client::builder(cluster.url())
            .transport(transport_as(user, "guest"))
            .build()
    };

    // A listener on one instance hears a call made through the other.
    let listener = client_of("ann");
    let heard = Arc::new(AtomicUsize::new(0));
    let _on_create = TodosClient::new(&listener).on_create({
        let heard = Arc::clone(&heard);
        move |_| {
            heard.fetch_add(1, Ordering::SeqCst);
        }
    });

    // 4 clients, 250 creates each, in batches of 25: each runs once, in one of the instances.
    let makers = (0..4).map(|i| {
        let client = client_of(&format!("user{i}"));
        async move {
            let todos = TodosClient::new(&client);
            for round in 0..10 {
                let calls = (0..25).map(|j| todos.create(format!("shout {i}.{round}.{j}")));
                for result in futures_util::future::join_all(calls).await {
                    result.unwrap();
                }
            }
        }
    });
    futures_util::future::join_all(makers).await;
    assert_eq!(cluster.executions(), 1000, "each call ran exactly once");
    assert!(
        cluster.servers.iter().all(|s| s.requests() > 0),
        "both instances ran calls"
    );
    for _ in 0..100 {
        if heard.load(Ordering::SeqCst) == 1000 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(heard.load(Ordering::SeqCst), 1000, "every broadcast, once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_that_overtakes_one_still_queued_on_another_instance_waits_for_it() {
    let cluster = Cluster::start(2, |b| b.workers(1)).await;
    let (a, b) = (&cluster.servers[0], &cluster.servers[1]);
    // Instance A's one worker is taken by another user's call, which waits.
    let held = batch_of(ClientId(70), creates("gated", [1]));
    assert_eq!(sync_raw(&a.url(), "bob", held).await, 202);
    eventually("A's worker is taken", || {
        a.store.at_gate.load(Ordering::SeqCst) == 1
    })
    .await;

    // Ann's calls 1 to 3 are accepted by A and wait in its queue; call 4, sent after them,
    // reaches B first.
    let client = ClientId(71);
    assert_eq!(
        sync_raw(&a.url(), "ann", batch_of(client, creates("first", 1..=3))).await,
        202
    );
    let fourth = || batch_after(client, 3, creates("then", [4]));
    let (_, results) = call_raw(&b.url(), "ann", fourth()).await;
    let outcome = &results.unwrap().results[0].outcome;
    assert!(
        matches!(outcome, Outcome::Unavailable { message } if message.contains("call 3")),
        "4 waits for 3: {outcome:?}"
    );
    assert_eq!(cluster.executions(), 0);

    // A runs them; then 4 runs, on B, after them: each once, none lost.
    a.store.gate.add_permits(1);
    eventually("A ran 1 to 3", || cluster.executions() == 4).await;
    let (_, results) = call_raw(&b.url(), "ann", fourth()).await;
    assert!(matches!(
        results.unwrap().results[0].outcome,
        Outcome::Ok(_)
    ));
    let (_, results) = call_raw(&b.url(), "ann", batch_of(client, creates("first", 1..=3))).await;
    let results = results.unwrap().results;
    assert!(
        results.iter().all(|r| matches!(r.outcome, Outcome::Ok(_))),
        "{results:?}"
    );
    assert_eq!(cluster.executions(), 5);
    let titles = a.store.titles();
    for title in ["first 1", "first 2", "first 3", "then 4"] {
        assert_eq!(
            titles.iter().filter(|t| *t == title).count(),
            1,
            "{title}: {titles:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarted_mid_run_loses_and_repeats_no_call() {
    let mut cluster = Cluster::start(2, |b| b).await;
    let made = Arc::new(AtomicUsize::new(0));
    let makers: Vec<_> = (0..2)
        .map(|i| {
            let client = Client::builder(cluster.url())
                .transport(transport_as(&format!("user{i}"), "guest"))
                .build();
            let made = Arc::clone(&made);
            tokio::spawn(async move {
                let todos = TodosClient::new(&client);
                for round in 0..10 {
                    let calls = (0..20).map(|j| todos.create(format!("todo {i}.{round}.{j}")));
                    for result in futures_util::future::join_all(calls).await {
                        result.expect("every call succeeds");
                        made.fetch_add(1, Ordering::SeqCst);
                    }
                }
            })
        })
        .collect();
    while made.load(Ordering::SeqCst) < 100 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    cluster.redis.kill();
    tokio::time::sleep(Duration::from_secs(1)).await;
    cluster.redis.restart().await;
    for maker in makers {
        maker.await.unwrap();
    }
    assert_eq!(made.load(Ordering::SeqCst), 400);
    assert_eq!(cluster.executions(), 400, "none lost, none twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_whose_outcome_waited_out_a_redis_restart_still_broadcasts_once() {
    let mut cluster = Cluster::start(1, |b| b).await;
    let store = Arc::clone(&cluster.servers[0].store);
    let watcher = Client::builder(cluster.url())
        .transport(transport_as("bob", "guest"))
        .build();
    let heard = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let noted = Arc::clone(&heard);
    let _heard =
        TodosClient::new(&watcher).on_create(move |todo| noted.lock().unwrap().push(todo.title));
    // The watcher's stream is up: its own call came back over it.
    TodosClient::new(&watcher)
        .create("hello".into())
        .await
        .unwrap();

    // A call runs while Redis goes away: its outcome cannot be recorded until Redis is back.
    let maker = Client::builder(cluster.url())
        .transport(transport_as("ann", "guest"))
        .build();
    let made =
        tokio::spawn(async move { TodosClient::new(&maker).create("gated shout".into()).await });
    eventually("the call to run", || {
        store.at_gate.load(Ordering::SeqCst) == 1
    })
    .await;
    cluster.redis.kill();
    store.gate.add_permits(1);
    tokio::time::sleep(Duration::from_secs(1)).await;
    cluster.redis.restart().await;
    let made = tokio::time::timeout(Duration::from_secs(60), made)
        .await
        .expect("the call is answered")
        .unwrap();
    assert_eq!(made.unwrap().title, "gated shout");
    // Its broadcast reaches the watcher, once, though its outcome was recorded late.
    tokio::time::timeout(Duration::from_secs(60), async {
        while !heard.lock().unwrap().iter().any(|t| t == "gated shout") {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the broadcast is heard");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let heard = heard.lock().unwrap();
    assert_eq!(
        heard.iter().filter(|t| *t == "gated shout").count(),
        1,
        "{heard:?}"
    );
    assert_eq!(cluster.executions(), 2, "the hello and the call, once each");
}
