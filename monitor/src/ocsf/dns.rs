//! Native `dns` events (an answer a watched process received from its nameserver) to OCSF DNS
//! Activity (4003), activity Response.

use serde_json::{Map, Value, json};

use monitor_common::EventKind;

use super::objects::{Activity, DNS_ACTIVITY, Host, Parts, actor, connection_info, endpoint};
use crate::sensor::event::{DnsBody, Event};

const RESPONSE: Activity = Activity::new(2, "Response");

/// OCSF `rcode_id` and caption of the response codes OCSF names, by DNS RCODE (RFC 6895), with
/// the IANA mnemonics the decoder writes (`RCODE<n>` for the others).
const RCODES: [(u16, &str, &str); 20] = [
    (0, "NOERROR", "NoError"),
    (1, "FORMERR", "FormError"),
    (2, "SERVFAIL", "ServError"),
    (3, "NXDOMAIN", "NXDomain"),
    (4, "NOTIMP", "NotImp"),
    (5, "REFUSED", "Refused"),
    (6, "YXDOMAIN", "YXDomain"),
    (7, "YXRRSET", "YXRRSet"),
    (8, "NXRRSET", "NXRRSet"),
    (9, "NOTAUTH", "NotAuth"),
    (10, "NOTZONE", "NotZone"),
    (11, "DSOTYPENI", "DSOTYPENI"),
    (16, "BADVERS", "BADSIG_VERS"),
    (17, "BADKEY", "BADKEY"),
    (18, "BADTIME", "BADTIME"),
    (19, "BADMODE", "BADMODE"),
    (20, "BADNAME", "BADNAME"),
    (21, "BADALG", "BADALG"),
    (22, "BADTRUNC", "BADTRUNC"),
    (23, "BADCOOKIE", "BADCOOKIE"),
];

/// `rcode_id` Unassigned and Reserved (RFC 6895 ranges without a name of their own), Other.
const RCODE_UNASSIGNED: (u16, &str) = (24, "Unassigned");
const RCODE_RESERVED: (u16, &str) = (25, "Reserved");
const RCODE_OTHER: u16 = 99;

/// `rcode_id` and `rcode` of a native response code mnemonic; `None` for a word that is neither
/// an IANA mnemonic nor `RCODE<n>` (Other, the native word as caption).
fn rcode(native: &str) -> Option<(u16, &'static str)> {
    let upper = native.to_ascii_uppercase();
    let code = match RCODES.iter().find(|(_, name, _)| *name == upper) {
        Some(&(code, _, _)) => code,
        None => upper.strip_prefix("RCODE")?.parse::<u16>().ok()?,
    };
    Some(match RCODES.iter().find(|(c, _, _)| *c == code) {
        Some(&(id, _, caption)) => (id, caption),
        None if matches!(code, 3841..=4095 | 65535) => RCODE_RESERVED,
        None => RCODE_UNASSIGNED,
    })
}

/// `dns`: Response. The nameserver is `src_endpoint` (the answer comes from it), the host
/// `dst_endpoint`; `query` is the name and type asked (class IN), `answers` the aliases
/// (CNAME) then the addresses (A or AAAA, with the native `ttl`: the smallest TTL of the address
/// records, the only one the event keeps). The status is Success for `NOERROR`, Failure for
/// other response codes (the mnemonic as `status_code`), Unknown when the message did not parse.
pub(super) fn dns_parts(
    ev: &Event,
    d: &DnsBody,
    host: &Host,
    own: Map<String, Value>,
    mut unmapped: Map<String, Value>,
) -> Parts {
    let server_ip = d.remote_addr.map(|ip| ip.to_canonical());
    let server = endpoint(server_ip, d.remote_port, None, None);
    let local = endpoint(None, None, Some(host.hostname.as_str()), None);
    let mut conn = connection_info(
        d.family,
        d.protocol,
        (1, "Inbound"),
        server_ip,
        &mut unmapped,
    );
    if server_ip.is_some_and(|ip| ip.is_loopback()) {
        conn.insert("boundary_id".into(), 1.into());
        conn.insert("boundary".into(), "Localhost".into());
    }
    if let Some(family) = d.family {
        unmapped.insert("family".into(), family.as_str().into());
    }

    let query_type = d.query_type.as_deref();
    let query = match d.query.as_deref() {
        Some(name) => {
            let mut q = json!({ "hostname": name, "class": "IN" });
            if let Some(t) = query_type {
                q["type"] = t.into();
            }
            Some(q)
        }
        None => {
            if let Some(t) = query_type {
                unmapped.insert("query_type".into(), t.into());
            }
            None
        }
    };

    let mut attrs = Map::new();
    let native_rcode = d.rcode.as_deref();
    match native_rcode {
        Some(word) => {
            let (id, caption) = rcode(word).unwrap_or((RCODE_OTHER, word));
            attrs.insert("rcode_id".into(), id.into());
            attrs.insert("rcode".into(), caption.into());
            if id == RCODE_UNASSIGNED.0 || id == RCODE_RESERVED.0 {
                unmapped.insert("rcode".into(), word.into());
            }
            if id == 0 {
                attrs.insert("status_id".into(), 1.into());
                attrs.insert("status".into(), "Success".into());
            } else {
                attrs.insert("status_id".into(), 2.into());
                attrs.insert("status".into(), "Failure".into());
                attrs.insert("status_code".into(), word.into());
            }
        }
        None => {
            attrs.insert("status_id".into(), 0.into());
            attrs.insert("status".into(), "Unknown".into());
        }
    }

    let ttl = d.ttl;
    let mut answers: Vec<Value> = d
        .cnames
        .iter()
        .map(|alias| json!({ "rdata": alias, "type": "CNAME", "class": "IN" }))
        .collect();
    for ip in &d.answers {
        let rtype = if ip.is_ipv4() { "A" } else { "AAAA" };
        let mut a = json!({ "rdata": ip.to_string(), "type": rtype, "class": "IN" });
        if let Some(ttl) = ttl {
            a["ttl"] = ttl.into();
        }
        answers.push(a);
    }
    // A parsed message says how many answers it had, none included; a malformed one does not.
    if native_rcode.is_some() || !answers.is_empty() {
        attrs.insert("answers".into(), answers.into());
    }
    attrs.insert("response_time".into(), ev.time.ms().into());
    for (flag, set) in [("truncated", d.truncated), ("malformed", d.malformed)] {
        if set {
            unmapped.insert(flag.into(), true.into());
        }
    }
    Parts {
        kind: EventKind::Dns,
        class: &DNS_ACTIVITY,
        activity: RESPONSE,
        activity_name: RESPONSE.caption,
        process: None,
        actor: actor(own),
        file: None,
        file_result: None,
        query,
        src_endpoint: server,
        dst_endpoint: local,
        connection_info: Some(conn.into()),
        attrs,
        unmapped,
    }
}

#[cfg(test)]
mod tests {
    use super::rcode;

    #[test]
    fn response_codes_map_to_the_ocsf_enum() {
        for (native, id, caption) in [
            ("NOERROR", 0, "NoError"),
            ("NXDOMAIN", 3, "NXDomain"),
            ("SERVFAIL", 2, "ServError"),
            ("REFUSED", 5, "Refused"),
            ("FORMERR", 1, "FormError"),
            ("NOTIMP", 4, "NotImp"),
            ("RCODE9", 9, "NotAuth"),
            ("RCODE16", 16, "BADSIG_VERS"),
            ("RCODE12", 24, "Unassigned"),
            ("RCODE100", 24, "Unassigned"),
            ("RCODE3900", 25, "Reserved"),
            ("RCODE65535", 25, "Reserved"),
            ("nxdomain", 3, "NXDomain"),
        ] {
            assert_eq!(rcode(native), Some((id, caption)), "{native}");
        }
        assert_eq!(rcode("WEIRD"), None);
        assert_eq!(rcode("RCODE"), None);
        assert_eq!(rcode("RCODE70000"), None);
    }
}
