//! The LDAP / Active Directory source (`kind = "ldap"`), on ldap3's async API.
//!
//! Two connections, one for people and one for groups (ldap://, ldap:// + StartTLS, or
//! ldaps://; certificates always verified against `ca_file` or the system roots), a
//! simple bind on each, then RFC 2696 paged searches for people and groups at once. AD's
//! ranged member lists are completed with follow-up reads, and AD's in-chain matching
//! rule can resolve nesting on the server. The raw entries go through
//! [`super::entries`] like the LDIF reader's: people are converted as each page arrives,
//! then [`super::entries::assemble`] resolves the groups.
//!
//! Invariant: the read is all or nothing. Any failed page, result code, lost connection
//! or timeout fails the whole read, never yields a smaller directory.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ldap3::asn1::{parse_tag, StructureTag, PL};
use ldap3::controls::{Control, ControlType, PagedResults, RawControl};
use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, LdapError, LdapResult, ResultEntry, Scope};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

use crate::config::{LdapDialect, SourceConfig};
use crate::model::DirectorySnapshot;
use crate::secret::Secret;

use super::entries::{self, Entry};
use super::SourceError;

/// AD's LDAP_MATCHING_RULE_IN_CHAIN: matches through any depth of nesting.
pub const IN_CHAIN_OID: &str = "1.2.840.113556.1.4.1941";

/// Upper bound on follow-up reads for one ranged attribute: AD hands out 1,500 values
/// per read, so this covers 15 million members while keeping the loop bounded.
const MAX_RANGE_READS: usize = 10_000;

/// What a connection needs beyond the config: where relative paths start and the bind
/// password (read by the caller from `bind_password_file` / `_env`).
pub struct LdapSource<'a> {
    cfg: &'a SourceConfig,
    url: String,
    ca_file: Option<PathBuf>,
    password: Option<&'a Secret>,
}

impl<'a> LdapSource<'a> {
    pub fn new(cfg: &'a SourceConfig, config_dir: &Path, password: Option<&'a Secret>) -> Result<LdapSource<'a>, SourceError> {
        let url = cfg
            .url
            .as_deref()
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .ok_or_else(|| SourceError::Other("source.url is required when source.kind = \"ldap\"".into()))?
            .to_string();
        let ca_file = cfg.ca_file.as_deref().map(|f| super::ldif::resolve_path(f, config_dir));
        Ok(LdapSource {
            cfg,
            url,
            ca_file,
            password,
        })
    }

    fn timeout(&self) -> Duration {
        self.cfg.timeout.0
    }

    fn err(&self, op: impl Into<String>, detail: impl Into<String>) -> SourceError {
        SourceError::Ldap {
            server: self.url.clone(),
            op: op.into(),
            detail: detail.into(),
        }
    }

    /// Connects and binds; the returned handle is ready for searches.
    async fn connect(&self) -> Result<Ldap, SourceError> {
        let ldaps = self.url.to_ascii_lowercase().starts_with("ldaps://");
        let mut settings = LdapConnSettings::new().set_conn_timeout(self.timeout());
        if ldaps || self.cfg.start_tls {
            let tls = tls_config(self.ca_file.as_deref()).map_err(|d| self.err("TLS set-up", d))?;
            settings = settings.set_config(tls).set_starttls(self.cfg.start_tls && !ldaps);
        }
        let (conn, mut ldap) = LdapConnAsync::with_settings(settings, &self.url)
            .await
            .map_err(|e| self.err("connect", self.describe(&e)))?;
        ldap3::drive!(conn);
        let dn = self.cfg.bind_dn.as_deref().map(str::trim).unwrap_or("");
        if !dn.is_empty() {
            let pw = self.password.map(Secret::expose).unwrap_or("");
            if pw.is_empty() {
                // An empty password is an unauthenticated bind (RFC 4513 §5.1.2): it
                // "succeeds" without checking anything, so refuse it.
                return Err(self.err(
                    format!("bind as {dn}"),
                    "the bind password is empty; put it in bind_password_file or bind_password_env",
                ));
            }
            let res = ldap
                .with_timeout(self.timeout())
                .simple_bind(dn, pw)
                .await
                .map_err(|e| self.err(format!("bind as {dn}"), self.describe(&e)))?;
            if res.rc != 0 {
                return Err(self.err(format!("bind as {dn}"), result_message(&res)));
            }
        }
        Ok(ldap)
    }

    /// Connects and binds, then disconnects: what `check-config --connect` reports.
    pub async fn check_bind(&self) -> Result<String, SourceError> {
        let mut ldap = self.connect().await?;
        let _ = ldap.unbind().await;
        Ok(match self.cfg.bind_dn.as_deref().map(str::trim) {
            Some(dn) if !dn.is_empty() => format!("bind OK as {dn} on {}", self.url),
            _ => format!("anonymous bind OK on {}", self.url),
        })
    }

    /// Reads people and groups and builds the snapshot; all or nothing.
    pub async fn read(&self) -> Result<DirectorySnapshot, SourceError> {
        let (ucfg, gcfg) = (&self.cfg.users, &self.cfg.groups);
        let user_attrs = user_attributes(self.cfg);
        let group_attrs = group_attributes(self.cfg);
        let group_base = groups_base(&gcfg.base, &ucfg.base);
        // People and groups at once, on two connections: OpenLDAP keeps one paged search
        // per connection and rejects a second one's cookie.
        let (people_conn, ldap) = tokio::try_join!(self.connect(), self.connect())?;
        let dialect = self.cfg.dialect;
        let (people, mut groups) = tokio::try_join!(
            async {
                let mut c = people_conn.clone();
                // Each person is converted as its page arrives, while the server
                // prepares the next page, rather than all at the end.
                let mut people = entries::People::default();
                let read = self
                    .paged_search(people_conn, &ucfg.base, &ucfg.filter, &user_attrs, "people", |e| {
                        people.push(e, ucfg, dialect)
                    })
                    .await;
                let _ = c.unbind().await;
                read.map(|()| people)
            },
            async {
                let mut groups = Vec::new();
                self.paged_search(ldap.clone(), &group_base, &gcfg.filter, &group_attrs, "groups", |e| {
                    groups.push(e);
                    Ok(())
                })
                .await
                .map(|()| groups)
            },
        )?;
        let mut ldap = ldap;
        if dialect == LdapDialect::ActiveDirectory {
            if gcfg.in_chain {
                for g in &mut groups {
                    self.resolve_in_chain(ldap.clone(), g).await?;
                }
            } else {
                for g in &mut groups {
                    self.complete_ranges(&mut ldap, g).await?;
                }
            }
        }
        let _ = ldap.unbind().await;
        let (ucfg, gcfg) = (ucfg.clone(), gcfg.clone());
        // People were converted on the async workers a page (page_size entries) at a
        // time; resolving every group at once is longer CPU work, so it runs apart.
        tokio::task::spawn_blocking(move || entries::assemble("ldap", people, groups, &ucfg, &gcfg))
            .await
            .map_err(|e| SourceError::Other(format!("building the directory snapshot stopped unexpectedly: {e}")))?
    }

    /// Every entry under `base` matching `filter`, page by page (RFC 2696), handed to
    /// `sink` in order. Fails on any page that does not end in success, and on the first
    /// error from `sink`.
    ///
    /// The next page is requested as soon as a page's cookie arrives, and the page just
    /// received is decoded while the server prepares the next one.
    async fn paged_search(
        &self,
        ldap: Ldap,
        base: &str,
        filter: &str,
        attrs: &[String],
        what: &str,
        mut sink: impl FnMut(Entry) -> Result<(), SourceError>,
    ) -> Result<(), SourceError> {
        let op = || format!("search for {what} under \"{base}\" with {filter}");
        let page_size = i32::try_from(self.cfg.page_size).unwrap_or(i32::MAX);
        let timeout = self.timeout();
        let fetch = |cookie: Vec<u8>| {
            let mut ldap = ldap.clone();
            let (base, filter, attrs) = (base.to_string(), filter.to_string(), attrs.to_vec());
            AbortOnDrop(tokio::spawn(async move {
                let ctrl: RawControl = PagedResults { size: page_size, cookie }.into();
                ldap.with_timeout(timeout)
                    .with_controls(ctrl)
                    .search(&base, Scope::Subtree, &filter, &attrs)
                    .await
            }))
        };
        let mut page = 0u64;
        let mut next = Some(fetch(Vec::new()));
        while let Some(mut in_flight) = next.take() {
            page += 1;
            let res = (&mut in_flight.0)
                .await
                .map_err(|e| self.err(op(), format!("page {page}: the search task stopped unexpectedly ({e})")))?
                .map_err(|e| self.err(op(), format!("page {page}: {}", self.describe(&e))))?;
            let (items, result) = (res.0, res.1);
            if result.rc != 0 {
                return Err(self.err(op(), format!("page {page}: {}", result_message(&result))));
            }
            match next_cookie(&result.ctrls) {
                Some(c) if !c.is_empty() => next = Some(fetch(c)),
                Some(_) => {}
                // A server without paged results answered everything at once (it would
                // have said sizeLimitExceeded otherwise): that is complete.
                None if page == 1 => {}
                None => return Err(self.err(op(), format!("page {page}: the server stopped returning the paging control"))),
            }
            for item in items {
                if item.is_ref() || item.is_intermediate() {
                    // Continuation references (AD's other domains) are not followed.
                    continue;
                }
                let entry = decode_entry(item).ok_or_else(|| self.err(op(), format!("page {page}: the server sent a malformed entry")))?;
                sink(entry)?;
            }
        }
        Ok(())
    }

    /// Completes AD's ranged member lists: `member;range=0-1499` is followed by reads of
    /// `member;range=1500-*` until the server answers with the last chunk (`…-*`). The
    /// values are merged into the plain attribute.
    async fn complete_ranges(&self, ldap: &mut Ldap, g: &mut Entry) -> Result<(), SourceError> {
        let pending: Vec<String> = g.attrs.keys().filter(|k| entries::parse_range_attr(k).is_some()).cloned().collect();
        for key in pending {
            let Some(values) = g.attrs.remove(&key) else { continue };
            let Some((base, lo, hi)) = entries::parse_range_attr(&key) else {
                continue;
            };
            let base = base.to_ascii_lowercase();
            let mut merged = values;
            let mut next = match range_step(lo, hi) {
                RangeStep::Done => None,
                RangeStep::More(n) => Some(n),
            };
            let op = || format!("range read of {base} on {}", g.dn);
            let mut reads = 0usize;
            while let Some(from) = next {
                reads += 1;
                if reads > MAX_RANGE_READS {
                    return Err(self.err(op(), "the server kept returning more ranges; giving up"));
                }
                let request = [format!("{base};range={from}-*")];
                let res = ldap
                    .with_timeout(self.timeout())
                    .search(&g.dn, Scope::Base, "(objectClass=*)", &request)
                    .await
                    .map_err(|e| self.err(op(), self.describe(&e)))?;
                if res.1.rc != 0 {
                    return Err(self.err(op(), result_message(&res.1)));
                }
                let entry = res
                    .0
                    .into_iter()
                    .filter(|i| !i.is_ref() && !i.is_intermediate())
                    .find_map(decode_entry)
                    .ok_or_else(|| self.err(op(), "the group vanished during the read"))?;
                let chunk = entry
                    .attrs
                    .into_iter()
                    .find_map(|(k, vs)| {
                        let (b, lo, hi) = entries::parse_range_attr(&k)?;
                        b.eq_ignore_ascii_case(&base).then_some((lo, hi, vs))
                    })
                    .ok_or_else(|| self.err(op(), format!("no {base};range=… in the answer for range {from}-*")))?;
                let (lo, hi, vs) = chunk;
                if lo != from {
                    return Err(self.err(op(), format!("asked for values from {from}, got a range starting at {lo}")));
                }
                merged.extend(vs);
                next = match range_step(lo, hi) {
                    RangeStep::Done => None,
                    RangeStep::More(n) => Some(n),
                };
            }
            g.attrs.entry(base).or_default().extend(merged);
        }
        Ok(())
    }

    /// Replaces a group's member list with the people AD says are in it at any depth
    /// (`memberOf:1.2.840.113556.1.4.1941:=DN`), one paged search per group.
    async fn resolve_in_chain(&self, ldap: Ldap, g: &mut Entry) -> Result<(), SourceError> {
        let ucfg = &self.cfg.users;
        let filter = in_chain_filter(&ucfg.filter, &g.dn);
        // "1.1": no attributes, only the DNs.
        let mut found = Vec::new();
        self.paged_search(ldap, &ucfg.base, &filter, &["1.1".to_string()], "members (in chain)", |e| {
            found.push(e.dn.into_bytes());
            Ok(())
        })
        .await?;
        g.attrs.retain(|k, _| entries::parse_range_attr(k).is_none() && !is_member_key(k));
        g.attrs.insert("member".into(), found);
        Ok(())
    }

    /// A human explanation of an ldap3 error: TLS, timeout, refused, closed, result codes.
    fn describe(&self, e: &LdapError) -> String {
        match e {
            LdapError::Timeout { .. } => format!("no answer within {} (source.timeout)", self.cfg.timeout),
            LdapError::Io { source } => {
                if let Some(tls) = source.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) {
                    return self.tls_message(tls);
                }
                match source.kind() {
                    std::io::ErrorKind::ConnectionRefused => {
                        "connection refused: is the server running, and are the url's host and port right?".into()
                    }
                    std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::BrokenPipe => {
                        format!("the connection was closed by the server ({source})")
                    }
                    _ => format!("network error: {source}"),
                }
            }
            LdapError::Rustls { source } => self.tls_message(source),
            LdapError::DNSName { .. } => "the url's host is not a valid name for a TLS certificate".into(),
            LdapError::LdapResult { result } => result_message(result),
            LdapError::EndOfStream | LdapError::ResultRecv { .. } | LdapError::OpSend { .. } | LdapError::IdScrubSend { .. } => {
                "the connection was closed before the answer was complete".into()
            }
            LdapError::FilterParsing => "the filter is not a valid LDAP filter (RFC 4515), like \"(objectClass=person)\"".into(),
            LdapError::UrlParsing { source } => format!("invalid url: {source}"),
            other => other.to_string(),
        }
    }

    fn tls_message(&self, e: &rustls::Error) -> String {
        use rustls::CertificateError as C;
        let hint = match &self.ca_file {
            Some(p) => format!("ca_file {} does not hold the CA that signed the server's certificate", p.display()),
            None => "set source.ca_file to the CA certificate (PEM) that signed the server's certificate".into(),
        };
        match e {
            rustls::Error::InvalidCertificate(C::UnknownIssuer | C::BadSignature) => {
                format!("TLS: certificate not trusted ({e}); {hint}")
            }
            rustls::Error::InvalidCertificate(C::NotValidForName | C::NotValidForNameContext { .. }) => {
                format!("TLS: the server's certificate is not valid for the url's host ({e}); use the name (or IP) the certificate was issued for")
            }
            rustls::Error::InvalidCertificate(C::Expired | C::ExpiredContext { .. } | C::NotValidYet | C::NotValidYetContext { .. }) => {
                format!("TLS: the server's certificate is outside its validity period ({e})")
            }
            rustls::Error::InvalidCertificate(_) => format!("TLS: the server's certificate was rejected ({e}); {hint}"),
            _ => format!("TLS handshake failed: {e}"),
        }
    }
}

/// A spawned request that is cancelled when the read gives up on it (an error elsewhere
/// must not leave a search running on the server).
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Builds the TLS client config: the CA file's certificates or the system roots, the
/// aws-lc-rs provider named explicitly (reqwest uses the same one, so no process-wide
/// default is needed), verification always on.
fn tls_config(ca_file: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let bytes = std::fs::read(path).map_err(|e| format!("cannot read ca_file {}: {e}", path.display()))?;
            for cert in CertificateDer::pem_slice_iter(&bytes) {
                let cert = cert.map_err(|e| format!("ca_file {}: not a PEM certificate bundle ({e})", path.display()))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("ca_file {}: unusable certificate ({e})", path.display()))?;
            }
            if roots.is_empty() {
                return Err(format!("ca_file {} holds no PEM certificate", path.display()));
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for cert in found.certs {
                // One bad system certificate should not disable the rest.
                let _ = roots.add(cert);
            }
            if roots.is_empty() {
                return Err("no system CA certificates found; set source.ca_file to the directory's CA (PEM)".into());
            }
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS set-up: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The attributes asked for in the people search.
fn user_attributes(cfg: &SourceConfig) -> Vec<String> {
    let u = &cfg.users;
    let flag = match cfg.dialect {
        LdapDialect::Openldap => "pwdAccountLockedTime",
        LdapDialect::Ds389 => "nsAccountLock",
        LdapDialect::ActiveDirectory => "userAccountControl",
    };
    unique(vec![
        u.email_attr.clone(),
        u.username_attr.clone(),
        u.name_attr.clone(),
        u.anchor_attr.clone(),
        flag.to_string(),
    ])
}

/// The attributes asked for in the groups search: no member lists when AD resolves
/// membership in chain (they could be huge and are not used).
fn group_attributes(cfg: &SourceConfig) -> Vec<String> {
    let g = &cfg.groups;
    let mut attrs = vec![g.name_attr.clone(), cfg.users.anchor_attr.clone()];
    if !(cfg.dialect == LdapDialect::ActiveDirectory && g.in_chain) {
        attrs.extend(entries::member_attrs(g));
    }
    unique(attrs)
}

fn unique(mut v: Vec<String>) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    v.retain(|a| !a.trim().is_empty() && seen.insert(a.to_ascii_lowercase()));
    v
}

fn is_member_key(k: &str) -> bool {
    matches!(k, "member" | "uniquemember" | "memberuid")
}

/// The groups search base: `groups.base`, or when empty the domain part (`dc=…`) of the
/// people base, since an empty base names no entry on most servers.
pub fn groups_base(groups_base: &str, users_base: &str) -> String {
    if !groups_base.trim().is_empty() {
        return groups_base.trim().to_string();
    }
    let parts: Vec<&str> = users_base.split(',').map(str::trim).collect();
    match parts.iter().position(|p| p.to_ascii_lowercase().starts_with("dc=")) {
        Some(i) => parts[i..].join(","),
        None => users_base.trim().to_string(),
    }
}

/// The filter for AD's in-chain membership: people matching `users_filter` that are in
/// `group_dn` at any depth. The DN is escaped as an RFC 4515 value.
pub fn in_chain_filter(users_filter: &str, group_dn: &str) -> String {
    let f = users_filter.trim();
    let f = if f.starts_with('(') { f.to_string() } else { format!("({f})") };
    format!("(&{f}(memberOf:{IN_CHAIN_OID}:={}))", ldap3::ldap_escape(group_dn))
}

/// What follows a ranged chunk `lo-hi`.
#[derive(Debug, PartialEq, Eq)]
pub enum RangeStep {
    /// The last chunk (`lo-*`).
    Done,
    /// Ask for `next-*`.
    More(u32),
}

pub fn range_step(lo: u32, hi: Option<u32>) -> RangeStep {
    match hi {
        None => RangeStep::Done,
        // parse_range_attr guarantees hi >= lo, so this always moves forward.
        Some(hi) => match hi.checked_add(1) {
            Some(n) if n > lo => RangeStep::More(n),
            _ => RangeStep::Done,
        },
    }
}

/// The paging cookie of a search result: `None` when the control is absent, `Some(empty)`
/// on the last page. A malformed control counts as absent (and fails the read later).
fn next_cookie(ctrls: &[Control]) -> Option<Vec<u8>> {
    ctrls.iter().find_map(|c| match c {
        Control(Some(ControlType::PagedResults), raw) => parse_paged_cookie(raw.val.as_deref()?),
        _ => None,
    })
}

/// The cookie of a paged-results response value `SEQUENCE { size INTEGER, cookie OCTET
/// STRING }`, parsed without panicking on bad input (ldap3's parser would).
pub fn parse_paged_cookie(val: &[u8]) -> Option<Vec<u8>> {
    let (_, tag) = parse_tag(val).ok()?;
    let PL::C(parts) = tag.payload else { return None };
    match parts.get(1)?.payload {
        PL::P(ref cookie) => Some(cookie.clone()),
        PL::C(_) => None,
    }
}

/// A search result entry (`SEQUENCE { dn, SEQUENCE OF { type, SET OF value } }`) as an
/// [`Entry`], keeping values as bytes; `None` when it is malformed.
fn decode_entry(item: ResultEntry) -> Option<Entry> {
    let StructureTag {
        id: 4,
        payload: PL::C(parts),
        ..
    } = item.0
    else {
        return None;
    };
    let mut parts = parts.into_iter();
    let dn = match parts.next()?.payload {
        PL::P(b) => String::from_utf8(b).ok()?,
        PL::C(_) => return None,
    };
    let mut entry = Entry::new(dn);
    let PL::C(attrs) = parts.next()?.payload else { return None };
    for attr in attrs {
        let PL::C(pair) = attr.payload else { return None };
        let mut pair = pair.into_iter();
        let mut key = match pair.next()?.payload {
            PL::P(b) => String::from_utf8(b).ok()?,
            PL::C(_) => return None,
        };
        // In place: no second allocation per attribute.
        key.make_ascii_lowercase();
        let PL::C(vals) = pair.next()?.payload else { return None };
        let mut values = Vec::with_capacity(vals.len());
        for v in vals {
            match v.payload {
                PL::P(b) => values.push(b),
                PL::C(_) => return None,
            }
        }
        match entry.attrs.get_mut(&key) {
            Some(existing) => existing.extend(values),
            None => {
                entry.attrs.insert(key, values);
            }
        }
    }
    Some(entry)
}

/// An LDAP result code as a sentence, with what to do for the common ones.
fn result_message(r: &LdapResult) -> String {
    let text = r.text.trim();
    let server_says = if text.is_empty() {
        String::new()
    } else {
        format!(" (server: {text})")
    };
    let what = match r.rc {
        49 => "invalid credentials: check bind_dn and the password in bind_password_file / bind_password_env".to_string(),
        32 => format!(
            "no such object: the search base does not exist{}",
            if r.matched.is_empty() {
                String::new()
            } else {
                format!(" (the server knows \"{}\")", r.matched)
            }
        ),
        4 => "size limit exceeded: the server cut the answer short; allow the bind DN unlimited paged results (OpenLDAP: limits … size.prtotal=unlimited)".into(),
        3 => "time limit exceeded on the server".into(),
        13 => "the server requires TLS: use an ldaps:// url or start_tls = true".into(),
        50 => "insufficient access rights: the bind DN may not read these entries".into(),
        51 | 52 => "the server is busy or unavailable; try again later".into(),
        53 => "the server is unwilling to perform the operation".into(),
        8 => "the server requires a stronger authentication (strongAuthRequired): use TLS".into(),
        1 => "operations error (AD says this when the bind did not succeed: check bind_dn)".into(),
        rc => format!("result code {rc}"),
    };
    format!("{what}{server_says}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A paged-results response value as a server sends it, built with ldap3's encoder.
    fn paged_value(cookie: &[u8]) -> Vec<u8> {
        let raw: RawControl = PagedResults {
            size: 0,
            cookie: cookie.to_vec(),
        }
        .into();
        raw.val.unwrap()
    }

    #[test]
    fn paging_cookies_parse_and_garbage_does_not_panic() {
        assert_eq!(parse_paged_cookie(&paged_value(b"abc")), Some(b"abc".to_vec()));
        assert_eq!(parse_paged_cookie(&paged_value(b"")), Some(vec![]));
        for bad in [&b""[..], &[0x30], &[0x30, 0x03, 0x02, 0x01, 0x05], &[0x04, 0x01, 0x41], &[0xff; 8]] {
            assert_eq!(parse_paged_cookie(bad), None, "{bad:?}");
        }
        let ctrl = |val: Option<Vec<u8>>| {
            Control(
                Some(ControlType::PagedResults),
                RawControl {
                    ctype: "1.2.840.113556.1.4.319".into(),
                    crit: false,
                    val,
                },
            )
        };
        assert_eq!(next_cookie(&[ctrl(Some(paged_value(b"k")))]), Some(b"k".to_vec()));
        assert_eq!(next_cookie(&[ctrl(None)]), None, "a control without a value is no cookie");
        assert_eq!(next_cookie(&[]), None);
    }

    #[test]
    fn in_chain_filter_wraps_the_user_filter_and_escapes_the_dn() {
        assert_eq!(
            in_chain_filter("(objectClass=user)", "CN=ML,OU=Groups,DC=corp,DC=example"),
            "(&(objectClass=user)(memberOf:1.2.840.113556.1.4.1941:=CN=ML,OU=Groups,DC=corp,DC=example))"
        );
        assert_eq!(
            in_chain_filter(" objectClass=person ", "CN=a"),
            "(&(objectClass=person)(memberOf:1.2.840.113556.1.4.1941:=CN=a))"
        );
        // RFC 4515: \ * ( ) and NUL in a value are written as \XX.
        assert_eq!(
            in_chain_filter("(objectClass=user)", "CN=Smith\\, J (ops*),DC=x"),
            "(&(objectClass=user)(memberOf:1.2.840.113556.1.4.1941:=CN=Smith\\5c, J \\28ops\\2a\\29,DC=x))"
        );
        assert!(ldap3::parse_filter(in_chain_filter("(objectClass=user)", "CN=Smith\\, J (ops*),DC=x")).is_ok());
    }

    #[test]
    fn range_steps_move_forward_and_end_on_star() {
        assert_eq!(range_step(0, Some(1499)), RangeStep::More(1500));
        assert_eq!(range_step(1500, Some(2999)), RangeStep::More(3000));
        assert_eq!(range_step(3000, None), RangeStep::Done);
        assert_eq!(range_step(7, Some(7)), RangeStep::More(8));
        assert_eq!(range_step(0, Some(u32::MAX)), RangeStep::Done, "no overflow, no loop");
        // What a follow-up request looks like after each chunk the server names.
        let after = |name: &str| match entries::parse_range_attr(name) {
            Some((base, lo, hi)) => match range_step(lo, hi) {
                RangeStep::More(n) => Some(format!("{base};range={n}-*")),
                RangeStep::Done => None,
            },
            None => None,
        };
        assert_eq!(after("member;range=0-1499").as_deref(), Some("member;range=1500-*"));
        assert_eq!(after("member;range=1500-*"), None);
        assert_eq!(after("member"), None);
    }

    #[test]
    fn groups_base_defaults_to_the_domain_of_the_people_base() {
        assert_eq!(groups_base("ou=groups,dc=x", "ou=people,dc=y"), "ou=groups,dc=x");
        assert_eq!(groups_base("", "ou=people, dc=example,dc=com"), "dc=example,dc=com");
        assert_eq!(groups_base("  ", "OU=Staff,DC=corp,DC=example"), "DC=corp,DC=example");
        assert_eq!(groups_base("", "o=company"), "o=company");
    }

    fn cfg(toml_src: &str) -> SourceConfig {
        toml::from_str(toml_src).unwrap()
    }

    #[test]
    fn requested_attributes_follow_the_config_and_dialect() {
        let c = cfg("kind = \"ldap\"\n[users]\nbase = \"dc=x\"\n");
        assert_eq!(user_attributes(&c), vec!["mail", "uid", "cn", "entryUUID", "pwdAccountLockedTime"]);
        assert_eq!(group_attributes(&c), vec!["cn", "entryUUID", "member", "uniquemember"]);
        let ad = cfg(
            "kind = \"ldap\"\ndialect = \"active-directory\"\n[users]\nusername_attr = \"sAMAccountName\"\nanchor_attr = \"objectGUID\"\nname_attr = \"displayName\"\n[groups]\nname_attr = \"cn\"\nin_chain = true\n",
        );
        assert_eq!(
            user_attributes(&ad),
            vec!["mail", "sAMAccountName", "displayName", "objectGUID", "userAccountControl"]
        );
        assert_eq!(group_attributes(&ad), vec!["cn", "objectGUID"], "in-chain reads no member lists");
        let ds = cfg("kind = \"ldap\"\ndialect = \"389ds\"\n[groups]\nmember_attr = \"memberUid\"\n");
        assert!(user_attributes(&ds).contains(&"nsAccountLock".to_string()));
        assert_eq!(group_attributes(&ds), vec!["cn", "entryUUID", "memberuid"]);
    }

    #[test]
    fn result_codes_read_as_advice() {
        let r = |rc: u32, text: &str| LdapResult {
            rc,
            matched: String::new(),
            text: text.into(),
            refs: vec![],
            ctrls: vec![],
        };
        assert!(result_message(&r(49, "")).starts_with("invalid credentials"));
        assert!(result_message(&r(4, "")).contains("size.prtotal"));
        assert!(result_message(&r(13, "")).contains("start_tls"));
        assert_eq!(result_message(&r(80, "boom")), "result code 80 (server: boom)");
    }

    #[test]
    fn malformed_entries_are_rejected_not_panicked_on() {
        let prim = |id: u64, b: &[u8]| StructureTag {
            class: ldap3::asn1::TagClass::Universal,
            id,
            payload: PL::P(b.to_vec()),
        };
        let cons = |id: u64, v: Vec<StructureTag>| StructureTag {
            class: ldap3::asn1::TagClass::Universal,
            id,
            payload: PL::C(v),
        };
        let good = cons(
            4,
            vec![
                prim(4, b"uid=a,dc=x"),
                cons(
                    16,
                    vec![
                        cons(16, vec![prim(4, b"Mail"), cons(17, vec![prim(4, b"a@x.com")])]),
                        cons(16, vec![prim(4, b"objectGUID"), cons(17, vec![prim(4, &[0xff, 0x00])])]),
                    ],
                ),
            ],
        );
        let e = decode_entry(ResultEntry::new(good)).unwrap();
        assert_eq!(e.dn, "uid=a,dc=x");
        assert_eq!(e.first_str("mail").as_deref(), Some("a@x.com"));
        assert_eq!(e.values("objectguid"), &[vec![0xff, 0x00]]);
        assert!(decode_entry(ResultEntry::new(prim(4, b"x"))).is_none());
        assert!(decode_entry(ResultEntry::new(cons(4, vec![]))).is_none());
        assert!(decode_entry(ResultEntry::new(cons(4, vec![prim(4, b"dn"), prim(4, b"x")]))).is_none());
        assert!(decode_entry(ResultEntry::new(cons(4, vec![prim(4, &[0xff]), cons(16, vec![])]))).is_none());
    }
}
