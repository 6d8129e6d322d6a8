//! The test's DNS server inside a [`NetNs`] (`dns.py`, standard library only), and a small
//! client to query it directly over UDP or TCP.

use std::{
    io::{Read as _, Write as _},
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, UdpSocket},
    time::Duration,
};

use super::{DEBIAN_PYTHON, NetNs, SCRIPT_READY_TIMEOUT, STOP_TIMEOUT, daemon::Daemon, write};
use crate::{TempDir, random_hex};

const SCRIPT: &str = include_str!("dns.py");

/// How long [`DnsServer::lookup`] waits for an answer.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// A DNS server on 127.0.0.1:53 (UDP and TCP) inside a namespace, answering A and AAAA records
/// (TTL 60, authoritative) from the table it was started with and NXDOMAIN for every other name.
/// It is stopped on drop; it holds the namespace.
pub struct DnsServer {
    daemon: Daemon,
    ns: NetNs,
    _dir: TempDir,
}

/// A record type to ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordType {
    A,
    Aaaa,
}

impl RecordType {
    fn code(self) -> u16 {
        match self {
            Self::A => 1,
            Self::Aaaa => 28,
        }
    }
}

/// UDP or TCP (two-byte length prefix).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

/// A query the server answered, from its log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsQuery {
    pub id: u16,
    /// `A`, `AAAA`, `HTTPS`, ... or the number of a type it has no name for.
    pub qtype: String,
    /// Lowercase, without the final dot.
    pub name: String,
    /// 0 (NOERROR), 1 (FORMERR), 3 (NXDOMAIN), 4 (NOTIMP).
    pub rcode: u8,
    pub answers: Vec<IpAddr>,
    pub transport: Transport,
}

/// A response, as [`DnsServer::lookup`] decoded it.
#[derive(Clone, Debug)]
pub struct DnsReply {
    pub id: u16,
    /// The whole flags word: QR 0x8000, AA 0x0400, RD 0x0100, RA 0x0080, RCODE 0x000f.
    pub flags: u16,
    pub rcode: u8,
    /// The A and AAAA records: address and TTL.
    pub answers: Vec<(IpAddr, u32)>,
}

impl DnsServer {
    pub const PORT: u16 = 53;

    /// Starts the server inside `ns` with `table` (name, address; a name may come several
    /// times, IPv4 and IPv6 addresses alike) and waits until both its sockets are bound.
    pub fn start(ns: &NetNs, table: &[(&str, &str)]) -> Result<Self, String> {
        let dir = TempDir::try_new("dns")
            .map_err(|e| format!("cannot create the DNS server's directory: {e}"))?;
        let script = write(dir.path(), "dns.py", SCRIPT)?;
        let mut cmd = ns.command(DEBIAN_PYTHON);
        cmd.args(["-I", "-S"])
            .arg(&script)
            .args(["127.0.0.1", &Self::PORT.to_string()]);
        for (name, addr) in table {
            addr.parse::<IpAddr>()
                .map_err(|e| format!("DNS table: {name} -> {addr:?}: {e}"))?;
            if name.is_empty() || name.contains(['=', ' ']) {
                return Err(format!("DNS table: bad name {name:?}"));
            }
            cmd.arg(format!("{name}={addr}"));
        }
        let daemon = Daemon::spawn("the DNS server", cmd, &dir.join("dns.log"))?;
        daemon.wait_for_line("ready", SCRIPT_READY_TIMEOUT)?;
        Ok(Self {
            daemon,
            ns: ns.clone(),
            _dir: dir,
        })
    }

    pub fn pid(&self) -> u32 {
        self.daemon.pid()
    }

    /// Every query answered so far, oldest first.
    pub fn queries(&self) -> Vec<DnsQuery> {
        self.daemon.log().lines().filter_map(parse_query).collect()
    }

    /// Asks the server for `name` directly, from a thread inside the namespace.
    pub fn lookup(
        &self,
        name: &str,
        rtype: RecordType,
        transport: Transport,
    ) -> Result<DnsReply, String> {
        let id = u16::from_str_radix(&random_hex(2), 16).unwrap_or(0x4d54);
        let query = encode_query(id, name, rtype)?;
        let server = SocketAddr::from((Ipv4Addr::LOCALHOST, Self::PORT));
        let raw = self
            .ns
            .run(|| -> std::io::Result<Vec<u8>> {
                match transport {
                    Transport::Udp => {
                        let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
                        socket.set_read_timeout(Some(LOOKUP_TIMEOUT))?;
                        socket.connect(server)?;
                        socket.send(&query)?;
                        let mut buf = vec![0; 4096];
                        let n = socket.recv(&mut buf)?;
                        buf.truncate(n);
                        Ok(buf)
                    }
                    Transport::Tcp => {
                        let mut stream = TcpStream::connect_timeout(&server, LOOKUP_TIMEOUT)?;
                        stream.set_read_timeout(Some(LOOKUP_TIMEOUT))?;
                        let len = u16::try_from(query.len()).map_err(std::io::Error::other)?;
                        stream.write_all(&[&len.to_be_bytes()[..], &query].concat())?;
                        let mut len = [0; 2];
                        stream.read_exact(&mut len)?;
                        let mut buf = vec![0; usize::from(u16::from_be_bytes(len))];
                        stream.read_exact(&mut buf)?;
                        Ok(buf)
                    }
                }
            })?
            .map_err(|e| format!("DNS query for {name} over {transport:?}: {e}"))?;
        decode_reply(&raw).map_err(|e| format!("DNS reply for {name}: {e}"))
    }

    /// Stops the server (SIGTERM to its pid, then SIGKILL); an error if it had died before.
    pub fn stop(&mut self) -> Result<(), String> {
        self.daemon.stop(STOP_TIMEOUT)
    }
}

fn parse_query(line: &str) -> Option<DnsQuery> {
    let mut fields = line.strip_prefix("query ")?.split(' ');
    let id = fields.next()?.parse().ok()?;
    let qtype = fields.next()?.to_owned();
    let name = fields.next()?.to_owned();
    let rcode = fields.next()?.parse().ok()?;
    let answers = match fields.next()? {
        "-" => Vec::new(),
        list => list.split(',').filter_map(|a| a.parse().ok()).collect(),
    };
    let transport = match fields.next()? {
        "udp" => Transport::Udp,
        "tcp" => Transport::Tcp,
        _ => return None,
    };
    Some(DnsQuery {
        id,
        qtype,
        name,
        rcode,
        answers,
        transport,
    })
}

fn encode_query(id: u16, name: &str, rtype: RecordType) -> Result<Vec<u8>, String> {
    // Header: id, flags (RD), one question, no other records.
    let mut msg = Vec::with_capacity(64);
    for word in [id, 0x0100, 1, 0, 0, 0] {
        msg.extend_from_slice(&word.to_be_bytes());
    }
    for label in name.trim_end_matches('.').split('.') {
        let len = u8::try_from(label.len())
            .ok()
            .filter(|&l| (1..64).contains(&l))
            .ok_or_else(|| format!("bad DNS name {name:?}"))?;
        msg.push(len);
        msg.extend_from_slice(label.as_bytes());
    }
    msg.push(0);
    msg.extend_from_slice(&rtype.code().to_be_bytes());
    msg.extend_from_slice(&1u16.to_be_bytes()); // class IN
    Ok(msg)
}

fn decode_reply(msg: &[u8]) -> Result<DnsReply, String> {
    let word = |at: usize| -> Result<u16, String> {
        msg.get(at..at + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
            .ok_or_else(|| format!("reply truncated at byte {at}"))
    };
    let (id, flags, questions, answers) = (word(0)?, word(2)?, word(4)?, word(6)?);
    let mut at = 12;
    for _ in 0..questions {
        at = skip_name(msg, at)? + 4;
    }
    let mut records = Vec::new();
    for _ in 0..answers {
        at = skip_name(msg, at)?;
        let (rtype, class) = (word(at)?, word(at + 2)?);
        let ttl = u32::from(word(at + 4)?) << 16 | u32::from(word(at + 6)?);
        let len = usize::from(word(at + 8)?);
        let data = msg
            .get(at + 10..at + 10 + len)
            .ok_or("record data truncated")?;
        at += 10 + len;
        let addr = match (
            rtype,
            class,
            <[u8; 4]>::try_from(data),
            <[u8; 16]>::try_from(data),
        ) {
            (1, 1, Ok(v4), _) => IpAddr::V4(Ipv4Addr::from(v4)),
            (28, 1, _, Ok(v6)) => IpAddr::V6(Ipv6Addr::from(v6)),
            _ => return Err(format!("unexpected record type {rtype} class {class}")),
        };
        records.push((addr, ttl));
    }
    Ok(DnsReply {
        id,
        flags,
        rcode: (flags & 0xf) as u8,
        answers: records,
    })
}

/// The offset just past the name at `at` (labels, ending in a zero byte or a pointer).
fn skip_name(msg: &[u8], mut at: usize) -> Result<usize, String> {
    loop {
        let len = *msg.get(at).ok_or("name truncated")?;
        match len {
            0 => return Ok(at + 1),
            l if l & 0xc0 == 0xc0 => return Ok(at + 2),
            l => at += 1 + usize::from(l),
        }
    }
}
