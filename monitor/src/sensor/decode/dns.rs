//! DNS answers: the captured payload is parsed with hickory's DNS message decoder. The bytes
//! come from the network, so nothing in them is trusted: a message that does not parse gives
//! an event marked `malformed` with only what the kernel itself knew (server, protocol).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hickory_proto::{
    op::{Message, MessageType},
    rr::{Name, RData},
};
use monitor_common::{AF_INET, AF_INET6, DnsEvent};

use super::{DecodeError, RawRecord};
use crate::sensor::event::{DnsBody, Family, Protocol};

const IPPROTO_TCP: u16 = 6;

pub fn decode(rec: &RawRecord<'_>) -> Result<DnsBody, DecodeError> {
    let p: DnsEvent = rec.payload();
    let family = match p.family {
        AF_INET => Some(Family::Inet),
        AF_INET6 => Some(Family::Inet6),
        _ => None,
    };
    let raw = p.server_addr;
    let server = match family {
        Some(Family::Inet) => Some(IpAddr::V4(Ipv4Addr::new(raw[0], raw[1], raw[2], raw[3]))),
        Some(Family::Inet6) => Some(IpAddr::V6(Ipv6Addr::from(raw))),
        _ => None,
    };
    let protocol = if p.protocol == IPPROTO_TCP {
        Protocol::Tcp
    } else {
        Protocol::Udp
    };
    let bytes = rec.bytes(p.data)?.unwrap_or_default();
    let mut body = DnsBody {
        family,
        protocol: Some(protocol),
        remote_addr: server,
        remote_port: Some(p.server_port),
        query: None,
        query_type: None,
        rcode: None,
        answers: Vec::new(),
        cnames: Vec::new(),
        ttl: None,
        truncated: bytes.len() < p.payload_len as usize,
        malformed: false,
    };
    match parse(bytes, protocol) {
        Some(msg) => fill(&mut body, &msg),
        None => body.malformed = true,
    }
    Ok(body)
}

/// The DNS message in a UDP payload, or in the first TCP segment of a message (after its
/// 2-byte length). `None` when it is not a response that parses.
fn parse(bytes: &[u8], protocol: Protocol) -> Option<Message> {
    let msg = match protocol {
        Protocol::Udp => Message::from_vec(bytes).ok()?,
        Protocol::Tcp => {
            let len = usize::from(u16::from_be_bytes([*bytes.first()?, *bytes.get(1)?]));
            let body = bytes.get(2..)?;
            Message::from_vec(body.get(..len.min(body.len()))?).ok()?
        }
    };
    (msg.metadata.message_type == MessageType::Response).then_some(msg)
}

/// A name as the agent reports and matches it: ASCII (IDNA) form, lower case, no final dot.
pub fn name_string(name: &Name) -> String {
    let s = name.to_ascii();
    s.strip_suffix('.').unwrap_or(&s).to_ascii_lowercase()
}

/// The IANA mnemonic of a response code (`NOERROR`, `NXDOMAIN`, ...), `RCODE<n>` for others.
fn rcode_name(code: u16) -> String {
    let name = match code {
        0 => "NOERROR",
        1 => "FORMERR",
        2 => "SERVFAIL",
        3 => "NXDOMAIN",
        4 => "NOTIMP",
        5 => "REFUSED",
        _ => return format!("RCODE{code}"),
    };
    name.to_owned()
}

fn fill(body: &mut DnsBody, msg: &Message) {
    body.rcode = Some(rcode_name(msg.metadata.response_code.into()));
    if let Some(q) = msg.queries.first() {
        body.query = Some(name_string(&q.name));
        body.query_type = Some(q.query_type.to_string());
    }
    for r in &msg.answers {
        match &r.data {
            RData::A(a) => body.answers.push(IpAddr::V4(a.0)),
            RData::AAAA(a) => body.answers.push(IpAddr::V6(a.0)),
            RData::CNAME(c) => {
                body.cnames.push(name_string(&c.0));
                continue;
            }
            _ => continue,
        }
        body.ttl = Some(body.ttl.map_or(r.ttl, |t| t.min(r.ttl)));
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use hickory_proto::{
        op::{Message, MessageType, Query},
        rr::{Name, RData, Record, RecordType, rdata},
    };

    use super::{Protocol, parse};

    fn answer() -> Vec<u8> {
        let name = Name::from_ascii("API.Example.com.").expect("name");
        let alias = Name::from_ascii("edge.example.net.").expect("name");
        let mut m = Message::query();
        m.metadata.id = 7;
        m.metadata.message_type = MessageType::Response;
        m.queries.push(Query::query(name.clone(), RecordType::A));
        m.answers.push(Record::from_rdata(
            name,
            300,
            RData::CNAME(rdata::CNAME(alias.clone())),
        ));
        m.answers.push(Record::from_rdata(
            alias,
            60,
            RData::A(rdata::A("192.0.2.7".parse().expect("ip"))),
        ));
        m.to_vec().expect("encode")
    }

    #[test]
    fn udp_and_tcp_answers_parse_to_query_aliases_and_addresses() {
        let bytes = answer();
        let mut body = super::DnsBody::default();
        super::fill(&mut body, &parse(&bytes, Protocol::Udp).expect("udp"));
        assert_eq!(body.query.as_deref(), Some("api.example.com"));
        assert_eq!(body.query_type.as_deref(), Some("A"));
        assert_eq!(body.rcode.as_deref(), Some("NOERROR"));
        assert_eq!(body.cnames, vec!["edge.example.net"]);
        assert_eq!(body.answers, vec!["192.0.2.7".parse::<IpAddr>().unwrap()]);
        assert_eq!(body.ttl, Some(60));
        let mut tcp = (bytes.len() as u16).to_be_bytes().to_vec();
        tcp.extend_from_slice(&bytes);
        assert!(parse(&tcp, Protocol::Tcp).is_some());
        assert!(parse(&bytes, Protocol::Tcp).is_none(), "no length prefix");
    }

    #[test]
    fn queries_and_garbage_are_not_answers() {
        let mut q = Message::query();
        q.queries.push(Query::query(
            Name::from_ascii("a.b.").unwrap(),
            RecordType::A,
        ));
        assert!(parse(&q.to_vec().unwrap(), Protocol::Udp).is_none());
        assert!(parse(b"\x00\x01garbage", Protocol::Udp).is_none());
        assert!(parse(&[], Protocol::Tcp).is_none());
        let cut = answer();
        assert!(parse(&cut[..cut.len() - 3], Protocol::Udp).is_none());
    }

    #[test]
    fn a_kernel_record_decodes_to_the_server_and_the_answer() {
        use monitor_common::{AF_INET, DnsEvent, EventKind, StrRef};

        use crate::sensor::event::{EventBody, Family};
        let bytes = answer();
        let mut server = [0u8; 16];
        server[..4].copy_from_slice(&[10, 0, 0, 53]);
        let p = DnsEvent {
            family: AF_INET,
            protocol: 17,
            server_port: 53,
            _pad: 0,
            // The kernel copied fewer bytes than the packet had.
            payload_len: bytes.len() as u32 + 100,
            data: StrRef {
                off: 0,
                len: bytes.len() as u16,
            },
            server_addr: server,
            cookie: 9,
        };
        let rec = crate::sensor::decode::tests::record(EventKind::Dns, p, &bytes);
        let ev = crate::sensor::decode::decode(&rec).expect("decodes");
        assert_eq!(ev.kind(), EventKind::Dns);
        let EventBody::Dns(d) = ev.body else {
            panic!("not dns")
        };
        assert_eq!(d.family, Some(Family::Inet));
        assert_eq!(d.protocol, Some(Protocol::Udp));
        assert_eq!(d.remote_addr, Some("10.0.0.53".parse().unwrap()));
        assert_eq!(d.remote_port, Some(53));
        assert_eq!(d.query.as_deref(), Some("api.example.com"));
        assert_eq!(d.answers, vec!["192.0.2.7".parse::<IpAddr>().unwrap()]);
        assert!(d.truncated && !d.malformed);
        // Garbage from the network is an event marked malformed, never an error.
        let junk = b"\x00\x01junk";
        let p = DnsEvent {
            payload_len: junk.len() as u32,
            data: StrRef {
                off: 0,
                len: junk.len() as u16,
            },
            ..p
        };
        let ev = crate::sensor::decode::decode(&crate::sensor::decode::tests::record(
            EventKind::Dns,
            p,
            junk,
        ))
        .expect("decodes");
        let EventBody::Dns(d) = ev.body else {
            panic!("not dns")
        };
        assert!(d.malformed && d.query.is_none() && !d.truncated);
        assert_eq!(d.remote_addr, Some("10.0.0.53".parse().unwrap()));
    }
}
