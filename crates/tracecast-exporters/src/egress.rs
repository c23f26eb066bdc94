//! What a destination may reach: the egress policy, and the one place every outbound HTTP
//! client is built ([`http_client`]) so that the policy applies to all of them.
//!
//! A destination's URL fields (webhook `url`, ClickHouse `host`, S3 `endpoint`, every
//! `baseUrl`...) are chosen by whoever manages destinations, so without a policy they could
//! point tracecast at cloud metadata services (169.254.169.254) or at internal services and read
//! their answers back through test-connection messages and `last_error`.
//!
//! The policy is checked on the address actually connected to, at two points:
//! - names are resolved by [`EgressResolver`] (reqwest's `dns_resolver` hook), which drops
//!   denied addresses before any connection is attempted, so a name that resolves (or is
//!   rebound) to a denied address cannot be reached;
//! - URLs with a literal IP (including forms such as `http://2130706433/`, which the URL
//!   parser normalises to `127.0.0.1`) never reach the resolver: [`EgressLayer`], a connector
//!   layer, checks them before connecting, and checks the peer address of every established
//!   connection as a last line of defence.
//!
//! Redirects are never followed ([`redirect_refused`]). Sources: reqwest 0.12.28
//! `src/redirect.rs` (`remove_sensitive_headers` drops only `Authorization`, `Cookie`,
//! `Proxy-Authorization` and `WWW-Authenticate` on a cross-host redirect, so `api-key`,
//! `x-sentry-auth`, `X-ClickHouse-Key` or a webhook's custom headers would follow) and
//! tower-http 0.6 `src/follow_redirect/mod.rs` (which reqwest uses: a 301/302 to a POST and
//! any 303 become a GET without a body; it consults the policy only for redirect statuses with a
//! valid `Location`, so S3's `301 PermanentRedirect` without one still reaches the exporter).
//!
//! Link-local, cloud metadata, unspecified, multicast, broadcast and reserved addresses are
//! always denied; loopback and private ranges are allowed unless `allow_private = false`. The
//! operator's `allow` list (host names, `*.suffix` names, IPs and CIDRs) wins over both.
//!
//! Address ranges: the IANA IPv4 and IPv6 Special-Purpose Address Registries (RFC 6890,
//! RFC 6598 for 100.64.0.0/10, RFC 4193 for fc00::/7, RFC 6052 for 64:ff9b::/96); metadata
//! endpoints from the providers' documentation: AWS IMDS 169.254.169.254 and fd00:ec2::254
//! (docs.aws.amazon.com/AWSEC2/latest/UserGuide/instancedata-data-retrieval.html; aws-sdk-js v2
//! `lib/metadata_service/endpoint.js`), Alibaba
//! Cloud 100.100.100.200, Oracle Cloud 192.0.0.192 (GCP and Azure use 169.254.169.254).

use std::fmt;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::client::legacy::connect::{Connection, HttpInfo};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use thiserror::Error;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The `[egress]` settings as an operator writes them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EgressSettings {
    /// Allow loopback (127.0.0.0/8, ::1) and private addresses (10/8, 172.16/12, 192.168/16,
    /// 100.64/10, fc00::/7). On by default for single-team installs; multi-tenant installs
    /// should turn it off.
    pub allow_private: bool,
    /// Host names (`collector.internal`, `*.corp.example`), IPs and CIDRs (`10.1.0.0/16`)
    /// that may always be reached, whatever the rules above say.
    pub allow: Vec<String>,
}

impl Default for EgressSettings {
    fn default() -> Self {
        EgressSettings {
            allow_private: true,
            allow: Vec::new(),
        }
    }
}

/// An `allow` entry that is neither a host name, an IP nor a CIDR.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("egress.allow: {0:?} is not a host name, an IP address or a CIDR")]
pub struct InvalidAllowEntry(pub String);

impl EgressSettings {
    /// Checks the allow list and builds the policy.
    pub fn policy(&self) -> Result<EgressPolicy, InvalidAllowEntry> {
        let mut nets = Vec::new();
        let mut hosts = Vec::new();
        for entry in &self.allow {
            let e = entry.trim();
            if let Ok(net) = e.parse::<IpNet>() {
                nets.push(net);
            } else if let Ok(ip) = e.trim_matches(['[', ']']).parse::<IpAddr>() {
                nets.push(IpNet::from(ip));
            } else if is_host_pattern(e) {
                hosts.push(e.to_ascii_lowercase());
            } else {
                return Err(InvalidAllowEntry(entry.clone()));
            }
        }
        Ok(EgressPolicy(Arc::new(Rules {
            allow_private: self.allow_private,
            nets,
            hosts,
        })))
    }
}

fn is_host_pattern(s: &str) -> bool {
    let name = s.strip_prefix("*.").unwrap_or(s);
    !name.is_empty()
        && !name.contains('/')
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

#[derive(Debug)]
struct Rules {
    allow_private: bool,
    nets: Vec<IpNet>,
    hosts: Vec<String>,
}

/// The checked policy (cheap to clone). The default allows loopback and private ranges.
#[derive(Debug, Clone)]
pub struct EgressPolicy(Arc<Rules>);

impl Default for EgressPolicy {
    fn default() -> Self {
        EgressSettings::default()
            .policy()
            .expect("the default allow list is empty")
    }
}

/// A connection the policy refused. The message names the address and why, never more.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub struct EgressDenied {
    /// The host name, when the address came from resolving one.
    pub host: Option<String>,
    pub ip: IpAddr,
    pub reason: &'static str,
}

impl fmt::Display for EgressDenied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            Some(h) => write!(
                f,
                "egress policy denies {h} (resolves to {}, {})",
                self.ip, self.reason
            ),
            None => write!(f, "egress policy denies {} ({})", self.ip, self.reason),
        }
    }
}

impl EgressPolicy {
    /// Whether `host` (a name from a URL) is on the allow list.
    pub fn allows_host(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.0.hosts.iter().any(|p| match p.strip_prefix("*.") {
            Some(suffix) => host
                .strip_suffix(suffix)
                .is_some_and(|rest| rest.ends_with('.')),
            None => *p == host,
        })
    }

    /// Checks one address (reached through `host` when it came from a name).
    pub fn check(&self, host: Option<&str>, ip: IpAddr) -> Result<(), EgressDenied> {
        if host.is_some_and(|h| self.allows_host(h)) {
            return Ok(());
        }
        let ip = canonical(ip);
        if self.0.nets.iter().any(|n| n.contains(&ip)) {
            return Ok(());
        }
        match classify(ip) {
            Class::Public => Ok(()),
            Class::Private(_) if self.0.allow_private => Ok(()),
            Class::Private(reason) | Class::Denied(reason) => Err(EgressDenied {
                host: host.map(str::to_owned),
                ip,
                reason,
            }),
        }
    }
}

enum Class {
    Public,
    /// Allowed unless `allow_private = false`.
    Private(&'static str),
    /// Never allowed (unless on the allow list).
    Denied(&'static str),
}

/// IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) and NAT64 ones (`64:ff9b::a.b.c.d`) reach an
/// IPv4 host: check that host.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return IpAddr::V4(v4);
            }
            let s = v6.segments();
            if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
                let [a, b, c, d] = [s[6] >> 8, s[6] & 0xff, s[7] >> 8, s[7] & 0xff];
                return IpAddr::V4(Ipv4Addr::new(a as u8, b as u8, c as u8, d as u8));
            }
            ip
        }
        IpAddr::V4(_) => ip,
    }
}

/// Cloud instance metadata services outside the link-local range: Alibaba Cloud
/// (100.100.100.200) and Oracle Cloud (192.0.0.192).
const METADATA_V4: [Ipv4Addr; 2] = [
    Ipv4Addr::new(100, 100, 100, 200),
    Ipv4Addr::new(192, 0, 0, 192),
];
/// AWS's IPv6 instance metadata endpoint (Nitro).
const METADATA_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254);

fn classify(ip: IpAddr) -> Class {
    match ip {
        IpAddr::V4(a) => {
            let o = a.octets();
            if METADATA_V4.contains(&a) {
                Class::Denied("cloud metadata")
            } else if o[0] == 0 {
                Class::Denied("unspecified")
            } else if a.is_broadcast() {
                Class::Denied("broadcast")
            } else if a.is_multicast() {
                Class::Denied("multicast")
            } else if a.is_link_local() {
                Class::Denied("link-local")
            } else if o[0] >= 240 {
                Class::Denied("reserved")
            } else if a.is_loopback() {
                Class::Private("loopback")
            } else if a.is_private() {
                Class::Private("private")
            } else if o[0] == 100 && (o[1] & 0xc0) == 64 {
                Class::Private("shared address space")
            } else {
                Class::Public
            }
        }
        IpAddr::V6(a) => {
            let s0 = a.segments()[0];
            if a == METADATA_V6 {
                Class::Denied("cloud metadata")
            } else if a.is_unspecified() {
                Class::Denied("unspecified")
            } else if a.is_multicast() {
                Class::Denied("multicast")
            } else if (s0 & 0xffc0) == 0xfe80 {
                Class::Denied("link-local")
            } else if a.is_loopback() {
                Class::Private("loopback")
            } else if (s0 & 0xfe00) == 0xfc00 || (s0 & 0xffc0) == 0xfec0 {
                Class::Private("private")
            } else {
                Class::Public
            }
        }
    }
}

/// Resolves names with the system resolver and drops the addresses the policy denies; when
/// none is left the connection fails with the [`EgressDenied`] of the first.
#[derive(Debug, Clone)]
pub struct EgressResolver {
    policy: EgressPolicy,
}

impl reqwest::dns::Resolve for EgressResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.policy.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let resolved: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let mut denied = None;
            let allowed: Vec<SocketAddr> = resolved
                .into_iter()
                .filter(|a| match policy.check(Some(&host), a.ip()) {
                    Ok(()) => true,
                    Err(e) => {
                        denied.get_or_insert(e);
                        false
                    }
                })
                .collect();
            match denied {
                Some(e) if allowed.is_empty() => Err(Box::new(e) as BoxError),
                _ => Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs),
            }
        })
    }
}

/// A connector layer: checks literal-IP destinations before connecting and the peer address
/// of every connection once established.
#[derive(Debug, Clone)]
pub struct EgressLayer {
    policy: EgressPolicy,
}

impl<S> tower::Layer<S> for EgressLayer {
    type Service = EgressConnector<S>;

    fn layer(&self, inner: S) -> Self::Service {
        EgressConnector {
            inner,
            policy: self.policy.clone(),
        }
    }
}

/// The service of [`EgressLayer`].
#[derive(Debug, Clone)]
pub struct EgressConnector<S> {
    inner: S,
    policy: EgressPolicy,
}

impl<S, R, C> tower::Service<R> for EgressConnector<S>
where
    S: tower::Service<R, Response = C, Error = BoxError>,
    S::Future: Send + 'static,
    R: fmt::Debug,
    C: Connection + Send + 'static,
{
    type Response = C;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<C, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, dst: R) -> Self::Future {
        // reqwest hands connector layers its destination URI in a type that only shows it
        // through `Debug` (`Unnameable(http://host:port/)`); `destination_host` reads it from
        // there (the `literal_ip_destinations_are_checked_before_connecting` test guards it).
        let host = destination_host(&format!("{dst:?}"));
        let name = match &host {
            Some(Host::Ip(ip)) => {
                if let Err(e) = self.policy.check(None, *ip) {
                    return Box::pin(async move { Err(Box::new(e) as BoxError) });
                }
                None
            }
            Some(Host::Name(n)) => Some(n.clone()),
            None => None,
        };
        let policy = self.policy.clone();
        let connecting = self.inner.call(dst);
        Box::pin(async move {
            let conn = connecting.await?;
            let mut extras = ::http::Extensions::new();
            conn.connected().get_extras(&mut extras);
            if let Some(info) = extras.get::<HttpInfo>() {
                policy.check(name.as_deref(), info.remote_addr().ip())?;
            }
            Ok(conn)
        })
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Host {
    Ip(IpAddr),
    Name(String),
}

/// The host of the URI inside a connector request's `Debug` text.
fn destination_host(debug: &str) -> Option<Host> {
    let start = debug.find('(')? + 1;
    let end = debug.rfind(')')?;
    let uri: ::http::Uri = debug.get(start..end)?.parse().ok()?;
    let host = uri.host()?;
    Some(match host.trim_matches(['[', ']']).parse::<IpAddr>() {
        Ok(ip) => Host::Ip(ip),
        Err(_) => Host::Name(host.to_owned()),
    })
}

/// The HTTP client every exporter uses (and every other outbound call: S3/STS, Snowflake,
/// token fetches clone it): the egress policy on every connection, and redirects never
/// followed ([`redirect_refused`]).
pub fn http_client(policy: &EgressPolicy) -> reqwest::Client {
    reqwest::Client::builder()
        .user_agent(concat!("tracecast/", env!("CARGO_PKG_VERSION")))
        .pool_max_idle_per_host(64)
        .connect_timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::custom(redirect_refused))
        .dns_resolver(Arc::new(EgressResolver {
            policy: policy.clone(),
        }))
        .connector_layer(EgressLayer {
            policy: policy.clone(),
        })
        .build()
        .expect("a TLS backend is compiled in")
}

/// A redirect answer, which tracecast never follows: a POST turned into a GET would be
/// counted delivered with nothing delivered, and the destination's credential headers would
/// go to the new host.
#[derive(Debug, Error)]
#[error(
    "the endpoint answered HTTP {status} redirecting to {location}; redirects are not followed: set the destination URL to the final address"
)]
pub struct RedirectRefused {
    pub status: u16,
    /// The `Location`, without any user:password part.
    pub location: String,
}

fn redirect_refused(attempt: reqwest::redirect::Attempt<'_>) -> reqwest::redirect::Action {
    let mut next = attempt.url().clone();
    let _ = next.set_username("");
    let _ = next.set_password(None);
    let err = RedirectRefused {
        status: attempt.status().as_u16(),
        location: next.to_string(),
    };
    attempt.error(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(allow_private: bool, allow: &[&str]) -> EgressPolicy {
        EgressSettings {
            allow_private,
            allow: allow.iter().map(|s| s.to_string()).collect(),
        }
        .policy()
        .unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn metadata_link_local_and_special_addresses_are_always_denied() {
        let p = policy(true, &[]);
        for (a, reason) in [
            ("169.254.169.254", "link-local"),
            ("169.254.0.1", "link-local"),
            ("fe80::1", "link-local"),
            ("fd00:ec2::254", "cloud metadata"),
            ("100.100.100.200", "cloud metadata"),
            ("192.0.0.192", "cloud metadata"),
            ("0.0.0.0", "unspecified"),
            ("::", "unspecified"),
            ("224.0.0.1", "multicast"),
            ("ff02::1", "multicast"),
            ("255.255.255.255", "broadcast"),
            ("::ffff:169.254.169.254", "link-local"),
            ("64:ff9b::a9fe:a9fe", "link-local"),
        ] {
            let err = p.check(None, ip(a)).unwrap_err();
            assert_eq!(err.reason, reason, "{a}");
        }
        assert_eq!(
            p.check(None, ip("169.254.169.254"))
                .unwrap_err()
                .to_string(),
            "egress policy denies 169.254.169.254 (link-local)"
        );
    }

    #[test]
    fn private_ranges_follow_allow_private() {
        let private = [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.254",
            "192.168.1.1",
            "100.64.0.1",
            "::1",
            "fd12::1",
            "::ffff:127.0.0.1",
        ];
        let open = policy(true, &[]);
        let closed = policy(false, &[]);
        for a in private {
            assert!(open.check(None, ip(a)).is_ok(), "{a}");
            assert!(closed.check(None, ip(a)).is_err(), "{a}");
        }
        for a in ["8.8.8.8", "172.32.0.1", "2606:4700::1111", "100.128.0.1"] {
            assert!(closed.check(None, ip(a)).is_ok(), "{a}");
        }
    }

    #[test]
    fn the_allow_list_wins() {
        let p = policy(
            false,
            &[
                "10.1.0.0/16",
                "169.254.169.254",
                "collector.internal",
                "*.corp.test",
            ],
        );
        assert!(p.check(None, ip("10.1.9.9")).is_ok());
        assert!(p.check(None, ip("10.2.0.1")).is_err());
        assert!(p.check(None, ip("169.254.169.254")).is_ok());
        assert!(p.check(Some("collector.internal"), ip("10.9.9.9")).is_ok());
        assert!(p.check(Some("Collector.Internal."), ip("10.9.9.9")).is_ok());
        assert!(p.check(Some("a.corp.test"), ip("192.168.0.1")).is_ok());
        assert!(p.check(Some("corp.test"), ip("192.168.0.1")).is_err());
        assert!(p.check(Some("evilcorp.test"), ip("192.168.0.1")).is_err());
        assert_eq!(
            EgressSettings {
                allow_private: true,
                allow: vec!["10.0.0.0/33".into()],
            }
            .policy()
            .unwrap_err(),
            InvalidAllowEntry("10.0.0.0/33".into())
        );
    }

    #[test]
    fn destination_host_reads_reqwests_connector_request() {
        assert_eq!(
            destination_host("Unnameable(http://169.254.169.254/)"),
            Some(Host::Ip(ip("169.254.169.254")))
        );
        assert_eq!(
            destination_host("Unnameable(https://[::1]:8443/)"),
            Some(Host::Ip(ip("::1")))
        );
        assert_eq!(
            destination_host("Unnameable(https://api.example.com/)"),
            Some(Host::Name("api.example.com".into()))
        );
    }
}
