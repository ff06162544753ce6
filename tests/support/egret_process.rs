//! An `egret run --kafka` child process for the hostile-input tests: started in its
//! own topic namespace, consumer group and state directory on a free port; its
//! stdout collected (the serving address, then the summary); its `/metrics` polled
//! until it has consumed what was sent; stopped with SIGTERM (as Kubernetes does)
//! or left to exit when idle; killed if a test fails before that (its state
//! directory, with its stderr, is then kept).

#![allow(dead_code)]

use std::io::BufRead;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub struct Egret {
    child: Child,
    dir: std::path::PathBuf,
    pub addr: String,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr_path: std::path::PathBuf,
    http: reqwest::Client,
}

impl Egret {
    /// Starts `egret run --kafka BROKERS --namespace NS --group NSg --listen 127.0.0.1:0 EXTRA…`
    /// and waits for the line that names its address.
    pub fn spawn(brokers: &str, ns: &str, extra: &[&str], env: &[(&str, &str)]) -> Egret {
        let dir = std::env::temp_dir().join(format!("egret-{}", ns.trim_end_matches('.')));
        std::fs::create_dir_all(&dir).expect("state dir");
        let stderr_path = dir.join("stderr.log");
        let group = format!("{ns}g");
        let mut command = Command::new(env!("CARGO_BIN_EXE_egret"));
        command
            .args(["run", "--kafka", brokers, "--namespace", ns, "--group", &group, "--listen", "127.0.0.1:0", "--rate-limit", "100000"])
            .args(extra)
            .env("EGRET_STATE_DIR", dir.join("state"))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr_path).expect("stderr file"));
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.spawn().expect("egret run starts");
        let out = child.stdout.take().expect("stdout");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        {
            let lines = lines.clone();
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                    if line.starts_with("serving http://") {
                        let _ = tx.send(line.clone());
                    }
                    lines.lock().expect("stdout lock").push(line);
                }
            });
        }
        let first = rx.recv_timeout(Duration::from_secs(60)).unwrap_or_else(|_| panic!("egret run printed no address; stderr:\n{}", tail(&stderr_path)));
        let addr = first.trim_start_matches("serving http://").split_whitespace().next().expect("address").to_owned();
        // A connection per request: after a refused body (413) the server closes its
        // end, and a pooled connection could be picked up before the client notices.
        let http = reqwest::Client::builder().timeout(Duration::from_secs(60)).pool_max_idle_per_host(0).build().expect("client");
        Egret { child, dir, addr, stdout: lines, stderr_path, http }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Status and body of a GET.
    pub async fn get(&self, path: &str) -> (u16, String) {
        match self.http.get(self.url(path)).send().await {
            Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
            Err(e) => (0, format!("GET {path}: {e}")),
        }
    }

    /// A POST of raw bytes with a bearer token (if any); status and body.
    pub async fn post(&self, path: &str, token: Option<&str>, body: Vec<u8>) -> (u16, Vec<u8>) {
        let mut request = self.http.post(self.url(path)).header("content-type", "application/x-ndjson").body(body);
        if let Some(t) = token {
            request = request.bearer_auth(t);
        }
        match request.send().await {
            Ok(r) => (r.status().as_u16(), r.bytes().await.map(|b| b.to_vec()).unwrap_or_default()),
            Err(e) => (0, format!("POST {path}: {e}").into_bytes()),
        }
    }

    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Polls `/metrics` until at least `consumed` input events were consumed and
    /// `dead_letters` dead letters counted (or the process ends, or `timeout`
    /// passes); returns the last `/metrics` text.
    pub async fn wait_for(&mut self, consumed: u64, dead_letters: u64, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        let mut text = String::new();
        while Instant::now() < deadline && self.alive() {
            let (status, body) = self.get("/metrics").await;
            if status == 200 {
                text = body;
                let c = super::hostile::counter_total(&text, "egret_events_consumed_total");
                let d = super::hostile::counter_total(&text, "egret_dead_letters_total");
                if c >= consumed && d >= dead_letters {
                    return text;
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        eprintln!("waited {timeout:?} for {consumed} consumed and {dead_letters} dead letters (alive: {})", self.alive());
        text
    }

    /// Asks the process to stop, as Ctrl-C or Kubernetes would.
    pub fn terminate(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
    }

    /// Waits for the process to end; `None` if it is still running after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                // Let the reader thread take the last lines.
                std::thread::sleep(Duration::from_millis(200));
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn stdout(&self) -> Vec<String> {
        self.stdout.lock().expect("stdout lock").clone()
    }

    pub fn stderr_tail(&self) -> String {
        tail(&self.stderr_path)
    }
}

fn tail(path: &std::path::Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

impl Drop for Egret {
    fn drop(&mut self) {
        if self.alive() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        // Its keys, checkpoints and log; kept when the test failed.
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
