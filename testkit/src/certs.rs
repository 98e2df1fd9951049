//! A throwaway certificate authority for the TLS tests, made with the `openssl` command line
//! (`dev/test` installs it): a CA, server certificates it signs for `localhost` and 127.0.0.1,
//! and a second, unrelated CA to show that a wrong one is refused. Files live in a directory of
//! the test's own, removed when the authority is dropped.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A certificate authority and the directory holding its files.
pub struct Authority {
    dir: PathBuf,
    name: String,
}

/// A server certificate and its private key (PEM files), signed by an [`Authority`].
#[derive(Debug, Clone)]
pub struct Issued {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Authority {
    /// A new CA named `name` (its common name), in a fresh temporary directory.
    pub fn new(name: &str) -> Authority {
        let dir = std::env::temp_dir().join(format!("coupon-ca-{name}-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap();
        let authority = Authority {
            dir,
            name: name.to_owned(),
        };
        openssl(
            Command::new("openssl")
                .args([
                    "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                ])
                .args(["-subj", &format!("/CN={name}")])
                .args(["-addext", "basicConstraints=critical,CA:TRUE"])
                .args(["-addext", "keyUsage=critical,keyCertSign,cRLSign"])
                .arg("-keyout")
                .arg(authority.dir.join("ca.key"))
                .arg("-out")
                .arg(authority.ca()),
        );
        authority
    }

    /// The CA certificate (PEM): what a client trusts (`sslrootcert`, `REDIS_CA_FILE`,
    /// `ssl.ca.location`).
    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// The directory of this authority's files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A server certificate for `localhost` and 127.0.0.1 (common name `server`), signed by
    /// this CA. The key is readable by its owner only, as PostgreSQL requires.
    pub fn issue(&self, server: &str) -> Issued {
        let issued = Issued {
            cert: self.dir.join(format!("{server}.pem")),
            key: self.dir.join(format!("{server}.key")),
        };
        let request = self.dir.join(format!("{server}.csr"));
        openssl(
            Command::new("openssl")
                .args(["req", "-new", "-newkey", "rsa:2048", "-nodes"])
                .args(["-subj", &format!("/CN={server}")])
                .arg("-keyout")
                .arg(&issued.key)
                .arg("-out")
                .arg(&request),
        );
        let extensions = self.dir.join(format!("{server}.ext"));
        std::fs::write(
            &extensions,
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\n\
             extendedKeyUsage=serverAuth,clientAuth\n",
        )
        .unwrap();
        openssl(
            Command::new("openssl")
                .args(["x509", "-req", "-days", "2", "-CAcreateserial"])
                .arg("-in")
                .arg(&request)
                .arg("-CA")
                .arg(self.ca())
                .arg("-CAkey")
                .arg(self.dir.join("ca.key"))
                .arg("-extfile")
                .arg(&extensions)
                .arg("-out")
                .arg(&issued.cert),
        );
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&issued.key, std::fs::Permissions::from_mode(0o600)).unwrap();
        issued
    }

    /// The CA's common name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for Authority {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn openssl(command: &mut Command) {
    let output = command.output().expect("openssl (dev/test installs it)");
    assert!(
        output.status.success(),
        "openssl failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_issued_certificate_verifies_against_its_authority_only() {
        let authority = Authority::new("coupon-test-ca");
        let other = Authority::new("coupon-other-ca");
        let server = authority.issue("server");
        let verify = |ca: &Path| {
            Command::new("openssl")
                .arg("verify")
                .arg("-CAfile")
                .arg(ca)
                .arg(&server.cert)
                .output()
                .unwrap()
                .status
                .success()
        };
        assert!(verify(&authority.ca()));
        assert!(!verify(&other.ca()));
        let dir = authority.dir().to_owned();
        drop(authority);
        assert!(!dir.exists(), "removed with the authority");
    }
}
