//! SQL is read-only: nothing a caller sends can define, change, export or configure.

use super::*;

#[tokio::test]
async fn ddl_dml_copy_and_statements_are_refused() {
    let scratch = std::env::temp_dir().join(format!("egret-query-guard-{}", std::process::id()));
    let engine = QueryEngine::new(populated(), None);
    let refused = [
        "CREATE TABLE t AS SELECT 1".to_owned(),
        "CREATE VIEW v AS SELECT * FROM segments".to_owned(),
        format!("CREATE EXTERNAL TABLE x STORED AS PARQUET LOCATION '{}'", scratch.display()),
        "DROP TABLE segments".to_owned(),
        "INSERT INTO segments SELECT * FROM segments".to_owned(),
        "DELETE FROM violations".to_owned(),
        format!("COPY segments TO '{}/segments.parquet'", scratch.display()),
        format!("COPY (SELECT * FROM violations) TO '{}/v.csv' STORED AS CSV", scratch.display()),
        format!("EXPLAIN COPY violations TO '{}/e.parquet'", scratch.display()),
        "SET datafusion.execution.batch_size = 1".to_owned(),
    ];
    for sql in &refused {
        match engine.sql_json(sql).await {
            Err(QueryError::Plan(msg)) => assert!(!msg.is_empty(), "{sql}: a message"),
            other => panic!("{sql} was not refused as the caller's fault: {other:?}"),
        }
    }
    assert!(!scratch.exists(), "nothing was written");
    let copy = engine.sql_json(&refused[6]).await;
    assert!(matches!(&copy, Err(QueryError::Plan(m)) if m.contains("read-only") && m.contains("COPY")), "{copy:?}");
}

#[tokio::test]
async fn files_cannot_be_read_by_name() {
    let engine = QueryEngine::new(live(), None);
    assert!(matches!(engine.sql_json("SELECT * FROM '/etc/passwd'").await, Err(QueryError::Plan(_))));
}

#[tokio::test]
async fn queries_and_explain_are_allowed() {
    let engine = QueryEngine::new(populated(), None);
    let json = engine.sql_json("WITH v AS (SELECT kind, count(*) AS n FROM violations GROUP BY kind) SELECT * FROM v").await.expect("a CTE");
    assert_eq!(json["rows"][0]["n"], 2);
    engine.sql_json("EXPLAIN SELECT * FROM segments").await.expect("explain");
}
