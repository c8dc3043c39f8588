//! TLS to Postgres, as libpq's `sslmode` and `sslrootcert` say, over
//! rustls. tokio-postgres itself knows only `disable`, `prefer` and
//! `require`, and no `sslrootcert`: those settings are taken off the
//! connection string here and applied through the TLS connector.
//!
//! | sslmode | TLS | certificate checked |
//! | --- | --- | --- |
//! | `disable` | never | - |
//! | `prefer` (the default) | if the server offers it | no |
//! | `require` | always | no; the chain when `sslrootcert` is set (as libpq) |
//! | `verify-ca` | always | the chain |
//! | `verify-full` | always | the chain and the host name |
//!
//! The roots are `sslrootcert` when set, else Mozilla's and the system's.

use std::path::PathBuf;

use tokio_postgres_rustls::MakeRustlsConnect;

use crate::config::PostgresConfig;
use crate::tls::{self, Verify};

/// libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    pub const ALL: [SslMode; 5] = [
        SslMode::Disable,
        SslMode::Prefer,
        SslMode::Require,
        SslMode::VerifyCa,
        SslMode::VerifyFull,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    pub fn parse(s: &str) -> Option<SslMode> {
        SslMode::ALL.into_iter().find(|m| m.as_str() == s)
    }

    fn driver_mode(self) -> tokio_postgres::config::SslMode {
        match self {
            SslMode::Disable => tokio_postgres::config::SslMode::Disable,
            SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            _ => tokio_postgres::config::SslMode::Require,
        }
    }
}

/// A connection string without its TLS settings, and those settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    pub rest: String,
    pub sslmode: Option<String>,
    pub sslrootcert: Option<String>,
}

/// Takes `sslmode` and `sslrootcert` off a URL (`postgres://…?sslmode=…`)
/// or a key-value string (`host=… sslmode=…`).
pub fn split(url: &str) -> Split {
    let mut sslmode = None;
    let mut sslrootcert = None;
    let mut take = |key: &str, value: String| match key {
        "sslmode" => {
            sslmode = Some(value);
            true
        }
        "sslrootcert" => {
            sslrootcert = Some(value);
            true
        }
        _ => false,
    };
    let rest = if url.contains("://") {
        match url.split_once('?') {
            Some((base, query)) => {
                let kept: Vec<&str> = query
                    .split('&')
                    .filter(|pair| {
                        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                        let v = percent_encoding::percent_decode_str(v)
                            .decode_utf8_lossy()
                            .into_owned();
                        !take(k, v)
                    })
                    .collect();
                if kept.is_empty() {
                    base.to_string()
                } else {
                    format!("{base}?{}", kept.join("&"))
                }
            }
            None => url.to_string(),
        }
    } else {
        url.split_whitespace()
            .filter(|pair| {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                !take(k.trim(), v.trim_matches('\'').to_string())
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    Split {
        rest,
        sslmode,
        sslrootcert,
    }
}

/// The TLS settings in force: `postgres.sslmode` / `postgres.sslrootcert`
/// when set, else the connection string's, else `prefer`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgTls {
    pub mode: SslMode,
    pub root_cert: Option<PathBuf>,
}

impl PgTls {
    /// Reads the settings; an unknown `sslmode` is an error naming it.
    pub fn from_config(config: &PostgresConfig) -> Result<PgTls, String> {
        let split = split(config.url.expose());
        let mode_text = Some(config.sslmode.as_str())
            .filter(|m| !m.is_empty())
            .map(str::to_string)
            .or(split.sslmode);
        let mode = match mode_text {
            None => SslMode::Prefer,
            Some(text) => SslMode::parse(&text).ok_or_else(|| {
                let known: Vec<&str> = SslMode::ALL.iter().map(|m| m.as_str()).collect();
                format!("sslmode {text:?} is not one of {}", known.join(", "))
            })?,
        };
        let root_cert = Some(config.sslrootcert.clone())
            .filter(|p| !p.as_os_str().is_empty())
            .or(split.sslrootcert.map(PathBuf::from));
        Ok(PgTls { mode, root_cert })
    }

    /// What to check of the server's certificate.
    fn verify(&self) -> Verify {
        match self.mode {
            SslMode::VerifyFull => Verify::Full,
            SslMode::VerifyCa => Verify::Chain,
            SslMode::Require if self.root_cert.is_some() => Verify::Chain,
            _ => Verify::Nothing,
        }
    }

    /// Applies the mode to the driver's settings.
    pub fn apply(&self, pg: &mut tokio_postgres::Config) {
        pg.ssl_mode(self.mode.driver_mode());
    }

    /// The connector for tokio-postgres and the pool.
    pub fn connector(&self) -> Result<MakeRustlsConnect, tls::TlsError> {
        let roots = match &self.root_cert {
            Some(path) => tls::roots(false, false, std::slice::from_ref(path))?,
            None if self.verify() == Verify::Nothing => rustls::RootCertStore::empty(),
            None => tls::roots(true, true, &[] as &[PathBuf])?,
        };
        Ok(MakeRustlsConnect::new(tls::client_config(
            roots,
            self.verify(),
        )?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_tls_settings_off_urls_and_key_values() {
        assert_eq!(
            split(
                "postgres://u:p@h:5432/db?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem&application_name=x"
            ),
            Split {
                rest: "postgres://u:p@h:5432/db?application_name=x".into(),
                sslmode: Some("verify-full".into()),
                sslrootcert: Some("/etc/ca.pem".into()),
            }
        );
        assert_eq!(
            split("postgres://h/db?sslmode=require"),
            Split {
                rest: "postgres://h/db".into(),
                sslmode: Some("require".into()),
                sslrootcert: None,
            }
        );
        assert_eq!(
            split("host=h dbname=db sslmode=verify-ca sslrootcert='/ca.pem'"),
            Split {
                rest: "host=h dbname=db".into(),
                sslmode: Some("verify-ca".into()),
                sslrootcert: Some("/ca.pem".into()),
            }
        );
        assert_eq!(split("postgres://h/db").rest, "postgres://h/db");
    }

    #[test]
    fn require_with_a_root_certificate_checks_the_chain() {
        let tls = PgTls {
            mode: SslMode::Require,
            root_cert: Some("/ca.pem".into()),
        };
        assert_eq!(tls.verify(), Verify::Chain);
        let tls = PgTls {
            mode: SslMode::Require,
            root_cert: None,
        };
        assert_eq!(tls.verify(), Verify::Nothing);
    }
}
