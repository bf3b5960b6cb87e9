//! A TLS front for upstream fixtures: terminates TLS on 127.0.0.1 with the test certificate
//! in `tests/fixtures/tls/` (signed by the throw-away test CA `ca.pem`) and passes each
//! decrypted request to a plain fixture, copying its answer back as it arrives.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Path of a file in `tests/fixtures/tls/`.
pub fn tls_fixture(name: &str) -> String {
    format!("{}/tests/fixtures/tls/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// A running TLS front. Stops accepting on drop.
pub struct TlsFront {
    port: u16,
    stop: Arc<AtomicBool>,
}

impl TlsFront {
    /// Terminates TLS and forwards to the plain fixture at `backend` (`127.0.0.1:PORT`).
    pub fn start(backend: String) -> TlsFront {
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_file_iter(tls_fixture("server.pem"))
                .expect("read server.pem")
                .collect::<Result<_, _>>()
                .expect("parse server.pem");
        let key = PrivateKeyDer::from_pem_file(tls_fixture("server.key")).expect("server.key");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .expect("server certificate");
        let config = Arc::new(config);
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind TLS front");
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = Arc::clone(&stop);
        thread::spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let (config, backend) = (Arc::clone(&config), backend.clone());
                thread::spawn(move || serve(conn, config, &backend));
            }
        });
        TlsFront { port, stop }
    }

    /// `https://127.0.0.1:PORT/v1`
    pub fn base_url(&self) -> String {
        format!("https://{}/v1", self.addr())
    }

    /// `127.0.0.1:PORT`: what a proxy is asked to connect to.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn serve(conn: TcpStream, config: Arc<rustls::ServerConfig>, backend: &str) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    let Ok(session) = rustls::ServerConnection::new(config) else {
        return;
    };
    let mut tls = rustls::StreamOwned::new(session, conn);
    // One request: the head, then Content-Length bytes of body.
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        match tls.read(&mut chunk) {
            Ok(0) | Err(_) => return, // e.g. the client refused our certificate
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + length {
        match tls.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let Ok(mut up) = TcpStream::connect(backend) else {
        return;
    };
    if up.write_all(&buf).is_err() {
        return;
    }
    loop {
        match up.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if tls
                    .write_all(&chunk[..n])
                    .and_then(|()| tls.flush())
                    .is_err()
                {
                    break;
                }
            }
        }
    }
    tls.conn.send_close_notify();
    let _ = tls.flush();
}
