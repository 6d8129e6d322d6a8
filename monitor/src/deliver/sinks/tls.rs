//! TLS client settings shared by the syslog and HTTP sinks: rustls on the ring provider, trusting
//! either the bundled webpki roots or the operator's CA bundle (`ca=`), with an optional client
//! certificate (`cert=` + `key=`). Everything is read and checked at start-up.

use std::{
    fmt,
    path::{Path, PathBuf},
    sync::Arc,
};

use rustls::{
    ClientConfig, RootCertStore,
    crypto::ring,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject as _},
};

/// Why the TLS settings of an output could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {what} {path}")]
    Read {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} {path} is not valid PEM")]
    Pem {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("{what} {path} holds no PEM certificate (expected `-----BEGIN CERTIFICATE-----`)")]
    NoCertificate { what: &'static str, path: PathBuf },
    #[error("CA bundle {path}: a certificate was rejected")]
    BadCa {
        path: PathBuf,
        #[source]
        source: rustls::Error,
    },
    #[error(
        "client key {path} holds no PEM private key (expected PKCS#8, PKCS#1 or SEC1, unencrypted)"
    )]
    NoKey { path: PathBuf },
    #[error("client certificate {cert} and key {key} cannot be used together")]
    ClientAuth {
        cert: PathBuf,
        key: PathBuf,
        #[source]
        source: rustls::Error,
    },
    #[error("the TLS library rejected the default protocol settings")]
    Setup {
        #[source]
        source: rustls::Error,
    },
}

/// A checked TLS client configuration and the files it came from.
#[derive(Clone)]
pub struct TlsConfig {
    ca: Option<PathBuf>,
    client_cert: Option<PathBuf>,
    config: Arc<ClientConfig>,
}

impl fmt::Debug for TlsConfig {
    // Paths only: the rustls config holds the client's private key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConfig")
            .field("ca", &self.ca)
            .field("client_cert", &self.client_cert)
            .finish_non_exhaustive()
    }
}

impl TlsConfig {
    /// Loads the CA bundle (or the webpki roots when `ca` is `None`) and the optional client
    /// certificate chain and key (`client` = (certificate PEM, key PEM)).
    pub fn load(ca: Option<&Path>, client: Option<(&Path, &Path)>) -> Result<Self, TlsError> {
        let roots = match ca {
            Some(path) => ca_roots(path)?,
            None => RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            },
        };
        let builder = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|source| TlsError::Setup { source })?
            .with_root_certificates(roots);
        let config = match client {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => {
                let chain = read_certs("client certificate", cert)?;
                let key_der = read_key(key)?;
                builder
                    .with_client_auth_cert(chain, key_der)
                    .map_err(|source| TlsError::ClientAuth {
                        cert: cert.to_owned(),
                        key: key.to_owned(),
                        source,
                    })?
            }
        };
        Ok(Self {
            ca: ca.map(Path::to_owned),
            client_cert: client.map(|(c, _)| c.to_owned()),
            config: Arc::new(config),
        })
    }

    /// The rustls configuration, for a raw TLS stream (no ALPN).
    pub fn client_config(&self) -> Arc<ClientConfig> {
        Arc::clone(&self.config)
    }

    /// A copy of the rustls configuration offering HTTP/1.1 via ALPN.
    pub fn http_client_config(&self) -> ClientConfig {
        let mut config = (*self.config).clone();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        config
    }
}

fn read_file(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_owned(),
        source,
    })
}

fn read_certs(what: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read_file(what, path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::Pem {
            what,
            path: path.to_owned(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            what,
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

fn ca_roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in read_certs("CA bundle", path)? {
        roots.add(cert).map_err(|source| TlsError::BadCa {
            path: path.to_owned(),
            source,
        })?;
    }
    Ok(roots)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read_file("client key", path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|source| match source {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::NoKey {
            path: path.to_owned(),
        },
        source => TlsError::Pem {
            what: "client key",
            path: path.to_owned(),
            source,
        },
    })
}

/// Whether a TLS failure is about certificates or trust, which retrying will not fix.
pub fn is_trust_failure(err: &rustls::Error) -> bool {
    use rustls::AlertDescription as Alert;
    match err {
        rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented => true,
        rustls::Error::AlertReceived(alert) => matches!(
            alert,
            Alert::BadCertificate
                | Alert::UnsupportedCertificate
                | Alert::CertificateRevoked
                | Alert::CertificateExpired
                | Alert::CertificateUnknown
                | Alert::UnknownCA
                | Alert::CertificateRequired
                | Alert::AccessDenied
        ),
        _ => false,
    }
}

/// Finds a rustls error in an error's source chain, looking inside the (possibly nested)
/// `io::Error` payloads that tokio-rustls and hyper wrap it in.
pub fn find_rustls_error<'a>(
    err: &'a (dyn std::error::Error + 'static),
) -> Option<&'a rustls::Error> {
    fn unwrap_io<'a>(mut e: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
        loop {
            if let Some(found) = e.downcast_ref::<rustls::Error>() {
                return Some(found);
            }
            // An io::Error's source() skips its payload, so look at the payload itself.
            e = e.downcast_ref::<std::io::Error>()?.get_ref()?;
        }
    }
    let mut current = Some(err);
    while let Some(e) = current {
        if let Some(found) = unwrap_io(e) {
            return Some(found);
        }
        current = e.source();
    }
    None
}
