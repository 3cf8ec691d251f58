//! The `gateway` binary itself, as an operator runs it: configured from a file, serving
//! from its threads (`[server] threads`), proxying to the mock provider, and stopping on
//! SIGTERM only once its in-flight stream has ended.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tower_ai_mock::MockProvider;

const CHAT: &str =
    r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Hi from the binary"}]}"#;
const CHAT_STREAM: &str = r#"{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"Hi from the binary"}]}"#;

/// Starts `gateway --config FILE` and waits for the line that says where it listens.
async fn gateway(toml: &str) -> (Child, String) {
    let dir = std::env::temp_dir().join(format!("aigw-binary-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("gateway.toml");
    std::fs::write(&path, toml).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .arg("--config")
        .arg(&path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let url = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(url) = line.strip_prefix("gateway listening on ") {
                return url.to_owned();
            }
        }
        panic!("the gateway exited before listening");
    })
    .await
    .expect("the gateway says where it listens");
    // Read at start-up only.
    let _ = std::fs::remove_dir_all(&dir);
    (child, url)
}

/// One HTTP/1.1 request on a connection of its own (`connection: close`): the status
/// line and the body, read to the end.
async fn send(url: &str, method: &str, path: &str, body: &str) -> (String, String) {
    let addr = url.strip_prefix("http://").unwrap();
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\n\
         authorization: Bearer sk-binary\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    tcp.write_all(body.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), tcp.read_to_end(&mut raw))
        .await
        .expect("the gateway answers")
        .unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("a response head");
    (head.lines().next().unwrap().to_owned(), body.to_owned())
}

/// The names of `pid`'s threads.
fn threads(pid: u32) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .map(|n| n.trim_end().to_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_from_its_threads_and_stops_on_sigterm_after_the_stream_in_flight() {
    let mock = MockProvider::start().await.unwrap();
    let (mut child, url) = gateway(&format!(
        "listen = \"127.0.0.1:0\"\n[server]\nthreads = 2\n[meter]\nlog_path = \"\"\n\
         [providers.openai]\nbase_url = \"{}/v1\"\n",
        mock.url()
    ))
    .await;
    let pid = child.id().unwrap();
    let port = url.rsplit(':').next().unwrap();
    // The threads name themselves as they start.
    let mut serving = Vec::new();
    for _ in 0..200 {
        serving = threads(pid)
            .into_iter()
            .filter(|n| n.starts_with(&format!("aigw-{port}-")))
            .collect();
        if serving.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        serving,
        [format!("aigw-{port}-0"), format!("aigw-{port}-1")]
    );

    // Four connections, two per thread: each answered by the provider through it.
    for _ in 0..4 {
        let (status, body) = send(&url, "POST", "/openai/chat/completions", CHAT).await;
        assert_eq!(status, "HTTP/1.1 200 OK", "{body}");
        assert!(body.contains("chat.completion"), "{body}");
    }
    assert_eq!(mock.requests(), 4);
    let (status, body) = send(&url, "GET", "/healthz", "").await;
    assert_eq!(
        (status.as_str(), body.as_str()),
        ("HTTP/1.1 200 OK", r#"{"status":"ok"}"#)
    );

    // A slow stream in flight, then SIGTERM: the stream ends whole, then the process.
    let stream = tokio::spawn({
        let url = url.clone();
        async move {
            let path = "/openai/chat/completions";
            let addr = url.strip_prefix("http://").unwrap().to_owned();
            let mut tcp = TcpStream::connect(&addr).await.unwrap();
            let head = format!(
                "POST {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\n\
                 x-mock-chunks: 5\r\nx-mock-chunk-delay-ms: 100\r\n\
                 content-length: {}\r\nconnection: close\r\n\r\n",
                CHAT_STREAM.len()
            );
            tcp.write_all(head.as_bytes()).await.unwrap();
            tcp.write_all(CHAT_STREAM.as_bytes()).await.unwrap();
            let mut raw = Vec::new();
            tcp.read_to_end(&mut raw).await.unwrap();
            String::from_utf8(raw).unwrap()
        }
    });
    while mock.requests() < 5 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let term = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .await
        .unwrap();
    assert!(term.success());
    let streamed = tokio::time::timeout(Duration::from_secs(20), stream)
        .await
        .expect("the stream ends")
        .unwrap();
    assert!(streamed.starts_with("HTTP/1.1 200 OK"), "{streamed}");
    assert!(streamed.contains("data: [DONE]"), "cut short: {streamed}");
    let exit = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("the gateway exits")
        .unwrap();
    assert!(exit.success(), "{exit:?}");
    // Stopped: nothing listens there any more.
    assert!(
        TcpStream::connect(url.strip_prefix("http://").unwrap())
            .await
            .is_err()
    );
}
