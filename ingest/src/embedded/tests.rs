//! Embedded log tests: ordering per key, offsets, back-pressure, resume and end.

use super::*;

fn rec(key: &str, value: &str) -> OutRecord {
    OutRecord::new("t", Some(Bytes::from(key.to_owned())), value.to_owned())
}

async fn drain(source: &mut EmbeddedSource) -> Vec<Record> {
    let mut all = Vec::new();
    loop {
        match source.poll(7).await.expect("poll") {
            Poll::Records(r) => all.extend(r),
            Poll::Idle => continue,
            Poll::End => return all,
        }
    }
}

#[tokio::test]
async fn keeps_order_per_key_and_ends_after_close() {
    let log = EmbeddedLog::new(3, 1000);
    for i in 0..50 {
        log.append(rec(&format!("k{}", i % 5), &i.to_string())).await.expect("append");
    }
    log.close();
    let mut source = log.subscribe(&["t"], Duration::from_millis(5));
    let all = drain(&mut source).await;
    assert_eq!(all.len(), 50);
    for k in 0..5 {
        let values: Vec<u32> = all
            .iter()
            .filter(|r| r.key.as_deref() == Some(format!("k{k}").as_bytes()))
            .map(|r| std::str::from_utf8(&r.payload).expect("utf8").parse().expect("number"))
            .collect();
        assert!(values.windows(2).all(|w| w[0] < w[1]), "key k{k} out of order: {values:?}");
        assert_eq!(values.len(), 10);
    }
    for p in 0..3 {
        let offsets: Vec<u64> = all.iter().filter(|r| r.partition == p).map(|r| r.offset).collect();
        assert_eq!(offsets, (0..offsets.len() as u64).collect::<Vec<_>>(), "offsets of partition {p} are dense");
    }
}

#[tokio::test]
async fn producer_waits_until_consumer_commits() {
    let log = EmbeddedLog::new(1, 4);
    let producer = {
        let log = log.clone();
        tokio::spawn(async move {
            for i in 0..10 {
                log.append(rec("k", &i.to_string())).await.expect("append");
            }
            log.close();
        })
    };
    tokio::time::sleep(Duration::from_millis(30)).await;
    assert_eq!(log.backlog(), 4, "the partition is bounded");
    let mut source = log.subscribe(&["t"], Duration::from_millis(5));
    let mut seen = 0;
    loop {
        match source.poll(100).await.expect("poll") {
            Poll::Records(r) => {
                seen += r.len();
                let last = r.last().expect("non-empty");
                source.commit("t", last.partition, last.offset).expect("commit");
            }
            Poll::Idle => {}
            Poll::End => break,
        }
    }
    producer.await.expect("producer finished");
    assert_eq!(seen, 10);
    assert_eq!(log.backlog(), 0);
}

#[tokio::test]
async fn a_new_consumer_resumes_after_the_committed_offset() {
    let log = EmbeddedLog::new(1, 100);
    for i in 0..6 {
        log.append(rec("k", &i.to_string())).await.expect("append");
    }
    log.close();
    let mut first = log.subscribe(&["t"], Duration::from_millis(5));
    let Poll::Records(got) = first.poll(3).await.expect("poll") else { panic!("records expected") };
    first.commit("t", 0, got[2].offset).expect("commit");
    drop(first);
    let mut second = log.subscribe(&["t"], Duration::from_millis(5));
    let rest = drain(&mut second).await;
    assert_eq!(rest.iter().map(|r| r.offset).collect::<Vec<_>>(), vec![3, 4, 5]);
    assert!(second.commit("nope", 0, 0).is_err());
}
