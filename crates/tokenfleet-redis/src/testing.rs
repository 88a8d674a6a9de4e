//! A `redis-server` for tests, on a free loopback port.
//!
//! Tests that only need a server call [`RedisServer::shared_or_start`]: it
//! uses the server named by `TOKENFLEET_TEST_REDIS_URL` when that variable
//! is set (as CI does), and otherwise starts `redis-server` from `PATH`.
//! Tests that stop and restart the server call [`RedisServer::start`],
//! which always starts a server of their own.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The variable naming a running server for tests.
pub const URL_VARIABLE: &str = "TOKENFLEET_TEST_REDIS_URL";

/// How long a started server may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// A Redis server for one test. A server this value started is stopped
/// when it is dropped.
#[derive(Debug)]
pub struct RedisServer {
    url: String,
    port: Option<u16>,
    password: Option<String>,
    child: Option<Child>,
}

impl RedisServer {
    /// Returns the server named by `TOKENFLEET_TEST_REDIS_URL`, or starts
    /// one when the variable is unset.
    ///
    /// # Panics
    ///
    /// Panics with installation advice when the variable is unset and
    /// `redis-server` cannot be started.
    pub fn shared_or_start() -> Self {
        match std::env::var(URL_VARIABLE) {
            Ok(url) if !url.trim().is_empty() => Self {
                url,
                port: None,
                password: None,
                child: None,
            },
            _ => Self::start(),
        }
    }

    /// Starts a server of this test's own on a free loopback port, without
    /// persistence.
    ///
    /// # Panics
    ///
    /// Panics with installation advice when `redis-server` cannot be
    /// started, and when it does not accept connections within 10 s.
    pub fn start() -> Self {
        Self::start_with_password(None)
    }

    /// Starts a server like [`RedisServer::start`] that requires `password`.
    ///
    /// # Panics
    ///
    /// As [`RedisServer::start`].
    pub fn start_with_password(password: Option<&str>) -> Self {
        let port = free_port();
        let mut server = Self {
            url: match password {
                Some(password) => format!("redis://:{password}@127.0.0.1:{port}/"),
                None => format!("redis://127.0.0.1:{port}/"),
            },
            port: Some(port),
            password: password.map(str::to_owned),
            child: None,
        };
        server.restart();
        server
    }

    /// Returns the server's URL, with its password if it has one.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Returns the URL with the password left out.
    pub fn url_without_password(&self) -> String {
        match self.port {
            Some(port) => format!("redis://127.0.0.1:{port}/"),
            None => crate::scrub_url(&self.url),
        }
    }

    /// Returns the id of the server's process, when this value started it.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Returns a key prefix no other test uses.
    pub fn unique_prefix(&self, test: &str) -> String {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|elapsed| elapsed.as_nanos())
            .unwrap_or(0);
        let count = COUNTER.fetch_add(1, Ordering::Relaxed);
        format!("tftest-{test}-{}-{nanos:x}-{count}", std::process::id())
    }

    /// Stops the server, as a crash would.
    ///
    /// # Panics
    ///
    /// Panics when this value did not start the server.
    pub fn stop(&mut self) {
        let mut child = self
            .child
            .take()
            .expect("only a server this test started can be stopped");
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Starts the server again on the same port, empty, and waits until it
    /// accepts connections.
    ///
    /// # Panics
    ///
    /// As [`RedisServer::start`], and when this value did not start it.
    pub fn restart(&mut self) {
        if self.child.is_some() {
            self.stop();
        }
        let port = self
            .port
            .expect("only a server this test started can be restarted");
        let mut command = Command::new("redis-server");
        command
            .args(["--port", &port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(password) = &self.password {
            command.args(["--requirepass", password]);
        }
        let child = command.spawn().unwrap_or_else(|error| {
            panic!(
                "cannot start redis-server ({error}); install it (Debian: apt-get install -y \
                 redis-server) or set {URL_VARIABLE} to a running server such as \
                 redis://127.0.0.1:6379/"
            )
        });
        self.child = Some(child);
        wait_until_listening(port);
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port is free");
    listener
        .local_addr()
        .expect("the listener has an address")
        .port()
}

fn wait_until_listening(port: u16) {
    let started = Instant::now();
    while started.elapsed() < START_TIMEOUT {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("redis-server on port {port} did not accept connections within {START_TIMEOUT:?}");
}

/// The variable that makes tests fail, rather than skip, when a tool they
/// need (`redis-server`) is missing. CI sets it.
pub const REQUIRE_TOOLS_VARIABLE: &str = "TOKENFLEET_REQUIRE_TOOLS";

/// Returns true, after printing why, when `test` should be skipped: no
/// server is named in the URL variable, `redis-server` is not installed and
/// the run does not require the tools. A fresh machine can then run
/// `cargo test --workspace` without Redis, while CI still fails loudly.
pub fn skip_without_redis(test: &str) -> bool {
    if std::env::var_os(URL_VARIABLE).is_some()
        || std::env::var_os(REQUIRE_TOOLS_VARIABLE).is_some()
    {
        return false;
    }
    let installed = Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if !installed {
        eprintln!(
            "skipping {test}: redis-server is not installed (Debian: apt-get install -y \
             redis-server); set {REQUIRE_TOOLS_VARIABLE}=1 to make this a failure"
        );
    }
    !installed
}
