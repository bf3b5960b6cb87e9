//! A tiny HTTP proxy on 127.0.0.1 that records what went through it: `CONNECT host:port`
//! tunnels, and absolute-form requests (`POST http://host:port/path`) forwarded in origin form.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// A running proxy fixture. Stops accepting on drop.
pub struct Proxy {
    port: u16,
    seen: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
}

impl Proxy {
    pub fn start() -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (seen2, stop2) = (Arc::clone(&seen), Arc::clone(&stop));
        thread::spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let seen = Arc::clone(&seen2);
                thread::spawn(move || serve(conn, &seen));
            }
        });
        Proxy { port, seen, stop }
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Request lines seen so far, e.g. `CONNECT 127.0.0.1:4711 HTTP/1.1`.
    pub fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn serve(client: TcpStream, seen: &Mutex<Vec<String>>) {
    let _ = client.set_read_timeout(Some(Duration::from_secs(10)));
    let Ok(mut client_w) = client.try_clone() else {
        return;
    };
    let mut r = BufReader::new(client);
    if r.fill_buf().ok().and_then(|b| b.first().copied()) == Some(5) {
        return socks5(r, client_w, seen);
    }
    let mut line = String::new();
    if r.read_line(&mut line).is_err() || line.is_empty() {
        return;
    }
    let mut head = Vec::new();
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).unwrap_or(0) == 0 {
            return;
        }
        if h.trim_end().is_empty() {
            break;
        }
        head.push(h);
    }
    let request_line = line.trim_end().to_string();
    seen.lock().unwrap().push(request_line.clone());
    let mut parts = request_line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (host, rewritten) = if method == "CONNECT" {
        (target.to_string(), None)
    } else {
        let rest = target.strip_prefix("http://").unwrap_or(target);
        let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let path = if path.is_empty() { "/" } else { path };
        (
            host.to_string(),
            Some(format!("{method} {path} HTTP/1.1\r\n")),
        )
    };
    let Ok(mut upstream) = TcpStream::connect(&host) else {
        let _ = client_w.write_all(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n");
        return;
    };
    match rewritten {
        None => {
            if client_w
                .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                .is_err()
            {
                return;
            }
        }
        Some(first) => {
            let mut out = first;
            for h in &head {
                if !h.to_ascii_lowercase().starts_with("proxy-") {
                    out.push_str(h);
                }
            }
            out.push_str("\r\n");
            if upstream.write_all(out.as_bytes()).is_err() {
                return;
            }
        }
    }
    pipe(r, client_w, upstream);
}

/// A SOCKS5 client (RFC 1928, no authentication, `CONNECT` only): recorded as
/// `SOCKS5 CONNECT host:port`, then piped like a `CONNECT` tunnel.
fn socks5(mut r: BufReader<TcpStream>, mut client_w: TcpStream, seen: &Mutex<Vec<String>>) {
    let mut greeting = [0u8; 2];
    if r.read_exact(&mut greeting).is_err() {
        return;
    }
    let mut methods = vec![0u8; usize::from(greeting[1])];
    if r.read_exact(&mut methods).is_err() || client_w.write_all(&[5, 0]).is_err() {
        return;
    }
    let mut ask = [0u8; 4];
    if r.read_exact(&mut ask).is_err() || ask[1] != 1 {
        return;
    }
    let host = match ask[3] {
        1 => {
            let mut ip = [0u8; 4];
            if r.read_exact(&mut ip).is_err() {
                return;
            }
            std::net::Ipv4Addr::from(ip).to_string()
        }
        3 => {
            let mut len = [0u8; 1];
            let _ = r.read_exact(&mut len);
            let mut name = vec![0u8; usize::from(len[0])];
            if r.read_exact(&mut name).is_err() {
                return;
            }
            String::from_utf8_lossy(&name).into_owned()
        }
        _ => return,
    };
    let mut port = [0u8; 2];
    if r.read_exact(&mut port).is_err() {
        return;
    }
    let target = format!("{host}:{}", u16::from_be_bytes(port));
    seen.lock()
        .unwrap()
        .push(format!("SOCKS5 CONNECT {target}"));
    let Ok(upstream) = TcpStream::connect(&target) else {
        let _ = client_w.write_all(&[5, 5, 0, 1, 0, 0, 0, 0, 0, 0]);
        return;
    };
    if client_w.write_all(&[5, 0, 0, 1, 0, 0, 0, 0, 0, 0]).is_err() {
        return;
    }
    pipe(r, client_w, upstream);
}

/// Copies bytes both ways until either side ends; `r` may hold bytes already read.
fn pipe(mut r: BufReader<TcpStream>, mut client_w: TcpStream, mut upstream: TcpStream) {
    let Ok(mut up_r) = upstream.try_clone() else {
        return;
    };
    let back = thread::spawn(move || {
        let _ = std::io::copy(&mut up_r, &mut client_w);
        let _ = client_w.shutdown(Shutdown::Both);
    });
    let mut buf = [0u8; 8192];
    loop {
        match r.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if upstream.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = upstream.shutdown(Shutdown::Write);
    let _ = back.join();
}
