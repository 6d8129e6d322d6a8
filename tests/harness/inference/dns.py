"""A DNS server for tests: answers A and AAAA queries from a fixed table, NXDOMAIN otherwise.

Usage: dns.py ADDRESS PORT NAME=IP...   (a name may appear several times, one address each)

Listens on ADDRESS:PORT over UDP and TCP (RFC 1035 4.2.2: two-byte length prefix, several
queries per connection), one thread per datagram or connection. Prints "ready" once both sockets
are bound, then one line per query: "query ID TYPE NAME RCODE ANSWERS PROTO" (ANSWERS: the
addresses, comma-separated, or "-"). A name known with no address of the type asked gets an
empty NOERROR answer; an unknown name, NXDOMAIN.
"""

import ipaddress
import socketserver
import struct
import sys
import threading

TTL = 60
TYPE_A, TYPE_AAAA, CLASS_IN = 1, 28, 1
NOERROR, FORMERR, NXDOMAIN, NOTIMP = 0, 1, 3, 4
TYPE_NAMES = {1: 'A', 2: 'NS', 5: 'CNAME', 6: 'SOA', 12: 'PTR', 15: 'MX', 16: 'TXT', 28: 'AAAA',
              33: 'SRV', 41: 'OPT', 64: 'SVCB', 65: 'HTTPS', 255: 'ANY'}

TABLE = {}
LOG = threading.Lock()


def load_table(pairs):
    for pair in pairs:
        name, _, addr = pair.partition('=')
        ip = ipaddress.ip_address(addr)
        TABLE.setdefault(name.rstrip('.').lower(), []).append(ip)


def say(line):
    with LOG:
        sys.stdout.write(line + '\n')
        sys.stdout.flush()


def parse_question(msg):
    """(name, qtype, qclass, end offset) of the first question; raises ValueError if malformed."""
    labels, pos = [], 12
    while True:
        if pos >= len(msg):
            raise ValueError('name runs past the message')
        length = msg[pos]
        if length & 0xC0:
            raise ValueError('compressed name in a question')
        pos += 1
        if length == 0:
            break
        labels.append(msg[pos:pos + length].decode('ascii', 'replace'))
        pos += length
    if pos + 4 > len(msg):
        raise ValueError('question truncated')
    qtype, qclass = struct.unpack('!HH', msg[pos:pos + 4])
    return '.'.join(labels).lower(), qtype, qclass, pos + 4


def answer(msg, proto):
    """The response to one query message, or None when it cannot even carry an id."""
    if len(msg) < 12:
        return None
    qid, flags, qdcount = struct.unpack('!HHH', msg[:6])
    if flags & 0x8000:
        return None  # a response: never answer those
    opcode = (flags >> 11) & 0xF
    rd = flags & 0x0100
    question, name, qtype, answers = b'', '?', 0, []
    if opcode != 0:
        rcode = NOTIMP
    elif qdcount < 1:
        rcode = FORMERR
    else:
        try:
            name, qtype, qclass, end = parse_question(msg)
            question = msg[12:end]
        except ValueError:
            rcode = FORMERR
        else:
            known = TABLE.get(name)
            if known is None:
                rcode = NXDOMAIN
            else:
                rcode = NOERROR
                if qclass == CLASS_IN:
                    version = {TYPE_A: 4, TYPE_AAAA: 6}.get(qtype)
                    answers = [ip for ip in known if ip.version == version]
    # QR, opcode copied, AA, RD copied, RA, rcode.
    out_flags = 0x8000 | (opcode << 11) | 0x0400 | rd | 0x0080 | rcode
    header = struct.pack('!HHHHHH', qid, out_flags, 1 if question else 0, len(answers), 0, 0)
    records = b''.join(
        struct.pack('!HHHIH', 0xC00C, qtype, CLASS_IN, TTL, len(ip.packed)) + ip.packed
        for ip in answers)
    say('query %d %s %s %d %s %s' % (qid, TYPE_NAMES.get(qtype, str(qtype)), name or '.', rcode,
                                     ','.join(str(ip) for ip in answers) or '-', proto))
    return header + question + records


class Udp(socketserver.BaseRequestHandler):
    def handle(self):
        data, sock = self.request
        reply = answer(data, 'udp')
        if reply is not None:
            if len(reply) > 512:  # never happens with this table's sizes, but be correct
                reply = reply[:2] + bytes([reply[2] | 0x02]) + reply[3:12]
            sock.sendto(reply, self.client_address)


class Tcp(socketserver.BaseRequestHandler):
    def handle(self):
        self.request.settimeout(10)
        while True:
            head = self.read(2)
            if head is None:
                return
            msg = self.read(struct.unpack('!H', head)[0])
            if msg is None:
                return
            reply = answer(msg, 'tcp')
            if reply is None:
                return
            self.request.sendall(struct.pack('!H', len(reply)) + reply)

    def read(self, n):
        data = b''
        while len(data) < n:
            try:
                chunk = self.request.recv(n - len(data))
            except OSError:
                return None
            if not chunk:
                return None
            data += chunk
        return data


class UdpServer(socketserver.ThreadingMixIn, socketserver.UDPServer):
    daemon_threads = True
    allow_reuse_address = True


class TcpServer(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True


def main():
    address, port = sys.argv[1], int(sys.argv[2])
    load_table(sys.argv[3:])
    servers = [UdpServer((address, port), Udp), TcpServer((address, port), Tcp)]
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    say('ready')
    threading.Event().wait()


if __name__ == '__main__':
    main()
