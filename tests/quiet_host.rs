//! Quiet on an ordinary host: a developer's session of ordinary administration and development
//! steps, run host-wide (`--watch-all`, the shipped rules with the Sigma set), raises no high or
//! critical alert. The attacks these rules exist for still alert (the other test binaries);
//! this one pins down the false positives a new user met: the `distutils-precedence.pth`
//! every venv gets, and write-then-exec for `venv/bin/pip`, `./a.out` and `./run.sh`.
//!
//! Everything runs in a fake home under `/home` (so the rules' `~/` paths apply) and talks
//! only to a loopback listener of this test.

use std::{
    io::{Read, Write},
    net::TcpListener,
    thread,
};

use monitor_tests::{
    TIMEOUT, path_str,
    rules::{DirGuard, in_tree},
    sigma::{Case, agent, sentinel},
};

/// The session: `bash -e session.sh PORT`, in the project directory of a fake home.
const SESSION: &str = r#"
set -eu
port=$1
# Inspect the machine, its processes and its network.
uname -a; id; whoami; df -h . >/dev/null; free >/dev/null; ps aux >/dev/null; ss -tan >/dev/null
ls -la ~ >/dev/null; env | sort >/dev/null
# A repository: init, commit, clone it next door.
git init -q repo; cd repo
git config user.email dev@example.org; git config user.name Dev
printf 'print("hello from the app")\n' > app.py; git add app.py; git commit -qm init
cd ..; git clone -q repo clone
# Archives.
tar czf clone.tgz clone; mkdir -p unpacked; tar xzf clone.tgz -C unpacked
# A virtual environment, a package installed into it from a local source tree, its tools run.
python3 -m venv venv
python3 - <<'PY'
import zipfile
files = {
    "mypkg/__init__.py": "def hello():\n    return 'hi'\n",
    "mypkg-0.1.dist-info/METADATA": "Metadata-Version: 2.1\nName: mypkg\nVersion: 0.1\n",
    "mypkg-0.1.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: hand\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
}
files["mypkg-0.1.dist-info/RECORD"] = "".join(f"{n},,\n" for n in files) + "mypkg-0.1.dist-info/RECORD,,\n"
with zipfile.ZipFile("mypkg-0.1-py3-none-any.whl", "w") as z:
    for name, text in files.items():
        z.writestr(name, text)
PY
venv/bin/pip install -q --no-index ./mypkg-0.1-py3-none-any.whl
venv/bin/pip list >/dev/null
venv/bin/python -c 'import mypkg; print(mypkg.hello())'
# Compile C and run it; write a script and run it; a Makefile.
printf '#include <stdio.h>\nint main(void) { puts("hello"); return 0; }\n' > hello.c
cc -o a.out hello.c; ./a.out
printf 'all:\n\tcc -o b.out hello.c\n' > Makefile; make -s; ./b.out
printf '#!/bin/sh\necho running\n' > run.sh; chmod +x run.sh; ./run.sh
python3 clone/app.py
# Text tools, a local HTTP request, logs.
grep -rn hello . >/dev/null; find . -name '*.py' >/dev/null; sed -n 1p hello.c >/dev/null
curl -s "http://127.0.0.1:$port/" >/dev/null
sort app.txt 2>/dev/null || true
"#;

/// A loopback HTTP server that answers every request with `ok`.
fn http_listener() -> u16 {
    let l = TcpListener::bind(("127.0.0.1", 0)).expect("listener");
    let port = l.local_addr().expect("addr").port();
    thread::spawn(move || {
        for mut conn in l.incoming().flatten() {
            let mut buf = [0; 1024];
            let _ = conn.read(&mut buf);
            let _ = conn.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok");
        }
    });
    port
}

#[test]
fn an_ordinary_development_session_raises_no_high_alert() {
    let agent = agent();
    let home = DirGuard::fake_home().expect("a fake home under /home (CI=true)");
    let project = home.join("project");
    std::fs::create_dir_all(&project).expect("project directory");
    let script = path_str(home.write("session.sh", SESSION));
    let port = http_listener().to_string();
    let mut cmd = std::process::Command::new("bash");
    cmd.args(["-e", &script, &port])
        .current_dir(&project)
        .env("HOME", home.path())
        .env("PIP_DISABLE_PIP_VERSION_CHECK", "1")
        .env_remove("PIP_FIND_LINKS");
    let mut session = agent.spawn(&mut cmd);
    let done = session.finish(TIMEOUT * 12);
    assert!(
        done.status.success(),
        "the session failed: {:?}\nstdout:\n{}\nstderr:\n{}",
        done.status,
        done.stdout,
        done.stderr
    );
    assert!(done.stdout.contains("hello\n") && done.stdout.contains("running\n"));
    // Everything the session did has been judged once the sentinel's alert is out.
    let pid = session.pid();
    sentinel(&agent, &Case::new("quiet"));
    let alerts = agent.alerts(|a| in_tree(a, pid));
    let high: Vec<String> = alerts
        .iter()
        .filter(|a| a["severity"] == "high" || a["severity"] == "critical")
        .map(|a| format!("{} {}: {}", a["severity"], a["rule"], a["message"]))
        .collect();
    assert!(
        high.is_empty(),
        "high alerts on ordinary work:\n{}",
        high.join("\n")
    );
    // What it did raise (low and medium, such as discovery commands) is for the notes.
    for a in &alerts {
        eprintln!("{} {}: {}", a["severity"], a["rule"], a["message"]);
    }
}
