//! A throwaway OpenLDAP slapd for the LDAP tests and benchmark: its own config and
//! database in a temp dir, free loopback ports, mdb with the memberof and refint
//! overlays, paged results unlimited for the idsync service account, optional TLS with a
//! CA and server certificate made by openssl, seeded by `slapadd`. Stopped by pid on drop
//! (and the port waited for), or killed on purpose with [`Slapd::kill`].

#![allow(dead_code)]

use std::fmt::Write as _;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const SUFFIX: &str = "dc=example,dc=com";
pub const PEOPLE: &str = "ou=people,dc=example,dc=com";
pub const GROUPS: &str = "ou=groups,dc=example,dc=com";
/// The non-root account idsync binds as (limits apply to it, unlike the rootdn).
pub const BIND_DN: &str = "cn=idsync,ou=services,dc=example,dc=com";
pub const BIND_PW: &str = "idsync-test-password";

/// Whether slapd and the LDAP tools are installed (scripts/test.sh installs them).
pub fn available() -> bool {
    ["/usr/sbin/slapd", "/usr/sbin/slapadd", "/usr/bin/ldapsearch", "/usr/bin/openssl"]
        .iter()
        .all(|p| Path::new(p).exists())
}

#[derive(Default)]
pub struct Options {
    /// LDIF entries below the suffix (the suffix, ou=people, ou=groups, ou=services and
    /// the service account are added for you).
    pub seed: String,
    /// Serve ldaps:// too and allow StartTLS, with a CA made for this server.
    pub tls: bool,
    /// Load the AD-like schema (user/group classes, sAMAccountName, userAccountControl,
    /// objectGUID).
    pub ad_schema: bool,
}

pub struct Slapd {
    pub dir: tempfile::TempDir,
    child: Option<Child>,
    pub port: u16,
    pub tls_port: Option<u16>,
}

/// The AD attributes idsync reads, under AD's own OIDs, enough for the dialect's tests.
const AD_SCHEMA: &str = r#"
attributetype ( 1.2.840.113556.1.4.221 NAME 'sAMAccountName'
  EQUALITY caseIgnoreMatch SUBSTR caseIgnoreSubstringsMatch
  SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE )
attributetype ( 1.2.840.113556.1.4.8 NAME 'userAccountControl'
  EQUALITY integerMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.27 SINGLE-VALUE )
attributetype ( 1.2.840.113556.1.4.2 NAME 'objectGUID'
  EQUALITY octetStringMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.40 SINGLE-VALUE )
objectclass ( 1.2.840.113556.1.5.9 NAME 'user' SUP top STRUCTURAL
  MUST cn MAY ( sn $ givenName $ mail $ displayName $ sAMAccountName $ userAccountControl $ objectGUID $ userPassword ) )
objectclass ( 1.2.840.113556.1.5.8 NAME 'group' SUP top STRUCTURAL
  MUST cn MAY ( member $ sAMAccountName $ objectGUID $ description ) )
"#;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn run(cmd: &mut Command, what: &str) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA and a certificate for 127.0.0.1 signed by it (rustls rejects a self-signed CA
/// certificate used as the server's own).
pub fn make_ca(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let ca_key = dir.join(format!("{name}.key"));
    let ca_pem = dir.join(format!("{name}.pem"));
    run(
        Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-days",
                "2",
            ])
            .arg("-subj")
            .arg(format!("/CN=idsync test {name}"))
            .arg("-keyout")
            .arg(&ca_key)
            .arg("-out")
            .arg(&ca_pem),
        "openssl CA",
    );
    (ca_pem, ca_key)
}

pub fn make_server_cert(dir: &Path, ca_pem: &Path, ca_key: &Path) -> (PathBuf, PathBuf) {
    let key = dir.join("server.key");
    let csr = dir.join("server.csr");
    let pem = dir.join("server.pem");
    let ext = dir.join("server.ext");
    std::fs::write(
        &ext,
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(
        Command::new("openssl")
            .args([
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-subj",
                "/CN=127.0.0.1",
            ])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&csr),
        "openssl server key",
    );
    run(
        Command::new("openssl")
            .args(["x509", "-req", "-days", "2", "-CAcreateserial"])
            .arg("-in")
            .arg(&csr)
            .arg("-CA")
            .arg(ca_pem)
            .arg("-CAkey")
            .arg(ca_key)
            .arg("-extfile")
            .arg(&ext)
            .arg("-out")
            .arg(&pem),
        "openssl sign",
    );
    (pem, key)
}

/// The entries every test directory has.
fn base_ldif() -> String {
    format!(
        "dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\ndc: example\no: Example\n\n\
         dn: {PEOPLE}\nobjectClass: organizationalUnit\nou: people\n\n\
         dn: {GROUPS}\nobjectClass: organizationalUnit\nou: groups\n\n\
         dn: ou=services,{SUFFIX}\nobjectClass: organizationalUnit\nou: services\n\n\
         dn: {BIND_DN}\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\ncn: idsync\nuserPassword: {BIND_PW}\n\n"
    )
}

impl Slapd {
    pub fn start(opts: Options) -> Slapd {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir(d.join("db")).unwrap();
        let mut conf = String::new();
        for s in ["core", "cosine", "inetorgperson", "nis"] {
            writeln!(conf, "include /etc/ldap/schema/{s}.schema").unwrap();
        }
        if opts.ad_schema {
            std::fs::write(d.join("ad.schema"), AD_SCHEMA).unwrap();
            writeln!(conf, "include {}", d.join("ad.schema").display()).unwrap();
        }
        writeln!(
            conf,
            "modulepath /usr/lib/ldap\nmoduleload back_mdb\nmoduleload memberof\nmoduleload refint\nmoduleload ppolicy"
        )
        .unwrap();
        writeln!(
            conf,
            "pidfile {}\nargsfile {}",
            d.join("slapd.pid").display(),
            d.join("slapd.args").display()
        )
        .unwrap();
        // Non-paged searches stop at 500 entries, as on a real server: idsync must page.
        writeln!(conf, "sizelimit 500").unwrap();
        let tls_port = if opts.tls {
            let (ca_pem, ca_key) = make_ca(d, "ca");
            let (pem, key) = make_server_cert(d, &ca_pem, &ca_key);
            writeln!(
                conf,
                "TLSCACertificateFile {}\nTLSCertificateFile {}\nTLSCertificateKeyFile {}",
                ca_pem.display(),
                pem.display(),
                key.display()
            )
            .unwrap();
            Some(free_port())
        } else {
            None
        };
        write!(
            conf,
            "database mdb\nmaxsize 4294967296\nsuffix \"{SUFFIX}\"\nrootdn \"cn=admin,{SUFFIX}\"\nrootpw admin-secret\ndirectory {db}\n\
             index objectClass eq\nindex uid,cn,mail eq\n\
             overlay memberof\noverlay refint\nrefint_attributes member uniqueMember\n\
             limits dn.exact=\"{BIND_DN}\" size.soft=500 size.hard=500 size.prtotal=unlimited\n\
             access to attrs=userPassword by self read by anonymous auth by * none\n\
             access to * by * read\n",
            db = d.join("db").display()
        )
        .unwrap();
        std::fs::write(d.join("slapd.conf"), &conf).unwrap();
        std::fs::write(d.join("seed.ldif"), format!("{}{}", base_ldif(), opts.seed)).unwrap();
        run(
            Command::new("/usr/sbin/slapadd")
                .arg("-q")
                .arg("-f")
                .arg(d.join("slapd.conf"))
                .arg("-l")
                .arg(d.join("seed.ldif")),
            "slapadd",
        );

        let port = free_port();
        let mut urls = format!("ldap://127.0.0.1:{port}/");
        if let Some(p) = tls_port {
            urls.push_str(&format!(" ldaps://127.0.0.1:{p}/"));
        }
        let child = Command::new("/usr/sbin/slapd")
            .args(["-d", "0", "-h", &urls, "-f"])
            .arg(d.join("slapd.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(d.join("slapd.log")).unwrap())
            .spawn()
            .expect("start slapd");
        let s = Slapd {
            dir,
            child: Some(child),
            port,
            tls_port,
        };
        for p in std::iter::once(port).chain(tls_port) {
            s.wait_listening(p);
        }
        s
    }

    fn wait_listening(&self, port: u16) {
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let start = Instant::now();
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(15),
                "slapd did not listen on {port}: {}",
                std::fs::read_to_string(self.dir.path().join("slapd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn url(&self) -> String {
        format!("ldap://127.0.0.1:{}", self.port)
    }

    pub fn ldaps_url(&self) -> String {
        format!("ldaps://127.0.0.1:{}", self.tls_port.expect("started with tls"))
    }

    /// The CA that signed the server's certificate.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills slapd at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops slapd by pid (SIGTERM, then SIGKILL after 10 s) and waits for its ports to
    /// be free again.
    pub fn stop(&mut self) {
        let Some(mut c) = self.child.take() else { return };
        let _ = Command::new("kill").arg("-TERM").arg(c.id().to_string()).status();
        let start = Instant::now();
        while c.try_wait().ok().flatten().is_none() {
            if start.elapsed() > Duration::from_secs(10) {
                let _ = c.kill();
                let _ = c.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        for p in std::iter::once(self.port).chain(self.tls_port) {
            let start = Instant::now();
            while TcpListener::bind(("127.0.0.1", p)).is_err() && start.elapsed() < Duration::from_secs(10) {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// `ldapsearch -x` as the service account with `-E pr=N/noprompt`; returns the number
    /// of entries.
    pub fn ldapsearch_count(&self, base: &str, filter: &str, page: u32) -> usize {
        let out = Command::new("ldapsearch")
            .args([
                "-x",
                "-LLL",
                "-o",
                "ldif-wrap=no",
                "-H",
                &self.url(),
                "-D",
                BIND_DN,
                "-w",
                BIND_PW,
                "-b",
                base,
            ])
            .arg("-E")
            .arg(format!("pr={page}/noprompt"))
            .arg(filter)
            .arg("1.1")
            .output()
            .expect("ldapsearch");
        assert!(out.status.success(), "ldapsearch: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.starts_with("dn: ") || l.starts_with("dn:: "))
            .count()
    }
}

impl Slapd {
    /// Applies an LDIF change record online as the rootdn (`ldapmodify`).
    pub fn modify(&self, ldif: &str) {
        use std::io::Write as _;
        let mut child = Command::new("ldapmodify")
            .args(["-x", "-H", &self.url(), "-D", &format!("cn=admin,{SUFFIX}"), "-w", "admin-secret"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("ldapmodify");
        child.stdin.take().unwrap().write_all(ldif.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "ldapmodify: {}", String::from_utf8_lossy(&out.stderr));
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// LDIF for one person under ou=people: `uid`, `cn`, `sn`, optional `mail`, and a
/// ppolicy lock when `locked`.
pub fn person(uid: &str, mail: Option<&str>, locked: bool) -> String {
    let mut s = format!("dn: uid={uid},{PEOPLE}\nobjectClass: inetOrgPerson\nuid: {uid}\ncn: {uid} Person\nsn: {uid}\n");
    if let Some(m) = mail {
        writeln!(s, "mail: {m}").unwrap();
    }
    if locked {
        s.push_str("pwdAccountLockedTime: 000001010000Z\n");
    }
    s.push('\n');
    s
}

/// LDIF for a groupOfNames under ou=groups. Members are uids of people, or `cn=…`
/// names of other groups.
pub fn group(cn: &str, members: &[&str]) -> String {
    let mut s = format!("dn: cn={cn},{GROUPS}\nobjectClass: groupOfNames\ncn: {cn}\n");
    if members.is_empty() {
        // groupOfNames needs a member; an empty group points at itself's parent, as
        // admins do, which is neither a person nor a group.
        writeln!(s, "member: {GROUPS}").unwrap();
    }
    for m in members {
        if let Some(g) = m.strip_prefix("cn=") {
            writeln!(s, "member: cn={g},{GROUPS}").unwrap();
        } else {
            writeln!(s, "member: uid={m},{PEOPLE}").unwrap();
        }
    }
    s.push('\n');
    s
}

/// LDIF for a posixGroup with memberUid values.
pub fn posix_group(cn: &str, gid: u32, uids: &[&str]) -> String {
    let mut s = format!("dn: cn={cn},{GROUPS}\nobjectClass: posixGroup\ncn: {cn}\ngidNumber: {gid}\n");
    for u in uids {
        writeln!(s, "memberUid: {u}").unwrap();
    }
    s.push('\n');
    s
}

/// `n` people `u00000`… with mail `u00000@example.com`, in one string.
pub fn many_people(n: usize) -> String {
    let mut s = String::with_capacity(n * 160);
    for i in 0..n {
        let uid = format!("u{i:06}");
        write!(
            s,
            "dn: uid={uid},{PEOPLE}\nobjectClass: inetOrgPerson\nuid: {uid}\ncn: User {i}\nsn: {i}\nmail: {uid}@example.com\n\n"
        )
        .unwrap();
    }
    s
}
