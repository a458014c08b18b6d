//! The connection under the etcd client: plain TCP for `http://`, rustls
//! over TCP for `https://`, with the CA, client certificate and key read
//! from PEM files once, when the agent starts.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use rvs_proto::check::EtcdEndpoint;
use rvs_proto::config::EtcdAuth;
use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The TLS settings for https endpoints, from `auth`'s files; None when
/// it names no CA (plain http, as [`rvs_proto::check_cluster`] makes sure).
pub fn client_config(auth: &EtcdAuth) -> Result<Option<Arc<ClientConfig>>, String> {
    let Some(cacert) = &auth.cacert else { return Ok(None) };
    let mut roots = RootCertStore::empty();
    let cas = read_certs(cacert, "--etcd-cacert")?;
    let (_, unusable) = roots.add_parsable_certificates(cas);
    if roots.is_empty() {
        return Err(format!("--etcd-cacert {cacert}: no usable CA certificate ({unusable} unparsable)"));
    }
    // ring, not rustls' default aws-lc-rs (which needs cmake to build).
    // rustls 0.23.48 deprecates ring's provider for lacking post-quantum
    // key exchange; classical ECDHE is what etcd's Go TLS offers by default
    // today, and the crypto provider is one line to change later.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_root_certificates(roots);
    let config = match (&auth.cert, &auth.key) {
        (Some(cert), Some(key)) => {
            let chain = read_certs(cert, "--etcd-cert")?;
            let key_der = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| format!("--etcd-key {key}: no private key read: {}", pem_error(&e)))?;
            builder
                .with_client_auth_cert(chain, key_der)
                .map_err(|e| format!("--etcd-cert {cert} with --etcd-key {key}: {e}"))?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(Some(Arc::new(config)))
}

/// Every certificate in PEM file `path` (given as `flag`); at least one.
fn read_certs(path: &str, flag: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .and_then(Iterator::collect)
        .map_err(|e| format!("{flag} {path}: {}", pem_error(&e)))?;
    if certs.is_empty() {
        return Err(format!("{flag} {path}: no PEM certificate in it"));
    }
    Ok(certs)
}

/// A PEM reading error in words (an unreadable file says why).
fn pem_error(e: &rustls::pki_types::pem::Error) -> String {
    match e {
        rustls::pki_types::pem::Error::Io(io) => rvs_proto::client::io_msg(io),
        rustls::pki_types::pem::Error::NoItemsFound => "no PEM item of that kind in it".into(),
        other => format!("{other:?}"),
    }
}

/// One connection to an etcd endpoint.
pub enum Conn {
    /// `http://`.
    Plain(TcpStream),
    /// `https://`, handshake done.
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Conn {
    /// Connects to `ep` and, for https, completes the TLS handshake, all by
    /// `deadline`. A handshake failure says so, with rustls' reason (an
    /// unknown CA, a refused client certificate).
    pub fn open(ep: &EtcdEndpoint, tls: Option<&Arc<ClientConfig>>, deadline: Instant) -> io::Result<Conn> {
        let sock = connect_tcp(&ep.addr, left(deadline)?)?;
        if !ep.tls {
            return Ok(Conn::Plain(sock));
        }
        let config = tls.ok_or_else(|| io::Error::other("https endpoint without TLS settings"))?;
        let name = ServerName::try_from(ep.host().to_string())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, format!("{}: not a host name", ep.host())))?;
        let mut conn =
            ClientConnection::new(config.clone(), name).map_err(|e| io::Error::other(format!("TLS handshake: {e}")))?;
        let mut sock = sock;
        while conn.is_handshaking() {
            let left = left(deadline).map_err(|_| timed_out("TLS handshake: no answer in time"))?;
            sock.set_read_timeout(Some(left))?;
            sock.set_write_timeout(Some(left))?;
            if let Err(e) = conn.complete_io(&mut sock) {
                return Err(match e.kind() {
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
                        timed_out("TLS handshake: no answer in time")
                    }
                    io::ErrorKind::UnexpectedEof => io::Error::other("TLS handshake: closed by etcd"),
                    _ => io::Error::other(format!("TLS handshake: {e}")),
                });
            }
        }
        Ok(Conn::Tls(Box::new(StreamOwned::new(conn, sock))))
    }

    /// `e`, a failure on this connection, with the reason etcd gave if it
    /// sent a TLS alert. Under TLS 1.3 a client certificate etcd refuses
    /// (or lacks) is only known after the handshake: etcd sends an alert
    /// and closes, and the request fails reading the alert, or writing (a
    /// broken pipe) with the alert still unread.
    pub fn explain(&mut self, e: io::Error) -> io::Error {
        let Conn::Tls(s) = self else { return e };
        if let Some(tls) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
            return tls_error(tls);
        }
        if !matches!(
            e.kind(),
            io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset | io::ErrorKind::UnexpectedEof
        ) {
            return e;
        }
        let _ = s.sock.set_read_timeout(Some(Duration::from_millis(200)));
        for _ in 0..4 {
            match s.conn.read_tls(&mut s.sock) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    if let Err(tls) = s.conn.process_new_packets() {
                        return tls_error(&tls);
                    }
                }
            }
        }
        e
    }

    fn tcp(&self) -> &TcpStream {
        match self {
            Conn::Plain(s) => s,
            Conn::Tls(s) => s.get_ref(),
        }
    }

    /// Sets the socket's read timeout.
    pub fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        self.tcp().set_read_timeout(t)
    }

    /// Sets the socket's write timeout.
    pub fn set_write_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        self.tcp().set_write_timeout(t)
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Conn::Plain(s) => s.read(buf),
            // etcd may close without close_notify after its reply: an end,
            // as on plain TCP (a cut reply then fails to parse instead).
            Conn::Tls(s) => match s.read(buf) {
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(0),
                r => r,
            },
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Conn::Plain(s) => s.write(buf),
            Conn::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Conn::Plain(s) => s.flush(),
            Conn::Tls(s) => s.flush(),
        }
    }
}

/// A TLS failure after the handshake, in words.
fn tls_error(e: &rustls::Error) -> io::Error {
    match e {
        rustls::Error::AlertReceived(_) => io::Error::other(format!("TLS: {e} (etcd refused the session)")),
        _ => io::Error::other(format!("TLS: {e}")),
    }
}

fn timed_out(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, what.to_string())
}

/// Time left to `deadline`; an error once it has passed.
fn left(deadline: Instant) -> io::Result<Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(timed_out("no complete reply in time"));
    }
    Ok(left)
}

/// TCP to `addr` (`HOST:PORT`), trying each address it resolves to.
fn connect_tcp(addr: &str, timeout: Duration) -> io::Result<TcpStream> {
    let mut last = io::Error::new(io::ErrorKind::NotFound, format!("{addr}: no address"));
    for a in addr.to_socket_addrs()? {
        match TcpStream::connect_timeout(&a, timeout) {
            Ok(s) => return Ok(s),
            Err(e) => last = e,
        }
    }
    Err(last)
}
