//! `rediss://` against a redis-server with a certificate from a private
//! certificate authority, both made with the `openssl` command.
//!
//! Run with `cargo test -p tokenfleet-redis --features tls --test tls`.

#![cfg(feature = "tls")]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokenfleet_core::store::{Admission, BudgetKey, LocalObservation};
use tokenfleet_core::StateStore;
use tokenfleet_redis::{RedisConfig, RedisStore, RedisStoreError};

const NOW: u64 = 1_700_000_000_000;

fn key() -> BudgetKey<'static> {
    BudgetKey {
        account: 0,
        account_name: "alice",
        bucket: 0,
        bucket_name: "core",
    }
}

/// A redis-server that accepts only TLS, stopped on drop.
struct TlsServer {
    child: Child,
    port: u16,
    directory: PathBuf,
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.directory);
    }
}

fn openssl(directory: &Path, args: &[&str]) {
    let status = Command::new("openssl")
        .args(args)
        .current_dir(directory)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("the openssl command runs; install it with apt-get install -y openssl");
    assert!(status.success(), "openssl {args:?} failed");
}

/// Makes a CA and a server certificate for 127.0.0.1, and starts
/// redis-server with them on a free loopback port.
fn start_tls_server() -> TlsServer {
    let directory = std::env::temp_dir().join(format!(
        "tokenfleet-tls-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let _ = std::fs::remove_dir_all(&directory);
    std::fs::create_dir_all(&directory).expect("the temporary directory is writable");
    openssl(
        &directory,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=tokenfleet test CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
        ],
    );
    openssl(
        &directory,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ],
    );
    std::fs::write(directory.join("san.ext"), "subjectAltName=IP:127.0.0.1\n")
        .expect("the extension file is writable");
    openssl(
        &directory,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            "san.ext",
            "-out",
            "server.crt",
        ],
    );

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a loopback port is free")
        .port();
    let child = Command::new("redis-server")
        .args([
            "--port",
            "0",
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .args(["--tls-port", &port.to_string()])
        .args([
            "--tls-cert-file",
            "server.crt",
            "--tls-key-file",
            "server.key",
        ])
        .args(["--tls-ca-cert-file", "ca.crt", "--tls-auth-clients", "no"])
        .current_dir(&directory)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server starts; install it with apt-get install -y redis-server");
    let server = TlsServer {
        child,
        port,
        directory,
    };
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "redis-server with TLS did not listen on port {port}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    server
}

#[tokio::test]
async fn tls_with_private_ca_works() {
    let server = start_tls_server();
    let store = RedisStore::new(
        RedisConfig::new(format!("rediss://127.0.0.1:{}/", server.port))
            .ca_file(server.directory.join("ca.crt"))
            .command_timeout(Duration::from_secs(5)),
    )
    .expect("the store builds");
    let observation = LocalObservation {
        limit: 10,
        remaining: 1,
        used: Some(9),
        reset_ms: NOW + 60_000,
    };

    store.observe(key(), &observation, NOW).await.unwrap();

    assert_eq!(
        store.try_reserve(key(), 0, NOW).await.unwrap(),
        Admission::Admit
    );
    assert_eq!(
        store.try_reserve(key(), 0, NOW).await.unwrap(),
        Admission::Busy
    );
}

#[tokio::test]
async fn tls_without_trusted_ca_fails_clearly() {
    let server = start_tls_server();
    let url = format!("rediss://:hunter2@127.0.0.1:{}/", server.port);
    let store = RedisStore::new(RedisConfig::new(&url).command_timeout(Duration::from_secs(5)))
        .expect("the store builds");

    let error = store
        .try_reserve(key(), 0, NOW)
        .await
        .expect_err("the server's certificate is not trusted");

    let message = error.to_string();
    let shown = format!("redis store at rediss://:***@127.0.0.1:{}/", server.port);
    assert!(message.contains(&shown), "{message}");
    assert!(!message.contains("hunter2"), "{message}");
}

#[test]
fn unreadable_ca_file_is_named() {
    let error = RedisStore::new(
        RedisConfig::new("rediss://127.0.0.1:6380/").ca_file("/nonexistent/tokenfleet-ca.pem"),
    )
    .expect_err("the file does not exist");
    assert!(matches!(error, RedisStoreError::CaFile { .. }), "{error}");
    assert!(
        error.to_string().contains("/nonexistent/tokenfleet-ca.pem"),
        "{error}"
    );
}
