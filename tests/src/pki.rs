//! A throwaway certificate authority for tests: a CA, a server certificate
//! for given addresses and a client certificate, written as PEM files
//! (readable by the daemon's unprivileged agent: they protect nothing).

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair};

/// Paths of the PEM files.
#[derive(Clone, Debug)]
pub struct Pki {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

fn write(dir: &Path, name: &str, pem: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, pem).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
    p
}

impl Pki {
    /// Issues the certificates into `dir`: the server's for `server_ips`.
    #[track_caller]
    pub fn issue(dir: &Path, server_ips: &[IpAddr]) -> Pki {
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "cronsun test CA");
        let ca_cert = ca.self_signed(&ca_key).expect("self-sign the CA");
        let leaf = |names: Vec<String>, cn: &str, usage: ExtendedKeyUsagePurpose| {
            let key = KeyPair::generate().expect("leaf key");
            let mut p = CertificateParams::new(names).expect("leaf params");
            p.distinguished_name.push(DnType::CommonName, cn);
            p.extended_key_usages = vec![usage];
            let cert = p.signed_by(&key, &ca_cert, &ca_key).expect("sign");
            (cert.pem(), key.serialize_pem())
        };
        let mut names: Vec<String> = server_ips.iter().map(ToString::to_string).collect();
        names.push("127.0.0.1".into());
        let (sc, sk) = leaf(names, "etcd", ExtendedKeyUsagePurpose::ServerAuth);
        let (cc, ck) = leaf(
            Vec::new(),
            "cronsun-node",
            ExtendedKeyUsagePurpose::ClientAuth,
        );
        Pki {
            ca: write(dir, "ca.pem", &ca_cert.pem()),
            server_cert: write(dir, "server.pem", &sc),
            server_key: write(dir, "server-key.pem", &sk),
            client_cert: write(dir, "client.pem", &cc),
            client_key: write(dir, "client-key.pem", &ck),
        }
    }
}
