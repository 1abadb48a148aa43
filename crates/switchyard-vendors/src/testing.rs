//! Contract-test helpers: a recorded HTTP answer served on a local port, so a fixture goes through
//! the same request/response path (status, headers, body) as a vendor's real answer.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
};

use crate::error::{VendorError, send};

/// Serves `status`, `headers` and `body` once, sends one request (a call with effects when
/// `mutating`) through the vendors' own `send`, and returns its classification.
pub(crate) async fn answer(status: u16, headers: &[(&str, &str)], body: &str, mutating: bool) -> VendorError {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/recorded", listener.local_addr().unwrap());
    let mut response = format!(
        "HTTP/1.1 {status} Recorded\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        response.push_str(&format!("{k}: {v}\r\n"));
    }
    response.push_str("\r\n");
    response.push_str(body);
    let server = tokio::spawn(async move {
        let (mut conn, _) = listener.accept().await.unwrap();
        let mut seen = Vec::new();
        let mut buf = [0u8; 1024];
        while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = conn.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            seen.extend_from_slice(&buf[..n]);
        }
        conn.write_all(response.as_bytes()).await.unwrap();
        conn.shutdown().await.unwrap();
    });
    let http = reqwest::Client::new();
    let req = if mutating {
        http.post(&url).body("{}")
    } else {
        http.get(&url)
    };
    let result = send(req, mutating).await;
    server.await.unwrap();
    match result {
        Ok(r) => panic!("status {} was not an error", r.status()),
        Err(e) => e,
    }
}

/// Serves one recorded answer (`status`, `body`) on a local port: returns the base URL and a task
/// yielding the request the client sent (head and body, as text; empty when none came within 10 s),
/// for contract tests of a whole client call.
pub(crate) async fn recorded(status: u16, body: &'static str) -> (String, tokio::task::JoinHandle<String>) {
    let (base, script) = scripted(vec![(status, body)]).await;
    let first = tokio::spawn(async move { script.await.unwrap().into_iter().next().unwrap_or_default() });
    (base, first)
}

/// Serves `answers` in order, one request each (each on its own connection): returns the base URL
/// and a task yielding the requests seen (head and body, as text), for contract tests of calls that
/// take several requests.
pub(crate) async fn scripted(answers: Vec<(u16, &'static str)>) -> (String, tokio::task::JoinHandle<Vec<String>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        let mut seen = Vec::new();
        for (status, body) in answers {
            let Ok(accepted) = tokio::time::timeout(std::time::Duration::from_secs(10), listener.accept()).await else {
                break;
            };
            let (mut conn, _) = accepted.unwrap();
            seen.push(read_request(&mut conn).await);
            let response = format!(
                "HTTP/1.1 {status} Recorded\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            conn.write_all(response.as_bytes()).await.unwrap();
            conn.shutdown().await.unwrap();
        }
        seen
    });
    (base, server)
}

async fn read_request(conn: &mut tokio::net::TcpStream) -> String {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = conn.read(&mut buf).await.unwrap();
        if n == 0 {
            break;
        }
        seen.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&seen);
        if let Some((head, rest)) = text.split_once("\r\n\r\n") {
            let len = head
                .lines()
                .find_map(|l| {
                    l.to_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().to_string())
                })
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(0);
            if rest.len() >= len {
                break;
            }
        }
    }
    String::from_utf8_lossy(&seen).into_owned()
}

/// Progress kept in memory (what the effect ledger's checkpoint holds in production).
#[derive(Default)]
pub(crate) struct MemProgress(pub std::sync::Mutex<std::collections::HashMap<String, String>>);

impl crate::adapter::Progress for MemProgress {
    fn get(&self, name: &str) -> Option<String> {
        self.0.lock().unwrap().get(name).cloned()
    }
    fn note<'a>(&'a self, name: &'a str, value: &'a str) -> futures::future::BoxFuture<'a, Result<(), VendorError>> {
        self.0.lock().unwrap().insert(name.to_string(), value.to_string());
        Box::pin(async { Ok(()) })
    }
}
