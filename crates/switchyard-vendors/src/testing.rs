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
