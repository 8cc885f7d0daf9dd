//! The data exchange over real loopback TCP: credit-based flow control
//! bounds what a producer can have in flight, and frames of an older
//! attempt never reach the tasks of a newer one.

use std::io::Write;
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use weir_operators::output::OutputChannel;
use weir_operators::{Batch, BatchCodec, Message};
use weir_protocol::cluster::Peer;
use weir_protocol::framing::write_exchange;
use weir_protocol::wire::{
    encode_exchange, encode_exchange_body, ChannelKey, ExchangeFrame, FrameBody, OutgoingFrame,
    PROTOCOL_VERSION,
};
use weir_protocol::{Epoch, WorkerId};
use weir_runtime::net::Exchange;
use weir_runtime::CancelToken;

const CAPACITY: usize = 8;

fn key(attempt: u32) -> ChannelKey {
    ChannelKey {
        job: 7,
        attempt,
        edge: 0,
        from: 0,
        to: 1,
    }
}

fn peer(id: u32, exchange: &Exchange) -> Peer {
    Peer {
        worker: WorkerId(id),
        data_addr: exchange.local_addr().to_string(),
    }
}

fn wait_until(what: &str, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_slow_consumer_stops_its_producer_after_the_granted_credits() {
    let producer_side = Exchange::start("127.0.0.1:0", CAPACITY, None).unwrap();
    let consumer_side = Exchange::start("127.0.0.1:0", CAPACITY, None).unwrap();
    producer_side.set_worker_id(1);
    consumer_side.set_worker_id(2);
    producer_side
        .connect(1, &[peer(2, &consumer_side)])
        .unwrap();
    consumer_side
        .connect(2, &[peer(1, &producer_side)])
        .unwrap();
    let codec = BatchCodec::of::<u64>();
    let (queue, credits) = consumer_side.receiver(key(1), 1, codec).unwrap();
    let mut sender = producer_side
        .sender(key(1), 2, codec, CancelToken::new())
        .unwrap();
    let sent = Arc::new(AtomicUsize::new(0));
    let counter = sent.clone();
    let producer = std::thread::spawn(move || {
        for i in 0..1000u64 {
            if sender
                .send(Message::Data(Batch::new(vec![i; 100])))
                .is_err()
            {
                break;
            }
            counter.fetch_add(1, Ordering::SeqCst);
        }
    });
    // Nobody consumes: the producer gets exactly CAPACITY messages out.
    wait_until("the queue is full", || queue.len() == CAPACITY);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        sent.load(Ordering::SeqCst),
        CAPACITY,
        "sent beyond its credits"
    );
    assert_eq!(queue.len(), CAPACITY);
    // Consuming returns credit (in batches of CAPACITY / 4) and lets exactly that much more through.
    let mut received = Vec::new();
    for _ in 0..CAPACITY / 2 {
        let Message::Data(batch) = queue.recv().unwrap() else {
            panic!("expected records")
        };
        received.push(batch.into_records::<u64>().unwrap()[0]);
        credits.consumed();
    }
    wait_until("the producer refilled the queue", || {
        queue.len() == CAPACITY
    });
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(sent.load(Ordering::SeqCst), CAPACITY + CAPACITY / 2);
    // Records arrive in order and intact.
    assert_eq!(received, (0..(CAPACITY / 2) as u64).collect::<Vec<_>>());
    // Draining everything lets the producer finish.
    let mut total = received.len();
    while total < 1000 {
        queue.recv_timeout(Duration::from_secs(30)).unwrap();
        credits.consumed();
        total += 1;
    }
    producer.join().unwrap();
    assert_eq!(sent.load(Ordering::SeqCst), 1000);
}

#[test]
fn frames_of_an_older_attempt_are_dropped() {
    let exchange = Exchange::start("127.0.0.1:0", CAPACITY, None).unwrap();
    exchange.set_worker_id(2);
    // A peer (worker 1) that speaks the protocol by hand.
    let mut zombie = TcpStream::connect(exchange.local_addr()).unwrap();
    zombie
        .write_all(
            &encode_exchange(&ExchangeFrame::Hello {
                protocol: PROTOCOL_VERSION,
                from: 1,
                to: 2,
            })
            .unwrap(),
        )
        .unwrap();
    exchange
        .connect(
            2,
            &[Peer {
                worker: WorkerId(1),
                data_addr: "127.0.0.1:1".into(),
            }],
        )
        .unwrap();
    let codec = BatchCodec::of::<u64>();
    exchange.begin_attempt(7, 1);
    exchange.release(7, 1);
    exchange.begin_attempt(7, 2);
    let (queue, _credits) = exchange.receiver(key(2), 1, codec).unwrap();
    let records = codec
        .encode(&Batch::new(vec![1u64, 2, 3]), usize::MAX)
        .unwrap()
        .remove(0);
    let records_frame = |attempt| OutgoingFrame::Records {
        key: key(attempt),
        records: records.clone(),
    };
    let message_frame = |attempt, body| {
        OutgoingFrame::Encoded(encode_exchange_body(&ExchangeFrame::Message {
            key: key(attempt),
            body,
        }))
    };
    for frame in [
        records_frame(1),
        message_frame(1, FrameBody::Barrier(4)),
        message_frame(2, FrameBody::Barrier(5)),
        records_frame(2),
    ] {
        write_exchange(&mut zombie, &frame).unwrap();
    }
    let first = queue.recv_timeout(Duration::from_secs(30)).unwrap();
    assert!(matches!(first, Message::Barrier(Epoch(5))), "{first:?}");
    let Message::Data(batch) = queue.recv_timeout(Duration::from_secs(30)).unwrap() else {
        panic!("expected records")
    };
    assert_eq!(batch.into_records::<u64>().unwrap(), vec![1, 2, 3]);
    assert!(queue.is_empty());
}
