//! What TLS costs the server's CPU: a TLS 1.3 handshake (ECDSA P-256, the
//! certificate `--tls` makes), and sealing one chat message into a record,
//! beside copying the same bytes without TLS. Client and server run in
//! memory, so no socket is timed; the server's side is timed apart with
//! `iter_custom`.
//!
//! `cargo bench -p chatbench-server --bench tls`.

use criterion::{criterion_group, criterion_main, Criterion};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use std::hint::black_box;
use std::io::{Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn configs() -> (Arc<rustls::ServerConfig>, Arc<rustls::ClientConfig>) {
    let g = chatbench_server::tls::generate(&[]).unwrap();
    let server = chatbench_server::tls::server_config(vec![g.leaf], g.key).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(g.ca_pem.as_bytes()).unwrap())
        .unwrap();
    let client = rustls::ClientConfig::builder_with_provider(chatbench_server::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    (server, Arc::new(client))
}

/// One whole handshake; returns the server's share of the time.
fn handshake(
    server: &Arc<rustls::ServerConfig>,
    client: &Arc<rustls::ClientConfig>,
) -> (Duration, rustls::ServerConnection, rustls::ClientConnection) {
    let mut s = rustls::ServerConnection::new(server.clone()).unwrap();
    let mut c =
        rustls::ClientConnection::new(client.clone(), ServerName::try_from("localhost").unwrap())
            .unwrap();
    let mut buf = Vec::with_capacity(4096);
    let mut spent = Duration::ZERO;
    while c.is_handshaking() || s.is_handshaking() {
        buf.clear();
        while c.wants_write() {
            c.write_tls(&mut buf).unwrap();
        }
        let t = Instant::now();
        let mut rd = &buf[..];
        while !rd.is_empty() {
            s.read_tls(&mut rd).unwrap();
            s.process_new_packets().unwrap();
        }
        spent += t.elapsed();
        // The server's own writes are its work too.
        let t = Instant::now();
        buf.clear();
        while s.wants_write() {
            s.write_tls(&mut buf).unwrap();
        }
        spent += t.elapsed();
        let mut rd = &buf[..];
        while !rd.is_empty() {
            c.read_tls(&mut rd).unwrap();
            c.process_new_packets().unwrap();
        }
    }
    (spent, s, c)
}

fn tls(c: &mut Criterion) {
    let (server, client) = configs();
    let mut g = c.benchmark_group("tls");
    g.bench_function("handshake, both sides", |b| {
        b.iter(|| black_box(handshake(&server, &client)));
    });
    g.bench_function("handshake, the server's side", |b| {
        b.iter_custom(|n| {
            let mut total = Duration::ZERO;
            for _ in 0..n {
                total += handshake(&server, &client).0;
            }
            total
        });
    });
    // A delivered chat message as a WebSocket frame carries it: about 180
    // bytes.
    let message = vec![b'x'; 180];
    let (_, mut s, mut cl) = handshake(&server, &client);
    let mut out = Vec::with_capacity(1024);
    g.bench_function("seal and open one 180-byte message", |b| {
        b.iter(|| {
            s.writer().write_all(black_box(&message)).unwrap();
            out.clear();
            while s.wants_write() {
                s.write_tls(&mut out).unwrap();
            }
            // The client opens it (timed too), which also keeps the
            // connection's buffers from growing.
            let mut rd = &out[..];
            cl.read_tls(&mut rd).unwrap();
            cl.process_new_packets().unwrap();
            let mut sink = [0u8; 256];
            let _ = cl.reader().read(&mut sink);
            black_box(out.len())
        });
    });
    g.bench_function("copy one 180-byte message (no TLS)", |b| {
        b.iter(|| {
            out.clear();
            out.extend_from_slice(black_box(&message));
            black_box(out.len())
        });
    });
    g.finish();
}

criterion_group!(benches, tls);
criterion_main!(benches);
