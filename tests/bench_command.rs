//! `egret bench` at a small scale, so the command cannot rot between the runs
//! BENCHMARKS.md records: it runs to its end and prints a row for every figure
//! of targets.md, with numbers where it measured something. (Speed itself is
//! judged by the release-mode runs, never here.)

use std::process::Command;

#[test]
fn bench_prints_every_figure_beside_its_target() {
    // Enough events for (a) to use a tenth of a CPU-second, the least it rates.
    let mut command = Command::new(env!("CARGO_BIN_EXE_egret"));
    command.args(["bench", "--events", "100000", "--plates", "20000", "--api-seconds", "2", "--api-pace", "x5", "--api-demand", "400", "--api-connections", "4", "--repeat", "2"]);
    if let Ok(brokers) = std::env::var("EGRET_KAFKA") {
        // Low demand: the latency run's three-minute warm-up is then 15K events.
        command.args(["--kafka", &brokers, "--kafka-events", "5000", "--demand", "400", "--latency-rate", "2000", "--latency-seconds", "15"]);
    }
    let output = command.output().expect("egret bench runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "egret bench failed:\n{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    let rows: Vec<&str> = stdout.lines().filter(|l| l.starts_with("| (") || l.starts_with("| SQL")).collect();
    for figure in ["(a)", "(b)", "(c)", "(d)", "(e)", "(f)", "SQL over live tables"] {
        assert!(rows.iter().any(|r| r.contains(figure)), "no row for {figure}:\n{stdout}");
    }
    let row = |figure: &str| *rows.iter().find(|r| r.contains(figure)).expect("row");
    assert!(row("(a)").contains("events/CPU-s, median of 2 runs"), "{}", row("(a)"));
    assert!(row("(e)").contains("20,000 plates in flight"), "every flood plate waits for its exit: {}", row("(e)"));
    assert!(row("SQL").contains("p99 "), "{}", row("SQL"));
    assert!(row("(d)").contains("req/s per API core") && row("(d)").contains(" 0 errors"), "{}", row("(d)"));
    let baseline = row("(d)").split_once("baseline without the answer cache").map(|(_, b)| b).unwrap_or_else(|| panic!("no baseline: {}", row("(d)")));
    assert!(baseline.contains("req/s per API core") && baseline.contains(" 0 errors"), "{}", row("(d)"));
    if std::env::var("EGRET_KAFKA").is_ok() {
        assert!(row("(b)").contains("events/s wall"), "{}", row("(b)"));
        assert!(row("(f)").contains("tickets "), "{}", row("(f)"));
        assert!(row("(c) violation").contains("tickets issued were pushed"), "{}", row("(c) violation"));
    }
    assert!(stdout.contains("reproduce: egret bench --events 100000") && stdout.contains("--repeat 2"), "{stdout}");
}
